//! `api_keys`: the static key table, the prefixes that tell keys from JWTs, the key headers,
//! the key service and usage reports; and a key-service answer, read as a table entry.

use std::collections::HashMap;

use super::raw::{RawApiKeys, RawKey};
use super::{header_name, seconds_to_ms, ConfigError};
use crate::apikeys::{ApiKeys, KeyEntry};

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_api_keys(raw: RawApiKeys) -> Result<ApiKeys, ConfigError> {
    let lookup = match &raw.lookup {
        Some(l) => Some(service(
            "api_keys.lookup",
            (&l.cluster, &l.authority, &l.path),
            l.timeout_ms.unwrap_or(500),
            l.cache_ttl_s.unwrap_or(30),
            l.negative_cache_ttl_s.unwrap_or(5),
        )?),
        None => None,
    };
    let usage_report = match &raw.usage_report {
        Some(u) => Some(service("api_keys.usage_report", (&u.cluster, &u.authority, &u.path), 2000, u.interval_s.unwrap_or(60), 0)?),
        None => None,
    };
    if usage_report.as_ref().is_some_and(|u| u.ttl_ms == 0) {
        return Err(ConfigError::new("api_keys.usage_report.interval_s", "must be at least 1"));
    }
    if raw.prefixes.is_empty() {
        return Err(ConfigError::new("api_keys.prefixes", "at least one prefix is required: it tells keys from JWTs"));
    }
    for (i, p) in raw.prefixes.iter().enumerate() {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::new(format!("api_keys.prefixes[{i}]"), "must be non-empty printable ASCII"));
        }
    }
    let headers = match raw.headers {
        Some(h) => h
            .iter()
            .enumerate()
            .map(|(i, name)| header_name(&format!("api_keys.headers[{i}]"), name))
            .collect::<Result<Vec<_>, _>>()?,
        None => vec!["x-api-key".to_string()],
    };
    if let Some(i) = headers.iter().position(|h| h == "authorization") {
        return Err(ConfigError::new(format!("api_keys.headers[{i}]"), "Authorization is always read; do not list it"));
    }
    let mut by_digest = HashMap::with_capacity(raw.keys.len());
    let mut ids = HashMap::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        let path = format!("api_keys.keys[{i}]");
        let entry = compile_key(&path, k)?;
        if let Some(prev) = ids.insert(entry.id.clone(), i) {
            return Err(ConfigError::new(format!("{path}.id"), format!("duplicate id, also at api_keys.keys[{prev}]")));
        }
        let digest = entry.digest;
        if by_digest.insert(digest, entry).is_some() {
            return Err(ConfigError::new(format!("{path}.sha256"), "duplicate digest"));
        }
    }
    Ok(ApiKeys { prefixes: raw.prefixes, headers, by_digest, lookup, usage_report })
}

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn service(
    path: &str,
    (cluster, authority, target): (&String, &Option<String>, &String),
    timeout_ms: u64,
    ttl_s: u64,
    negative_ttl_s: u64,
) -> Result<crate::apikeys::Service, ConfigError> {
    if cluster.is_empty() {
        return Err(ConfigError::new(format!("{path}.cluster"), "must not be empty"));
    }
    if !target.starts_with('/') {
        return Err(ConfigError::new(format!("{path}.path"), "must start with '/'"));
    }
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new(format!("{path}.timeout_ms"), "must be between 1 and 60000"));
    }
    Ok(crate::apikeys::Service {
        cluster: cluster.clone(),
        authority: authority.clone().unwrap_or_else(|| cluster.clone()),
        path: target.clone(),
        timeout_ms,
        ttl_ms: seconds_to_ms(ttl_s),
        negative_ttl_ms: seconds_to_ms(negative_ttl_s),
    })
}

/// One key entry, from the static table or (later) a key service answer.
pub fn compile_key(path: &str, k: RawKey) -> Result<KeyEntry, ConfigError> {
    if k.id.is_empty() {
        return Err(ConfigError::new(format!("{path}.id"), "must not be empty"));
    }
    let digest = crate::text::decode_hex32(&k.sha256)
        .ok_or_else(|| ConfigError::new(format!("{path}.sha256"), "must be 64 hex digits (SHA-256 of the key)"))?;
    let expires_at = match &k.expires_at {
        Some(t) => Some(
            crate::time::parse_rfc3339(t)
                .ok_or_else(|| ConfigError::new(format!("{path}.expires_at"), "must be an RFC 3339 timestamp"))?,
        ),
        None => None,
    };
    Ok(KeyEntry {
        id: k.id.into(),
        digest,
        status: k.status,
        expires_at,
        permissions: k.permissions.into(),
        scopes: k.scopes.into(),
        organization: k.organization.map(Into::into),
        workspaces: k.workspaces.into(),
        name: k.name.map(Into::into),
    })
}

/// The key service's answer body for `digest`: the shape of a `keys` entry, whose `sha256`
/// must be the digest asked about.
pub fn key_service_answer(body: &[u8], digest: &[u8; 32]) -> Option<KeyEntry> {
    let raw: RawKey = serde_json::from_slice(body).ok()?;
    let entry = compile_key("lookup", raw).ok()?;
    (entry.digest == *digest).then_some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikeys::digest;

    #[test]
    fn key_service_answers_must_name_the_digest_asked_about() {
        let d = digest(b"cm_live");
        let body = format!(r#"{{"id":"k9","sha256":"{}","status":"active","scopes":["a"]}}"#, crate::text::hex(&d));
        assert_eq!(key_service_answer(body.as_bytes(), &d).map(|e| e.id.to_string()), Some("k9".to_string()));
        assert_eq!(key_service_answer(body.as_bytes(), &digest(b"other")), None);
        assert_eq!(key_service_answer(b"{\"id\":\"k\"}", &d), None);
        assert_eq!(key_service_answer(b"<html>", &d), None);
    }
}
