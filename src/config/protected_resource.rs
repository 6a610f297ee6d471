//! `protected_resource`: the RFC 9728 metadata document, rendered once, and where it is served.

use serde_json::{Map, Value};

use super::raw::RawProtectedResource;
use super::ConfigError;
use crate::metadata::ProtectedResource;

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
#[inline(never)] // one function for V8's compiler: see `config::compile`
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
