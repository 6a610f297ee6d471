//! OIDC discovery for a provider's keys (OpenID Connect Discovery 1.0 §4, RFC 8414 §3), as
//! plain rules: where the metadata document is, and what of it is trusted. The glue fetches
//! (`glue::jwks`); this module decides.
//!
//! The document is fetched through the provider's cluster at `<issuer path>/.well-known/
//! openid-configuration`, else (on 404) at `/.well-known/oauth-authorization-server<issuer
//! path>`. It is trusted only when its `issuer` is the provider's, byte for byte, and its
//! `jwks_uri` is on the configured authority with the issuer's scheme (https, or http when the
//! issuer is http): the keys are then fetched through the same cluster at that URI's path and
//! query. Nothing of a refused document is quoted back but a well-formed host name.

use serde::Deserialize;

/// A discovery document larger than this is refused as garbage.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The longest `jwks_uri` taken.
const MAX_URI_BYTES: usize = 2048;

/// Which well-known document a call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKnown {
    /// `<issuer path>/.well-known/openid-configuration`.
    OpenId,
    /// `/.well-known/oauth-authorization-server<issuer path>` (RFC 8414), after a 404.
    OAuth,
}

/// A provider's discovery, compiled from its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub openid_path: String,
    pub oauth_path: String,
    /// The issuer is an `http` URL: a `jwks_uri` may then be `http` too.
    pub allow_http: bool,
}

impl Discovery {
    /// `None` when the issuer is not an http(s) URL without userinfo, query or fragment.
    pub fn for_issuer(issuer: &str) -> Option<Discovery> {
        let url = split_url(issuer)?;
        if url.rest.contains(['?', '#']) || !is_authority(url.authority) {
            return None;
        }
        let trimmed = url.rest.trim_end_matches('/');
        Some(Discovery {
            issuer: issuer.to_string(),
            openid_path: format!("{trimmed}/.well-known/openid-configuration"),
            oauth_path: format!("/.well-known/oauth-authorization-server{trimmed}"),
            allow_http: !url.https,
        })
    }

    pub fn path(&self, which: WellKnown) -> &str {
        match which {
            WellKnown::OpenId => &self.openid_path,
            WellKnown::OAuth => &self.oauth_path,
        }
    }

    /// The path and query to fetch the keys at, from a discovery document, or why not.
    /// `authority`: the only host\[:port\] the keys may be fetched from.
    pub fn jwks_path(&self, authority: &str, document: &[u8]) -> Result<String, Refusal> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: Option<String>,
            jwks_uri: Option<String>,
        }
        let meta: Metadata = serde_json::from_slice(document).map_err(|_| Refusal::NotMetadata)?;
        match meta.issuer {
            None => return Err(Refusal::NotMetadata),
            Some(i) if i != self.issuer => return Err(Refusal::IssuerMismatch),
            Some(_) => {}
        }
        let uri = meta.jwks_uri.ok_or(Refusal::NoJwksUri)?;
        self.endpoint_path(authority, &uri)
    }

    /// The path of the document's `introspection_endpoint` (RFC 8414 §2, RFC 7662), under the
    /// same rules as `jwks_uri` (the issuer's scheme, on `authority`); `None` when the document
    /// names none, is not this issuer's, or names one elsewhere.
    pub fn introspection_path(&self, authority: &str, document: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: Option<String>,
            introspection_endpoint: Option<String>,
        }
        let meta: Metadata = serde_json::from_slice(document).ok()?;
        if meta.issuer.as_deref() != Some(self.issuer.as_str()) {
            return None;
        }
        self.endpoint_path(authority, &meta.introspection_endpoint?).ok()
    }

    /// The path and query of an endpoint URL of the document, when it may be called through
    /// the cluster at `authority`.
    fn endpoint_path(&self, authority: &str, uri: &str) -> Result<String, Refusal> {
        if uri.len() > MAX_URI_BYTES {
            return Err(Refusal::BadJwksUri);
        }
        let url = split_url(uri).ok_or(Refusal::BadJwksUri)?;
        if !url.https && !self.allow_http {
            return Err(Refusal::NotHttps);
        }
        if !is_authority(url.authority) {
            return Err(Refusal::BadJwksUri);
        }
        if normalize(url.authority, url.https) != normalize(authority, url.https) {
            return Err(Refusal::ForeignHost(url.authority.to_string()));
        }
        // The fragment is never sent.
        let rest = url.rest.split('#').next().unwrap_or("");
        if !rest.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Refusal::BadJwksUri);
        }
        Ok(match rest.as_bytes().first() {
            None => "/".to_string(),
            Some(b'?') => format!("/{rest}"),
            Some(_) => rest.to_string(),
        })
    }
}

/// Why a discovery document is not trusted. Its `Display` quotes nothing of the document
/// but a host that passed the host-name syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotMetadata,
    IssuerMismatch,
    NoJwksUri,
    BadJwksUri,
    NotHttps,
    ForeignHost(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotMetadata => f.write_str("not a metadata document (JSON object with an issuer)"),
            Refusal::IssuerMismatch => f.write_str("its issuer is not the provider's"),
            Refusal::NoJwksUri => f.write_str("it has no jwks_uri"),
            Refusal::BadJwksUri => f.write_str("its jwks_uri is not an http(s) URL"),
            Refusal::NotHttps => f.write_str("its jwks_uri is not https"),
            Refusal::ForeignHost(host) => write!(f, "its jwks_uri is on host {host}, not the configured authority"),
        }
    }
}

struct Url<'a> {
    https: bool,
    authority: &'a str,
    /// Path, query and fragment, as written (may be empty).
    rest: &'a str,
}

/// An absolute `http` or `https` URL, split; the scheme is case-insensitive.
fn split_url(url: &str) -> Option<Url<'_>> {
    let (scheme, after) = url.split_once("://")?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return None;
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(Url { https, authority, rest })
}

/// `host` or `host:port`: a DNS name or IPv4 address, or a bracketed IPv6 address; no
/// userinfo. Also the syntax of `jwks.discovery.authority`.
pub fn is_authority(a: &str) -> bool {
    if a.is_empty() || a.len() > 261 {
        return false;
    }
    let port = if let Some(v6) = a.strip_prefix('[') {
        let Some((inner, after)) = v6.split_once(']') else { return false };
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        }
    } else {
        let (host, port) = match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        };
        if host.is_empty() || host.len() > 253 || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            return false;
        }
        if host.split('.').any(|label| label.starts_with('-') || label.ends_with('-')) {
            return false;
        }
        port
    };
    match port {
        None => true,
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)),
    }
}

/// Lower case, without the scheme's default port.
fn normalize(authority: &str, https: bool) -> String {
    let lower = authority.to_ascii_lowercase();
    let default = if https { ":443" } else { ":80" };
    match lower.strip_suffix(default) {
        Some(bare) => bare.to_string(),
        None => lower,
    }
}

/// The host\[:port\] of an http(s) issuer (the default authority of discovery).
pub fn issuer_authority(issuer: &str) -> Option<&str> {
    split_url(issuer).map(|u| u.authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(issuer: &str, jwks_uri: &str) -> Vec<u8> {
        serde_json::json!({ "issuer": issuer, "jwks_uri": jwks_uri, "token_endpoint": "https://x/t" }).to_string().into_bytes()
    }

    #[test]
    fn well_known_paths_from_the_issuer() {
        let d = Discovery::for_issuer("https://host/a/b").unwrap();
        assert_eq!((d.openid_path.as_str(), d.oauth_path.as_str()), ("/a/b/.well-known/openid-configuration", "/.well-known/oauth-authorization-server/a/b"));
        assert!(!d.allow_http);
        let d = Discovery::for_issuer("https://host/a/").unwrap();
        assert_eq!((d.openid_path.as_str(), d.oauth_path.as_str()), ("/a/.well-known/openid-configuration", "/.well-known/oauth-authorization-server/a"));
        for bare in ["https://host", "https://host/"] {
            let d = Discovery::for_issuer(bare).unwrap();
            assert_eq!((d.openid_path.as_str(), d.oauth_path.as_str()), ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"));
        }
        assert!(Discovery::for_issuer("http://localhost:8080").unwrap().allow_http);
        for bad in ["host", "ftp://host", "https://", "https://u:p@host", "https://host/a?x=1", "https://host/#f", "https://host/a b", "urn:x"] {
            assert_eq!(Discovery::for_issuer(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_jwks_path_comes_only_from_a_matching_document() {
        let d = Discovery::for_issuer("https://idp.example/tenant").unwrap();
        let ok = |uri: &str| d.jwks_path("idp.example", &doc("https://idp.example/tenant", uri));
        assert_eq!(ok("https://idp.example/tenant/jwks"), Ok("/tenant/jwks".into()));
        assert_eq!(ok("https://IDP.example:443/k?v=2#frag"), Ok("/k?v=2".into()));
        assert_eq!(ok("https://idp.example"), Ok("/".into()));
        assert_eq!(ok("https://idp.example?x"), Ok("/?x".into()));
        assert_eq!(ok("http://idp.example/jwks"), Err(Refusal::NotHttps));
        assert_eq!(ok("https://evil.example/jwks"), Err(Refusal::ForeignHost("evil.example".into())));
        assert_eq!(ok("https://idp.example:8443/jwks"), Err(Refusal::ForeignHost("idp.example:8443".into())));
        assert_eq!(ok("https://user:secret@idp.example/jwks"), Err(Refusal::BadJwksUri));
        assert_eq!(ok("/jwks"), Err(Refusal::BadJwksUri));
        assert_eq!(ok("https://idp.example/a\u{7f}"), Err(Refusal::BadJwksUri));
        assert_eq!(d.jwks_path("idp.example", &doc("https://idp.example/tenant/", "https://idp.example/j")), Err(Refusal::IssuerMismatch));
        assert_eq!(d.jwks_path("idp.example", &doc("https://idp.example/other", "https://idp.example/j")), Err(Refusal::IssuerMismatch));
        assert_eq!(d.jwks_path("idp.example", br#"{"issuer":"https://idp.example/tenant"}"#), Err(Refusal::NoJwksUri));
        assert_eq!(d.jwks_path("idp.example", br#"{"jwks_uri":"https://idp.example/j"}"#), Err(Refusal::NotMetadata));
        assert_eq!(d.jwks_path("idp.example", b"<html>"), Err(Refusal::NotMetadata));
        assert_eq!(d.jwks_path("idp.example", br#"{"issuer":1}"#), Err(Refusal::NotMetadata));
        let http = Discovery::for_issuer("http://localhost:3000").unwrap();
        assert_eq!(http.jwks_path("localhost:3000", &doc("http://localhost:3000", "http://localhost:3000/jwks")), Ok("/jwks".into()));
    }

    #[test]
    fn refusals_quote_no_secret() {
        let d = Discovery::for_issuer("https://idp.example").unwrap();
        let e = d.jwks_path("idp.example", &doc("https://idp.example", "https://user:hunter2@evil.example/j")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = d.jwks_path("idp.example", &doc("https://hunter2.example", "https://idp.example/j")).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn authorities() {
        for ok in ["idp.example", "idp.example:8443", "127.0.0.1:80", "[::1]:8080", "[::1]", "localhost"] {
            assert!(is_authority(ok), "{ok}");
        }
        for bad in ["", "idp.example/", "u@idp.example", "idp.example:", "idp.example:0", "idp.example:99999", "a b", "[::1", "-x.example", "idp.example:80:80"] {
            assert!(!is_authority(bad), "{bad}");
        }
    }
}
