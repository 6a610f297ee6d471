//! Shared fixtures and input formats of the fuzz targets (see fuzz/README.md).

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The tests' clock (tests/engine.rs): 2026-09-21.
pub const NOW: i64 = 1_790_000_000;

/// The repository's examples/ 000-004, read where they are (no copy to refresh).
pub const EXAMPLES: [&str; 5] = [
    include_str!("../../examples/000-session-jwt-org.json"),
    include_str!("../../examples/001-tenant-jwt-webhooks.json"),
    include_str!("../../examples/002-inference-keys.json"),
    include_str!("../../examples/003-scoped-keys-mcp.json"),
    include_str!("../../examples/004-workspace-tokens.json"),
];

/// Keys and known-good tokens, written by seeds/make_seeds.py.
pub fn keys() -> &'static Value {
    static KEYS: OnceLock<Value> = OnceLock::new();
    KEYS.get_or_init(|| serde_json::from_str(include_str!("../fixtures/keys.json")).expect("fixtures/keys.json"))
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("fixture base64url")
}

pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Bytes as lower-case hex, for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

/// a + b on big-endian numbers of one length (`None` on overflow).
pub fn be_add(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; a.len()];
    let mut carry = 0u16;
    for i in (0..a.len()).rev() {
        let v = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    (carry == 0).then_some(out)
}

/// a - b on big-endian numbers of one length (`None` below zero).
pub fn be_sub(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let v = i16::from(a[i]) - i16::from(b[i]) - borrow;
        out[i] = v.rem_euclid(256) as u8;
        borrow = i16::from(v < 0);
    }
    (borrow == 0).then_some(out)
}

/// The message with one byte changed (its top bit, at a place the seed picks), or a byte
/// added to an empty one.
pub fn changed_message(msg: &[u8], seed: u64) -> Vec<u8> {
    let mut other = msg.to_vec();
    match other.get_mut((seed >> 16) as usize % msg.len().max(1)) {
        Some(b) => *b ^= 0x80,
        None => other.push(0),
    }
    other
}

/// Variants of a JOSE ECDSA signature r || s over a group of order `n` (big-endian, as wide
/// as r and s): (r, n - s), r and s swapped, r or s zero or n, a byte short, r + n and s + n
/// (where they fit), one bit flipped at a place the seed picks.
pub fn ecdsa_variants(sig: &[u8], n: &[u8], seed: u64) -> Vec<(&'static str, Vec<u8>)> {
    let (r, s) = sig.split_at(n.len());
    let zero = vec![0u8; n.len()];
    let join = |a: &[u8], b: &[u8]| [a, b].concat();
    let mut variants = Vec::new();
    if let Some(ns) = be_sub(n, s) {
        variants.push(("(r, n - s)", join(r, &ns)));
    }
    variants.extend([
        ("r and s swapped", join(s, r)),
        ("r = 0", join(&zero, s)),
        ("s = 0", join(r, &zero)),
        ("r = n", join(n, s)),
        ("s = n", join(r, n)),
        ("a byte short", sig[..sig.len() - 1].to_vec()),
    ]);
    if let Some(rn) = be_add(r, n) {
        variants.push(("r + n", join(&rn, s)));
    }
    if let Some(sn) = be_add(s, n) {
        variants.push(("s + n", join(r, &sn)));
    }
    let mut flipped = sig.to_vec();
    flipped[(seed % sig.len() as u64) as usize] ^= 1 << ((seed >> 8) % 8);
    variants.push(("one bit flipped", flipped));
    variants
}

/// FNV-1a: a deterministic choice (a position, a byte) derived from the whole input.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// `\n`-separated lines (a trailing `\r` is kept: it is input like any other byte).
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n').collect()
}

/// `name: value` lines as the host presents headers: the name lower-cased (lossy UTF-8), the
/// value raw bytes after the colon, less one optional leading space (Envoy strips the optional
/// whitespace; anything beyond one space stays for the core to judge). A line without a colon
/// is a header with an empty value.
pub fn header(line: &[u8]) -> (String, Vec<u8>) {
    let (name, value) = match line.iter().position(|b| *b == b':') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    let value = value.strip_prefix(b" ").unwrap_or(value);
    (String::from_utf8_lossy(name).to_ascii_lowercase(), value.to_vec())
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// docs/configuration.md's "Route matching", read independently of src/routes.rs and src/engine/mod.rs: the
/// targets compute with it what a request's canonical form is and which route judges it, and
/// compare with what the filter does. Nothing here calls the code under test.
pub mod model {
    use api_auth_filter::deny::Reason;
    use serde_json::Value;

    /// The path less its query string or fragment (matching ignores them).
    pub fn strip_query(path: &str) -> &str {
        let end = path.char_indices().find(|(_, c)| *c == '?' || *c == '#').map_or(path.len(), |(i, _)| i);
        &path[..end]
    }

    /// What Envoy's path normalisation leaves unchanged: starts with `/`; no empty segment but
    /// a trailing one; no `.` or `..` segment, also not with `;` parameters; no backslash; no
    /// `%XX` that decodes to an unreserved character (ALPHA, DIGIT, `-._~`), `/` or `\`.
    pub fn normalized(path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else { return false };
        if path.contains('\\') {
            return false;
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let last = segments.len() - 1;
        for (i, s) in segments.iter().enumerate() {
            if s.is_empty() && i != last {
                return false;
            }
            let name = s.split(';').next().unwrap_or("");
            if name == "." || name == ".." {
                return false;
            }
        }
        let b = path.as_bytes();
        for i in 0..b.len() {
            if b[i] != b'%' || i + 2 >= b.len() {
                continue;
            }
            let (Some(hi), Some(lo)) = ((b[i + 1] as char).to_digit(16), (b[i + 2] as char).to_digit(16)) else { continue };
            let c = (hi * 16 + lo) as u8;
            if c.is_ascii_alphanumeric() || b"-._~/\\".contains(&c) {
                return false;
            }
        }
        true
    }

    /// `/a/b/` as `/a/b`; `/` stays `/`.
    pub fn drop_one_slash(path: &str) -> &str {
        if path.len() > 1 && path.ends_with('/') {
            &path[..path.len() - 1]
        } else {
            path
        }
    }

    /// The canonical form of a normalised path (no query): with `;` parameters refused
    /// (`strip` false; an encoded `%3B` too, since an upstream may decode before it splits) or
    /// removed from every segment (`strip` true, in the servlet order: split first, so `%3B`
    /// stays text; a segment that was only a parameter is refused, except as the last
    /// segment, where it reads as a trailing slash), then one trailing slash dropped. `None`:
    /// refused (path_not_normalized).
    pub fn canonical_path(path: &str, strip: bool) -> Option<String> {
        if !strip && path.to_ascii_lowercase().contains("%3b") {
            return None;
        }
        if !path.contains(';') {
            return Some(drop_one_slash(path).to_string());
        }
        if !strip {
            return None;
        }
        let segments: Vec<&str> = path.split('/').map(|s| s.split(';').next().unwrap_or("")).collect();
        // segments[0] is the empty text before the leading '/'; the last may be empty (a
        // trailing slash, or a last segment that was only a parameter).
        let last = segments.len() - 1;
        if segments.iter().enumerate().any(|(i, s)| i != 0 && i != last && s.is_empty()) {
            return None;
        }
        Some(drop_one_slash(&segments.join("/")).to_string())
    }

    /// `HEAD` read as `GET`; a method with a lower-case letter is refused (method_invalid).
    pub fn canonical_method(method: &str) -> Option<String> {
        if method.chars().any(|c| c.is_ascii_lowercase()) {
            return None;
        }
        Some(if method == "HEAD" { "GET".to_string() } else { method.to_string() })
    }

    /// The request the upstream serves: (method, path), or the reason it is refused. Order
    /// of the checks: normalisation, parameters, method.
    pub fn target(method: &str, raw_path: &str, strip: bool) -> Result<(String, String), Reason> {
        let path = strip_query(raw_path);
        if !normalized(path) {
            return Err(Reason::PathNotNormalized);
        }
        let path = canonical_path(path, strip).ok_or(Reason::PathNotNormalized)?;
        let method = canonical_method(method).ok_or(Reason::MethodInvalid)?;
        Ok((method, path))
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Part {
        Literal(String),
        One(String),
        Rest(String),
    }

    /// docs/configuration.md's template grammar: `/`-separated segments, each a literal without braces,
    /// `{name}` or, as the last one only, `{name...}`; names plain (letters, digits, `_`, `-`)
    /// and distinct.
    pub fn read_template(t: &str) -> Option<Vec<Part>> {
        let rest = t.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let mut out = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let braced = p.len() >= 2 && p.starts_with('{') && p.ends_with('}');
            if !braced {
                if p.contains(['{', '}']) {
                    return None;
                }
                out.push(Part::Literal(p.to_string()));
                continue;
            }
            let inner = &p[1..p.len() - 1];
            let (name, rest_var) = match inner.strip_suffix("...") {
                Some(n) => (n, true),
                None => (inner, false),
            };
            if !plain(name) || names.contains(&name) || (rest_var && i + 1 != parts.len()) {
                return None;
            }
            names.push(name);
            out.push(if rest_var { Part::Rest(name.into()) } else { Part::One(name.into()) });
        }
        Some(out)
    }

    /// A name that can stand in a scope: letters, digits, `_` and `-`.
    pub fn plain(s: &str) -> bool {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    /// A template's match of a path: the captured values, in order.
    pub fn template_match(parts: &[Part], path: &str) -> Option<Vec<String>> {
        let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let mut caps = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            match part {
                Part::Rest(_) => {
                    let rest = segs.get(i..).map(|s| s.join("/")).unwrap_or_default();
                    if rest.is_empty() {
                        return None;
                    }
                    caps.push(rest);
                    return Some(caps);
                }
                Part::Literal(l) => {
                    if segs.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Part::One(_) => {
                    let s = segs.get(i).filter(|s| !s.is_empty())?;
                    caps.push(s.to_string());
                }
            }
        }
        (segs.len() == parts.len()).then_some(caps)
    }

    /// Whether a `prefix` route covers a canonical path: the prefix less its trailing slashes
    /// is the whole of the path's leading segments (`/` covers every path).
    pub fn prefix_covers(prefix: &str, path: &str) -> bool {
        let p = prefix.trim_end_matches('/');
        if p.is_empty() {
            return true;
        }
        let ps: Vec<&str> = p.split('/').collect();
        let qs: Vec<&str> = path.split('/').collect();
        qs.len() >= ps.len() && qs[..ps.len()] == ps[..]
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        Path,
        Prefix,
        Template,
        /// Bound to the route Envoy's router chose, by name (`pattern` is the name).
        RouteName,
        /// Bound to a string in the chosen route's metadata (`RouteSpec::metadata`).
        RouteMetadata,
    }

    impl Kind {
        pub fn key(self) -> &'static str {
            match self {
                Kind::Path => "path",
                Kind::Prefix => "prefix",
                Kind::Template => "template",
                Kind::RouteName => "route_name",
                Kind::RouteMetadata => "route_metadata",
            }
        }
    }

    /// A route as configured (the document's `match`), not as compiled.
    #[derive(Debug, Clone)]
    pub struct RouteSpec {
        pub methods: Option<Vec<String>>,
        pub kind: Kind,
        pub pattern: String,
        /// `route_metadata`: (filter, key, value).
        pub metadata: Option<(String, String, String)>,
    }

    /// What Envoy's router chose for the request: its route's name and metadata strings
    /// ((filter, key, value); the first value of a filter and key counts). The default:
    /// nothing known, no bound route matches.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Chosen<'a> {
        pub name: Option<&'a str>,
        pub metadata: &'a [(String, String, String)],
    }

    /// The route's methods as they take part in matching: upper-cased, HEAD dropped when GET is
    /// listed. `Err`: the list is refused (empty, a method that is not letters, HEAD without GET).
    pub fn methods(list: &Option<Vec<String>>) -> Result<Option<Vec<String>>, String> {
        let Some(list) = list else { return Ok(None) };
        if list.is_empty() {
            return Err("empty methods".into());
        }
        let mut up = Vec::new();
        for m in list {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(format!("method {m:?}"));
            }
            up.push(m.to_ascii_uppercase());
        }
        if up.iter().any(|m| m == "HEAD") {
            if !up.iter().any(|m| m == "GET") {
                return Err("HEAD without GET".into());
            }
            up.retain(|m| m != "HEAD");
        }
        Ok(Some(up))
    }

    impl RouteSpec {
        /// Whether the configuration takes this `match`: patterns start with `/`, hold no
        /// `;`, `?` or `#`, are normalised; templates follow the grammar; methods as above.
        /// The template's variable names on success.
        pub fn valid(&self) -> Result<Vec<String>, String> {
            methods(&self.methods)?;
            match self.kind {
                Kind::RouteName if self.pattern.is_empty() => return Err("empty route_name".into()),
                Kind::RouteMetadata if self.metadata.as_ref().is_none_or(|(f, k, _)| f.is_empty() || k.is_empty()) => {
                    return Err("route_metadata without filter or key".into());
                }
                Kind::RouteName | Kind::RouteMetadata => return Ok(Vec::new()),
                _ => {}
            }
            let p = &self.pattern;
            if !p.starts_with('/') || p.contains([';', '?', '#']) || !normalized(p) {
                return Err(format!("pattern {p:?}"));
            }
            if self.kind != Kind::Template {
                return Ok(Vec::new());
            }
            let parts = read_template(drop_one_slash(p)).ok_or_else(|| format!("template {p:?}"))?;
            Ok(parts
                .into_iter()
                .filter_map(|part| match part {
                    Part::One(n) | Part::Rest(n) => Some(n),
                    Part::Literal(_) => None,
                })
                .collect())
        }

        /// Whether the route judges a canonical request; the template's captures if so. A
        /// bound route covers every path: it matches when the router chose its route.
        pub fn matches(&self, method: &str, path: &str, chosen: &Chosen<'_>) -> Option<Vec<String>> {
            let ms = methods(&self.methods).ok()?;
            if ms.is_some_and(|ms| !ms.iter().any(|m| m == method)) {
                return None;
            }
            match self.kind {
                Kind::RouteName => (chosen.name == Some(self.pattern.as_str())).then(Vec::new),
                Kind::RouteMetadata => {
                    let (filter, key, value) = self.metadata.as_ref()?;
                    let held = chosen.metadata.iter().find(|(f, k, _)| f == filter && k == key).map(|(_, _, v)| v);
                    (held == Some(value)).then(Vec::new)
                }
                Kind::Path => (drop_one_slash(&self.pattern) == path).then(Vec::new),
                Kind::Prefix => prefix_covers(&self.pattern, path).then(Vec::new),
                Kind::Template => template_match(&read_template(drop_one_slash(&self.pattern))?, path),
            }
        }

        /// Reads a document route's `match` (`None` when it has none of the three kinds).
        pub fn of(route: &Value) -> Option<RouteSpec> {
            let m = route.get("match")?;
            let methods = m.get("methods").and_then(Value::as_array).map(|a| {
                a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect::<Vec<_>>()
            });
            for kind in [Kind::Path, Kind::Prefix, Kind::Template, Kind::RouteName] {
                if let Some(p) = m.get(kind.key()).and_then(Value::as_str) {
                    return Some(RouteSpec { methods, kind, pattern: p.to_string(), metadata: None });
                }
            }
            let md = m.get("route_metadata")?;
            let field = |k: &str| md.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let metadata = Some((field("filter"), field("key"), field("value")));
            Some(RouteSpec { methods, kind: Kind::RouteMetadata, pattern: String::new(), metadata })
        }
    }

    /// The routes of a configuration document, in order.
    pub fn specs(doc: &Value) -> Vec<RouteSpec> {
        doc.get("routes").and_then(Value::as_array).map_or(Vec::new(), |rs| rs.iter().filter_map(RouteSpec::of).collect())
    }

    /// The first route that judges the canonical request (first match wins), nothing known of
    /// the router's choice.
    pub fn route(specs: &[RouteSpec], method: &str, path: &str) -> Option<usize> {
        route_chosen(specs, method, path, &Chosen::default())
    }

    /// The same, with what the router chose.
    pub fn route_chosen(specs: &[RouteSpec], method: &str, path: &str, chosen: &Chosen<'_>) -> Option<usize> {
        specs.iter().position(|r| r.matches(method, path, chosen).is_some())
    }

    /// Whether a header name reads as one of `guarded` once `_` is read as `-` (names are
    /// lower-case here): the underscore twins that must never reach the upstream.
    pub fn underscore_twin(name: &str, guarded: &[String]) -> bool {
        name.contains('_') && guarded.iter().any(|g| name.to_ascii_lowercase().replace('_', "-") == *g)
    }
}

/// docs/configuration.md beyond route matching, read independently of src/: which request is
/// gRPC, a gRPC denial's status, token cookies. Nothing here calls the code under test.
pub mod answers {
    /// "gRPC requests and response details": a request is gRPC exactly when Envoy takes it for
    /// one: its content type, repeated ones joined with `,` as Envoy joins them (empty ones
    /// add nothing), is `application/grpc` or begins with `application/grpc+`, byte for byte.
    pub fn grpc(headers: &[(String, Vec<u8>)]) -> bool {
        let mut joined: Vec<u8> = Vec::new();
        for (_, v) in headers.iter().filter(|(n, v)| n == "content-type" && !v.is_empty()) {
            if !joined.is_empty() {
                joined.push(b',');
            }
            joined.extend_from_slice(v);
        }
        joined == b"application/grpc" || joined.starts_with(b"application/grpc+")
    }

    /// The same section's table: the grpc-status of a denial's HTTP status.
    pub fn grpc_status(http: u16) -> u32 {
        match http {
            400 => 3,
            401 => 16,
            403 => 7,
            404 => 12,
            413 | 429 => 8,
            503 => 14,
            _ => 2,
        }
    }

    /// The `name=value` pairs of every Cookie header (`a=1; b=2`), names and values trimmed of
    /// spaces and tabs (RFC 6265 5.2: WSP); a pair without `=` has an empty value.
    pub fn cookies(headers: &[(String, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        headers.iter().filter(|(n, _)| n == "cookie").flat_map(|(_, v)| cookie_pairs(v)).collect()
    }

    pub fn cookie_pairs(value: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        cookie_pairs_trimming(value, lenient_trim())
    }

    /// What the most lenient cookie parser behind the filter trims around a name or value
    /// (docs/configuration.md, `from_cookies`): RFC 6265's spaces and tabs, and what
    /// JavaScript's `trim` and Python's `str.strip` (on a Latin-1 header) also remove: control
    /// bytes, 0x85, 0xA0 (fuzz/README.md, finding 8).
    pub fn lenient_trim() -> &'static [u8] {
        static SET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        SET.get_or_init(|| (0u8..=0x20).chain([0x7f, 0x85, 0xa0]).collect())
    }

    /// The same, trimming only the bytes of `trim`.
    pub fn cookie_pairs_trimming(value: &[u8], trim: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let trimmed = |mut s: &[u8]| {
            while let [first, rest @ ..] = s {
                if !trim.contains(first) {
                    break;
                }
                s = rest;
            }
            while let [rest @ .., last] = s {
                if !trim.contains(last) {
                    break;
                }
                s = rest;
            }
            s.to_vec()
        };
        value
            .split(|b| *b == b';')
            .map(|pair| {
                let (name, value) = match pair.iter().position(|b| *b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &pair[pair.len()..]),
                };
                (trimmed(name), trimmed(value))
            })
            .collect()
    }

    /// "Forwarding" and "Filter state": a value set upstream or written is at most 8192 bytes
    /// with no control character but tab.
    pub fn value_safe(v: &str) -> bool {
        v.len() <= 8192 && !v.chars().any(|c| c.is_control() && c != '\t')
    }
}

/// The targets' bodies, one module each: `run(data)` checks one input. The libFuzzer targets
/// (fuzz_targets/) and the replay of the committed corpora (tests/replay.rs) both call them.
pub mod targets {
    pub mod canonical;
    pub mod config;
    pub mod decide;
    pub mod eddsa;
    pub mod es256;
    pub mod es384;
    pub mod headers;
    pub mod jwks;
    pub mod jwt;
    pub mod mcp;
    pub mod routes;
    pub mod rsa;
}
