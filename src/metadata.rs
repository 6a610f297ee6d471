//! RFC 9728 protected-resource metadata, rendered once at load time, and the URL that
//! challenges point to.


#[derive(Debug)]
pub struct ProtectedResource {
    pub document: Vec<u8>,
    pub paths: Vec<String>,
    pub metadata_url: String,
}

impl ProtectedResource {
    /// `method` and `path` in canonical form (`engine::Target`): `HEAD` is `GET`.
    pub fn serves(&self, method: &str, path: &str) -> bool {
        method == "GET" && self.paths.iter().any(|p| p == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use serde_json::{json, Value};

    fn compile(v: Value) -> Result<ProtectedResource, ConfigError> {
        let cfg = Config::from_json(json!({ "protected_resource": v }).to_string().as_bytes())?;
        Ok(cfg.protected_resource.expect("configured"))
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
            "authorization_servers": ["https://your-app.clerk.accounts.dev"]
        }), "exactly as configured (contract 003)");
        assert!(pr.serves("GET", "/.well-known/oauth-protected-resource/v1/mcp"));
        assert!(!pr.serves("HEAD", "/v1/.well-known/oauth-protected-resource"), "the engine reads HEAD as GET before asking");
        assert!(!pr.serves("POST", "/v1/.well-known/oauth-protected-resource"));
        assert!(!pr.serves("GET", "/v1/mcp"));
    }

    #[test]
    fn refusals_and_options() {
        assert_eq!(compile(json!({ "resource": "api.example/v1", "paths": ["/m"] })).unwrap_err().path, "protected_resource.resource");
        assert_eq!(compile(json!({ "resource": "http://api.example/v1", "paths": ["/m"] })).unwrap_err().path, "protected_resource.resource");
        assert!(compile(json!({ "resource": "http://localhost:8080/v1", "paths": ["/m"] })).is_ok());
        assert_eq!(compile(json!({ "resource": "https://a.example", "paths": [] })).unwrap_err().path, "protected_resource.paths");
        assert_eq!(compile(json!({ "resource": "https://a.example", "paths": ["m"] })).unwrap_err().path, "protected_resource.paths[0]");
        let pr = compile(json!({ "resource": "https://a.example:8443/r", "paths": ["/m"], "scopes_supported": ["tools:*"],
                                 "metadata_url": "https://meta.example/x" })).unwrap();
        assert_eq!(pr.metadata_url, "https://meta.example/x");
        let doc: Value = serde_json::from_slice(&pr.document).unwrap();
        assert_eq!(doc["scopes_supported"], json!(["tools:*"]));
        let no_url = compile(json!({ "resource": "https://a.example:8443/r", "paths": ["/m"] })).unwrap();
        assert_eq!(no_url.metadata_url, "https://a.example:8443/m");
    }
}
