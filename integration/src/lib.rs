//! The end-to-end test bed: the built filter inside a real Envoy, a loopback upstream that
//! echoes what it received, mock servers for JWKS and key services, and a raw HTTP/1.1 client
//! that can send any header bytes. Everything binds 127.0.0.1 on free ports and is stopped on
//! drop, also when a test panics.

use std::net::TcpListener;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

mod cases;
mod client;
mod envoy;
#[path = "../../tests/common/examples.rs"]
mod examples;
mod http1;
mod issuer;
pub mod mcp;
mod memory;
pub mod oidc;
mod servers;

pub use cases::*;
pub use client::*;
pub use envoy::*;
pub use issuer::*;
pub use memory::*;
pub use servers::*;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An example configuration of the repository's `examples/` by file-name prefix ("002");
/// panics when there is none (the examples ship with the repository).
pub fn example(prefix: &str) -> Value {
    examples::example_in(&repo_root().join("examples"), prefix).1
}

/// An example without its webhooks and the routes that check them (suites that exercise
/// webhooks do so on their own).
pub fn example_without_webhooks(prefix: &str) -> Value {
    let mut cfg = example(prefix);
    if let Some(doc) = cfg.as_object_mut() {
        doc.remove("webhooks");
    }
    if let Some(routes) = cfg["routes"].as_array_mut() {
        routes.retain(|r| r.get("webhook").is_none());
    }
    cfg
}

/// Polls `f` every 100 ms until it holds or `within` has passed; its last answer.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    f()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
