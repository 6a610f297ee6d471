//! Config::from_json_with_env on arbitrary bytes, and on structured edits of the examples.
//!
//! Input: when the first byte is `{`, `[`, `"` or whitespace, the whole input is the document;
//! otherwise the first byte picks one of examples/ 000-004 and the rest is a list of edits (replace, delete, insert, rename, duplicate)
//! applied to its JSON tree, so that most documents get past serde into compile.
//!
//! Webhook secrets named by `env` resolve to a fixed secret (names containing MISSING resolve
//! to nothing).
//!
//! Properties:
//! - no panic; an error has a message;
//! - the error text never holds a secret of the input: a webhook secret value, a JWK's `k` (or
//!   private member), an API key digest, any string value holding the marker FUZZ_SECRET or
//!   64 hex digits, wherever it was put, nor the environment's secret; only object keys and
//!   the values that name something (error formats, webhooks, providers, template variables,
//!   principal fields, env names) may be echoed;
//! - a compiled configuration's Debug output holds no secret either;
//! - a compiled configuration is consistent: one route per document route, every index in
//!   range, upper-case methods, lower-case header names, no forwarded header that overwrites a
//!   credential; every denial it can render is a 4xx/5xx JSON body with a clean challenge;
//! - its routes are the document's as docs/configuration.md's "Route matching" reads them (fuzz/src/lib.rs
//!   `model`): only routes the model takes compile (no `;`, `?`, `#` or non-normalised path,
//!   prefix or template; HEAD only beside GET; a non-empty route name, metadata filter and key);
//!   methods upper-cased with HEAD dropped; a `path` kept less one trailing slash, a `prefix`
//!   less all of them, a bound route (`route_name`, `route_metadata`) as its binding over
//!   every path; `path_parameters` as
//!   written; the guarded headers (whose underscore twins are removed) are exactly
//!   Authorization, the key headers, the forwarded headers, the organisation and workspace
//!   headers;
//! - `filter_state` as docs/configuration.md reads it: a compiled configuration writes exactly
//!   `api_auth.<field>` for each listed field, in order, each a documented principal field
//!   (never `claim:`) listed once; its token cookies are exactly the providers' `from_cookies`.
use api_auth_filter::config::{Binding, Config};
use api_auth_filter::deny::{Denial, Reason};
use api_auth_filter::engine::deny_response;
use api_auth_filter::routes::{PathParameters, PathPattern};
use crate::model::{self, Kind, RouteSpec};
use crate::EXAMPLES;
use serde_json::{json, Value};

const ENV_SECRET: &str = "whsec_FUZZ_ENV_SECRET_7f3a";

fn env(name: &str) -> Option<String> {
    (!name.contains("MISSING")).then(|| ENV_SECRET.to_string())
}

#[derive(Default)]
struct Strings {
    /// Values in secret positions.
    secret: Vec<String>,
    /// Other values that look like secrets (marker, digest) and may never be echoed.
    marked: Vec<String>,
    /// Object keys and values that name something: these may be echoed.
    echoable: Vec<String>,
    /// Every other string value (Debug of a compiled configuration may show them).
    plain: Vec<String>,
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Path patterns: `*` any key, `[]` any index.
fn at(path: &[String], pattern: &[&str]) -> bool {
    path.len() == pattern.len() && path.iter().zip(pattern).all(|(p, q)| *q == "*" || p == q || (*q == "[]" && p == "[]"))
}

fn classify(v: &Value, path: &mut Vec<String>, out: &mut Strings) {
    match v {
        Value::String(s) => {
            let secret = at(path, &["webhooks", "*", "secrets", "[]", "value"])
                || at(path, &["providers", "*", "introspection", "client_secret", "value"])
                || at(path, &["api_keys", "keys", "[]", "sha256"])
                || (path.len() == 7
                    && at(&path[..6], &["providers", "*", "jwks", "inline", "keys", "[]"])
                    && ["k", "d", "p", "q", "dp", "dq", "qi"].contains(&path[6].as_str()));
            let echoable = [
                &["errors"][..],
                &["routes", "[]", "errors"],
                &["routes", "[]", "webhook"],
                &["routes", "[]", "auth", "providers", "[]"],
                &["routes", "[]", "auth", "permissions", "[]"],
                &["routes", "[]", "auth", "scopes", "[]"],
                &["routes", "[]", "match", "template"],
                &["forward", "headers", "*"],
                // Principal field names, as in forward.headers (fuzz/regressions/config/
                // filter-state-field-named-in-its-error).
                &["filter_state", "[]"],
                &["error_formats", "*", "base"],
                // serde reads a struct from an array by position: `[name]` is `{"base": name}`
                // (fuzz/regressions/config/secret-in-a-format-name).
                &["error_formats", "*", "[]"],
                &["webhooks", "*", "secrets", "[]", "env"],
                &["providers", "*", "introspection", "client_secret", "env"],
            ]
            .iter()
            .any(|p| at(path, p));
            if secret {
                out.secret.push(s.clone());
            } else if echoable {
                out.echoable.push(s.clone());
            } else {
                if s.contains("FUZZ_SECRET") || is_digest(s) {
                    out.marked.push(s.clone());
                }
                out.plain.push(s.clone());
            }
        }
        Value::Array(items) => {
            for item in items {
                path.push("[]".into());
                classify(item, path, out);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                out.echoable.push(k.clone());
                path.push(k.clone());
                classify(item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn leaked<'a>(text: &str, sensitive: impl Iterator<Item = &'a String>, allowed: &[&String]) -> Option<String> {
    sensitive
        .filter(|s| s.chars().count() >= 12 && text.contains(s.as_str()))
        .find(|s| !allowed.iter().any(|a| a.contains(s.as_str())))
        .cloned()
}

/// The compiled routes against the document's, read by the model.
fn check_routes(cfg: &Config, doc: &Value) {
    let doc_routes = doc.get("routes").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, (r, d)) in cfg.routes.iter().zip(&doc_routes).enumerate() {
        let spec = RouteSpec::of(d).unwrap_or_else(|| panic!("routes[{i}] compiled without path, prefix or template"));
        if let Err(why) = spec.valid() {
            panic!("routes[{i}] compiled, but the model refuses it: {why}");
        }
        assert_eq!(r.methods, model::methods(&spec.methods).unwrap(), "routes[{i}].match.methods");
        let binding = match spec.kind {
            Kind::RouteName => Some(Binding::Name(spec.pattern.clone())),
            Kind::RouteMetadata => spec.metadata.clone().map(|(filter, key, value)| Binding::Metadata { filter, key, value }),
            _ => None,
        };
        assert_eq!(r.binding, binding, "routes[{i}]: binding");
        match (&r.pattern, spec.kind) {
            (PathPattern::Exact(p), Kind::Path) => assert_eq!(p, model::drop_one_slash(&spec.pattern), "routes[{i}]"),
            (PathPattern::Prefix(p), Kind::Prefix) => assert_eq!(p, spec.pattern.trim_end_matches('/'), "routes[{i}]"),
            (PathPattern::Template(_), Kind::Template) => {}
            // A bound route covers every path.
            (PathPattern::Prefix(p), Kind::RouteName | Kind::RouteMetadata) => assert_eq!(p, "", "routes[{i}]"),
            (p, k) => panic!("routes[{i}]: a {k:?} compiled to {p:?}"),
        }
    }
    let strip = doc.get("path_parameters").and_then(Value::as_str) == Some("strip");
    assert_eq!(cfg.path_parameters, if strip { PathParameters::Strip } else { PathParameters::Reject });
    let mut guarded = vec!["authorization".to_string(), cfg.organization_header.clone(), cfg.workspace_header.clone()];
    guarded.extend(cfg.api_keys.iter().flat_map(|k| k.headers.iter().cloned()));
    guarded.extend(cfg.forward.headers.iter().map(|(n, _)| n.clone()));
    guarded.sort();
    guarded.dedup();
    let mut got = cfg.guarded_headers.clone();
    got.sort();
    assert_eq!(got, guarded, "guarded headers");
}

/// docs/configuration.md's default names (workspace_header, organization_header,
/// api_keys.headers, webhooks' header and prefix, correlation_id.header), in every compiled
/// configuration that does not name others.
const DEFAULT_NAMES: [&str; 6] = ["x-workspace-id", "x-organization-id", "x-api-key", "x-webhook-signature", "sha256=", "x-correlation-id"];

/// "Principal fields": what `filter_state` may name.
const PRINCIPAL_FIELDS: [&str; 13] =
    ["kind", "provider", "key_id", "subject", "email", "name", "organization", "workspaces", "workspace", "roles", "permissions", "scopes", "full_access"];

fn check_lists(cfg: &Config, doc: &Value) {
    let listed: Vec<&str> = doc.get("filter_state").and_then(Value::as_array).map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).collect());
    let written: Vec<&str> = cfg.filter_state.iter().map(|(n, _)| n.as_str()).collect();
    let want: Vec<String> = listed.iter().map(|f| format!("api_auth.{f}")).collect();
    assert_eq!(written, want, "filter_state");
    for (i, f) in listed.iter().enumerate() {
        assert!(PRINCIPAL_FIELDS.contains(f), "filter_state names {f:?}");
        assert!(!listed[..i].contains(f), "filter_state lists {f:?} twice");
    }
    let mut cookies: Vec<&str> = doc
        .get("providers")
        .and_then(Value::as_object)
        .map_or(Vec::new(), |ps| ps.values().filter_map(|p| p.get("from_cookies")?.as_array()).flatten().filter_map(Value::as_str).collect());
    cookies.sort_unstable();
    cookies.dedup();
    let mut got: Vec<&str> = cfg.cookie_names.iter().map(String::as_str).collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, cookies, "token cookies");
}

fn check_compiled(cfg: &Config, doc: Option<&Value>) {
    if let Some(doc) = doc {
        let n = doc.get("routes").and_then(Value::as_array).map_or(0, Vec::len);
        assert_eq!(cfg.routes.len(), n);
        check_routes(cfg, doc);
        check_lists(cfg, doc);
    }
    assert!(cfg.default_format < cfg.formats.len());
    for w in cfg.providers.windows(2) {
        assert!(w[0].name < w[1].name, "providers in name order");
    }
    for p in &cfg.providers {
        assert!(!p.algorithms.is_empty() && !p.rules.issuer.is_empty());
    }
    for (_, w) in &cfg.webhooks {
        assert!(!w.secrets.is_empty() && w.secrets.iter().all(|s| !s.is_empty()) && w.max_body_bytes > 0);
        assert_eq!(w.header, w.header.to_ascii_lowercase());
    }
    for r in &cfg.routes {
        assert!(r.format < cfg.formats.len());
        assert!(r.webhook.is_none_or(|w| w < cfg.webhooks.len()));
        if let Some(methods) = &r.methods {
            assert!(!methods.is_empty());
            assert!(methods.iter().all(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase())), "{methods:?}");
            assert!(!methods.iter().any(|m| m == "HEAD"), "HEAD is judged as GET: {methods:?}");
        }
        if let Some(a) = &r.auth {
            assert!(!a.kinds.is_empty());
            assert!(a.providers.as_ref().is_none_or(|p| p.iter().all(|i| *i < cfg.providers.len())));
            assert!(a.roles.iter().all(|r| !r.is_empty()));
        }
    }
    let key_headers: Vec<String> = cfg.api_keys.as_ref().map(|k| k.headers.clone()).unwrap_or_default();
    if let Some(k) = &cfg.api_keys {
        assert!(!k.prefixes.is_empty());
        assert!(k.headers.iter().all(|h| h != "authorization" && *h == h.to_ascii_lowercase()));
    }
    for (name, _) in &cfg.forward.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
        assert!(name != "authorization" && name != "host" && !name.starts_with(':') && !key_headers.contains(name), "{name}");
    }
    assert_eq!(cfg.workspace_header, cfg.workspace_header.to_ascii_lowercase());
    assert_eq!(cfg.organization_header, cfg.organization_header.to_ascii_lowercase());

    // Every denial of every route renders: a 4xx/5xx JSON body, a clean challenge.
    let routes: Vec<Option<usize>> = std::iter::once(None).chain((0..cfg.routes.len().min(8)).map(Some)).collect();
    for route in routes {
        for reason in Reason::ALL {
            let denial = Denial::with_detail(reason, "tools:a\"b\\c\r\nd");
            let resp = deny_response(cfg, route, &denial, Some("cid-1"));
            assert!((400..=599).contains(&resp.status), "{reason:?}: status {}", resp.status);
            serde_json::from_slice::<Value>(&resp.body).unwrap_or_else(|e| panic!("{reason:?}: body is not JSON: {e}"));
            assert!(resp.headers.iter().any(|(n, v)| n == "content-type" && v == "application/json"));
            for (n, v) in &resp.headers {
                assert!(!v.chars().any(char::is_control), "{n}: {v:?}");
            }
            if resp.status == 401 {
                assert!(resp.headers.iter().any(|(n, v)| n == "www-authenticate" && v.starts_with("Bearer")), "{reason:?}");
            }
        }
    }
}

fn check(bytes: &[u8]) {
    let doc: Option<Value> = serde_json::from_slice(bytes).ok();
    let mut strings = Strings::default();
    if let Some(d) = &doc {
        classify(d, &mut Vec::new(), &mut strings);
    }
    let input_has_env_secret = bytes.windows(ENV_SECRET.len()).any(|w| w == ENV_SECRET.as_bytes());
    match Config::from_json_with_env(bytes, &env) {
        Ok(cfg) => {
            check_compiled(&cfg, doc.as_ref());
            let debug = format!("{cfg:?}");
            assert!(input_has_env_secret || !debug.contains(ENV_SECRET), "Debug shows the environment's secret");
            // A configuration holds the documented default names whatever the document says:
            // a secret equal to one of them is not shown by Debug, the default is.
            let defaults: Vec<String> = DEFAULT_NAMES.iter().map(|d| d.to_string()).collect();
            let allowed: Vec<&String> = strings.echoable.iter().chain(&strings.plain).chain(&defaults).collect();
            if let Some(s) = leaked(&debug, strings.secret.iter(), &allowed) {
                panic!("Debug of a compiled configuration shows the secret {s:?}");
            }
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "empty error message at {:?}", e.path);
            let text = e.to_string();
            assert!(input_has_env_secret || !text.contains(ENV_SECRET), "error shows the environment's secret: {text}");
            if doc.is_some() {
                let allowed: Vec<&String> = strings.echoable.iter().collect();
                let text = without_schema_names(&text);
                let leak = leaked(&text, strings.secret.iter().chain(&strings.marked), &allowed).or_else(|| {
                    // Part of a marked value is a leak too.
                    (text.contains("FUZZ_SECRET") && !allowed.iter().any(|a| a.contains("FUZZ_SECRET"))).then(|| "FUZZ_SECRET".to_string())
                });
                if let Some(s) = leak {
                    // fuzz/regressions/config/: a quote or backtick in a value once ended the
                    // scrubbed part early (fixed in f627f14).
                    panic!("error text {text:?} holds the secret value {s:?}");
                }
            }
        }
    }
}

/// The error text less serde's closing ", expected ..." clause: that clause lists the
/// schema's own field and variant names, never the input's, so a secret that happens to equal
/// one of them (fuzz/regressions/config/secret-equal-to-a-field-name: "organization", found in
/// `organization_header`) is not echoed by it. The last such clause is serde's: a value holding
/// ", expected " earlier in the text is still checked.
fn without_schema_names(text: &str) -> String {
    let Some(start) = text.rfind(", expected ") else { return text.to_string() };
    let tail = &text[start..];
    let end = tail.find(" at line ").map_or(text.len(), |i| start + i);
    format!("{}{}", &text[..start], &text[end..])
}

// --- structured edits -------------------------------------------------------------------------

const FIELDS: &[&str] = &[
    "providers", "api_keys", "webhooks", "routes", "unmatched", "errors", "error_formats", "protected_resource", "forward",
    "correlation_id", "workspace_header", "organization_header", "issuer", "audiences", "authorized_parties", "algorithms",
    "jwks", "clock_skew_s", "require_exp", "max_lifetime_s", "reject_pending_sessions", "full_access", "claims", "remote",
    "inline", "cluster", "authority", "path", "timeout_ms", "refresh_s", "min_refetch_s", "keys", "subject", "email", "name",
    "organization", "workspaces", "roles", "permissions", "scopes", "prefixes", "headers", "lookup", "usage_report", "id",
    "sha256", "status", "expires_at", "cache_ttl_s", "negative_cache_ttl_s", "interval_s", "header", "prefix", "encoding",
    "secrets", "timestamp", "max_body_bytes", "env", "value", "tolerance_s", "match", "auth", "webhook", "methods", "template",
    "credentials", "workspace", "base", "reasons", "message", "body", "resource", "authorization_servers", "scopes_supported",
    "bearer_methods_supported", "resource_name", "resource_documentation", "paths", "metadata_url", "strip_credentials",
    "generate", "kty", "k", "kid", "alg", "crv", "x", "y", "n", "e", "use", "token_invalid", "insufficient_scope", "x-user",
    "path_parameters", "route_name", "route_metadata", "filter", "key", "filter_state", "from_cookies", "token_cache",
    "max_entries", "typ", "discovery", "introspection", "client_id", "client_secret",
];

const WORDS: &[&str] = &[
    "none", "jwt", "api_key", "GET", "post", "/", "/a/{x}", "/f/{rest...}", "/a/{x}/{x}", "{x}", "tools:{x}", "tools:{tool}",
    "*", "", "detail", "error", "openai", "anthropic", "HS256", "RS256", "EdDSA", "none", "https://i.example", "http://localhost:1",
    "x-api-key", "Authorization", "cm_", "subject", "key_id", "claim:a.b", "claim:", "whsec_FUZZ_SECRET",
    "`whsec_FUZZ_SECRET_in_backticks", "\"whsec_FUZZ_SECRET_in_quotes", "whsec_FUZZ_SECRET\u{1}ctl", "FUZZ_MISSING", "HOOK",
    "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a", "2025-01-01T00:00:00Z", "allow", "deny", "hex",
    "base64", "oct", "RSA", "P-256", "AQAB", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "x-workspace-id", ":path",
    "token_invalid", "insufficient_scope", "{message}", "{scope}", "strip", "reject", "HEAD", "head", "/a;x", "/a/",
    "/v1/mcp/", "api_auth", "__session", "kind", "organization", "full_access", "claim:sub", "https://app.example",
    "opaque", "/oauth/introspect",
];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn get_mut<'v>(v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

fn pick(root: &Value, input: &mut Bytes<'_>) -> Vec<Step> {
    let mut path = Vec::new();
    let mut node = root;
    for _ in 0..10 {
        let Some(b) = input.byte() else { break };
        if b % 4 == 0 {
            break;
        }
        let i = b as usize / 4;
        match node {
            Value::Object(m) if !m.is_empty() => {
                let (k, v) = m.iter().nth(i % m.len()).unwrap();
                path.push(Step::Key(k.clone()));
                node = v;
            }
            Value::Array(a) if !a.is_empty() => {
                path.push(Step::Index(i % a.len()));
                node = &a[i % a.len()];
            }
            _ => break,
        }
    }
    path
}

fn word(input: &mut Bytes<'_>) -> Value {
    Value::from(WORDS[input.byte().unwrap_or(0) as usize % WORDS.len()])
}

fn value(input: &mut Bytes<'_>) -> Value {
    match input.byte().unwrap_or(0) % 8 {
        0 | 1 => word(input),
        2 => {
            let n = input.byte().unwrap_or(0) as usize % 24;
            Value::from(String::from_utf8_lossy(input.take(n)).into_owned())
        }
        3 => {
            let numbers = [json!(0), json!(1), json!(-1), json!(200), json!(65536), json!(u64::MAX), json!(1e300), json!(1.5)];
            numbers[input.byte().unwrap_or(0) as usize % numbers.len()].clone()
        }
        4 => [Value::Null, Value::Bool(true), Value::Bool(false)][input.byte().unwrap_or(0) as usize % 3].clone(),
        5 => json!([word(input)]),
        6 => json!({}),
        _ => json!([]),
    }
}

fn edit(doc: &mut Value, input: &mut Bytes<'_>) {
    let Some(op) = input.byte() else { return };
    let path = pick(doc, input);
    match op % 8 {
        0..=2 => {
            let v = value(input);
            if let Some(node) = get_mut(doc, &path) {
                *node = v;
            }
        }
        3 => {
            // Delete the node from its parent.
            let Some((last, parent)) = path.split_last() else { return };
            match (get_mut(doc, parent), last) {
                (Some(Value::Object(m)), Step::Key(k)) => {
                    m.remove(k);
                }
                (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
                    a.remove(*i);
                }
                _ => {}
            }
        }
        4 => {
            let key = FIELDS[input.byte().unwrap_or(0) as usize % FIELDS.len()].to_string();
            let v = value(input);
            if let Some(Value::Object(m)) = get_mut(doc, &path) {
                m.insert(key, v);
            }
        }
        5 => {
            // Rename a key, keeping the value.
            let key = FIELDS[input.byte().unwrap_or(0) as usize % FIELDS.len()].to_string();
            let Some((Step::Key(old), parent)) = path.split_last() else { return };
            if let Some(Value::Object(m)) = get_mut(doc, parent) {
                if let Some(v) = m.remove(old) {
                    m.insert(key, v);
                }
            }
        }
        6 => {
            // Duplicate an array element, or wrap the node in an array.
            let Some(node) = get_mut(doc, &path) else { return };
            match node {
                Value::Array(a) if !a.is_empty() => {
                    let copy = a[0].clone();
                    a.push(copy);
                }
                other => *other = Value::Array(vec![other.clone()]),
            }
        }
        _ => {
            // Move a copy of the node somewhere else.
            let Some(copy) = get_mut(doc, &path).map(|v| v.clone()) else { return };
            let target = pick(doc, input);
            if let Some(node) = get_mut(doc, &target) {
                *node = copy;
            }
        }
    }
}

fn structured(selector: u8, rest: &[u8]) -> Vec<u8> {
    let mut doc: Value = serde_json::from_str(EXAMPLES[selector as usize % EXAMPLES.len()]).expect("example");
    // Literal secrets beside the env ones, so that they travel with the edits.
    if let Some(Value::Object(hooks)) = doc.get_mut("webhooks") {
        for (_, w) in hooks.iter_mut() {
            if let Some(Value::Array(secrets)) = w.get_mut("secrets") {
                secrets.push(json!({ "value": "whsec_FUZZ_SECRET_literal" }));
            }
        }
    }
    let mut input = Bytes(rest);
    let mut edits = 0;
    while !input.0.is_empty() && edits < 16 {
        edit(&mut doc, &mut input);
        edits += 1;
    }
    serde_json::to_vec(&doc).expect("serialise")
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    match data.first() {
        None => {}
        Some(b'{' | b'[' | b'"' | b' ' | b'\t' | b'\n' | b'\r') => check(data),
        Some(&selector) => check(&structured(selector, &data[1..])),
    }
}
