//! cargo-fuzz target `control_request`: see `causeway_fuzz::control` (fuzz/src/control.rs) for the
//! input layout and what is checked, docs/RELIABILITY.md for how to run it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::control::run(data));
