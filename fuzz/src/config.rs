//! Target `config_parse`: `causewayd::config::parse` on arbitrary UTF-8 text (the daemon's
//! configuration file; `causewayd --check` runs exactly this).
//!
//! Checked beyond "no panic": a refused configuration says why (at least one error), every
//! error's line number lies within the text, and the errors and the accepted configuration
//! print (the redacting `Debug` / `Display` of keys included).

use std::path::Path;

use causewayd::config;

/// Where the text claims to come from: relative file references (key files must be absolute)
/// resolve to nothing.
const PATH: &str = "/nonexistent-causeway-fuzz/causeway.toml";

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, Path::new(PATH)) {
        Ok(c) => {
            assert_eq!(c.path, Path::new(PATH));
            let _ = format!("{c:?}");
        }
        Err(errors) => {
            assert!(
                !errors.0.is_empty(),
                "a refused configuration without a reason"
            );
            let lines = text.split('\n').count();
            for e in &errors.0 {
                if let Some(line) = e.line {
                    assert!(
                        (1..=lines).contains(&line),
                        "line {line} of a {lines}-line text: {e:?}"
                    );
                }
            }
            let _ = errors.to_string();
        }
    }
}

/// Seeds: the example and lab configurations of `configs/` and the test fixtures of
/// `crates/causewayd/tests/fixtures/config/`, read from the repository.
pub fn seeds(repo: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["configs", "crates/causewayd/tests/fixtures/config"] {
        let Ok(entries) = std::fs::read_dir(repo.join(dir)) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.extension().is_some_and(|e| e == "toml") {
                let name = format!(
                    "{}_{}",
                    dir.rsplit('/').next().unwrap_or(dir),
                    f.file_stem().unwrap().to_string_lossy()
                );
                out.push((name, std::fs::read(&f).expect("read a config")));
            }
        }
    }
    out
}
