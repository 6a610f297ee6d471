//! Configuration: parse (serde, unknown fields refused), then compile into a validated, indexed
//! form. Every error names the path of the field at fault, e.g. `routes[3].auth.scopes[0]: ...`.
//! Error messages never quote a secret, a key digest or the document itself.
//!
//! Here the compiled `Config` and the order sections compile in; each section compiles in a
//! module named for it. The run-time modules (webhook, metadata, correlation, apikeys) never
//! see `raw`.

mod api_keys;
mod correlation;
pub mod error;
mod errors;
mod forward;
mod path;
mod protected_resource;
mod providers;
pub mod raw;
pub(crate) mod shape;
mod routes;
mod webhooks;

use crate::apikeys::ApiKeys;
use crate::correlation::Correlation;
use crate::deny::ErrorFormat;
use crate::metadata::ProtectedResource;
use crate::principal::Field;
use crate::routes::PathParameters;
use crate::webhook::Webhook;
use raw::*;

pub use crate::apikeys::KeyStatus;
pub use api_keys::{compile_key, key_service_answer};
pub use error::ConfigError;
pub use forward::Forward;
pub use providers::{Introspection, KeySource, Provider, RemoteJwks, MAX_CLOCK_SKEW_S};
pub use raw::Unmatched;
pub use routes::{AuthRequirements, Binding, McpRules, Piece, Requirement, Route, DEFAULT_MCP_BODY_BYTES, MAX_MCP_BODY_BYTES};
pub use webhooks::MAX_WEBHOOK_TOLERANCE_S;


/// A compiled configuration: everything a request needs, resolved and indexed.
#[derive(Debug)]
pub struct Config {
    /// In name order; routes and the engine refer to them by index.
    pub providers: Vec<Provider>,
    pub api_keys: Option<ApiKeys>,
    pub routes: Vec<Route>,
    pub unmatched: Unmatched,
    /// Index into `formats` of the default format.
    pub default_format: usize,
    pub formats: Vec<ErrorFormat>,
    pub forward: Forward,
    pub workspace_header: String,
    pub organization_header: String,
    /// In name order; routes refer to them by index.
    pub webhooks: Vec<(String, Webhook)>,
    pub protected_resource: Option<ProtectedResource>,
    pub correlation: Option<Correlation>,
    pub path_parameters: PathParameters,
    /// Filter state written after an allow: (name, principal field); Envoy shows each as
    /// `wasm.<name>`.
    pub filter_state: Vec<(String, Field)>,
    /// Lower-case names whose underscore twins (`x_api_key` for `x-api-key`) are removed from
    /// every request that goes upstream: the credential headers, the forwarded identity
    /// headers, and the organisation and workspace headers.
    pub guarded_headers: Vec<String>,
    /// Every provider's `from_cookies`: the cookies read for a token, and removed upstream.
    pub cookie_names: Vec<String>,
    /// Some route follows the router's choice: the glue asks Envoy which route it chose.
    pub binds_routes: bool,
    /// Some provider introspects opaque tokens: a bearer token not shaped as a JWS is one.
    pub introspects: bool,
    /// Verified tokens each worker keeps (`token_cache.max_entries`); 0: none.
    pub token_cache_entries: usize,
}

/// `token_cache.max_entries` when not set: measured in BENCHMARKS.md ("Memory per Envoy process").
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 4096;

/// The most `token_cache.max_entries` may be.
pub const MAX_TOKEN_CACHE_ENTRIES: u64 = 65_536;

impl Config {
    /// Parses and compiles a configuration document; webhook secrets named by `env` come from
    /// the process environment (the wasm VM's `environment_variables`).
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        Config::from_json_with_env(bytes, &|name| std::env::var(name).ok())
    }

    pub fn from_json_with_env(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let raw = decode(bytes).map_err(|(path, e)| ConfigError::new(path, scrub_serde_message(&e.to_string())))?;
        compile(raw, env)
    }
}

/// The document as written, or serde's error and the path of the field it is about. Decoded
/// untracked (one copy of each `Raw` type's code); the path is found only on error
/// (`path.rs`). Like `serde_path_to_error::deserialize` before it, nothing after the document
/// is looked at.
#[doc(hidden)]
#[inline(never)] // see `compile`
pub fn decode(bytes: &[u8]) -> Result<RawConfig, (String, serde_json::Error)> {
    use serde::Deserialize;
    RawConfig::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).map_err(|e| (path::error_path(bytes, &e), e))
}

/// serde's messages quote the offending value (`invalid value: string "..."`, ``unknown variant
/// `...` ``), and a value may be a secret put in the wrong place. A value may itself hold quotes
/// or backticks, so it cannot be cut out by its delimiters: the message is rebuilt from the
/// parts that come from our schema instead, the kind of error and what was expected (serde puts
/// `, expected ...` last, so the last such clause is ours whatever the value holds).
fn scrub_serde_message(msg: &str) -> String {
    const VALUE_KINDS: [&str; 4] = ["unknown variant", "invalid type", "invalid value", "invalid length"];
    let expected = |m: &str| m.rfind(", expected ").map_or(String::new(), |i| m[i..].to_string());
    if VALUE_KINDS.iter().any(|k| msg.starts_with(k)) {
        // "invalid type: string", "invalid length 3": serde's words up to the quoted value.
        let cut = [msg.find(['"', '`']), msg.rfind(", expected ")].into_iter().flatten().min().unwrap_or(msg.len());
        return format!("{}{}", msg[..cut].trim_end_matches([' ', ',']), expected(msg));
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        // A key of the document: named when it is a plain name (what a typo looks like).
        let name = rest.split('`').next().unwrap_or("");
        let plain = shape::plain_name(name);
        let tail = if rest.contains("`, there are no fields") { ", there are no fields".to_string() } else { expected(rest) };
        return if plain { format!("unknown field `{name}`{tail}") } else { format!("unknown field{tail}") };
    }
    // The rest (missing or duplicate fields, syntax errors) name only our fields, or nothing;
    // a duplicate name in a map only a plain name (`shape::Named`). Anything else quoting
    // something is cut at the first quote, to be safe.
    let ours = ["missing field `", "duplicate field `", "duplicate name `"].iter().any(|p| msg.starts_with(p));
    match (ours, msg.find(['"', '`'])) {
        (false, Some(i)) => msg[..i].trim_end().to_string(),
        _ => msg.to_string(),
    }
}

/// Each part of the configuration is compiled in a function of its own (`#[inline(never)]` here
/// and on the `compile_*` functions it calls): inlined into one, they made a 36 KB wasm function
/// whose TurboFan compile, when Envoy loads the module, needed 9.7 MB of V8 zone memory, and
/// Envoy's tcmalloc keeps such pages after the compile: 5 MiB more RSS per Envoy process, for
/// code that runs once per configuration (issue 23; `make size` lists the compile's largest
/// functions).
#[inline(never)]
fn compile(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut webhooks = Vec::with_capacity(raw.webhooks.len());
    for (name, w) in &raw.webhooks {
        webhooks.push((name.clone(), webhooks::webhook(&format!("webhooks.{name}"), w, env)?));
    }
    let webhook_names: Vec<&str> = webhooks.iter().map(|(n, _)| n.as_str()).collect();
    let protected_resource = raw.protected_resource.as_ref().map(protected_resource::protected_resource).transpose()?;
    let correlation = raw.correlation_id.as_ref().map(correlation::correlation).transpose()?;

    let (formats, format_index) = errors::compile_formats(&raw.error_formats)?;
    let default_format = match &raw.errors {
        Some(name) => *format_index
            .get(name.as_str())
            .ok_or_else(|| ConfigError::new("errors", format!("unknown error format '{name}'")))?,
        None => 0,
    };

    let mut providers = Vec::with_capacity(raw.providers.len());
    for (name, p) in raw.providers {
        providers.push(providers::compile_provider(name, p, env)?);
    }
    let provider_names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();

    let api_keys = raw.api_keys.map(api_keys::compile_api_keys).transpose()?;
    let key_headers: Vec<String> = api_keys.as_ref().map(|k| k.headers.clone()).unwrap_or_default();

    let workspace_header = header_name("workspace_header", raw.workspace_header.as_deref().unwrap_or("x-workspace-id"))?;
    let organization_header =
        header_name("organization_header", raw.organization_header.as_deref().unwrap_or("x-organization-id"))?;

    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let ctx = routes::RouteContext {
            formats: &format_index,
            default_format,
            have_keys: api_keys.is_some(),
            introspects: providers.iter().any(|p| p.introspection.is_some()),
            providers: &provider_names,
            webhooks: &webhook_names,
        };
        routes.push(routes::compile_route(&format!("routes[{i}]"), r, &ctx)?);
    }

    let forward = forward::compile_forward(raw.forward, &key_headers)?;

    let mut guarded_headers = vec!["authorization".to_string()];
    guarded_headers.extend(key_headers.iter().cloned());
    guarded_headers.extend(forward.headers.iter().map(|(n, _)| n.clone()));
    guarded_headers.extend([organization_header.clone(), workspace_header.clone()]);
    guarded_headers.sort();
    guarded_headers.dedup();
    if let Some(c) = &correlation {
        // The filter sets the correlation header on the upstream request and the response:
        // over a credential or an identity header it would replace what the upstream trusts.
        if guarded_headers.contains(&c.header) {
            return Err(ConfigError::new("correlation_id.header", "must not be a credential, forwarded, organisation or workspace header"));
        }
    }

    let mut cookie_names: Vec<String> = providers.iter().flat_map(|p| p.from_cookies.iter().cloned()).collect();
    cookie_names.sort();
    cookie_names.dedup();
    let binds_routes = routes.iter().any(|r| r.binding.is_some());
    let introspects = providers.iter().any(|p| p.introspection.is_some());

    Ok(Config {
        cookie_names,
        binds_routes,
        introspects,
        providers,
        api_keys,
        routes,
        unmatched: raw.unmatched,
        default_format,
        formats,
        forward,
        workspace_header,
        organization_header,
        webhooks,
        protected_resource,
        correlation,
        filter_state: forward::compile_filter_state(raw.filter_state.as_deref())?,
        path_parameters: match raw.path_parameters {
            RawPathParameters::Reject => PathParameters::Reject,
            RawPathParameters::Strip => PathParameters::Strip,
        },
        guarded_headers,
        token_cache_entries: compile_token_cache(raw.token_cache.as_ref())?,
    })
}

fn compile_token_cache(raw: Option<&RawTokenCache>) -> Result<usize, ConfigError> {
    match raw.and_then(|t| t.max_entries) {
        None => Ok(DEFAULT_TOKEN_CACHE_ENTRIES),
        Some(n) if n > MAX_TOKEN_CACHE_ENTRIES => {
            Err(ConfigError::new("token_cache.max_entries", format!("at most {MAX_TOKEN_CACHE_ENTRIES}")))
        }
        Some(n) => usize::try_from(n).map_err(|_| ConfigError::new("token_cache.max_entries", "out of range")),
    }
}

fn bounded(path: &str, value: u64, max: u64) -> Result<u64, ConfigError> {
    if value > max {
        return Err(ConfigError::new(path, format!("must be at most {max}")));
    }
    Ok(value)
}

/// Seconds as milliseconds; a period too long to count in milliseconds is as good as forever.
pub fn seconds_to_ms(s: u64) -> u64 {
    s.saturating_mul(1000)
}

/// A header name as Envoy presents it: lower-case token characters.
fn header_name(path: &str, name: &str) -> Result<String, ConfigError> {
    if !crate::text::is_header_token(name) {
        return Err(ConfigError::new(path, "not a valid header name"));
    }
    Ok(name.to_ascii_lowercase())
}
