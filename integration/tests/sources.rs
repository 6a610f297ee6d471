//! Policy that follows Envoy's router (routes bound by route name or route metadata) and JWTs
//! from cookies (Clerk's `__session`), with the Origin rule for unsafe methods, end to end.

use api_auth_integration::*;
use serde_json::json;

const ISS: &str = "https://clerk.sources.example";
const APP: &str = "https://app.sources.example";
const CREDS: &str = "Could not validate credentials";

#[test]
fn routes_bound_to_the_router_follow_its_choice() {
    let admin_key = "sk_live_admin_scope";
    let plain_key = "sk_live_plain";
    let cfg = json!({
        "api_keys": { "prefixes": ["sk_"], "keys": [
            { "id": "key_admin", "sha256": sha256_hex(admin_key.as_bytes()), "scopes": ["admin"] },
            { "id": "key_plain", "sha256": sha256_hex(plain_key.as_bytes()), "scopes": [] }
        ] },
        "routes": [
            { "match": { "route_name": "admin-api" }, "auth": { "scopes": ["admin"] } },
            { "match": { "route_metadata": { "filter": "api_auth", "key": "policy", "value": "public" } }, "auth": "none" },
            { "match": { "prefix": "/" }, "auth": {} }
        ],
        "forward": { "headers": { "x-auth-key-id": "key_id" } }
    });
    let upstream = Server::echo();
    // The router's routes: /internal is named admin-api, /docs carries the metadata; the path
    // rules of the filter know neither.
    let envoy = Envoy::start(
        EnvoyOpts::new(cfg, upstream.port())
            .route("admin-api", "/internal", None)
            .route("docs", "/docs", Some(("api_auth", "policy", "public"))),
    );
    let scope = denied("admin-api by name, key without the scope", Req::get("/internal/users").bearer(plain_key), 403, json!({"detail": "Insufficient scope: admin"}));
    run_cases(
        &envoy,
        &upstream,
        vec![
            scope,
            allowed("admin-api by name, key with the scope", Req::get("/internal/users").bearer(admin_key), vec![("x-auth-key-id", "key_admin".into())]),
            Case {
                name: "route metadata makes /docs public",
                req: Req::get("/docs/intro"),
                status: 200,
                body: None,
                headers: vec![],
                upstream: Upstream::Saw { present: vec![], absent: vec!["x-auth-key-id"] },
            },
            denied("other routes: the path rules", Req::get("/other"), 401, json!({"detail": CREDS})),
            allowed("other routes with any key", Req::get("/other").bearer(plain_key), vec![("x-auth-key-id", "key_plain".into())]),
        ],
    );
}

#[test]
fn cookie_tokens_count_for_their_provider_and_unsafe_methods_need_an_allowed_origin() {
    let issuer = Issuer::new(&["c1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let cfg = json!({
        "providers": { "clerk": { "issuer": ISS, "algorithms": ["RS256"], "authorized_parties": [APP], "from_cookies": ["__session"],
            "jwks": { "remote": { "cluster": "jwks", "path": "/jwks.json" } } } },
        "routes": [{ "match": { "prefix": "/api" }, "auth": { "credentials": ["jwt"] } }],
        "forward": { "headers": { "x-auth-subject": "subject" } }
    });
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()).cluster("jwks", jwks.port()));
    let now = unix_now();
    let token = issuer.token("c1", &json!({ "iss": ISS, "sub": "user_browser", "iat": now, "exp": now + 600 }));
    let cookie = format!("theme=dark; __session={token}; lang=en");
    let first = Req::get("/api/me").header("cookie", &cookie);
    assert!(wait_until(std::time::Duration::from_secs(20), || envoy.send(&first).status == 200), "{}", envoy.log());

    upstream.clear();
    let r = envoy.send(&Req::get("/api/me").header("cookie", &cookie));
    assert_eq!(r.status, 200);
    let seen = upstream.requests();
    assert_eq!(seen[0].header("x-auth-subject").as_deref(), Some("user_browser"));
    assert_eq!(seen[0].header("cookie").as_deref(), Some("theme=dark; lang=en"), "the token cookie never reaches the upstream");

    let forbidden = |name, req| denied(name, req, 403, json!({"detail": "Forbidden"}));
    run_cases(
        &envoy,
        &upstream,
        vec![
            allowed("POST from the app's origin", Req::post("/api/items").header("cookie", &cookie).header("origin", APP), vec![("x-auth-subject", "user_browser".into())]),
            forbidden("POST from another origin", Req::post("/api/items").header("cookie", &cookie).header("origin", "https://evil.example")),
            forbidden("POST without an Origin", Req::post("/api/items").header("cookie", &cookie)),
            forbidden("DELETE from a null origin", Req::new("DELETE", "/api/items/1").header("cookie", &cookie).header("origin", "null")),
            allowed("a bearer token needs no Origin", Req::post("/api/items").bearer(&token), vec![("x-auth-subject", "user_browser".into())]),
            denied("another cookie name is no credential", Req::get("/api/me").header("cookie", format!("session={token}")), 401, json!({"detail": CREDS})),
        ],
    );
}
