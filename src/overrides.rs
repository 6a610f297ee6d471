//! Method and path override headers: request headers that make common frameworks serve another
//! method or path than the one on the request line. The filter judges `:method` and `:path`; an
//! upstream that honours one of these serves something else (a key allowed to `POST` becomes a
//! `DELETE`, a public path becomes `/admin`). So they never reach the upstream: removed from
//! every forwarded request (default), or the request refused (`forward.override_headers`).

use serde::Deserialize;

use crate::config::shape::config_object;

use crate::config::error::ConfigError;
use crate::credentials::Headers;
use crate::text::is_underscore_twin;

/// The override headers (lower-case), each with who honours it (docs/configuration.md).
pub const OVERRIDE_HEADERS: [(&str, &str); 7] = [
    ("x-http-method-override", "Express method-override, ASP.NET Core UseHttpMethodOverride, Symfony and Laravel, Jersey"),
    ("x-http-method", "OData and SharePoint REST, ArangoDB"),
    ("x-method-override", "Express method-override (configured), ArangoDB"),
    ("x-original-url", "IIS URL Rewrite and ASP.NET on IIS, Zend Framework and Laminas, Symfony before 2.7.49 / 3.4.14, Authelia"),
    ("x-rewrite-url", "Zend Framework and Laminas, Symfony before 2.7.49 / 3.4.14, ISAPI_Rewrite"),
    ("x-original-uri", "auth services behind nginx auth_request"),
    ("x-forwarded-uri", "auth services behind Traefik ForwardAuth (Authelia, oauth2-proxy)"),
];

config_object! {
    /// `forward.override_headers` as written.
    #[derive(Debug, Default)]
    pub struct RawOverrideHeaders {
        pub action: OverrideAction = default,
        pub allow: Vec<String> = default,
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideAction {
    /// Removed from the forwarded request.
    #[default]
    Remove,
    /// The request is refused (`override_header_refused`).
    Refuse,
}

/// What happens to override headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub action: OverrideAction,
    /// Names let through as they are, for an upstream that needs one (their `_` twins are not).
    pub allowed: Vec<&'static str>,
}

impl Overrides {
    /// Compiles `forward.override_headers`; an `allow` entry must be one of `OVERRIDE_HEADERS`.
    pub fn compile(raw: Option<&RawOverrideHeaders>) -> Result<Overrides, ConfigError> {
        let Some(raw) = raw else { return Ok(Overrides::default()) };
        let mut allowed = Vec::with_capacity(raw.allow.len());
        for (i, name) in raw.allow.iter().enumerate() {
            let lower = name.to_ascii_lowercase();
            let known = OVERRIDE_HEADERS.iter().map(|(n, _)| *n).find(|n| *n == lower).ok_or_else(|| {
                ConfigError::new(format!("forward.override_headers.allow[{i}]"), "not a method or path override header (see the configuration reference)")
            })?;
            allowed.push(known);
        }
        Ok(Overrides { action: raw.action, allowed })
    }

    /// The request's override headers not let through, by the name the request uses: each
    /// listed name, also with `_` for `-` in any case (a CGI/WSGI upstream reads
    /// `X_HTTP_Method_Override` as `X-HTTP-Method-Override`).
    pub fn found<'h>(&'h self, headers: &'h Headers<'h>) -> impl Iterator<Item = &'h str> + 'h {
        headers.iter().map(|(n, _)| *n).filter(move |n| {
            // The shortest is 13 bytes; most headers are not this long or start otherwise.
            n.len() >= 13
                && n.as_bytes()[0] | 0x20 == b'x'
                && OVERRIDE_HEADERS.iter().any(|(o, _)| is_underscore_twin(n, o) && !(*n == *o && self.allowed.contains(o)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_override_header_and_twin_is_found_unless_let_through() {
        let all = Overrides::default();
        for (name, _) in OVERRIDE_HEADERS {
            let twin = name.replace('-', "_").to_ascii_uppercase();
            let headers: Vec<(&str, &[u8])> = vec![("accept", b"*/*"), (name, b"DELETE"), (&twin, b"/admin")];
            assert_eq!(all.found(&headers).collect::<Vec<_>>(), vec![name, twin.as_str()]);
        }
        let raw = RawOverrideHeaders { action: OverrideAction::Remove, allow: vec!["X-HTTP-Method-Override".into()] };
        let some = Overrides::compile(Some(&raw)).unwrap();
        let headers: Vec<(&str, &[u8])> = vec![("x-http-method-override", b"PUT"), ("x_http_method_override", b"PUT"), ("x-http-method", b"PUT")];
        assert_eq!(some.found(&headers).collect::<Vec<_>>(), vec!["x_http_method_override", "x-http-method"], "only the named one, as named");
        let bad = RawOverrideHeaders { action: OverrideAction::Remove, allow: vec!["x-api-key".into()] };
        assert_eq!(Overrides::compile(Some(&bad)).unwrap_err().path, "forward.override_headers.allow[0]");
        let none: Vec<(&str, &[u8])> = vec![("x-http-method-overrides", b"PUT"), ("x-forwarded-for", b"1.2.3.4"), ("method", b"PUT")];
        assert_eq!(all.found(&none).count(), 0);
    }
}
