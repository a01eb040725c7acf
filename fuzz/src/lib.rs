//! The harnesses behind Causeway's fuzz targets (`fuzz/fuzz_targets/*.rs` are one line each:
//! they call `run` here), shared with the seed generator (`examples/seeds.rs`) and with the
//! corpus replay test (`tests/corpus.rs`), which runs every committed seed through its harness
//! on a plain stable `cargo test`.
//!
//! Each module documents its target's input layout and what it checks beyond "no panic".
//! See docs/RELIABILITY.md for how to run them.

pub mod checks;
pub mod config;
pub mod control;
pub mod esp;
pub mod ike_payloads;
pub mod ike_peer;
pub mod input;
pub mod packets;
pub mod pipeline;
pub mod wire_parsers;

/// A target's harness: runs one fuzz input, panics on a finding.
pub type Harness = fn(&[u8]);

/// Every target: its name (the file in `fuzz_targets/`, the directory in `corpus/`) and its
/// harness.
pub const TARGETS: &[(&str, Harness)] = &[
    ("pipeline_egress", pipeline::egress),
    ("pipeline_ingress", pipeline::ingress),
    ("wire_parsers", wire_parsers::run),
    ("esp_open", esp::run),
    ("ike_payloads", ike_payloads::run),
    ("ike_responder", ike_peer::responder),
    ("ike_initiator", ike_peer::initiator),
    ("config_parse", config::run),
    ("control_request", control::run),
];
