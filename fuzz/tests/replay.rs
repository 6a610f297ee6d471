//! Every target's committed corpus (fuzz/corpus/<target>) and reproducers
//! (fuzz/regressions/<target>) replayed natively, one file at a time, through the same function
//! the libFuzzer target calls: a property a product change broke fails `make test` (`make
//! fuzz-replay`), not only the next fuzzing run. A failing file is named; replay it under
//! libFuzzer with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>`.

use std::path::{Path, PathBuf};

use api_auth_filter_fuzz::targets;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("directory entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Replays fuzz/corpus/<target> and fuzz/regressions/<target>; a corpus directory must exist
/// and hold files (a target without its corpus replays nothing and checks nothing).
fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = files(&root.join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} is missing or empty");
    let regressions = files(&root.join("regressions").join(target));
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            let message = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("?");
            panic!("{target}: fuzz/{shown} fails: {message}");
        }
    }
    eprintln!("{target}: {} corpus files, {} regressions replayed", corpus.len(), regressions.len());
}

#[test]
fn canonical() {
    replay("canonical", targets::canonical::run);
}

#[test]
fn config() {
    replay("config", targets::config::run);
}

#[test]
fn decide() {
    replay("decide", targets::decide::run);
}

#[test]
fn eddsa() {
    replay("eddsa", targets::eddsa::run);
}

#[test]
fn rsa() {
    replay("rsa", targets::rsa::run);
}

#[test]
fn es256() {
    replay("es256", targets::es256::run);
}

#[test]
fn es384() {
    replay("es384", targets::es384::run);
}

#[test]
fn headers() {
    replay("headers", targets::headers::run);
}

#[test]
fn jwks() {
    replay("jwks", targets::jwks::run);
}

#[test]
fn jwt() {
    replay("jwt", targets::jwt::run);
}

#[test]
fn mcp() {
    replay("mcp", targets::mcp::run);
}

#[test]
fn routes() {
    replay("routes", targets::routes::run);
}

/// Every target of Cargo.toml has its replay above (a new target without one fails here).
#[test]
fn every_target_is_replayed() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).expect("Cargo.toml");
    let mut bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.trim().strip_prefix("name = ")).map(|n| n.trim_matches('"')))
        .collect();
    bins.sort_unstable();
    assert_eq!(bins, ["canonical", "config", "decide", "eddsa", "es256", "es384", "headers", "jwks", "jwt", "mcp", "routes", "rsa"]);
}
