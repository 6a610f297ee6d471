//! The one loader of the repository's `examples/`, shared by the core's tests, the CLI's tests
//! and the end-to-end test bed (each includes this file by path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Every configuration of `dir` (`*.json`), as (path, document), in name order. A missing or
/// unreadable directory is a test failure: the examples ship with the repository.
pub fn examples_in(dir: &Path) -> Vec<(PathBuf, Value)> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e} (the examples ship in the repository)", dir.display()));
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            out.push((path, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The example of `dir` whose file name starts with `prefix` ("002"); panics when there is none.
pub fn example_in(dir: &Path, prefix: &str) -> (PathBuf, Value) {
    examples_in(dir)
        .into_iter()
        .find(|(p, _)| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .unwrap_or_else(|| panic!("no example {prefix}*.json in {}", dir.display()))
}
