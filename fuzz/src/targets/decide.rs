//! engine::decide with the configurations of examples 002 (static API keys, an inline HS256
//! provider, here also reading tokens from the `__session` cookie with one authorized party)
//! and 003 (scoped keys, a remote JWKS, protected-resource metadata, here also writing
//! principal fields to filter state), inline keys only (engine::inline_keys,
//! engine::no_lookup, engine::NoCache), on arbitrary requests.
//!
//! Input: the method line, the path line (query string allowed), then `name: value` header
//! lines (values raw bytes). Every input is decided by both configurations.
//!
//! The route a request should get is computed by fuzz/src/lib.rs `model` (an independent
//! reading of docs/configuration.md's "Route matching") from the example documents themselves, not from
//! the compiled routes.
//!
//! Properties:
//! - decide never panics and never waits (nothing can be waited for here);
//! - what the model refuses is refused first, whatever the credentials: a path that is not
//!   normalised or carries `;` parameters or `%3B` (`path_parameters` is the default, reject) is 400
//!   path_not_normalized, a method with a lower-case letter 400 method_invalid;
//! - the metadata document answers exactly GET and HEAD of its path (one trailing slash
//!   ignored);
//! - the route is the first whose methods (HEAD read as GET) and pattern match the canonical
//!   path (one trailing slash dropped, prefixes on segment boundaries); no route: 404
//!   route_not_found;
//! - a request without any credential (no Authorization, no key header) is never allowed on a
//!   route that is not public: it gets 401 credentials_missing;
//! - an allowed request on a non-public route has a principal, of a kind it presented: an API
//!   key whose digest is in the table and active, or a JWT whose signature verifies with the
//!   provider's inline keys; a public route allows without a principal;
//! - an organisation header on an allowed request names the principal's own organisation (the
//!   key's, or the token's claim) or one the principal lists, also for `full_access`;
//! - every denial is 4xx/5xx with a `Bearer` challenge on each 401 and the response details
//!   `api_auth.<reason>`; exactly when the request is gRPC as Envoy reads it (content type
//!   `application/grpc` or `application/grpc+...`, repeated ones joined with `,`;
//!   fuzz/src/lib.rs `answers`) it is the gRPC form: grpc-status from the HTTP status by the
//!   documented table, the plain message, no JSON; otherwise a JSON body with
//!   `content-type: application/json` and no grpc-status;
//! - token cookies: a request with a `__session` cookie is not credential-free; a token from
//!   the cookie (no Authorization header) allows a non-GET/HEAD/OPTIONS method only with one
//!   `Origin` among the provider's authorized parties, and `origin_forbidden` is answered only
//!   to such a request without one; an allowed request with the cookie has its Cookie header
//!   removed, and any Cookie set again holds no `__session`;
//! - filter state: nothing without `filter_state` (002) or without a principal; otherwise only
//!   `api_auth.<field>` of the listed fields, each once, values at most 8192 bytes without a
//!   control character but tab, `kind` the principal's kind, `key_id` the presented key's id;
//! - an allowed request only removes headers it has, removes every underscore twin of a
//!   credential, forwarded, organisation or workspace header (`x_api_key`), and sets no header
//!   value that could end a header line, but the Cookie it passes on: only the request's own
//!   cookie pairs (read as lossy UTF-8: finding 7), no control byte its Cookie headers did not
//!   hold (fuzz/README.md, finding 5).
use api_auth_filter::apikeys;
use api_auth_filter::config::{Config, KeySource, KeyStatus};
use api_auth_filter::deny::Reason;
use api_auth_filter::engine::{decide, inline_keys, no_lookup, Decision, Env, KeySlot, NoCache, Request};
use api_auth_filter::jwt;
use api_auth_filter::principal::Kind;
use crate::model::{self, RouteSpec};
use crate::{answers, header, lines, text, EXAMPLES, NOW};
use serde_json::Value;

/// One example: compiled, its inline keys, and what the model reads from its document.
struct Example {
    cfg: Config,
    keys: Vec<KeySlot>,
    routes: Vec<RouteSpec>,
    /// protected_resource.paths, one trailing slash dropped.
    metadata_paths: Vec<String>,
    /// Claim paths of each provider's organisation (by provider name).
    org_claims: Vec<(String, Vec<String>)>,
    /// The providers' `from_cookies` and `authorized_parties` (all providers together).
    cookie_names: Vec<String>,
    authorized_parties: Vec<String>,
    /// `filter_state` as written.
    filter_state: Vec<String>,
}

/// Example 002 with token cookies (Clerk's `__session`) and an authorized party, 003 with
/// filter state: the documents the target compiles and reads.
fn with_cookies(doc: &mut Value) {
    for (_, p) in doc["providers"].as_object_mut().expect("002 has providers").iter_mut() {
        p["from_cookies"] = serde_json::json!(["__session"]);
        p["authorized_parties"] = serde_json::json!(["https://app.cm.example"]);
    }
}

fn with_filter_state(doc: &mut Value) {
    doc["filter_state"] = serde_json::json!(["kind", "subject", "key_id", "provider", "organization", "scopes", "full_access"]);
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// Config holds Rc (one copy per worker in the filter): one per thread here.
fn configs() -> &'static [Example; 2] {
    thread_local! {
        static C: &'static [Example; 2] = Box::leak(Box::new({
            let load = |text: &str, edit: fn(&mut Value)| {
                let mut doc: Value = serde_json::from_str(text).expect("example is JSON");
                edit(&mut doc);
                let cfg = Config::from_json(doc.to_string().as_bytes()).expect("example compiles");
                let keys = inline_keys(&cfg);
                let metadata_paths = doc["protected_resource"]["paths"]
                    .as_array()
                    .map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).map(|p| model::drop_one_slash(p).to_string()).collect());
                let org_claims = doc["providers"]
                    .as_object()
                    .map_or(Vec::new(), |ps| {
                        ps.iter()
                            .map(|(name, p)| {
                                let paths = p["claims"]["organization"].as_array().map_or_else(
                                    || vec!["o.id".to_string(), "org_id".to_string(), "tenant_id".to_string()],
                                    |a| a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
                                );
                                (name.clone(), paths)
                            })
                            .collect()
                    });
                let providers = doc["providers"].as_object().map_or(Vec::new(), |ps| ps.values().collect());
                let cookie_names = providers.iter().flat_map(|p| strings(&p["from_cookies"])).collect();
                let authorized_parties = providers.iter().flat_map(|p| strings(&p["authorized_parties"])).collect();
                let filter_state = strings(&doc["filter_state"]);
                Example { cfg, keys, routes: model::specs(&doc), metadata_paths, org_claims, cookie_names, authorized_parties, filter_state }
            };
            [load(EXAMPLES[2], with_cookies), load(EXAMPLES[3], with_filter_state)]
        }));
    }
    C.with(|c| *c)
}


/// A dotted claim path's string value.
fn claim<'v>(claims: &'v Value, path: &str) -> Option<&'v str> {
    path.split('.').try_fold(claims, |v, k| v.get(k))?.as_str()
}

fn check(ex: &Example, method: &str, path: &str, headers: &[(String, Vec<u8>)]) {
    let (cfg, keys) = (&ex.cfg, ex.keys.as_slice());
    let env = Env { now: NOW, keys, random: [7; 16], key_lookup: &no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &NoCache, signatures: &api_auth_filter::jwt::OwnCode };
    let decision = decide(cfg, &Request { method, path, headers: &api_auth_filter::credentials::view(headers) }, &env);
    let has = |name: &str| headers.iter().any(|(n, _)| n == name);
    let key_headers: &[String] = cfg.api_keys.as_ref().map_or(&[], |k| k.headers.as_slice());
    let cookies = answers::cookies(headers);
    let token_cookie = cookies.iter().any(|(n, _)| ex.cookie_names.iter().any(|c| c.as_bytes() == n.as_slice()));
    let credential_free = !has("authorization") && !key_headers.iter().any(|h| has(h)) && !token_cookie;
    let grpc = answers::grpc(headers);
    let origins: Vec<&[u8]> = headers.iter().filter(|(n, _)| n == "origin").map(|(_, v)| v.as_slice()).collect();
    let origin_authorized = matches!(origins[..], [o] if ex.authorized_parties.iter().any(|p| p.as_bytes() == o));
    let (cm, cp) = match model::target(method, path, false) {
        Ok(t) => t,
        Err(reason) => {
            // Judged before anything else: never allowed, whatever the credentials.
            match &decision {
                Decision::Deny(d) => {
                    assert_eq!((d.denial.reason, d.route, d.response.status), (reason, None, 400), "{method} {path:?}");
                }
                other => panic!("{method} {path:?} must be refused ({reason:?}): {other:?}"),
            }
            return;
        }
    };
    let metadata = cm == "GET" && ex.metadata_paths.contains(&cp);
    let route = model::route(&ex.routes, &cm, &cp);
    let public = route.is_some_and(|i| cfg.routes[i].auth.is_none());
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
                let own_org: Option<String> = match p.kind {
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
                            .find(|e| Some(&*e.id) == p.key_id.as_deref())
                            .expect("the principal's key was presented and is in the table");
                        assert_eq!(entry.status, KeyStatus::Active);
                        assert!(entry.expires_at.is_none_or(|t| t > NOW));
                        entry.organization.as_deref().map(str::to_string)
                    }
                    Kind::Jwt => {
                        let from_cookie = !has("authorization");
                        let cookie_tokens = cookies
                            .iter()
                            .filter(|(n, _)| from_cookie && ex.cookie_names.iter().any(|c| c.as_bytes() == n.as_slice()))
                            .filter_map(|(_, v)| std::str::from_utf8(v).ok());
                        let token = headers
                            .iter()
                            .filter(|(n, _)| n == "authorization")
                            .filter_map(|(_, v)| std::str::from_utf8(v.trim_ascii().get(6..)?).ok())
                            .map(str::trim)
                            .chain(cookie_tokens)
                            .find_map(|t| jwt::decode(t).ok())
                            .expect("a JWT principal presented a JWT");
                        if from_cookie && !["GET", "HEAD", "OPTIONS"].contains(&cm.as_str()) {
                            assert!(origin_authorized, "{method} {path}: a cookie token allowed without an authorized Origin ({origins:?})");
                        }
                        let provider = cfg.providers.iter().find(|pr| Some(pr.name.as_str()) == p.provider.as_deref()).expect("provider");
                        let KeySource::Inline(set) = &provider.keys else { panic!("allowed with remote keys it does not have") };
                        assert_eq!(jwt::verify_signature(&token, set, &provider.algorithms), Ok(()));
                        let claims = token.claims().expect("claims");
                        assert!(jwt::validate_claims(&claims, &provider.rules, NOW).is_ok());
                        let paths = ex.org_claims.iter().find(|(n, _)| *n == provider.name).map(|(_, c)| c.as_slice()).unwrap_or(&[]);
                        paths.iter().find_map(|c| claim(&claims, c).filter(|s| !s.is_empty())).map(str::to_string)
                    }
                    // No introspection answer is ever given here (`no_introspection`).
                    Kind::Opaque => panic!("{method} {path}: an opaque token allowed without an introspection answer"),
                };
                // The organisation header never crosses a tenant, full_access or not.
                let sent: Vec<&[u8]> = headers.iter().filter(|(n, _)| *n == cfg.organization_header).map(|(_, v)| v.as_slice()).collect();
                if let [value] = sent[..] {
                    if !value.is_empty() {
                        let value = std::str::from_utf8(value).expect("an accepted organisation is text");
                        assert_eq!(p.organization.as_deref(), Some(value));
                        assert!(
                            own_org.as_deref() == Some(value) || p.organizations.has(value),
                            "{method} {path}: organisation {value:?} is neither the principal's ({own_org:?}) nor listed ({:?})",
                            p.organizations
                        );
                    }
                }
            }
            // A token cookie never reaches the upstream (strip_credentials is the default),
            // under any spelling of its name a lenient parser reads as the name (finding 8:
            // `__session<TAB>=token`).
            let trim = answers::lenient_trim();
            let is_token_cookie = |n: &[u8]| ex.cookie_names.iter().any(|c| c.as_bytes() == n);
            let sent_token_cookie = headers
                .iter()
                .filter(|(n, _)| n == "cookie")
                .any(|(_, v)| answers::cookie_pairs_trimming(v, trim).iter().any(|(n, _)| is_token_cookie(n)));
            if sent_token_cookie {
                assert!(a.remove.iter().any(|r| r == "cookie"), "{method} {path}: the token cookie goes upstream");
            }
            assert!(!a.set.iter().any(|(n, _)| n == "cookie"), "the Cookie is set as bytes (Allow::cookie), never as text");
            if let Some(v) = &a.cookie {
                assert!(a.remove.iter().any(|r| r == "cookie"), "{method} {path}: a Cookie set without removing the old one");
                let kept = answers::cookie_pairs_trimming(v, trim);
                assert!(!kept.iter().any(|(n, _)| is_token_cookie(n)), "{method} {path}: cookie {v:?}");
                // The other cookies, passed on as the request held them, byte for byte
                // (fuzz/README.md, findings 5 and 7): each pair one of the request's own, and
                // no control byte that its Cookie headers did not hold.
                for pair in answers::cookie_pairs(v) {
                    assert!(cookies.contains(&pair), "{method} {path}: cookie {v:?} has a pair the request did not send");
                }
                let sent = |b: &u8| headers.iter().any(|(h, c)| h == "cookie" && c.contains(b));
                assert!(v.iter().filter(|b| **b < 0x20 || **b == 0x7f).all(sent), "{method} {path}: cookie {v:?}");
            }
            // Filter state: only what is listed, only with a principal.
            if a.principal.is_none() || ex.filter_state.is_empty() {
                assert!(a.state.is_empty(), "{method} {path}: filter state {:?}", a.state);
            }
            let mut names: Vec<&str> = a.state.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), a.state.len(), "a filter state field written twice: {:?}", a.state);
            for (n, v) in &a.state {
                let field = n.strip_prefix("api_auth.").unwrap_or_else(|| panic!("filter state {n} is not api_auth.<field>"));
                assert!(ex.filter_state.iter().any(|f| f == field), "filter state {n} not listed");
                assert!(answers::value_safe(v), "filter state {n}: {v:?}");
            }
            if let Some(p) = &a.principal {
                let state = |f: &str| a.state.iter().find(|(n, _)| n.strip_prefix("api_auth.") == Some(f)).map(|(_, v)| v.as_str());
                if ex.filter_state.iter().any(|f| f == "kind") {
                    assert_eq!(state("kind"), Some(if p.kind == Kind::Jwt { "jwt" } else { "api_key" }));
                }
                if ex.filter_state.iter().any(|f| f == "key_id") && p.kind == Kind::ApiKey {
                    assert_eq!(state("key_id"), p.key_id.as_deref(), "{method} {path}");
                }
            }
            // Underscore twins of what the filter trusts never reach the upstream.
            let mut guarded: Vec<String> = vec!["authorization".into(), cfg.organization_header.clone(), cfg.workspace_header.clone()];
            guarded.extend(key_headers.iter().cloned());
            guarded.extend(cfg.forward.headers.iter().map(|(n, _)| n.clone()));
            for (n, _) in headers {
                if model::underscore_twin(n, &guarded) {
                    assert!(a.remove.contains(n), "{method} {path}: {n} goes upstream");
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
            if d.denial.reason == Reason::OriginForbidden {
                assert!(token_cookie && !has("authorization") && !["GET", "HEAD", "OPTIONS"].contains(&cm.as_str()) && !origin_authorized,
                    "{method} {path}: origin_forbidden without a cookie token on an unsafe method lacking an authorized Origin");
            }
            let r = &d.response;
            assert!((400..=599).contains(&r.status));
            assert_eq!(r.details, format!("api_auth.{}", d.denial.reason.as_str()));
            let json_type = r.headers.iter().any(|(n, v)| n == "content-type" && v == "application/json");
            if grpc {
                assert_eq!(r.grpc_status, Some(answers::grpc_status(r.status)), "{method} {path}: a gRPC request's denial");
                assert!(!json_type && !r.body.is_empty() && std::str::from_utf8(&r.body).is_ok(), "{method} {path}: gRPC denial {r:?}");
            } else {
                assert_eq!(r.grpc_status, None, "{method} {path}: a gRPC answer to a request Envoy does not take for gRPC");
                serde_json::from_slice::<Value>(&r.body).expect("denial body is JSON");
                assert!(json_type, "{method} {path}: no content-type application/json");
            }
            if r.status == 401 {
                assert!(r.headers.iter().any(|(n, v)| n == "www-authenticate" && v.starts_with("Bearer")));
            }
            for (n, v) in &r.headers {
                assert!(!v.chars().any(char::is_control), "{n}: {v:?}");
            }
        }
    }
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    let l = lines(data);
    let method = l.first().map(|m| text(m)).unwrap_or_default();
    let path = l.get(1).map(|p| text(p)).unwrap_or_default();
    let headers: Vec<(String, Vec<u8>)> = l.iter().skip(2).map(|h| header(h)).collect();
    for ex in configs() {
        check(ex, &method, &path, &headers);
    }
}
