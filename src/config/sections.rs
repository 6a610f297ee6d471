//! Compiling the sections whose run-time types live in their own modules (webhooks, RFC 9728
//! metadata, correlation ids, key-service answers): those modules never see `raw`.

use serde_json::{Map, Value};

use super::raw::{RawCorrelationId, RawKey, RawProtectedResource, RawWebhook};
use super::{compile_key, header_name, ConfigError, MAX_WEBHOOK_TOLERANCE_S};
use crate::apikeys::KeyEntry;
use crate::correlation::Correlation;
use crate::metadata::ProtectedResource;
use crate::secret::Secret;
use crate::webhook::{Encoding, TimestampRule, Webhook};

/// `env` reads the wasm VM's environment (`vm_config.environment_variables`).
pub fn webhook(path: &str, raw: &RawWebhook, env: &dyn Fn(&str) -> Option<String>) -> Result<Webhook, ConfigError> {
    let header = header_name(&format!("{path}.header"), raw.header.as_deref().unwrap_or("x-webhook-signature"))?;
    let encoding = match raw.encoding.as_deref().unwrap_or("hex") {
        "hex" => Encoding::Hex,
        "base64" => Encoding::Base64,
        _ => return Err(ConfigError::new(format!("{path}.encoding"), "must be \"hex\" or \"base64\"")),
    };
    if raw.secrets.is_empty() {
        return Err(ConfigError::new(format!("{path}.secrets"), "at least one secret is required"));
    }
    let mut secrets = Vec::with_capacity(raw.secrets.len());
    for (i, s) in raw.secrets.iter().enumerate() {
        let spath = format!("{path}.secrets[{i}]");
        let secret = match (&s.env, &s.value) {
            (Some(var), None) => match env(var) {
                Some(v) if !v.is_empty() => Secret::new(v),
                _ => return Err(ConfigError::new(format!("{spath}.env"), format!("environment variable {var} is not set in the wasm VM"))),
            },
            (None, Some(v)) if !v.is_empty() => v.clone(),
            (None, Some(_)) => return Err(ConfigError::new(format!("{spath}.value"), "must not be empty")),
            _ => return Err(ConfigError::new(spath, "exactly one of env or value is required")),
        };
        secrets.push(secret);
    }
    let timestamp = match &raw.timestamp {
        Some(t) => {
            let tolerance_s = t.tolerance_s.unwrap_or(300);
            if tolerance_s > MAX_WEBHOOK_TOLERANCE_S {
                return Err(ConfigError::new(format!("{path}.timestamp.tolerance_s"), format!("must be at most {MAX_WEBHOOK_TOLERANCE_S}")));
            }
            Some(TimestampRule { header: header_name(&format!("{path}.timestamp.header"), &t.header)?, tolerance_s })
        }
        None => None,
    };
    let max_body_bytes = raw.max_body_bytes.unwrap_or(1 << 20);
    if max_body_bytes == 0 {
        return Err(ConfigError::new(format!("{path}.max_body_bytes"), "must be positive"));
    }
    Ok(Webhook { header, prefix: raw.prefix.clone().unwrap_or_else(|| "sha256=".into()), encoding, secrets, timestamp, max_body_bytes })
}

pub fn correlation(raw: &RawCorrelationId) -> Result<Correlation, ConfigError> {
    let header = header_name("correlation_id.header", raw.header.as_deref().unwrap_or("x-correlation-id"))?;
    Ok(Correlation { header, generate: raw.generate.unwrap_or(true) })
}

/// `scheme://host[:port]` of an absolute http(s) URL.
fn origin(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if host_len == 0 {
        return None;
    }
    Some(&url[..url.len() - rest.len() + host_len])
}

/// The RFC 9728 document, rendered once, and the URL challenges point to.
pub fn protected_resource(raw: &RawProtectedResource) -> Result<ProtectedResource, ConfigError> {
    let p = "protected_resource";
    let resource = raw.resource.as_str();
    let resource_origin = origin(resource).ok_or_else(|| ConfigError::new(format!("{p}.resource"), "must be an absolute http(s) URL"))?;
    let loopback = ["http://localhost", "http://127.0.0.1", "http://[::1]"].iter().any(|l| resource_origin.starts_with(l));
    if resource.starts_with("http://") && !loopback {
        return Err(ConfigError::new(format!("{p}.resource"), "must use https (http only for loopback)"));
    }
    if resource.contains('#') {
        return Err(ConfigError::new(format!("{p}.resource"), "must not have a fragment (RFC 9728 §1.2)"));
    }
    if raw.paths.is_empty() {
        return Err(ConfigError::new(format!("{p}.paths"), "at least one path is required"));
    }
    for (i, path) in raw.paths.iter().enumerate() {
        if !path.starts_with('/') || path.contains(['?', '#']) {
            return Err(ConfigError::new(format!("{p}.paths[{i}]"), "must be a path starting with '/'"));
        }
    }
    let mut doc = Map::new();
    doc.insert("resource".into(), Value::String(raw.resource.clone()));
    if !raw.authorization_servers.is_empty() {
        doc.insert("authorization_servers".into(), raw.authorization_servers.clone().into());
    }
    if let Some(s) = &raw.scopes_supported {
        doc.insert("scopes_supported".into(), s.clone().into());
    }
    // Only what is configured: contract 003's document has no bearer_methods_supported.
    if let Some(methods) = &raw.bearer_methods_supported {
        doc.insert("bearer_methods_supported".into(), methods.clone().into());
    }
    if let Some(n) = &raw.resource_name {
        doc.insert("resource_name".into(), n.clone().into());
    }
    if let Some(d) = &raw.resource_documentation {
        doc.insert("resource_documentation".into(), d.clone().into());
    }
    let metadata_url = match &raw.metadata_url {
        Some(u) => {
            origin(u).ok_or_else(|| ConfigError::new(format!("{p}.metadata_url"), "must be an absolute http(s) URL"))?;
            u.clone()
        }
        None => format!("{resource_origin}{}", raw.paths.first().map_or("", String::as_str)),
    };
    // Served on the canonical path, as routes are matched (`routes::canonical_path`).
    let paths = raw.paths.iter().map(|p| crate::routes::drop_trailing_slash(p).to_string()).collect();
    Ok(ProtectedResource { document: Value::Object(doc).to_string().into_bytes(), paths, metadata_url })
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

    #[test]
    fn correlation_headers_are_header_names() {
        let raw = |h: &str| RawCorrelationId { header: Some(h.into()), generate: None };
        assert_eq!(correlation(&raw("X-Correlation-Id")).map(|c| c.header), Ok("x-correlation-id".to_string()));
        assert_eq!(correlation(&raw("bad header")).map_err(|e| e.path), Err("correlation_id.header".to_string()));
    }
}
