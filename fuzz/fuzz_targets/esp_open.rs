//! cargo-fuzz target `esp_open`: see `causeway_fuzz::esp` (fuzz/src/esp.rs) for the
//! input layout and what is checked, docs/RELIABILITY.md for how to run it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::esp::run(data));
