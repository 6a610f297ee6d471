//! engine::decide with the configurations of examples 002 (static API keys, an inline HS256
//! provider) and 003 (scoped keys, a remote JWKS, protected-resource metadata), inline keys
//! only (engine::inline_keys, engine::no_lookup, engine::NoCache), on arbitrary requests.
//!
//! Input: the method line, the path line (query string allowed), then `name: value` header
//! lines (values raw bytes). Every input is decided by both configurations.
//!
//! Properties:
//! - decide never panics and never waits (nothing can be waited for here);
//! - a path that is not normalised is refused first (400 path_not_normalized);
//! - the route is the first whose methods and pattern match the path less its query string;
//!   no route: 404 route_not_found;
//! - a request without any credential (no Authorization, no key header) is never allowed on a
//!   route that is not public: it gets 401 credentials_missing;
//! - an allowed request on a non-public route has a principal, of a kind it presented: an API
//!   key whose digest is in the table and active, or a JWT whose signature verifies with the
//!   provider's inline keys; a public route allows without a principal;
//! - every denial is a 4xx/5xx JSON body, with a `Bearer` challenge on each 401;
//! - an allowed request only removes headers it has, and sets no header value that could end
//!   a header line.
#![no_main]

use api_auth_filter::apikeys;
use api_auth_filter::config::{Config, KeySource, KeyStatus};
use api_auth_filter::deny::Reason;
use api_auth_filter::engine::{decide, inline_keys, no_lookup, Decision, Env, KeySlot, NoCache, Request};
use api_auth_filter::jwt;
use api_auth_filter::principal::Kind;
use api_auth_filter::routes::{is_normalized, strip_query};
use api_auth_filter_fuzz::{header, lines, text, EXAMPLES, NOW};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Config holds Rc (one copy per worker in the filter): one per thread here.
fn configs() -> &'static [(Config, Vec<KeySlot>); 2] {
    thread_local! {
        static C: &'static [(Config, Vec<KeySlot>); 2] = Box::leak(Box::new({
            let load = |text: &str| {
                let cfg = Config::from_json(text.as_bytes()).expect("example compiles");
                let keys = inline_keys(&cfg);
                (cfg, keys)
            };
            [load(EXAMPLES[2]), load(EXAMPLES[3])]
        }));
    }
    C.with(|c| *c)
}

fn route_of(cfg: &Config, method: &str, path: &str) -> Option<usize> {
    let path = strip_query(path);
    cfg.routes
        .iter()
        .position(|r| r.methods.as_ref().is_none_or(|m| m.iter().any(|m| m == method)) && r.pattern.matches(path).is_some())
}

fn check(cfg: &Config, keys: &[KeySlot], method: &str, path: &str, headers: &[(String, Vec<u8>)]) {
    let env = Env { now: NOW, keys, random: [7; 16], key_lookup: &no_lookup, verified: &NoCache };
    let decision = decide(cfg, &Request { method, path, headers }, &env);
    let has = |name: &str| headers.iter().any(|(n, _)| n == name);
    let key_headers: &[String] = cfg.api_keys.as_ref().map_or(&[], |k| k.headers.as_slice());
    let credential_free = !has("authorization") && !key_headers.iter().any(|h| has(h));
    let metadata = cfg.protected_resource.as_ref().is_some_and(|p| p.serves(method, strip_query(path)));
    let route = route_of(cfg, method, path);
    let public = route.is_some_and(|i| cfg.routes[i].auth.is_none());

    if !is_normalized(strip_query(path)) {
        // Judged before anything else: never allowed, whatever the credentials.
        match &decision {
            Decision::Deny(d) => {
                assert_eq!((d.denial.reason, d.route, d.response.status), (Reason::PathNotNormalized, None, 400), "{path:?}");
            }
            other => panic!("{path:?} is not normalised: {other:?}"),
        }
        return;
    }
    match &decision {
        Decision::Wait(w) => panic!("waited for {w:?} with nothing to wait for"),
        Decision::Respond(r) => {
            assert!(metadata, "{method} {path}: answered by the filter");
            assert_eq!(r.status, 200);
            serde_json::from_slice::<Value>(&r.body).expect("metadata is JSON");
        }
        Decision::Allow(a) => {
            assert!(!metadata);
            assert_eq!(a.route, route, "{method} {path}: allowed on another route");
            assert!(route.is_some(), "{method} {path}: allowed without a route (unmatched is deny)");
            if public {
                assert!(a.principal.is_none());
            } else {
                assert!(!credential_free, "{method} {path}: allowed without any credential on a protected route");
                let p = a.principal.as_ref().expect("a protected route allows a principal");
                match p.kind {
                    Kind::ApiKey => {
                        let table = &cfg.api_keys.as_ref().expect("keys configured").by_digest;
                        let presented: Vec<&[u8]> = headers
                            .iter()
                            .filter(|(n, _)| n == "authorization" || key_headers.contains(n))
                            .map(|(n, v)| {
                                let v = v.trim_ascii();
                                if n == "authorization" { v.get(6..).unwrap_or_default().trim_ascii() } else { v }
                            })
                            .collect();
                        let entry = presented
                            .iter()
                            .filter_map(|k| table.get(&apikeys::digest(k)))
                            .find(|e| Some(&e.id) == p.key_id.as_ref())
                            .expect("the principal's key was presented and is in the table");
                        assert_eq!(entry.status, KeyStatus::Active);
                        assert!(entry.expires_at.is_none_or(|t| t > NOW));
                    }
                    Kind::Jwt => {
                        let token = headers
                            .iter()
                            .filter(|(n, _)| n == "authorization")
                            .filter_map(|(_, v)| std::str::from_utf8(v.trim_ascii().get(6..)?).ok())
                            .map(str::trim)
                            .find_map(|t| jwt::decode(t).ok())
                            .expect("a JWT principal presented a JWT");
                        let provider = cfg.providers.iter().find(|pr| Some(&pr.name) == p.provider.as_ref()).expect("provider");
                        let KeySource::Inline(set) = &provider.keys else { panic!("allowed with remote keys it does not have") };
                        assert_eq!(jwt::verify_signature(&token, set, &provider.algorithms), Ok(()));
                        let claims = token.claims().expect("claims");
                        assert!(jwt::validate_claims(&claims, &provider.rules, NOW).is_ok());
                    }
                }
            }
            for r in &a.remove {
                assert!(has(r), "removes {r} the request does not have");
            }
            for (n, v) in &a.set {
                assert!(!v.contains(['\r', '\n', '\0']) && v.len() <= 8192, "{n}: {v:?}");
            }
        }
        Decision::Deny(d) => {
            assert!(!metadata);
            assert_eq!(d.route, route);
            match route {
                None => assert_eq!(d.denial.reason, Reason::RouteNotFound),
                Some(_) if credential_free => {
                    assert!(!public);
                    assert_eq!(d.denial.reason, Reason::CredentialsMissing, "{method} {path}");
                }
                Some(_) => assert!(!public, "{method} {path}: a public route denied ({:?})", d.denial.reason),
            }
            let r = &d.response;
            assert!((400..=599).contains(&r.status));
            serde_json::from_slice::<Value>(&r.body).expect("denial body is JSON");
            if r.status == 401 {
                assert!(r.headers.iter().any(|(n, v)| n == "www-authenticate" && v.starts_with("Bearer")));
            }
            for (n, v) in &r.headers {
                assert!(!v.chars().any(char::is_control), "{n}: {v:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let l = lines(data);
    let method = l.first().map(|m| text(m)).unwrap_or_default();
    let path = l.get(1).map(|p| text(p)).unwrap_or_default();
    let headers: Vec<(String, Vec<u8>)> = l.iter().skip(2).map(|h| header(h)).collect();
    for (cfg, keys) in configs() {
        check(cfg, keys, &method, &path, &headers);
    }
});
