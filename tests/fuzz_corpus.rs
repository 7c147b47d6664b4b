//! Runs every fuzz target's property checks ([`ringway::fuzzing`]) over its seed corpus in
//! `fuzz/corpus/<target>/`, so each CI run exercises the seeds (and the regression inputs
//! fuzzing found) without cargo-fuzz. See fuzz/README.md.

use std::path::{Path, PathBuf};

use ringway::fuzzing;

/// The seed files of one target, sorted; a missing or empty directory fails the test (a
/// renamed target must not pass by checking nothing).
fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seeds", dir.display());
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Runs `check` on every seed and on every prefix of it (a cut body or head is what a
/// slow client sends), naming the seed when a property fails.
fn run(target: &str, check: fn(&[u8])) {
    for (path, bytes) in seeds(target) {
        let result = std::panic::catch_unwind(|| {
            for cut in 0..=bytes.len() {
                check(&bytes[..cut]);
            }
        });
        if result.is_err() {
            panic!("{target}: seed {} breaks a property", path.display());
        }
    }
}

#[test]
fn request_head_seeds() {
    run("request_head", fuzzing::request_head);
}

#[test]
fn response_head_seeds() {
    run("response_head", fuzzing::response_head);
}

#[test]
fn chunked_seeds() {
    run("chunked", fuzzing::chunked);
}

#[test]
fn json_peek_seeds() {
    run("json_peek", fuzzing::json_peek);
}

#[test]
fn proxy_header_seeds() {
    run("proxy_header", fuzzing::proxy_header);
}

#[test]
fn differential_seeds() {
    run("differential", fuzzing::differential);
}

#[test]
fn config_seeds() {
    // Whole files only: every prefix of a 70-line file would mostly test the TOML parser.
    for (path, bytes) in seeds("config") {
        let result = std::panic::catch_unwind(|| fuzzing::config(&bytes));
        assert!(
            result.is_ok(),
            "config: seed {} breaks a property",
            path.display()
        );
    }
}

/// The example configurations are valid seeds: they reach the loaded-snapshot checks.
#[test]
fn config_seeds_from_the_examples_load() {
    ringway::config::NO_LOOKUPS.with(|n| n.set(true));
    for name in ["hash", "llm-fleet", "ringway", "weighted"] {
        let path = format!("fuzz/corpus/config/{name}.toml");
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path));
        let loaded = ringway::config::load_str(&text.unwrap(), Path::new(&path), 1);
        assert!(loaded.is_ok(), "{path}: {:?}", loaded.err());
    }
}
