//! Route patterns and matching: routes::Template, PathPattern, strip_query, is_normalized,
//! canonical_path, canonical_method, and the route choice of engine::decide (methods included)
//! on a configuration built from the input.
//!
//! Input: `\n`-separated lines: the pattern, the request path (query string allowed), the
//! route's methods (comma-separated; empty for any), the request method, and comma-separated
//! values to fill a template's variables with. A hash of the input picks the pattern's kind
//! (path, prefix, template) and `path_parameters` (reject, strip).
//!
//! The expected answers come from fuzz/src/lib.rs `model`, an independent reading of
//! docs/configuration.md's "Route matching" (never from the code under test).
//!
//! Properties:
//! - strip_query returns the path up to the first `?` or `#`;
//! - is_normalized, canonical_path (both `path_parameters`) and canonical_method answer as the
//!   model: `;` parameters (and `%3B`) refused, or removed with `%3B` kept as text (a segment
//!   that was only a parameter refused, but as the last one), one trailing slash dropped, HEAD
//!   read as GET, lower case refused;
//! - a `path` pattern matches exactly its path less one trailing slash; a `prefix` pattern
//!   exactly the paths whose leading segments it is (`/v1/mcp` never covers `/v1/mcp-admin`,
//!   `/` covers all);
//! - Template::parse accepts exactly the templates of docs/configuration.md (checked against an
//!   independent reading), PathPattern::template the same less one trailing slash; a template
//!   without variables matches like an exact path; its matches on a canonical path are the
//!   model's, captures included;
//! - a match captures one value per variable; `{name}` captures are non-empty and never hold
//!   '/'; substituting the captures back into the template gives the path again;
//! - a path built by filling a template's variables matches it, with exactly those captures,
//!   also with a query string;
//! - the configuration compiles exactly when the model takes the route (pattern, methods:
//!   letters, HEAD only with GET); decide then refuses what the model refuses (400
//!   path_not_normalized / method_invalid), allows the public route exactly when the
//!   canonical method is listed (or none are) and the pattern matches the canonical path,
//!   and answers 404 otherwise;
//! - a scope naming a template variable resolves only to a plain name.
use api_auth_filter::config::{Config, Requirement};
use api_auth_filter::deny::Reason;
use api_auth_filter::engine::{decide, inline_keys, no_lookup, Decision, Env, NoCache, Request};
use api_auth_filter::routes::{
    canonical_method, canonical_path, is_normalized, is_plain_name, strip_query, PathParameters, PathPattern, Template,
};
use crate::model::{self, Chosen, Kind, Part, RouteSpec};
use crate::{fnv, lines, text};
use serde_json::json;

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

/// The canonical-form functions against the model.
fn check_canonical(path: &str, method: &str) {
    let sp = strip_query(path);
    assert_eq!(sp, model::strip_query(path));
    assert_eq!(is_normalized(sp), model::normalized(sp), "is_normalized({sp:?})");
    if model::normalized(sp) {
        for (params, strip) in [(PathParameters::Reject, false), (PathParameters::Strip, true)] {
            let got = canonical_path(sp, params);
            let want = model::canonical_path(sp, strip);
            assert_eq!(got.as_deref(), want.as_deref(), "canonical_path({sp:?}, {params:?})");
        }
    }
    assert_eq!(canonical_method(method).map(str::to_string), model::canonical_method(method), "canonical_method({method:?})");
}

fn check_patterns(pattern: &str, path: &str, fills_line: &str) {
    let sp = strip_query(path);
    let canon = model::canonical_path(sp, true).filter(|_| model::normalized(sp));
    let probes: Vec<&str> = [Some(path), Some(sp), canon.as_deref()].into_iter().flatten().collect();
    let exact = PathPattern::exact(pattern);
    let prefix = PathPattern::prefix(pattern);
    for x in &probes {
        assert_eq!(exact.matches(x), (model::drop_one_slash(pattern) == *x).then(Vec::new), "path {pattern:?} vs {x:?}");
        assert_eq!(prefix.matches(x), model::prefix_covers(pattern, x).then(Vec::new), "prefix {pattern:?} vs {x:?}");
    }
    if !pattern.contains(['?', '#']) {
        let q = format!("{pattern}?{fills_line}");
        assert_eq!(exact.matches(model::drop_one_slash(strip_query(&q))), Some(vec![]), "query string changed the match");
    }

    // PathPattern::template: the grammar less one trailing slash, and the model's matches.
    let parts = model::read_template(model::drop_one_slash(pattern));
    match (PathPattern::template(pattern), &parts) {
        (Ok((tpl, names)), Some(parts)) => {
            let vars: Vec<&str> = parts
                .iter()
                .filter_map(|p| match p {
                    Part::One(n) | Part::Rest(n) => Some(n.as_str()),
                    Part::Literal(_) => None,
                })
                .collect();
            assert_eq!(names, vars);
            for x in &probes {
                let got = tpl.matches(x).map(|c| c.into_iter().map(str::to_string).collect::<Vec<_>>());
                assert_eq!(got, model::template_match(parts, x), "template {pattern:?} vs {x:?}");
                if vars.is_empty() {
                    assert_eq!(got.is_some(), *x == model::drop_one_slash(pattern), "variable-free template {pattern:?} vs {x:?}");
                }
            }
        }
        (Err(e), None) => assert!(!e.is_empty()),
        (Ok(_), None) => panic!("template {pattern:?} accepted"),
        (Err(e), Some(_)) => panic!("template {pattern:?} refused: {e}"),
    }
}

/// Template::parse and Template::matches on the raw text (no trailing-slash handling).
fn check_template(pattern: &str, path: &str, fills: &[&str]) -> Option<Vec<String>> {
    let parsed = Template::parse(pattern);
    let mine = model::read_template(pattern);
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
    if !pattern.contains(['?', '#']) {
        let with_query = format!("{built}?{}", fills.join(","));
        assert_eq!(tpl.matches(strip_query(&with_query)), Some(refs), "query string changed the match");
    }
    got.map(|c| c.into_iter().map(str::to_string).collect())
}

fn check_decide(pattern: &str, path: &str, methods: Option<Vec<&str>>, method: &str, choice: u64, caps: Option<Vec<String>>) {
    let kind = [Kind::Path, Kind::Prefix, Kind::Template][choice as usize % 3];
    let strip = (choice >> 8) & 1 == 1;
    let mut matcher = json!({ kind.key(): pattern });
    if let Some(m) = &methods {
        matcher["methods"] = json!(m);
    }
    let spec = RouteSpec {
        methods: methods.as_ref().map(|m| m.iter().map(|s| s.to_string()).collect()),
        kind,
        pattern: pattern.to_string(),
        metadata: None,
    };
    let valid = spec.valid();
    let scope = match valid.as_ref().ok().and_then(|names| names.first()) {
        Some(n) => format!("s:{{{n}}}"),
        None => "s".to_string(),
    };
    let doc = json!({
        "routes": [
            { "match": matcher, "auth": "none" },
            { "match": matcher, "auth": { "scopes": [scope] } }
        ],
        "path_parameters": if strip { "strip" } else { "reject" },
    });
    let compiled = Config::from_json(&serde_json::to_vec(&doc).unwrap());
    let cfg = match (compiled, &valid) {
        (Ok(cfg), Ok(_)) => cfg,
        (Err(_), Err(_)) => return,
        (Ok(_), Err(why)) => panic!("{doc} compiled ({why})"),
        (Err(e), Ok(_)) => panic!("{doc} refused: {e}"),
    };
    let keys = inline_keys(&cfg);
    let env = Env { now: 0, keys: &keys, random: [0; 16], key_lookup: &no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &NoCache, signatures: &api_auth_filter::jwt::OwnCode };
    let headers: Vec<(String, Vec<u8>)> = Vec::new();
    let decision = decide(&cfg, &Request { method, path, headers: &api_auth_filter::credentials::view(&headers) }, &env);

    let (cm, cp) = match model::target(method, path, strip) {
        Ok(t) => t,
        Err(reason) => {
            match &decision {
                Decision::Deny(d) => assert_eq!((d.denial.reason, d.route, d.response.status), (reason, None, 400), "{method} {path:?}"),
                other => panic!("{method} {path:?} must be refused ({reason:?}): {other:?}"),
            }
            return;
        }
    };
    let matched = spec.matches(&cm, &cp, &Chosen::default()).is_some();
    match &decision {
        Decision::Allow(a) => {
            assert!(matched, "{method} {path} (as {cm} {cp}) allowed by {doc}");
            assert_eq!(a.route, Some(0));
            assert!(a.principal.is_none());
        }
        Decision::Deny(d) => {
            assert!(!matched, "{method} {path} (as {cm} {cp}) denied ({:?}) by {doc}", d.denial.reason);
            assert_eq!((d.denial.reason, d.route, d.response.status), (Reason::RouteNotFound, None, 404));
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

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    let l = lines(data);
    let get = |i: usize| l.get(i).map(|b| text(b)).unwrap_or_default();
    let (pattern, path, methods_line, method, fills_line) = (get(0), get(1), get(2), get(3), get(4));
    let method = if l.len() > 3 { method } else { "GET".to_string() };

    let sp = strip_query(&path);
    assert!(!sp.contains(['?', '#']) && path.starts_with(sp));
    if !path.contains(['?', '#']) {
        assert_eq!(sp, path);
    }
    check_canonical(&path, &method);
    check_patterns(&pattern, &path, &fills_line);

    let fills: Vec<&str> = fills_line.split(',').collect();
    let caps = check_template(&pattern, &path, &fills);
    let methods = (!methods_line.is_empty()).then(|| methods_line.split(',').collect::<Vec<_>>());
    check_decide(&pattern, &path, methods, &method, fnv(data), caps);
}
