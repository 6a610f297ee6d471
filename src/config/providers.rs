//! `providers`: JWT issuers, their claim rules and claim paths, and where their keys come from.

use super::raw::{RawDiscovery, RawIntrospection, RawProvider, RawRemoteJwks};
use crate::discovery::Discovery;
use super::routes::route_path;
use super::{bounded, seconds_to_ms, ConfigError};
use crate::jwt::{Alg, ClaimPaths, ClaimRules, KeySet};
use crate::secret::Secret;

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    /// `name`, shared by the principals of the provider's tokens.
    pub shared_name: std::rc::Rc<str>,
    /// Cookies that may carry this provider's tokens.
    pub from_cookies: Vec<String>,
    pub rules: ClaimRules,
    pub algorithms: Vec<Alg>,
    pub keys: KeySource,
    pub full_access: bool,
    pub claims: ClaimPaths,
    /// Opaque access tokens, verified by introspection.
    pub introspection: Option<Introspection>,
}

#[derive(Debug)]
pub enum KeySource {
    Inline(std::rc::Rc<KeySet>),
    Remote(RemoteJwks),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timing: crate::jwks_cache::Timing,
    pub allow_symmetric_keys: bool,
    /// The keys' path comes from the issuer's metadata (`jwks.discovery`); `path` is then the
    /// first document asked for, `<issuer path>/.well-known/openid-configuration`.
    pub discovery: Option<Discovery>,
    /// Shared-data key of this JWKS: the same URL is fetched once for every provider and
    /// every filter instance that names it.
    pub cache_key: String,
}

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_provider(name: String, p: RawProvider, env: &dyn Fn(&str) -> Option<String>) -> Result<Provider, ConfigError> {
    let path = format!("providers.{name}");
    if p.issuer.is_empty() {
        return Err(ConfigError::new(format!("{path}.issuer"), "must not be empty"));
    }
    if p.algorithms.is_empty() {
        return Err(ConfigError::new(format!("{path}.algorithms"), "at least one algorithm is required"));
    }
    let mut algorithms = Vec::with_capacity(p.algorithms.len());
    for (i, a) in p.algorithms.iter().enumerate() {
        let alg = Alg::parse(a).ok_or_else(|| {
            ConfigError::new(format!("{path}.algorithms[{i}]"), "not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)")
        })?;
        algorithms.push(alg);
    }
    let keys = match (p.jwks.remote, p.jwks.inline, p.jwks.discovery) {
        (Some(r), None, None) => {
            let remote = compile_remote(&format!("{path}.jwks.remote"), r)?;
            if !remote.allow_symmetric_keys && algorithms.iter().all(|a| a.is_hmac()) {
                return Err(ConfigError::new(
                    format!("{path}.jwks.remote"),
                    "only HMAC algorithms are allowed, and HMAC keys from a remote JWKS are ignored unless allow_symmetric_keys is set",
                ));
            }
            KeySource::Remote(remote)
        }
        (None, Some(inline), None) => {
            let doc = serde_json::json!({ "keys": inline.keys });
            let set = KeySet::from_json(doc.to_string().as_bytes())
                .map_err(|e| ConfigError::new(format!("{path}.jwks.inline"), e))?;
            if set.is_empty() {
                return Err(ConfigError::new(format!("{path}.jwks.inline.keys"), "no usable key"));
            }
            KeySource::Inline(std::rc::Rc::new(set))
        }
        (None, None, Some(d)) => {
            let remote = compile_discovery(&path, &p.issuer, d)?;
            if algorithms.iter().all(|a| a.is_hmac()) {
                return Err(ConfigError::new(
                    format!("{path}.jwks.discovery"),
                    "only HMAC algorithms are allowed, and HMAC keys from a discovered JWKS are never used",
                ));
            }
            KeySource::Remote(remote)
        }
        _ => return Err(ConfigError::new(format!("{path}.jwks"), "exactly one of remote, inline or discovery is required")),
    };
    let typ = match p.typ.as_deref() {
        None => None,
        Some(t) if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(ConfigError::new(format!("{path}.typ"), "must be a media type such as at+jwt (1 to 64 visible ASCII characters)"));
        }
        Some(t) => Some(crate::jwt::media_type(t)),
    };
    let defaults = ClaimPaths::default();
    let c = p.claims;
    let paths = |field: &str, given: Option<Vec<String>>, default: Vec<Vec<String>>| -> Result<Vec<Vec<String>>, ConfigError> {
        let Some(list) = given else { return Ok(default) };
        list.iter()
            .enumerate()
            .map(|(i, dotted)| {
                let parts: Vec<String> = dotted.split('.').map(str::to_string).collect();
                if parts.iter().any(String::is_empty) {
                    Err(ConfigError::new(format!("{path}.claims.{field}[{i}]"), "not a dotted claim path"))
                } else {
                    Ok(parts)
                }
            })
            .collect()
    };
    let claims = ClaimPaths {
        subject: paths("subject", c.subject, defaults.subject)?,
        email: paths("email", c.email, defaults.email)?,
        name: paths("name", c.name, defaults.name)?,
        organization: paths("organization", c.organization, defaults.organization)?,
        organizations: paths("organizations", c.organizations, defaults.organizations)?,
        workspaces: paths("workspaces", c.workspaces, defaults.workspaces)?,
        roles: paths("roles", c.roles, defaults.roles)?,
        permissions: paths("permissions", c.permissions, defaults.permissions)?,
        scopes: paths("scopes", c.scopes, defaults.scopes)?,
    };
    for (i, c) in p.from_cookies.iter().enumerate() {
        if !crate::text::is_header_token(c) {
            return Err(ConfigError::new(format!("{path}.from_cookies[{i}]"), "not a cookie name"));
        }
    }
    let discovered = matches!(&keys, KeySource::Remote(r) if r.discovery.is_some());
    let introspection = p.introspection.as_ref().map(|i| compile_introspection(&path, &p.issuer, i, discovered, env)).transpose()?;
    Ok(Provider {
        introspection,
        shared_name: name.as_str().into(),
        from_cookies: p.from_cookies,
        rules: ClaimRules {
            issuer: p.issuer,
            audiences: p.audiences,
            authorized_parties: p.authorized_parties,
            clock_skew_s: bounded(&format!("{path}.clock_skew_s"), p.clock_skew_s.unwrap_or(60), MAX_CLOCK_SKEW_S)?,
            require_exp: p.require_exp.unwrap_or(true),
            max_lifetime_s: p.max_lifetime_s,
            reject_pending_sessions: p.reject_pending_sessions,
            typ,
        },
        name,
        algorithms,
        keys,
        full_access: p.full_access,
        claims,
    })
}

/// The largest clock skew a provider may allow: beyond a few minutes a skew is no longer a
/// clock difference but a longer token lifetime.
pub const MAX_CLOCK_SKEW_S: u64 = 300;

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_remote(path: &str, r: RawRemoteJwks) -> Result<RemoteJwks, ConfigError> {
    if r.cluster.is_empty() {
        return Err(ConfigError::new(format!("{path}.cluster"), "must not be empty"));
    }
    let jwks_path = route_path(&format!("{path}.path"), r.path.clone()).or_else(|e| {
        // A query string is fine on an outgoing request.
        if r.path.starts_with('/') { Ok(r.path.clone()) } else { Err(e) }
    })?;
    let timing = timing(path, r.timeout_ms, r.refresh_s, r.min_refetch_s)?;
    let authority = r.authority.unwrap_or_else(|| r.cluster.clone());
    let cache_key = format!("api-auth/jwks/{}/{}{}", r.cluster, authority, jwks_path);
    Ok(RemoteJwks { cluster: r.cluster, authority, path: jwks_path, timing, allow_symmetric_keys: r.allow_symmetric_keys, discovery: None, cache_key })
}

/// The defaults and bounds of `remote`'s timing.
fn timing(path: &str, timeout_ms: Option<u64>, refresh_s: Option<u64>, min_refetch_s: Option<u64>) -> Result<crate::jwks_cache::Timing, ConfigError> {
    let timing = crate::jwks_cache::Timing {
        timeout: timeout_ms.unwrap_or(1500),
        refresh: seconds_to_ms(refresh_s.unwrap_or(300)),
        min_refetch: seconds_to_ms(min_refetch_s.unwrap_or(30)),
    };
    if !(1..=60_000).contains(&timing.timeout) {
        return Err(ConfigError::new(format!("{path}.timeout_ms"), "must be between 1 and 60000"));
    }
    if timing.refresh < 1000 {
        return Err(ConfigError::new(format!("{path}.refresh_s"), "must be at least 1"));
    }
    Ok(timing)
}

/// `providers.<name>.jwks.discovery` (`provider`: `providers.<name>`).
#[inline(never)] // one function for V8's compiler: see `config::compile`
fn compile_discovery(provider: &str, issuer: &str, d: RawDiscovery) -> Result<RemoteJwks, ConfigError> {
    let path = format!("{provider}.jwks.discovery");
    let Some(discovery) = Discovery::for_issuer(issuer) else {
        return Err(ConfigError::new(
            format!("{provider}.issuer"),
            "jwks.discovery needs an https (or http) URL without userinfo, query or fragment",
        ));
    };
    if d.cluster.is_empty() {
        return Err(ConfigError::new(format!("{path}.cluster"), "must not be empty"));
    }
    let authority = match d.authority {
        Some(a) if crate::discovery::is_authority(&a) => a,
        Some(_) => return Err(ConfigError::new(format!("{path}.authority"), "must be a host or host:port")),
        None => crate::discovery::issuer_authority(issuer).unwrap_or_default().to_string(),
    };
    let timing = timing(&path, d.timeout_ms, d.refresh_s, d.min_refetch_s)?;
    // Not the key of any remote JWKS: those end in a path, this in the issuer.
    let cache_key = format!("api-auth/jwks-discovery/{}/{}/{}", d.cluster, authority, issuer);
    Ok(RemoteJwks {
        cluster: d.cluster,
        authority,
        path: discovery.openid_path.clone(),
        timing,
        allow_symmetric_keys: false,
        discovery: Some(discovery),
        cache_key,
    })
}

/// The longest an introspection answer may be reused: a revoked token is refused within it.
pub const MAX_INTROSPECTION_CACHE_S: u64 = 3600;

/// `providers.<name>.introspection` (`provider`: `providers.<name>`).
#[inline(never)] // one function for V8's compiler: see `config::compile`
fn compile_introspection(
    provider: &str,
    issuer: &str,
    i: &RawIntrospection,
    discovered: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Introspection, ConfigError> {
    let path = format!("{provider}.introspection");
    if let Some(a) = &i.authority {
        if !crate::discovery::is_authority(a) {
            return Err(ConfigError::new(format!("{path}.authority"), "must be a host or host:port"));
        }
    }
    // No path: the discovery document's introspection_endpoint (the service's path stays
    // empty, and the worker fills it in from the document).
    let discover = i.path.is_none();
    if discover && !discovered {
        return Err(ConfigError::new(format!("{path}.path"), "required unless the provider's keys come by jwks.discovery (whose document's introspection_endpoint is then used)"));
    }
    let target = i.path.clone().unwrap_or_else(|| "/".to_string());
    if target.contains(['?', '#']) || target.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ConfigError::new(format!("{path}.path"), "must be a path without query or fragment"));
    }
    let authority = i.authority.clone().or_else(|| crate::discovery::issuer_authority(issuer).map(str::to_string));
    let ttl_s = bounded(&format!("{path}.cache_ttl_s"), i.cache_ttl_s.unwrap_or(60), MAX_INTROSPECTION_CACHE_S)?;
    let negative_s = bounded(&format!("{path}.negative_cache_ttl_s"), i.negative_cache_ttl_s.unwrap_or(10), MAX_INTROSPECTION_CACHE_S)?;
    let mut service = super::api_keys::service(&path, (&i.cluster, &authority, &target), i.timeout_ms.unwrap_or(1000), ttl_s, negative_s)?;
    if discover {
        service.path.clear();
    }
    if i.client_id.is_empty() {
        return Err(ConfigError::new(format!("{path}.client_id"), "must not be empty"));
    }
    let secret = super::webhooks::secret(&format!("{path}.client_secret"), &i.client_secret, env)?;
    Ok(Introspection::new(service, i.client_id.clone(), &secret, issuer))
}

/// `providers.<p>.introspection`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    /// Where the calls go, their timeout and the cache TTLs.
    pub service: crate::apikeys::Service,
    pub client_id: String,
    /// The `Authorization` header of every call (client_secret_basic): holds the secret.
    pub authorization: Secret,
    /// The path comes from the provider's discovery document (`service.path` is empty).
    pub discover: bool,
    /// The shared-data name of this endpoint's answers to this client: a hash of the cluster,
    /// authority, path and the client's credentials (another client may be told another
    /// answer about the same token).
    pub tag: String,
}

impl Introspection {
    /// `issuer`: the provider's (a discovered endpoint is the issuer's, and so are its answers).
    pub fn new(service: crate::apikeys::Service, client_id: String, client_secret: &Secret, issuer: &str) -> Introspection {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        use crate::text::form_encode;
        let basic = {
            let mut raw = form_encode(client_id.as_bytes()).into_bytes();
            raw.push(b':');
            raw.extend_from_slice(form_encode(client_secret.expose()).as_bytes());
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
        };
        let mut h = Sha256::new();
        let parts = [service.cluster.as_bytes(), service.authority.as_bytes(), service.path.as_bytes(), issuer.as_bytes(), client_id.as_bytes(), client_secret.expose()];
        for part in parts {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let d: [u8; 32] = h.finalize().into();
        Introspection { discover: service.path.is_empty(), service, client_id, authorization: Secret::new(basic), tag: crate::text::hex(&d[..8]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn client_secret_basic_encodes_both_parts_first() {
        let service = crate::apikeys::Service { cluster: "idp".into(), authority: "idp".into(), path: "/i".into(), timeout_ms: 1, ttl_ms: 1, negative_ttl_ms: 1 };
        let i = Introspection::new(service.clone(), "my client".into(), &Secret::new("s:e+cret"), "https://i");
        // base64("my%20client:s%3Ae%2Bcret")
        let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("my%20client:s%3Ae%2Bcret"));
        assert_eq!(i.authorization.expose(), want.as_bytes());
        assert!(!format!("{i:?}").contains("cret"), "Debug never shows the secret");
        let other = Introspection::new(service.clone(), "my client".into(), &Secret::new("another"), "https://i");
        assert_ne!(i.tag, other.tag, "another client secret, other shared records");
        let other = Introspection::new(service, "other".into(), &Secret::new("s:e+cret"), "https://i");
        assert_ne!(i.tag, other.tag, "another client, other shared records");
    }
}
