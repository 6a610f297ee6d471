//! The configuration language of `docs/configuration.md`, as written by users.
//!
//! Every object refuses unknown fields, so that a typo can never silently switch a check off.
//! These types only describe shape; meaning and cross-references are checked by `compile`.
//! (JWKs are the one exception to unknown-field refusal: RFC 7517 lets a key carry any member.)

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::apikeys::KeyStatus;
use crate::secret::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    pub api_keys: Option<RawApiKeys>,
    #[serde(default)]
    pub webhooks: BTreeMap<String, RawWebhook>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub unmatched: Unmatched,
    pub errors: Option<String>,
    #[serde(default)]
    pub error_formats: BTreeMap<String, RawErrorFormat>,
    pub protected_resource: Option<RawProtectedResource>,
    pub forward: Option<RawForward>,
    pub correlation_id: Option<RawCorrelationId>,
    pub workspace_header: Option<String>,
    pub organization_header: Option<String>,
    /// What a `;` path parameter does: refused (default) or removed before matching.
    #[serde(default)]
    pub path_parameters: RawPathParameters,
    /// Principal fields written to Envoy filter state (`wasm.api_auth.<field>`) after an allow.
    pub filter_state: Option<Vec<String>>,
    /// The verified-token cache of each worker.
    pub token_cache: Option<RawTokenCache>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenCache {
    pub max_entries: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPathParameters {
    #[default]
    Reject,
    Strip,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    #[default]
    Deny,
    Allow,
}

// ---------------------------------------------------------------------------------------------
// Providers

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub authorized_parties: Vec<String>,
    pub algorithms: Vec<String>,
    pub jwks: RawJwks,
    pub clock_skew_s: Option<u64>,
    pub require_exp: Option<bool>,
    pub max_lifetime_s: Option<u64>,
    /// The JWS header `typ` the provider's tokens must carry (RFC 9068: `at+jwt`).
    pub typ: Option<String>,
    #[serde(default)]
    pub reject_pending_sessions: bool,
    #[serde(default)]
    pub full_access: bool,
    #[serde(default)]
    pub claims: RawClaims,
    /// Cookies that may carry this provider's tokens (Clerk: `__session`), read when no
    /// header carries a credential.
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// Opaque access tokens, verified at the provider's RFC 7662 introspection endpoint.
    pub introspection: Option<RawIntrospection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub cluster: String,
    /// The calls' `:authority` (default: the issuer's host\[:port\], else the cluster).
    pub authority: Option<String>,
    /// Required unless the provider's keys come by discovery: then the document's
    /// `introspection_endpoint`.
    pub path: Option<String>,
    pub client_id: String,
    pub client_secret: RawSecretSource,
    pub timeout_ms: Option<u64>,
    pub cache_ttl_s: Option<u64>,
    pub negative_cache_ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    pub remote: Option<RawRemoteJwks>,
    pub inline: Option<RawInlineJwks>,
    pub discovery: Option<RawDiscovery>,
}

/// The keys at the `jwks_uri` of the issuer's metadata (OIDC discovery, RFC 8414), both
/// fetched through `cluster`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub cluster: String,
    /// The `:authority` of both fetches, and the only host\[:port\] `jwks_uri` may name
    /// (default: the issuer's).
    pub authority: Option<String>,
    pub timeout_ms: Option<u64>,
    pub refresh_s: Option<u64>,
    pub min_refetch_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub cluster: String,
    pub authority: Option<String>,
    pub path: String,
    pub timeout_ms: Option<u64>,
    pub refresh_s: Option<u64>,
    pub min_refetch_s: Option<u64>,
    /// HMAC secrets (`kty: "oct"`) in the fetched JWKS are used only when this is set: a
    /// JWKS URL is usually public, and a key it publishes must not be able to mint tokens.
    #[serde(default)]
    pub allow_symmetric_keys: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInlineJwks {
    /// Kept as JSON: a JWK may carry any member (RFC 7517 §4), and an `oct` key's `k` is a
    /// secret, so the JWKS module parses these into its own redacting types.
    pub keys: Vec<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    pub subject: Option<Vec<String>>,
    pub email: Option<Vec<String>>,
    pub name: Option<Vec<String>>,
    pub organization: Option<Vec<String>>,
    pub organizations: Option<Vec<String>>,
    pub workspaces: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub permissions: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// API keys

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    #[serde(default)]
    pub prefixes: Vec<String>,
    pub headers: Option<Vec<String>>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    pub lookup: Option<RawLookup>,
    pub usage_report: Option<RawUsageReport>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: String,
    pub sha256: String,
    #[serde(default)]
    pub status: KeyStatus,
    pub expires_at: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub organization: Option<String>,
    #[serde(default)]
    pub workspaces: Vec<String>,
    pub name: Option<String>,
}


#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    pub cluster: String,
    pub authority: Option<String>,
    pub path: String,
    pub timeout_ms: Option<u64>,
    pub cache_ttl_s: Option<u64>,
    pub negative_cache_ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsageReport {
    pub cluster: String,
    pub authority: Option<String>,
    pub path: String,
    pub interval_s: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Webhooks

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub encoding: Option<String>,
    pub secrets: Vec<RawSecretSource>,
    pub timestamp: Option<RawWebhookTimestamp>,
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretSource {
    pub env: Option<String>,
    pub value: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhookTimestamp {
    pub header: String,
    pub tolerance_s: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Routes

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub auth: RawAuth,
    pub webhook: Option<String>,
    pub errors: Option<String>,
    /// The route serves MCP (streamable HTTP): the JSON-RPC call in the body is judged.
    pub mcp: Option<RawMcp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    /// The scope a `tools/call` needs, from `{name}` (default `tools:{name}`).
    pub tools: Option<String>,
    /// The scope a `prompts/get` needs, from `{name}` (default: authentication only).
    pub prompts: Option<String>,
    /// The scope a `resources/read` needs, from `{uri}` (default: authentication only).
    pub resources: Option<String>,
    pub max_body_bytes: Option<u64>,
    /// `"tool_error"` (default) or `"challenge"`.
    pub scope_denial: Option<String>,
    /// Filter `tools/list` answers to the tools the principal may call (default true).
    pub filter_tools_list: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub methods: Option<Vec<String>>,
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub template: Option<String>,
    /// The name of the route Envoy's router selected (`xds.route_name`; Istio sets it from
    /// VirtualService route names), instead of a path.
    pub route_name: Option<String>,
    /// A string in the selected route's metadata, instead of a path.
    pub route_metadata: Option<RawRouteMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteMetadata {
    /// The `filter_metadata` namespace, e.g. `api_auth`.
    pub filter: String,
    pub key: String,
    pub value: String,
}

/// `"none"` or an object of requirements.
#[derive(Debug)]
pub enum RawAuth {
    None,
    Required(RawAuthSpec),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthSpec {
    pub credentials: Option<Vec<String>>,
    pub providers: Option<Vec<String>>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub organization: bool,
    #[serde(default)]
    pub workspace: bool,
}

// A hand-written visitor instead of `#[serde(untagged)]`: untagged enums swallow the inner error
// ("data did not match any variant") and lose the path, and a typo inside `auth` must be named.
impl<'de> Deserialize<'de> for RawAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AuthVisitor;
        impl<'de> Visitor<'de> for AuthVisitor {
            type Value = RawAuth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(super::path::AUTH_EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAuth, E> {
                if v == "none" {
                    Ok(RawAuth::None)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAuth, A::Error> {
                RawAuthSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawAuth::Required)
            }
        }
        deserializer.deserialize_any(AuthVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors, metadata, forwarding, correlation

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawErrorFormat {
    pub base: Option<String>,
    #[serde(default)]
    pub reasons: BTreeMap<String, RawReasonOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReasonOverride {
    pub status: Option<u16>,
    pub message: Option<String>,
    /// A JSON document; `{message}`, `{reason}`, `{scope}` and `{permission}` inside its strings
    /// are filled in.
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProtectedResource {
    pub resource: String,
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Option<Vec<String>>,
    pub bearer_methods_supported: Option<Vec<String>>,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    pub metadata_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub strip_credentials: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub override_headers: Option<crate::overrides::RawOverrideHeaders>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCorrelationId {
    pub header: Option<String>,
    pub generate: Option<bool>,
}
