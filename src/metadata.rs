//! RFC 9728 protected-resource metadata, rendered once at load time, and the URL that
//! challenges point to.

use serde_json::{Map, Value};

use crate::config::raw::RawProtectedResource;

#[derive(Debug)]
pub struct ProtectedResource {
    pub document: Vec<u8>,
    pub paths: Vec<String>,
    pub metadata_url: String,
}

pub type CompileError = (String, String);

/// `scheme://host[:port]` of an absolute http(s) URL.
fn origin(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if host_len == 0 {
        return None;
    }
    Some(&url[..url.len() - rest.len() + host_len])
}

impl ProtectedResource {
    pub fn compile(raw: &RawProtectedResource) -> Result<Self, CompileError> {
        let p = "protected_resource";
        let resource = raw.resource.as_str();
        let resource_origin = origin(resource).ok_or((format!("{p}.resource"), "must be an absolute http(s) URL".to_string()))?;
        let loopback = ["http://localhost", "http://127.0.0.1", "http://[::1]"].iter().any(|l| resource_origin.starts_with(l));
        if resource.starts_with("http://") && !loopback {
            return Err((format!("{p}.resource"), "must use https (http only for loopback)".into()));
        }
        if resource.contains('#') {
            return Err((format!("{p}.resource"), "must not have a fragment (RFC 9728 §1.2)".into()));
        }
        if raw.paths.is_empty() {
            return Err((format!("{p}.paths"), "at least one path is required".into()));
        }
        for (i, path) in raw.paths.iter().enumerate() {
            if !path.starts_with('/') || path.contains(['?', '#']) {
                return Err((format!("{p}.paths[{i}]"), "must be a path starting with '/'".into()));
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
        let methods = raw.bearer_methods_supported.clone().unwrap_or_else(|| vec!["header".into()]);
        doc.insert("bearer_methods_supported".into(), methods.into());
        if let Some(n) = &raw.resource_name {
            doc.insert("resource_name".into(), n.clone().into());
        }
        if let Some(d) = &raw.resource_documentation {
            doc.insert("resource_documentation".into(), d.clone().into());
        }
        let metadata_url = match &raw.metadata_url {
            Some(u) => {
                origin(u).ok_or((format!("{p}.metadata_url"), "must be an absolute http(s) URL".to_string()))?;
                u.clone()
            }
            None => format!("{resource_origin}{}", raw.paths.first().map_or("", String::as_str)),
        };
        // Served on the canonical path, as routes are matched (`routes::canonical_path`).
        let paths = raw.paths.iter().map(|p| crate::routes::drop_trailing_slash(p).to_string()).collect();
        Ok(ProtectedResource { document: Value::Object(doc).to_string().into_bytes(), paths, metadata_url })
    }

    /// `method` and `path` in canonical form (`engine::Target`): `HEAD` is `GET`.
    pub fn serves(&self, method: &str, path: &str) -> bool {
        method == "GET" && self.paths.iter().any(|p| p == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: Value) -> Result<ProtectedResource, CompileError> {
        ProtectedResource::compile(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn contract_003_document_and_url() {
        let pr = compile(json!({
            "resource": "https://api.clickflow.com/v1/mcp",
            "authorization_servers": ["https://your-app.clerk.accounts.dev"],
            "paths": ["/v1/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/v1/mcp"]
        }))
        .unwrap();
        assert_eq!(pr.metadata_url, "https://api.clickflow.com/v1/.well-known/oauth-protected-resource");
        let doc: Value = serde_json::from_slice(&pr.document).unwrap();
        assert_eq!(doc, json!({
            "resource": "https://api.clickflow.com/v1/mcp",
            "authorization_servers": ["https://your-app.clerk.accounts.dev"],
            "bearer_methods_supported": ["header"]
        }));
        assert!(pr.serves("GET", "/.well-known/oauth-protected-resource/v1/mcp"));
        assert!(!pr.serves("HEAD", "/v1/.well-known/oauth-protected-resource"), "the engine reads HEAD as GET before asking");
        assert!(!pr.serves("POST", "/v1/.well-known/oauth-protected-resource"));
        assert!(!pr.serves("GET", "/v1/mcp"));
    }

    #[test]
    fn refusals_and_options() {
        assert_eq!(compile(json!({ "resource": "api.example/v1", "paths": ["/m"] })).unwrap_err().0, "protected_resource.resource");
        assert_eq!(compile(json!({ "resource": "http://api.example/v1", "paths": ["/m"] })).unwrap_err().0, "protected_resource.resource");
        assert!(compile(json!({ "resource": "http://localhost:8080/v1", "paths": ["/m"] })).is_ok());
        assert_eq!(compile(json!({ "resource": "https://a.example", "paths": [] })).unwrap_err().0, "protected_resource.paths");
        assert_eq!(compile(json!({ "resource": "https://a.example", "paths": ["m"] })).unwrap_err().0, "protected_resource.paths[0]");
        let pr = compile(json!({ "resource": "https://a.example:8443/r", "paths": ["/m"], "scopes_supported": ["tools:*"],
                                 "metadata_url": "https://meta.example/x" })).unwrap();
        assert_eq!(pr.metadata_url, "https://meta.example/x");
        let doc: Value = serde_json::from_slice(&pr.document).unwrap();
        assert_eq!(doc["scopes_supported"], json!(["tools:*"]));
        let no_url = compile(json!({ "resource": "https://a.example:8443/r", "paths": ["/m"] })).unwrap();
        assert_eq!(no_url.metadata_url, "https://a.example:8443/m");
    }
}
