//! Route patterns and matching: routes::Template, PathPattern, strip_query, and the route choice
//! of engine::decide (methods included) on a configuration built from the input.
//!
//! Input: `\n`-separated lines: the pattern, the request path (query string allowed), the
//! route's methods (comma-separated; empty for any), the request method, and comma-separated
//! values to fill a template's variables with.
//!
//! Properties:
//! - strip_query returns the path up to the first `?` or `#`;
//! - a `path` route matches exactly its path, query string ignored; a `prefix` route matches
//!   exactly the paths that start with it;
//! - Template::parse accepts exactly the templates of CONFIG.md (checked against an independent
//!   reading), and a template without variables matches like an exact path;
//! - a match captures one value per variable; `{name}` captures are non-empty and never hold
//!   '/'; substituting the captures back into the template gives the path again;
//! - a path built by filling a template's variables matches it, with exactly those captures;
//! - decide refuses a path that is not normalised (400), and allows a public route exactly when the method is listed (or none are) and the
//!   pattern matches the path less its query string, and answers 404 otherwise;
//! - a scope naming a template variable resolves only to a plain name.
#![no_main]

use api_auth_filter::config::{Config, Requirement};
use api_auth_filter::deny::Reason;
use api_auth_filter::engine::{decide, inline_keys, no_lookup, Decision, Env, NoCache, Request};
use api_auth_filter::routes::{is_normalized, is_plain_name, strip_query, PathPattern, Template};
use api_auth_filter_fuzz::{fnv, lines, text};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    One(String),
    Rest(String),
}

/// CONFIG.md's template grammar, read independently of routes.rs.
fn read_template(t: &str) -> Option<Vec<Part>> {
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
        if !is_plain_name(name) || names.contains(&name) || (rest_var && i + 1 != parts.len()) {
            return None;
        }
        names.push(name);
        out.push(if rest_var { Part::Rest(name.into()) } else { Part::One(name.into()) });
    }
    Some(out)
}

fn substitute(parts: &[Part], values: &[&str]) -> String {
    let mut vars = values.iter();
    let segs: Vec<String> = parts
        .iter()
        .map(|p| match p {
            Part::Literal(l) => l.clone(),
            Part::One(_) | Part::Rest(_) => vars.next().expect("one value per variable").to_string(),
        })
        .collect();
    format!("/{}", segs.join("/"))
}

fn check_template(pattern: &str, path: &str, fills: &[&str]) -> Option<Vec<String>> {
    let parsed = Template::parse(pattern);
    let mine = read_template(pattern);
    let (tpl, names) = match (parsed, mine.clone()) {
        (Ok(p), Some(_)) => p,
        (Err(e), None) => {
            assert!(!e.is_empty());
            return None;
        }
        (Ok(_), None) => panic!("template {pattern:?} accepted"),
        (Err(e), Some(_)) => panic!("template {pattern:?} refused: {e}"),
    };
    let parts = mine.unwrap();
    let vars: Vec<&Part> = parts.iter().filter(|p| !matches!(p, Part::Literal(_))).collect();
    assert_eq!(names.len(), vars.len());
    for (n, v) in names.iter().zip(&vars) {
        assert!(matches!(v, Part::One(m) | Part::Rest(m) if m == n));
    }

    let sp = strip_query(path);
    let got = tpl.matches(sp);
    if vars.is_empty() {
        assert_eq!(got.is_some(), sp == pattern, "variable-free template {pattern:?} vs {sp:?}");
    }
    if let Some(caps) = &got {
        assert_eq!(caps.len(), vars.len());
        for (c, v) in caps.iter().zip(&vars) {
            assert!(!c.is_empty(), "empty capture for {v:?}");
            if matches!(v, Part::One(_)) {
                assert!(!c.contains('/'), "{{name}} captured {c:?}");
            }
        }
        assert_eq!(substitute(&parts, caps), sp, "captures do not rebuild the path");
    }

    // A path made from the template matches it, with exactly the values put in.
    let values: Vec<String> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let raw = fills.get(i).copied().unwrap_or("v");
            let clean: String = raw.chars().filter(|c| *c != '?' && *c != '#' && (matches!(v, Part::Rest(_)) || *c != '/')).collect();
            if clean.is_empty() { format!("v{i}") } else { clean }
        })
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let built = substitute(&parts, &refs);
    assert_eq!(tpl.matches(&built), Some(refs.clone()), "{pattern:?} vs built {built:?}");
    // (Template::parse takes '?' and '#' in literals, which can then never match a path less
    // its query string: config.rs refuses them for `path` and `prefix` but not for `template`.)
    if !pattern.contains(['?', '#']) {
        let with_query = format!("{built}?{}", fills.join(","));
        assert_eq!(tpl.matches(strip_query(&with_query)), Some(refs), "query string changed the match");
    }
    got.map(|c| c.into_iter().map(str::to_string).collect())
}

fn check_decide(pattern: &str, path: &str, methods: Option<Vec<&str>>, method: &str, kind: u64, caps: Option<Vec<String>>) {
    let kind = ["path", "prefix", "template"][kind as usize % 3];
    let mut matcher = json!({ kind: pattern });
    if let Some(m) = &methods {
        matcher["methods"] = json!(m);
    }
    let names = if kind == "template" { Template::parse(pattern).map(|(_, n)| n).unwrap_or_default() } else { vec![] };
    let scope = match names.first() {
        Some(n) => format!("s:{{{n}}}"),
        None => "s".to_string(),
    };
    let doc = json!({
        "routes": [
            { "match": matcher, "auth": "none" },
            { "match": matcher, "auth": { "scopes": [scope] } }
        ]
    });
    let Ok(cfg) = Config::from_json(&serde_json::to_vec(&doc).unwrap()) else { return };
    let keys = inline_keys(&cfg);
    let env = Env { now: 0, keys: &keys, random: [0; 16], key_lookup: &no_lookup, verified: &NoCache };
    let headers: Vec<(String, Vec<u8>)> = Vec::new();
    let decision = decide(&cfg, &Request { method, path, headers: &headers }, &env);

    let sp = strip_query(path);
    if !is_normalized(sp) {
        match &decision {
            Decision::Deny(d) => assert_eq!((d.denial.reason, d.route, d.response.status), (Reason::PathNotNormalized, None, 400)),
            other => panic!("{path:?} is not normalised: {other:?}"),
        }
        return;
    }
    let method_ok = methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m.to_ascii_uppercase() == method));
    let pattern_ok = match kind {
        "path" => sp == pattern,
        "prefix" => sp.starts_with(pattern),
        _ => cfg.routes[0].pattern.matches(sp).is_some(),
    };
    match &decision {
        Decision::Allow(a) => {
            assert!(method_ok && pattern_ok, "{method} {path} allowed by {doc}");
            assert_eq!(a.route, Some(0));
            assert!(a.principal.is_none());
        }
        Decision::Deny(d) => {
            assert!(!(method_ok && pattern_ok), "{method} {path} denied ({:?}) by {doc}", d.denial.reason);
            assert_eq!(d.denial.reason, Reason::RouteNotFound);
            assert_eq!(d.response.status, 404);
        }
        other => panic!("unexpected {other:?}"),
    }
    if let (Some(caps), Some(auth)) = (caps, &cfg.routes[1].auth) {
        let refs: Vec<&str> = caps.iter().map(String::as_str).collect();
        if let Some(req @ Requirement::Template { .. }) = auth.scopes.first() {
            match req.resolve(&refs) {
                Ok(s) => {
                    assert!(is_plain_name(refs[0]), "resolved with capture {:?}", refs[0]);
                    assert_eq!(s, format!("s:{}", refs[0]));
                }
                Err(_) => assert!(!is_plain_name(refs[0])),
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let l = lines(data);
    let get = |i: usize| l.get(i).map(|b| text(b)).unwrap_or_default();
    let (pattern, path, methods_line, method, fills_line) = (get(0), get(1), get(2), get(3), get(4));
    let method = if l.len() > 3 { method } else { "GET".to_string() };

    let sp = strip_query(&path);
    assert!(!sp.contains(['?', '#']) && path.starts_with(sp));
    if !path.contains(['?', '#']) {
        assert_eq!(sp, path);
    }
    assert_eq!(PathPattern::Exact(pattern.clone()).matches(&path).is_some(), path == pattern);
    assert_eq!(PathPattern::Prefix(pattern.clone()).matches(&path).is_some(), path.starts_with(pattern.as_str()));
    if !pattern.contains(['?', '#']) {
        let q = format!("{pattern}?{fills_line}");
        assert_eq!(PathPattern::Exact(pattern.clone()).matches(strip_query(&q)), Some(vec![]));
    }

    let fills: Vec<&str> = fills_line.split(',').collect();
    let caps = check_template(&pattern, &path, &fills);
    let methods = (!methods_line.is_empty()).then(|| methods_line.split(',').collect::<Vec<_>>());
    check_decide(&pattern, &path, methods, &method, fnv(data), caps);
});
