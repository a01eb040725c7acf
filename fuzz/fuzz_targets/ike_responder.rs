//! cargo-fuzz target `ike_responder`: see `causeway_fuzz::ike_peer` (fuzz/src/ike_peer.rs) for the
//! input layout and what is checked, docs/RELIABILITY.md for how to run it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| causeway_fuzz::ike_peer::responder(data));
