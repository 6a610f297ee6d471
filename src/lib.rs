//! api-auth-filter: inline API authentication for Envoy, as a proxy-wasm filter.
//!
//! Everything but `glue` is a pure core that never touches the host: configuration,
//! credentials, routes, API keys, grants and error responses. `glue` turns a request into
//! plain data, asks `engine::decide` and acts on the answer, through one `Host` trait (the
//! proxy-wasm ABI in Envoy, a mock in tests).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod apikeys;
pub mod config;
pub mod correlation;
pub mod credentials;
/// The signature arithmetic: its own crate (crypto/), so that it is optimised for speed while
/// this one is optimised for size (Cargo.toml).
pub use api_auth_crypto as crypto;
pub mod deny;
pub mod discovery;
pub mod engine;
pub mod glue;
pub mod grants;
pub mod introspection;
pub mod jwks_cache;
pub mod jwt;
pub mod mcp;
pub mod metadata;
pub mod overrides;
pub mod principal;
pub mod records;
pub mod reply;
pub mod routes;
pub mod secret;
pub mod stats;
pub mod text;
pub mod time;
pub mod token_cache;
pub mod webhook;
