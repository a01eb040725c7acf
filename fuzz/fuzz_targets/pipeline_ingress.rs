//! cargo-fuzz target `pipeline_ingress`: see `causeway_fuzz::pipeline` (fuzz/src/pipeline.rs) for the
//! input layout and what is checked, docs/RELIABILITY.md for how to run it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::pipeline::ingress(data));
