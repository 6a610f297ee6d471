#![allow(dead_code)]

use std::path::PathBuf;

/// The repository's `examples/`: the contract configurations and the demo's.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Every configuration of `examples/` (`*.json`), by file name, in name order. A missing or
/// unreadable directory is a test failure: the examples ship with the repository.
pub fn examples() -> Vec<(String, serde_json::Value)> {
    let dir = examples_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e} (the examples ship in the repository)", dir.display()));
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The example whose file name starts with `prefix` ("002"); panics when there is none.
pub fn example(prefix: &str) -> serde_json::Value {
    examples()
        .into_iter()
        .find(|(name, _)| name.starts_with(prefix))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no example {prefix}*.json in {}", examples_dir().display()))
}

/// `../shared` beside the repository (or `$SHARED`), when present. Only the Wycheproof vectors
/// and the check that the design examples match `examples/` read it.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    dir.is_dir().then_some(dir)
}
