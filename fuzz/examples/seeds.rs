//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/`: packets, ESP
//! packets, IKE exchanges and requests built with the code's own builders and the captured
//! strongSwan messages of docs/STRONGSWAN.md, the example configurations. Deterministic: the
//! same files every run (names say what each seed is). Existing files of the same name are
//! replaced; other files (found by fuzzing, minimised, added by hand) are left alone.
//!
//! Usage: cargo run --release --manifest-path fuzz/Cargo.toml --example seeds [REPO]

use std::path::{Path, PathBuf};

use causeway_fuzz::ike_peer::{self, Role};
use causeway_fuzz::*;

fn write(root: &Path, target: &str, seeds: Vec<(String, Vec<u8>)>) {
    let dir = root.join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    for (name, bytes) in &seeds {
        assert!(
            bytes.len() <= 65_536,
            "{target}/{name}: {} bytes",
            bytes.len()
        );
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
    }
    eprintln!("{target}: {} seeds", seeds.len());
}

fn main() {
    let root: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    write(
        &root,
        "pipeline_egress",
        pipeline::seeds(pipeline::Side::Egress),
    );
    write(
        &root,
        "pipeline_ingress",
        pipeline::seeds(pipeline::Side::Ingress),
    );
    write(&root, "wire_parsers", wire_parsers::seeds());
    write(&root, "esp_open", esp::seeds());
    let responder = ike_peer::seeds(Role::Responder);
    let initiator = ike_peer::seeds(Role::Initiator);
    // The messages of the scripted exchanges, as the ike_payloads target reads them.
    let mut recorded = Vec::new();
    for (role, seeds, tag) in [
        (Role::Responder, &responder, "r"),
        (Role::Initiator, &initiator, "i"),
    ] {
        for (name, input) in seeds.iter().filter(|(n, _)| {
            n.starts_with("strongswan") || n.starts_with("handshake_v") || n.contains("rekey")
        }) {
            for (i, m) in ike_peer::run_logged(role, input, true)
                .into_iter()
                .enumerate()
            {
                recorded.push((format!("{tag}_{name}_{i:02}"), m));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    recorded.retain(|(_, m)| seen.insert(m.clone()));
    write(&root, "ike_payloads", ike_payloads::seeds(&recorded));
    write(&root, "ike_responder", responder);
    write(&root, "ike_initiator", initiator);
    write(&root, "config_parse", config::seeds(&root));
    write(&root, "control_request", control::seeds());
}
