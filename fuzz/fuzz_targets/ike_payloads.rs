//! cargo-fuzz target `ike_payloads`: see `causeway_fuzz::ike_payloads` (fuzz/src/ike_payloads.rs) for the
//! input layout and what is checked, docs/RELIABILITY.md for how to run it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::ike_payloads::run(data));
