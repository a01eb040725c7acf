//! cargo-fuzz target `wire_parsers`: see `causeway_fuzz::wire_parsers` (fuzz/src/wire_parsers.rs) for the
//! input layout and what is checked, docs/RELIABILITY.md for how to run it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::wire_parsers::run(data));
