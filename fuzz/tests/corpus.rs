//! Every committed seed and regression input (`fuzz/corpus/<target>/*`) through its target's
//! harness, without libFuzzer: a plain `cargo test --manifest-path fuzz/Cargo.toml` on the
//! stable toolchain. A crash the fuzzer found stays fixed once its input is in the corpus.

use std::path::Path;

#[test]
fn every_corpus_file_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for (name, run) in causeway_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name}: no seeds in {}", dir.display());
        for f in &files {
            let data = std::fs::read(f).unwrap();
            eprintln!("{name}: {}", f.display());
            run(&data);
        }
        total += files.len();
    }
    eprintln!("{total} inputs");
}
