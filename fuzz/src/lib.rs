//! Shared fixtures and input formats of the fuzz targets (see fuzz/README.md).

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The tests' clock (tests/engine.rs): 2026-09-21.
pub const NOW: i64 = 1_790_000_000;

/// The design examples, copied from ../shared/design/examples.
pub const EXAMPLES: [&str; 5] = [
    include_str!("../fixtures/000-session-jwt-org.json"),
    include_str!("../fixtures/001-tenant-jwt-webhooks.json"),
    include_str!("../fixtures/002-inference-keys.json"),
    include_str!("../fixtures/003-scoped-keys-mcp.json"),
    include_str!("../fixtures/004-workspace-tokens.json"),
];

/// Keys and known-good tokens, written by seeds/make_seeds.py.
pub fn keys() -> &'static Value {
    static KEYS: OnceLock<Value> = OnceLock::new();
    KEYS.get_or_init(|| serde_json::from_str(include_str!("../fixtures/keys.json")).expect("fixtures/keys.json"))
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("fixture base64url")
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// FNV-1a: a deterministic choice (a position, a byte) derived from the whole input.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// `\n`-separated lines (a trailing `\r` is kept: it is input like any other byte).
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n').collect()
}

/// `name: value` lines as the host presents headers: the name lower-cased (lossy UTF-8), the
/// value raw bytes after the colon, less one optional leading space (Envoy strips the optional
/// whitespace; anything beyond one space stays for the core to judge). A line without a colon
/// is a header with an empty value.
pub fn header(line: &[u8]) -> (String, Vec<u8>) {
    let (name, value) = match line.iter().position(|b| *b == b':') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    let value = value.strip_prefix(b" ").unwrap_or(value);
    (String::from_utf8_lossy(name).to_ascii_lowercase(), value.to_vec())
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
