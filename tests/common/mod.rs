#![allow(dead_code)]

use std::path::PathBuf;

mod examples;

use examples::{example_in, examples_in};

/// The repository's `examples/`: the contract configurations and the demo's.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Every configuration of `examples/` (`*.json`), by file name, in name order.
pub fn examples() -> Vec<(String, serde_json::Value)> {
    examples_in(&examples_dir()).into_iter().map(|(p, v)| (p.file_name().unwrap().to_string_lossy().into_owned(), v)).collect()
}

/// The example whose file name starts with `prefix` ("002"); panics when there is none.
pub fn example(prefix: &str) -> serde_json::Value {
    example_in(&examples_dir(), prefix).1
}

/// `../shared` beside the repository (or `$SHARED`), when present. Only the Wycheproof vectors
/// and the check that the design examples match `examples/` read it.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    dir.is_dir().then_some(dir)
}
