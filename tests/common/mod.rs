#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared` beside the repository (or `$SHARED`), when present.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not found", dir.display());
        None
    }
}

/// The example configurations of `../shared/design/examples`, by file name.
pub fn examples() -> Option<Vec<(String, serde_json::Value)>> {
    let dir = shared_dir()?.join("design/examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read example");
            let value: serde_json::Value = serde_json::from_str(&text).expect("example is JSON");
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Some(out)
}

pub fn example(prefix: &str) -> Option<serde_json::Value> {
    examples()?.into_iter().find(|(name, _)| name.starts_with(prefix)).map(|(_, v)| v)
}
