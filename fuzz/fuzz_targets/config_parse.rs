//! cargo-fuzz target `config_parse`: see `causeway_fuzz::config` (fuzz/src/config.rs) for the
//! input layout and what is checked, docs/RELIABILITY.md for how to run it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::config::run(data));
