//! Route matching judges the request the upstream will serve (docs/configuration.md, "Route
//! matching"): for each rule, the forms an upstream serves alike are judged by the same route, and the
//! forms the filter cannot judge are refused. Also the rules around it: underscore twins of
//! credential and identity headers, and the tenant boundary of the organisation header.
//!
//! Configurations are inline, so nothing here depends on files outside the repository.

use api_auth_filter::config::Config;
use api_auth_filter::deny::Reason;
use api_auth_filter::engine::{decide, inline_keys, no_lookup, route_for, Decision, Env, NoCache, Request};
use api_auth_filter::jwt::KeySet;
use base64::Engine;
use hmac::Mac;
use serde_json::{json, Value};

const NOW: i64 = 1_790_000_000;
const SECRET: &[u8] = b"matching-test-hmac-secret-0123456789";

fn config(v: Value) -> Config {
    Config::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_or_else(|e| panic!("config: {e}"))
}

/// A strong route beside a weak one for every kind of pattern, and a public catch-all last:
/// a form that slipped past its route would land on a weaker one.
fn routes(path_parameters: &str) -> Config {
    config(json!({
        "api_keys": { "prefixes": ["k_"], "keys": [] },
        "routes": [
            { "match": { "methods": ["GET"], "path": "/a/b" }, "auth": { "scopes": ["read"] } },
            { "match": { "methods": ["POST"], "path": "/a/b/" }, "auth": { "scopes": ["write"] } },
            { "match": { "prefix": "/v1/mcp" }, "auth": { "credentials": ["api_key"] } },
            { "match": { "prefix": "/api/admin/" }, "auth": { "roles": ["admin"] } },
            { "match": { "template": "/t/{x}" }, "auth": { "scopes": ["t:{x}"] } },
            { "match": { "template": "/files/{rest...}" }, "auth": { "scopes": ["files"] } },
            { "match": { "prefix": "/" }, "auth": "none" }
        ],
        "path_parameters": path_parameters
    }))
}

fn route(cfg: &Config, method: &str, path: &str) -> Result<Option<usize>, Reason> {
    route_for(cfg, &Request { method, path, headers: &[] })
}

#[test]
fn the_forms_an_upstream_serves_alike_are_judged_by_one_route() {
    let reject = routes("reject");
    let strip = routes("strip");
    // (rule, forms: "METHOD path", the route every form gets, parameters refused / removed)
    type Group = (&'static str, &'static [&'static str], Result<Option<usize>, Reason>, Result<Option<usize>, Reason>);
    let groups: &[Group] = &[
        ("trailing slash on a path", &["GET /a/b", "GET /a/b/", "GET /a/b?x=1", "GET /a/b/?x=/"], Ok(Some(0)), Ok(Some(0))),
        ("a path configured with a slash matches without", &["POST /a/b", "POST /a/b/"], Ok(Some(1)), Ok(Some(1))),
        ("HEAD is GET", &["HEAD /a/b", "HEAD /a/b/"], Ok(Some(0)), Ok(Some(0))),
        ("path parameters", &["GET /a/b;x", "GET /a;x/b", "GET /a;x=1/b;y/", "GET /a/b;"], Err(Reason::PathNotNormalized), Ok(Some(0))),
        ("HEAD with parameters", &["HEAD /a;jsessionid=1/b"], Err(Reason::PathNotNormalized), Ok(Some(0))),
        ("an encoded ';' is refused too; removing keeps it as text", &["GET /a%3Bx/b", "GET /api/admin%3bx/users"], Err(Reason::PathNotNormalized), Ok(Some(6))),
        ("a segment of only a parameter", &["GET /a/;x/b", "GET /;x/a/b"], Err(Reason::PathNotNormalized), Err(Reason::PathNotNormalized)),
        ("segment prefix", &["GET /v1/mcp", "GET /v1/mcp/", "POST /v1/mcp/x", "DELETE /v1/mcp/x/y/"], Ok(Some(2)), Ok(Some(2))),
        ("prefix parameters", &["GET /v1/mcp;x", "GET /v1/mcp;x/y"], Err(Reason::PathNotNormalized), Ok(Some(2))),
        ("a prefix configured with a slash", &["GET /api/admin", "GET /api/admin/", "GET /api/admin/users"], Ok(Some(3)), Ok(Some(3))),
        ("admin behind a parameter", &["GET /api/admin;x/users", "GET /api;x/admin/users"], Err(Reason::PathNotNormalized), Ok(Some(3))),
        ("template", &["GET /t/run", "GET /t/run/", "HEAD /t/run"], Ok(Some(4)), Ok(Some(4))),
        ("template parameters", &["POST /t/run;a", "POST /t/run;a/"], Err(Reason::PathNotNormalized), Ok(Some(4))),
        ("rest template", &["GET /files/a/b", "GET /files/a/b/"], Ok(Some(5)), Ok(Some(5))),
        ("lower-case methods", &["get /a/b", "Get /a/b", "head /a/b", "post /v1/mcp"], Err(Reason::MethodInvalid), Err(Reason::MethodInvalid)),
        // The neighbours that are other resources keep their own (weaker) route.
        ("other resources", &["GET /a/bc", "GET /v1/mcp-admin", "GET /api/administrator", "GET /t/run/extra", "GET /files", "GET /files/", "PUT /a/b"], Ok(Some(6)), Ok(Some(6))),
    ];
    let mut wrong = Vec::new();
    for (rule, forms, want_reject, want_strip) in groups {
        for form in *forms {
            let (method, path) = form.split_once(' ').unwrap();
            for (cfg, mode, want) in [(&reject, "reject", want_reject), (&strip, "strip", want_strip)] {
                let got = route(cfg, method, path);
                if got != *want {
                    wrong.push(format!("- {rule}: {form} ({mode}): route {got:?}, want {want:?}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "forms judged apart:\n{}", wrong.join("\n"));
}

#[test]
fn refused_forms_get_their_documented_answer_before_anything_else() {
    let cfg = routes("reject");
    let keys = inline_keys(&cfg);
    let env = Env { now: NOW, keys: &keys, random: [1; 16], key_lookup: &no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &NoCache, signatures: &api_auth_filter::jwt::OwnCode };
    for (method, path, reason) in [
        ("GET", "/api/admin;x/users", Reason::PathNotNormalized),
        ("GET", "/health;x", Reason::PathNotNormalized),
        ("get", "/health", Reason::MethodInvalid),
        ("pOST", "/v1/mcp", Reason::MethodInvalid),
    ] {
        match decide(&cfg, &Request { method, path, headers: &[] }, &env) {
            Decision::Deny(d) => {
                assert_eq!(d.denial.reason, reason, "{method} {path}");
                assert_eq!(d.response.status, 400, "{method} {path}");
                assert_eq!(d.route, None, "refused before any route: {method} {path}");
                assert_eq!(serde_json::from_slice::<Value>(&d.response.body).unwrap(), json!({ "detail": "Bad request" }));
            }
            other => panic!("{method} {path}: {other:?}"),
        }
    }
}

#[test]
fn configured_patterns_that_could_never_match_are_refused() {
    let load = |m: Value| Config::from_json(&serde_json::to_vec(&json!({ "routes": [{ "match": m, "auth": "none" }] })).unwrap()).map_err(|e| e.to_string());
    for (m, want) in [
        (json!({ "path": "/a;b" }), "routes[0].match.path: a path with ';' parameters never matches"),
        (json!({ "prefix": "/a;b/" }), "routes[0].match.prefix: a path with ';' parameters never matches"),
        (json!({ "template": "/t;v/{x}" }), "routes[0].match.template: a path with ';' parameters never matches"),
        (json!({ "path": "/a//b" }), "routes[0].match.path: never matches"),
        (json!({ "prefix": "/a/../b" }), "routes[0].match.prefix: never matches"),
        (json!({ "path": "/%61dmin" }), "routes[0].match.path: never matches"),
        (json!({ "methods": ["HEAD"], "path": "/a" }), "routes[0].match.methods[0]: HEAD is judged as GET: list GET instead"),
        (json!({ "methods": ["POST", "head"], "path": "/a" }), "routes[0].match.methods[1]: HEAD is judged as GET"),
    ] {
        let err = load(m.clone()).expect_err(&m.to_string());
        assert!(err.starts_with(want), "{m}: {err}");
    }
    // HEAD beside GET is the same as GET alone.
    let cfg = load(json!({ "methods": ["GET", "HEAD"], "path": "/a" })).unwrap();
    assert_eq!(cfg.routes[0].methods.as_deref(), Some(&["GET".to_string()][..]));
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hs256(claims: &Value) -> String {
    let input = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// Example 003's shape: OAuth users of a `full_access` provider on `/v1/mcp`, keys elsewhere.
fn tenants(organizations_claim: bool) -> Config {
    let mut provider = json!({
        "issuer": "https://idp.example", "algorithms": ["HS256"], "full_access": true,
        "jwks": { "inline": { "keys": [{ "kty": "oct", "k": b64(SECRET) }] } }
    });
    if organizations_claim {
        provider["claims"] = json!({ "organizations": ["orgs"] });
    }
    config(json!({
        "providers": { "clerk": provider },
        "api_keys": { "prefixes": ["cf_ak_"], "keys": [{ "id": "key_1", "sha256": sha256_hex(b"cf_ak_tenant_key"), "organization": "org_own", "scopes": ["tools:*"] }] },
        "routes": [
            { "match": { "prefix": "/v1/mcp" }, "auth": { "credentials": ["jwt", "api_key"], "scopes": ["tools:mcp"] }, "errors": "error" },
            { "match": { "prefix": "/v1/ws" }, "auth": { "workspace": true } }
        ],
        "forward": { "headers": { "x-organization-id": "organization", "x-auth-subject": "subject" } }
    }))
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// (status, reason when denied, the organisation forwarded when allowed)
type Outcome = (u16, Option<Reason>, Option<String>);
/// (name, configuration, path, headers, outcome)
type TenantRow<'a> = (&'a str, &'a Config, &'a str, Vec<(&'a str, &'a str)>, Outcome);

fn tenant_decision(cfg: &Config, path: &str, headers: &[(&str, &str)]) -> Outcome {
    let headers: Vec<(String, Vec<u8>)> = headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
    let keys = inline_keys(cfg);
    let env = Env { now: NOW, keys: &keys, random: [1; 16], key_lookup: &no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &NoCache, signatures: &api_auth_filter::jwt::OwnCode };
    match decide(cfg, &Request { method: "GET", path, headers: &api_auth_filter::credentials::view(&headers) }, &env) {
        Decision::Allow(a) => {
            let org = a.set.iter().find(|(n, _)| n == "x-organization-id").map(|(_, v)| v.clone());
            (200, None, org)
        }
        Decision::Deny(d) => (d.response.status, Some(d.denial.reason), None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn full_access_passes_scopes_but_never_crosses_a_tenant() {
    let plain = tenants(false);
    let listing = tenants(true);
    let token = |claims: Value| format!("Bearer {}", hs256(&claims));
    let base = json!({ "iss": "https://idp.example", "sub": "user_1", "iat": NOW - 10, "exp": NOW + 600 });
    let with = |extra: Value| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        token(c)
    };
    let own = with(json!({ "o": { "id": "org_own" } }));
    let none = with(json!({}));
    let member_of_two = with(json!({ "o": { "id": "org_own" }, "orgs": ["org_second"] }));
    let forbidden = (403, Some(Reason::OrganizationForbidden), None);
    let rows: Vec<TenantRow> = vec![
        ("full access passes the scope, own organisation", &plain, "/v1/mcp", vec![("authorization", &own)], (200, None, Some("org_own".into()))),
        ("naming its own organisation", &plain, "/v1/mcp", vec![("authorization", &own), ("x-organization-id", "org_own")], (200, None, Some("org_own".into()))),
        ("the tenant hop of the issue", &plain, "/v1/mcp", vec![("authorization", &own), ("x-organization-id", "org_victim")], forbidden.clone()),
        ("a user without organisation naming one", &plain, "/v1/mcp", vec![("authorization", &none), ("x-organization-id", "org_victim")], forbidden.clone()),
        ("a listed organisation, listing not configured", &plain, "/v1/mcp", vec![("authorization", &member_of_two), ("x-organization-id", "org_second")], forbidden.clone()),
        ("a listed organisation", &listing, "/v1/mcp", vec![("authorization", &member_of_two), ("x-organization-id", "org_second")], (200, None, Some("org_second".into()))),
        ("an organisation the list lacks", &listing, "/v1/mcp", vec![("authorization", &member_of_two), ("x-organization-id", "org_victim")], forbidden.clone()),
        ("a key in its own organisation", &plain, "/v1/mcp", vec![("x-api-key", "cf_ak_tenant_key"), ("x-organization-id", "org_own")], (200, None, Some("org_own".into()))),
        ("a key in another", &plain, "/v1/mcp", vec![("x-api-key", "cf_ak_tenant_key"), ("x-organization-id", "org_victim")], forbidden.clone()),
        ("full access never passes the workspace check", &plain, "/v1/ws", vec![("authorization", &own), ("x-workspace-id", "ws_any")], (403, Some(Reason::WorkspaceForbidden), None)),
    ];
    let mut wrong = Vec::new();
    for (name, cfg, path, headers, want) in rows {
        let got = tenant_decision(cfg, path, &headers);
        if got != want {
            wrong.push(format!("- {name}: {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "tenant rule:\n{}", wrong.join("\n"));
}

#[test]
fn underscore_twins_of_credential_and_identity_headers_never_go_upstream() {
    let cfg = config(json!({
        "api_keys": { "prefixes": ["k_"], "headers": ["x-api-key", "api-key"], "keys": [] },
        "routes": [{ "match": { "prefix": "/" }, "auth": "none" }],
        "forward": { "headers": { "x-user-id": "subject", "x-org-id": "organization" } },
        "workspace_header": "x-ws"
    }));
    let sent = [
        "x_user_id", "X_User_Id", "x-user_id", "x_org_id", "x_api_key", "api_key", "x_organization_id", "x_ws",
        "authorization", "x_keep_me", "x-user-id-extra", "x_user_idx", "x_forwarded_for",
    ];
    let headers: Vec<(String, Vec<u8>)> = sent.iter().map(|n| (n.to_string(), b"forged".to_vec())).collect();
    let keys = inline_keys(&cfg);
    let env = Env { now: NOW, keys: &keys, random: [1; 16], key_lookup: &no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &NoCache, signatures: &api_auth_filter::jwt::OwnCode };
    let Decision::Allow(a) = decide(&cfg, &Request { method: "GET", path: "/health", headers: &api_auth_filter::credentials::view(&headers) }, &env) else { panic!("public route") };
    let mut removed = a.remove.clone();
    removed.sort();
    let mut want = vec!["x_user_id", "X_User_Id", "x-user_id", "x_org_id", "x_api_key", "api_key", "x_organization_id", "x_ws", "authorization"];
    want.sort();
    assert_eq!(removed, want);
    // Nothing is removed from a request without such headers (each removal is a host call).
    let plain = vec![("x-request-id".to_string(), b"1".to_vec()), ("x_trace".to_string(), b"1".to_vec())];
    let Decision::Allow(a) = decide(&cfg, &Request { method: "GET", path: "/health", headers: &api_auth_filter::credentials::view(&plain) }, &env) else { panic!() };
    assert!(a.remove.is_empty(), "{:?}", a.remove);
}

#[test]
fn configuration_bounds_name_the_field() {
    let load = |v: Value| Config::from_json(&serde_json::to_vec(&v).unwrap()).map_err(|e| e.to_string());
    let remote = |extra: Value| {
        let mut r = json!({ "cluster": "jwks", "path": "/jwks" });
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    let provider = |extra: Value| {
        let mut p = json!({ "issuer": "https://i", "algorithms": ["RS256"], "jwks": { "remote": remote(json!({})) } });
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "providers": { "p": p } })
    };
    let hook = |tolerance: u64| json!({ "webhooks": { "w": { "secrets": [{ "value": "s" }], "timestamp": { "header": "x-ts", "tolerance_s": tolerance } } } });
    let cases: Vec<(Value, Option<&str>)> = vec![
        (provider(json!({ "clock_skew_s": 300 })), None),
        (provider(json!({ "clock_skew_s": 301 })), Some("providers.p.clock_skew_s: must be at most 300")),
        (provider(json!({ "clock_skew_s": u64::MAX })), Some("providers.p.clock_skew_s: must be at most 300")),
        (hook(3600), None),
        (hook(3601), Some("webhooks.w.timestamp.tolerance_s: must be at most 3600")),
        (
            json!({ "forward": { "headers": { "x-user": "subject" } }, "correlation_id": { "header": "X-User" } }),
            Some("correlation_id.header: must not be a credential, forwarded, organisation or workspace header"),
        ),
        (json!({ "correlation_id": { "header": "authorization" } }), Some("correlation_id.header: must not be")),
        (json!({ "api_keys": { "prefixes": ["k_"] }, "correlation_id": { "header": "x-api-key" } }), Some("correlation_id.header: must not be")),
        (json!({ "correlation_id": { "header": "x-organization-id" } }), Some("correlation_id.header: must not be")),
        (json!({ "correlation_id": { "header": "x-request-id" } }), None),
        (
            json!({ "providers": { "p": { "issuer": "https://i", "algorithms": ["HS256"], "jwks": { "remote": remote(json!({})) } } } }),
            Some("providers.p.jwks.remote: only HMAC algorithms are allowed"),
        ),
        (json!({ "providers": { "p": { "issuer": "https://i", "algorithms": ["HS256"], "jwks": { "remote": remote(json!({ "allow_symmetric_keys": true })) } } } }), None),
        // Periods too long to count in milliseconds saturate instead of wrapping.
        (provider(json!({ "jwks": { "remote": remote(json!({ "refresh_s": u64::MAX, "min_refetch_s": u64::MAX })) } })), None),
        (json!({ "api_keys": { "prefixes": ["k_"], "lookup": { "cluster": "k", "path": "/l", "cache_ttl_s": u64::MAX, "negative_cache_ttl_s": u64::MAX } } }), None),
    ];
    for (doc, want) in cases {
        match (load(doc.clone()), want) {
            (Ok(_), None) => {}
            (Err(e), Some(w)) => assert!(e.starts_with(w), "{doc}: {e}"),
            (Ok(_), Some(w)) => panic!("{doc}: loaded, want {w}"),
            (Err(e), None) => panic!("{doc}: {e}"),
        }
    }
    let cfg = load(json!({ "api_keys": { "prefixes": ["k_"], "lookup": { "cluster": "k", "path": "/l", "cache_ttl_s": u64::MAX } } })).unwrap();
    assert_eq!(cfg.api_keys.unwrap().lookup.unwrap().ttl_ms, u64::MAX);
}

#[test]
fn a_remote_jwks_publishes_no_hmac_key_unless_the_provider_opts_in() {
    let doc = json!({ "keys": [{ "kty": "oct", "k": b64(SECRET), "kid": "mac" }] }).to_string();
    let load = |allow: bool| {
        config(json!({ "providers": { "p": { "issuer": "https://i", "algorithms": ["HS256", "RS256"],
            "jwks": { "remote": { "cluster": "jwks", "path": "/jwks", "allow_symmetric_keys": allow } } } } }))
    };
    for (allow, want) in [(false, 0), (true, 1)] {
        let cfg = load(allow);
        let api_auth_filter::config::KeySource::Remote(r) = &cfg.providers[0].keys else { panic!("remote") };
        assert_eq!(KeySet::fetched(doc.as_bytes(), r.allow_symmetric_keys).unwrap().len(), want, "allow_symmetric_keys {allow}");
    }
}

/// An HS256 token with this header `typ` (`None`: no `typ`).
fn hs256_typed(typ: Option<&str>, claims: &Value) -> String {
    let header = match typ {
        Some(t) => json!({ "alg": "HS256", "typ": t }),
        None => json!({ "alg": "HS256" }),
    };
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

#[test]
fn a_provider_with_typ_takes_only_tokens_of_that_type() {
    let load = |typ: Option<&str>| {
        let mut provider = json!({ "issuer": "https://as.example", "algorithms": ["HS256"],
            "jwks": { "inline": { "keys": [{ "kty": "oct", "k": b64(SECRET) }] } } });
        if let Some(t) = typ {
            provider["typ"] = json!(t);
        }
        config(json!({ "providers": { "as": provider }, "routes": [{ "match": { "prefix": "/" }, "auth": { "credentials": ["jwt"] } }] }))
    };
    let claims = json!({ "iss": "https://as.example", "sub": "client", "exp": NOW + 60, "iat": NOW });
    let decide_with = |cfg: &Config, token: &str| -> Result<(), Reason> {
        let auth = format!("Bearer {token}");
        let headers = vec![("authorization".to_string(), auth.into_bytes())];
        let keys = inline_keys(cfg);
        let env = Env { now: NOW, keys: &keys, random: [1; 16], key_lookup: &no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &NoCache, signatures: &api_auth_filter::jwt::OwnCode };
        match decide(cfg, &Request { method: "GET", path: "/x", headers: &api_auth_filter::credentials::view(&headers) }, &env) {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(d) => Err(d.denial.reason),
            Decision::Wait(_) | Decision::Respond(_) => panic!("neither allowed nor denied"),
        }
    };
    let at_jwt = load(Some("at+jwt"));
    let spelled = load(Some("Application/AT+JWT"));
    let any = load(None);
    // (header typ, with typ "at+jwt", with no typ configured)
    let rows: &[(Option<&str>, Result<(), Reason>)] = &[
        (Some("at+jwt"), Ok(())),
        (Some("application/at+jwt"), Ok(())),
        (Some("AT+JWT"), Ok(())),
        (Some("JWT"), Err(Reason::TokenInvalid)),
        (Some("at+jwt; charset=utf-8"), Err(Reason::TokenInvalid)),
        (Some("application/jwt"), Err(Reason::TokenInvalid)),
        (Some("xat+jwt"), Err(Reason::TokenInvalid)),
        (None, Err(Reason::TokenInvalid)),
    ];
    for (typ, want) in rows {
        let token = hs256_typed(*typ, &claims);
        assert_eq!(decide_with(&at_jwt, &token), *want, "typ {typ:?} against at+jwt");
        assert_eq!(decide_with(&spelled, &token), *want, "typ {typ:?} against Application/AT+JWT");
        assert_eq!(decide_with(&any, &token), Ok(()), "typ {typ:?} with no typ configured");
    }
    // A typ that is not a string is no typ.
    let odd = format!("{}.{}", b64(br#"{"alg":"HS256","typ":7}"#), b64(claims.to_string().as_bytes()));
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(SECRET).unwrap();
    mac.update(odd.as_bytes());
    let odd = format!("{odd}.{}", b64(&mac.finalize().into_bytes()));
    assert_eq!(decide_with(&at_jwt, &odd), Err(Reason::TokenInvalid));
    assert_eq!(decide_with(&any, &odd), Ok(()));
    // The setting's bounds.
    for bad in ["", "at jwt", &"x".repeat(65)] {
        let mut provider = json!({ "issuer": "https://as.example", "algorithms": ["HS256"], "typ": bad,
            "jwks": { "inline": { "keys": [{ "kty": "oct", "k": b64(SECRET) }] } } });
        provider["claims"] = json!({});
        let err = Config::from_json(&serde_json::to_vec(&json!({ "providers": { "as": provider }, "routes": [] })).unwrap()).unwrap_err();
        assert_eq!(err.path, "providers.as.typ", "{bad:?}");
    }
}
