//! The configuration language of `docs/configuration.md`, as written by users.
//!
//! Every object refuses unknown fields, so that a typo can never silently switch a check off.
//! These types only describe shape; meaning and cross-references are checked by `compile`.
//! (JWKs are the one exception to unknown-field refusal: RFC 7517 lets a key carry any member.)

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::shape::{config_object, Named};

use crate::apikeys::KeyStatus;
use crate::secret::Secret;

config_object! {
    #[derive(Debug)]
    pub struct RawConfig {
        pub providers: Named<RawProvider> = default,
        pub api_keys: Option<RawApiKeys> = none,
        pub webhooks: Named<RawWebhook> = default,
        pub routes: Vec<RawRoute> = default,
        pub unmatched: Unmatched = default,
        pub errors: Option<String> = none,
        pub error_formats: Named<RawErrorFormat> = default,
        pub protected_resource: Option<RawProtectedResource> = none,
        pub forward: Option<RawForward> = none,
        pub correlation_id: Option<RawCorrelationId> = none,
        pub workspace_header: Option<String> = none,
        pub organization_header: Option<String> = none,
        /// What a `;` path parameter does: refused (default) or removed before matching.
        pub path_parameters: RawPathParameters = default,
        /// Principal fields written to Envoy filter state (`wasm.api_auth.<field>`) after an allow.
        pub filter_state: Option<Vec<String>> = none,
        /// The verified-token cache of each worker.
        pub token_cache: Option<RawTokenCache> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawTokenCache {
        pub max_entries: Option<u64> = none,
    }
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

config_object! {
    #[derive(Debug)]
    pub struct RawProvider {
        pub issuer: String = required,
        pub audiences: Vec<String> = default,
        pub authorized_parties: Vec<String> = default,
        pub algorithms: Vec<String> = required,
        pub jwks: RawJwks = required,
        pub clock_skew_s: Option<u64> = none,
        pub require_exp: Option<bool> = none,
        pub max_lifetime_s: Option<u64> = none,
        /// The JWS header `typ` the provider's tokens must carry (RFC 9068: `at+jwt`).
        pub typ: Option<String> = none,
        pub reject_pending_sessions: bool = default,
        pub full_access: bool = default,
        pub claims: RawClaims = default,
        /// Cookies that may carry this provider's tokens (Clerk: `__session`), read when no
        /// header carries a credential.
        pub from_cookies: Vec<String> = default,
        /// Opaque access tokens, verified at the provider's RFC 7662 introspection endpoint.
        pub introspection: Option<RawIntrospection> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawIntrospection {
        pub cluster: String = required,
        /// The calls' `:authority` (default: the issuer's host\[:port\], else the cluster).
        pub authority: Option<String> = none,
        /// Required unless the provider's keys come by discovery: then the document's
        /// `introspection_endpoint`.
        pub path: Option<String> = none,
        pub client_id: String = required,
        pub client_secret: RawSecretSource = required,
        pub timeout_ms: Option<u64> = none,
        pub cache_ttl_s: Option<u64> = none,
        pub negative_cache_ttl_s: Option<u64> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawJwks {
        pub remote: Option<RawRemoteJwks> = none,
        pub inline: Option<RawInlineJwks> = none,
        pub discovery: Option<RawDiscovery> = none,
    }
}

config_object! {
    /// The keys at the `jwks_uri` of the issuer's metadata (OIDC discovery, RFC 8414), both
    /// fetched through `cluster`.
    #[derive(Debug)]
    pub struct RawDiscovery {
        pub cluster: String = required,
        /// The `:authority` of both fetches, and the only host\[:port\] `jwks_uri` may name
        /// (default: the issuer's).
        pub authority: Option<String> = none,
        pub timeout_ms: Option<u64> = none,
        pub refresh_s: Option<u64> = none,
        pub min_refetch_s: Option<u64> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawRemoteJwks {
        pub cluster: String = required,
        pub authority: Option<String> = none,
        pub path: String = required,
        pub timeout_ms: Option<u64> = none,
        pub refresh_s: Option<u64> = none,
        pub min_refetch_s: Option<u64> = none,
        /// HMAC secrets (`kty: "oct"`) in the fetched JWKS are used only when this is set: a
        /// JWKS URL is usually public, and a key it publishes must not be able to mint tokens.
        pub allow_symmetric_keys: bool = default,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawInlineJwks {
        /// Kept as JSON: a JWK may carry any member (RFC 7517 §4), and an `oct` key's `k` is a
        /// secret, so the JWKS module parses these into its own redacting types.
        pub keys: Vec<serde_json::Value> = required,
    }
}

config_object! {
    #[derive(Debug, Default)]
    pub struct RawClaims {
        pub subject: Option<Vec<String>> = none,
        pub email: Option<Vec<String>> = none,
        pub name: Option<Vec<String>> = none,
        pub organization: Option<Vec<String>> = none,
        pub organizations: Option<Vec<String>> = none,
        pub workspaces: Option<Vec<String>> = none,
        pub roles: Option<Vec<String>> = none,
        pub permissions: Option<Vec<String>> = none,
        pub scopes: Option<Vec<String>> = none,
    }
}

// ---------------------------------------------------------------------------------------------
// API keys

config_object! {
    #[derive(Debug)]
    pub struct RawApiKeys {
        pub prefixes: Vec<String> = default,
        pub headers: Option<Vec<String>> = none,
        pub keys: Vec<RawKey> = default,
        pub lookup: Option<RawLookup> = none,
        pub usage_report: Option<RawUsageReport> = none,
    }
}

config_object! {
    #[derive(Debug, Clone)]
    pub struct RawKey {
        pub id: String = required,
        pub sha256: String = required,
        pub status: KeyStatus = default,
        pub expires_at: Option<String> = none,
        pub permissions: Vec<String> = default,
        pub scopes: Vec<String> = default,
        pub organization: Option<String> = none,
        pub workspaces: Vec<String> = default,
        pub name: Option<String> = none,
    }
}


config_object! {
    #[derive(Debug)]
    pub struct RawLookup {
        pub cluster: String = required,
        pub authority: Option<String> = none,
        pub path: String = required,
        pub timeout_ms: Option<u64> = none,
        pub cache_ttl_s: Option<u64> = none,
        pub negative_cache_ttl_s: Option<u64> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawUsageReport {
        pub cluster: String = required,
        pub authority: Option<String> = none,
        pub path: String = required,
        pub interval_s: Option<u64> = none,
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks

config_object! {
    #[derive(Debug)]
    pub struct RawWebhook {
        pub header: Option<String> = none,
        pub prefix: Option<String> = none,
        pub encoding: Option<String> = none,
        pub secrets: Vec<RawSecretSource> = required,
        pub timestamp: Option<RawWebhookTimestamp> = none,
        pub max_body_bytes: Option<u64> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawSecretSource {
        pub env: Option<String> = none,
        pub value: Option<Secret> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawWebhookTimestamp {
        pub header: String = required,
        pub tolerance_s: Option<u64> = none,
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

config_object! {
    #[derive(Debug)]
    pub struct RawRoute {
        pub matcher ("match"): RawMatch = required,
        pub auth: RawAuth = required,
        pub webhook: Option<String> = none,
        pub errors: Option<String> = none,
        /// The route serves MCP (streamable HTTP): the JSON-RPC call in the body is judged.
        pub mcp: Option<RawMcp> = none,
    }
}

config_object! {
    #[derive(Debug, Default)]
    pub struct RawMcp {
        /// The scope a `tools/call` needs, from `{name}` (default `tools:{name}`).
        pub tools: Option<String> = none,
        /// The scope a `prompts/get` needs, from `{name}` (default: authentication only).
        pub prompts: Option<String> = none,
        /// The scope a `resources/read` needs, from `{uri}` (default: authentication only).
        pub resources: Option<String> = none,
        pub max_body_bytes: Option<u64> = none,
        /// `"tool_error"` (default) or `"challenge"`.
        pub scope_denial: Option<String> = none,
        /// Filter `tools/list` answers to the tools the principal may call (default true).
        pub filter_tools_list: Option<bool> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawMatch {
        pub methods: Option<Vec<String>> = none,
        pub path: Option<String> = none,
        pub prefix: Option<String> = none,
        pub template: Option<String> = none,
        /// The name of the route Envoy's router selected (`xds.route_name`; Istio sets it from
        /// VirtualService route names), instead of a path.
        pub route_name: Option<String> = none,
        /// A string in the selected route's metadata, instead of a path.
        pub route_metadata: Option<RawRouteMetadata> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawRouteMetadata {
        /// The `filter_metadata` namespace, e.g. `api_auth`.
        pub filter: String = required,
        pub key: String = required,
        pub value: String = required,
    }
}

/// `"none"` or an object of requirements.
#[derive(Debug)]
pub enum RawAuth {
    None,
    Required(RawAuthSpec),
}

config_object! {
    #[derive(Debug, Default)]
    pub struct RawAuthSpec {
        pub credentials: Option<Vec<String>> = none,
        pub providers: Option<Vec<String>> = none,
        pub permissions: Vec<String> = default,
        pub scopes: Vec<String> = default,
        pub roles: Vec<String> = default,
        pub organization: bool = default,
        pub workspace: bool = default,
    }
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

config_object! {
    #[derive(Debug)]
    pub struct RawErrorFormat {
        pub base: Option<String> = none,
        pub reasons: Named<RawReasonOverride> = default,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawReasonOverride {
        pub status: Option<u16> = none,
        pub message: Option<String> = none,
        /// A JSON document; `{message}`, `{reason}`, `{scope}` and `{permission}` inside its strings
        /// are filled in.
        pub body: Option<serde_json::Value> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawProtectedResource {
        pub resource: String = required,
        pub authorization_servers: Vec<String> = default,
        pub scopes_supported: Option<Vec<String>> = none,
        pub bearer_methods_supported: Option<Vec<String>> = none,
        pub resource_name: Option<String> = none,
        pub resource_documentation: Option<String> = none,
        pub paths: Vec<String> = default,
        pub metadata_url: Option<String> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawForward {
        pub strip_credentials: Option<bool> = none,
        pub headers: Named<String> = default,
        pub override_headers: Option<crate::overrides::RawOverrideHeaders> = none,
    }
}

config_object! {
    #[derive(Debug)]
    pub struct RawCorrelationId {
        pub header: Option<String> = none,
        pub generate: Option<bool> = none,
    }
}
