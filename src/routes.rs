//! Which route applies to a request: exact paths, segment prefixes (as Envoy's
//! `path_separated_prefix`) and templates (`{name}` one segment, `{name...}` the rest).
//!
//! Routes are matched against the request the upstream will serve, not the string that was
//! sent (docs/configuration.md, "Route matching"). Servlet containers drop `;` path
//! parameters, routers serve `/a/b/` as `/a/b`, and frameworks answer `HEAD` with the `GET`
//! handler, so a request is first reduced to its canonical form — parameters refused (or
//! removed, when configured), one trailing slash dropped, `HEAD` read as `GET` — and every
//! pattern is compiled to the same form. Two requests an upstream serves alike are then judged
//! by the same route. The query string never takes part.

use std::borrow::Cow;

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// Index into the captures of a match.
    One(usize),
    Rest(usize),
}

impl Template {
    /// Parses `/api/v1/bots/{id}` or `/files/{path...}`. Returns the template and its variable
    /// names in capture order.
    pub fn parse(text: &str) -> Result<(Template, Vec<String>), String> {
        let rest = text.strip_prefix('/').ok_or("a template must start with '/'")?;
        let mut names: Vec<String> = Vec::new();
        let mut segments = Vec::new();
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let (name, is_rest) = match inner.strip_suffix("...") {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if !is_plain_name(name) {
                    return Err(format!("bad variable name {{{inner}}}"));
                }
                if names.iter().any(|n| n == name) {
                    return Err(format!("variable {{{name}}} appears twice"));
                }
                if is_rest && i + 1 != parts.len() {
                    return Err(format!("{{{name}...}} must be the last segment"));
                }
                names.push(name.to_string());
                segments.push(if is_rest { Segment::Rest(names.len() - 1) } else { Segment::One(names.len() - 1) });
            } else if part.contains('{') || part.contains('}') {
                return Err(format!("segment '{part}' mixes text and a variable"));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
        Ok((Template { segments }, names))
    }

    /// Matches a path (no query string); on success returns the captured values.
    pub fn matches<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let rest = path.strip_prefix('/')?;
        let mut captures = Vec::new();
        let mut remaining = Some(rest);
        for seg in &self.segments {
            let current = remaining?;
            match seg {
                Segment::Rest(_) => {
                    if current.is_empty() {
                        return None;
                    }
                    captures.push(current);
                    remaining = None;
                    continue;
                }
                Segment::Literal(lit) => {
                    let (head, tail) = split_segment(current);
                    if head != lit {
                        return None;
                    }
                    remaining = tail;
                }
                Segment::One(_) => {
                    let (head, tail) = split_segment(current);
                    if head.is_empty() {
                        return None;
                    }
                    captures.push(head);
                    remaining = tail;
                }
            }
        }
        match remaining {
            None => Some(captures),
            Some(_) if matches!(self.segments.last(), Some(Segment::Rest(_))) => Some(captures),
            Some(_) => None,
        }
    }
}

fn split_segment(s: &str) -> (&str, Option<&str>) {
    match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// A name that can stand in a scope: letters, digits, `_` and `-`.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A route's path pattern, in canonical form (see `canonical_path`): no trailing slash but
/// for `/` itself, and a prefix kept without its trailing slash, so that it ends on a segment
/// boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    /// Whole leading segments: `/v1/mcp` covers `/v1/mcp` and `/v1/mcp/x`, never
    /// `/v1/mcp-admin`. The empty prefix (from `/`) covers every path.
    Prefix(String),
    Template(Template),
}

impl PathPattern {
    /// `path` as configured (it starts with `/` and holds no `;`, `?` or `#`).
    pub fn exact(path: &str) -> PathPattern {
        PathPattern::Exact(drop_trailing_slash(path).to_string())
    }

    /// `prefix` as configured: `/v1/mcp` and `/v1/mcp/` are the same prefix.
    pub fn prefix(prefix: &str) -> PathPattern {
        PathPattern::Prefix(prefix.trim_end_matches('/').to_string())
    }

    /// A template as configured, one trailing slash ignored. Returns the variable names too.
    pub fn template(text: &str) -> Result<(PathPattern, Vec<String>), String> {
        let (t, names) = Template::parse(drop_trailing_slash(text))?;
        Ok((PathPattern::Template(t), names))
    }

    /// Matches a canonical path (`canonical_path`); on success returns the captured values.
    pub fn matches<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        match self {
            PathPattern::Exact(p) => (p == path).then(Vec::new),
            PathPattern::Prefix(p) => covers(p, path).then(Vec::new),
            PathPattern::Template(t) => t.matches(path),
        }
    }
}

/// Whether a segment prefix (no trailing slash) covers a path.
fn covers(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// `/a/b/` as `/a/b`; `/` stays `/`.
pub fn drop_trailing_slash(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => path,
    }
}

/// What a `;` path parameter in a segment (`/admin;jsessionid=1/users`) does to a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum PathParameters {
    /// Refused as `path_not_normalized`: the filter cannot know whether the upstream drops
    /// the parameter (Tomcat, Jetty, Spring) or keeps it in the segment (most others).
    #[default]
    Reject,
    /// Matched with every parameter removed, as servlet containers serve it.
    Strip,
}

/// The path routes are matched against: a path (query string removed) that `is_normalized`
/// accepted, with `;` parameters refused or removed, and one trailing slash dropped (`/` stays
/// `/`). `None`: refuse the request as `path_not_normalized`.
///
/// Refusing also refuses an encoded `%3B`: servlet containers remove parameters before they
/// decode (so `%3B` stays part of the segment), but an upstream that decodes first would see
/// a parameter. Removing follows the servlet order and keeps `%3B` as text.
pub fn canonical_path(path: &str, parameters: PathParameters) -> Option<Cow<'_, str>> {
    if parameters == PathParameters::Reject && has_encoded_semicolon(path) {
        return None;
    }
    if !path.contains(';') {
        return Some(Cow::Borrowed(drop_trailing_slash(path)));
    }
    if parameters == PathParameters::Reject {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(""));
    }
    // `/a/;x/b` would become `/a//b`: a segment that was only a parameter is no segment.
    // Only the last may be empty (the trailing slash, or `/` itself).
    let segments: Vec<&str> = out.get(1..).unwrap_or("").split('/').collect();
    if segments[..segments.len() - 1].iter().any(|s| s.is_empty()) {
        return None;
    }
    let kept = drop_trailing_slash(&out).len();
    out.truncate(kept);
    Some(Cow::Owned(out))
}

fn has_encoded_semicolon(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'3' && (w[2] == b'b' || w[2] == b'B'))
}

/// The method routes are matched against: `HEAD` is `GET` (every common framework answers it
/// with the GET handler). `None` for a method with a lower-case letter: methods are
/// case-sensitive (RFC 9110 §9.1), and `get` must not fall through to a route for any method.
pub fn canonical_method(method: &str) -> Option<&str> {
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        return None;
    }
    Some(if method == "HEAD" { "GET" } else { method })
}

/// Whether a path (query already stripped) is what Envoy's `normalize_path`, `merge_slashes`
/// and `path_with_escaped_slashes_action` leave: no empty, `.` or `..` segment (also not with a
/// `;` parameter, which servlet containers drop before resolving dots), no backslash, and no
/// percent-encoded slash, backslash or unreserved character (RFC 3986 normalisation decodes
/// those). Anything else means the router, or the upstream, may serve a different path than
/// the one judged here.
pub fn is_normalized(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') || b.contains(&b'\\') || path.contains("//") {
        return false;
    }
    let hex = |c: u8| (c as char).to_digit(16);
    let encoded = b.windows(3).any(|w| {
        w[0] == b'%'
            && match (hex(w[1]), hex(w[2])) {
                (Some(hi), Some(lo)) => {
                    let c = (hi * 16 + lo) as u8;
                    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\')
                }
                _ => false,
            }
    });
    !encoded && !path.split('/').any(|seg| matches!(seg.split(';').next(), Some("." | "..")))
}

/// The path without query string or fragment.
pub fn strip_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(i) => &path[..i],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalised_paths() {
        for ok in ["/", "/api/", "/api/v1/bots", "/a.b/c..d/.e", "/x%20y", "/a;b/c", "/..c;x", "/%zz", "/%3B"] {
            assert!(super::is_normalized(ok), "{ok}");
        }
        for bad in [
            "", "api", "//", "/a//b", "/a/./b", "/a/../b", "/a/.", "/a/..", "/..", "/a\\b", "/a/%2e%2e/b",
            "/a/%2E/b", "/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb", "*", "/v1/%41dmin", "/api/%61dmin", "/%7e", "/a/..;/b",
            "/a/.;x/b", "/a/..;jsessionid=1", "/%30",
        ] {
            assert!(!super::is_normalized(bad), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn template_table() {
        let cases: &[(&str, &str, Option<&[&str]>)] = &[
            ("/v1/tools/agents/{tool}", "/v1/tools/agents/run", Some(&["run"])),
            ("/v1/tools/agents/{tool}", "/v1/tools/agents/", None),
            ("/v1/tools/agents/{tool}", "/v1/tools/agents", None),
            ("/v1/tools/agents/{tool}", "/v1/tools/agents/run/extra", None),
            ("/v1/tools/agents/{tool}", "/v1/tools/agentsx/run", None),
            ("/api/v1/bots/{id}/messages/{mid}", "/api/v1/bots/7/messages/9", Some(&["7", "9"])),
            ("/files/{path...}", "/files/a/b/c.txt", Some(&["a/b/c.txt"])),
            ("/files/{path...}", "/files/", None),
            ("/files/{path...}", "/files", None),
            ("/", "/", Some(&[])),
            ("/a/b", "/a/b", Some(&[])),
            ("/a/b", "/a/b/", None),
        ];
        for (tpl, path, want) in cases {
            let (t, _) = Template::parse(tpl).unwrap();
            let got = t.matches(path);
            assert_eq!(got.as_deref(), *want, "{tpl} vs {path}");
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["no-slash", "/a/{x", "/a/{x}/{x}", "/a/{x...}/b", "/a/pre{x}", "/a/{}", "/a/{x y}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let (_, names) = Template::parse("/a/{x}/{y...}").unwrap();
        assert_eq!(names, vec!["x", "y"]);
    }

    #[test]
    fn patterns_and_query() {
        assert_eq!(strip_query("/v1/search?q=a/b"), "/v1/search");
        assert_eq!(strip_query("/v1/search#frag"), "/v1/search");
        assert!(PathPattern::exact("/health").matches("/health").is_some());
        assert!(PathPattern::exact("/health/").matches("/health").is_some());
        assert!(PathPattern::exact("/health").matches("/healthz").is_none());
        assert!(PathPattern::prefix("/api/").matches("/api/x").is_some());
        assert!(PathPattern::prefix("/api/").matches("/api").is_some());
        assert!(PathPattern::prefix("/api").matches("/api/x").is_some());
        assert!(PathPattern::prefix("/api/").matches("/apix").is_none());
        assert!(PathPattern::prefix("/api").matches("/api-admin").is_none());
        assert!(PathPattern::prefix("/").matches("/").is_some());
        assert!(PathPattern::prefix("/").matches("/x/y").is_some());
    }

    #[test]
    fn canonical_paths() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            // (path, canonical when parameters are refused, canonical when they are removed)
            ("/", Some("/"), Some("/")),
            ("/a/b", Some("/a/b"), Some("/a/b")),
            ("/a/b/", Some("/a/b"), Some("/a/b")),
            ("/a/b;x", None, Some("/a/b")),
            ("/a;x/b", None, Some("/a/b")),
            ("/a;x=1;y=2/b;z/", None, Some("/a/b")),
            ("/a;x/", None, Some("/a")),
            ("/;x", None, Some("/")),
            ("/a/;x/b", None, None),
            ("/;x/a", None, None),
            ("/a/;x", None, Some("/a")),
            ("/;x/", None, None),
            ("/;x/;y", None, None),
            ("/a%3Bx/b", None, Some("/a%3Bx/b")),
            ("/a%3bx/b/", None, Some("/a%3bx/b")),
            ("/a%3/b", Some("/a%3/b"), Some("/a%3/b")),
        ];
        for (path, reject, strip) in cases {
            assert_eq!(canonical_path(path, PathParameters::Reject).as_deref(), *reject, "{path} (reject)");
            assert_eq!(canonical_path(path, PathParameters::Strip).as_deref(), *strip, "{path} (strip)");
        }
    }

    #[test]
    fn canonical_methods() {
        assert_eq!(canonical_method("GET"), Some("GET"));
        assert_eq!(canonical_method("HEAD"), Some("GET"));
        assert_eq!(canonical_method("POST"), Some("POST"));
        assert_eq!(canonical_method("PROPFIND"), Some("PROPFIND"));
        for bad in ["get", "head", "Get", "pOST"] {
            assert_eq!(canonical_method(bad), None, "{bad}");
        }
    }
}
