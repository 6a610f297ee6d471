//! A key service with caching, key usage reports, and the organisation and workspace rules of
//! contracts 003 and 004 for JWTs, end to end.

use std::time::{Duration, Instant};

use api_auth_integration::*;
use serde_json::{json, Value};

const CREDS: &str = "Could not validate credentials";

fn key_entry(key: &str, status: &str) -> String {
    json!({ "id": "key_live", "sha256": sha256_hex(key.as_bytes()), "status": status, "scopes": ["tools:*"], "organization": "org_abc123" })
        .to_string()
}

fn config(ttl: u64) -> Value {
    json!({
        "api_keys": {
            "prefixes": ["cf_ak_"],
            "keys": [],
            "lookup": { "cluster": "keys", "authority": "keys.internal", "path": "/v1/keys/lookup", "timeout_ms": 500,
                        "cache_ttl_s": ttl, "negative_cache_ttl_s": ttl },
            "usage_report": { "cluster": "usage", "path": "/v1/keys/usage", "interval_s": 1 }
        },
        "routes": [{ "match": { "prefix": "/v1/" }, "auth": { "scopes": ["tools:platform.list_roadmap_items"] } }],
        "forward": { "headers": { "x-auth-key-id": "key_id" } }
    })
}

#[test]
fn key_service_lookup_cache_revocation_and_outage() {
    let key = "cf_ak_live_created_in_dashboard";
    let keys = Server::mock(Canned::json(200, &key_entry(key, "active")));
    let usage = Server::mock(Canned::json(204, ""));
    let upstream = Server::echo();
    let cfg = config(2);
    let envoy = Envoy::start(
        EnvoyOpts::new(cfg, upstream.port()).cluster("keys", keys.port()).cluster("usage", usage.port()).concurrency(2),
    );
    let get = |k: &str| envoy.send(&Req::get("/v1/items").bearer(k));

    // Concurrent first requests for one new key share one lookup per worker at most.
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let port = envoy.port();
            std::thread::spawn(move || send(port, &Req::get("/v1/items").bearer("cf_ak_live_created_in_dashboard")).status)
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}\n{}", envoy.log());
    assert!(keys.count() <= 2, "one lookup per worker at most, saw {}", keys.count());
    // The digest is sent, never the key.
    let asked = &keys.requests()[0];
    assert_eq!(asked.method, "POST");
    assert_eq!(String::from_utf8_lossy(&asked.body), format!("{{\"sha256\":\"{}\"}}", sha256_hex(key.as_bytes())));
    assert!(!String::from_utf8_lossy(&asked.body).contains(key));
    // Cached: no new lookup.
    let before = keys.count();
    assert_eq!(get(key).status, 200);
    assert_eq!(keys.count(), before);

    // Revoked in the service: refused within cache_ttl_s.
    keys.set(Canned::json(200, &key_entry(key, "revoked")));
    let revoked_at = Instant::now();
    let mut status = 200;
    while revoked_at.elapsed() < Duration::from_secs(6) && status == 200 {
        status = get(key).status;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status, 401, "revoked key still passing after {:?}", revoked_at.elapsed());
    assert!(revoked_at.elapsed() <= Duration::from_millis(2600), "took {:?} for a 2 s TTL", revoked_at.elapsed());

    // Unknown keys: 404 means unknown (401), cached as such.
    keys.set(Canned::json(404, "{}"));
    let r = get("cf_ak_never_issued");
    assert_eq!((r.status, r.json()), (401, json!({"detail": CREDS})));

    // Outage with nothing cached: 503, never a pass. Also slow past the timeout.
    keys.set(Canned::json(500, "{}"));
    let r = get("cf_ak_another_new_key");
    assert_eq!((r.status, r.json()), (503, json!({"detail": "Service unavailable"})), "{}", envoy.log());
    keys.set(Canned { delay: Duration::from_millis(900), ..Canned::json(200, &key_entry("cf_ak_slow_key", "active")) });
    assert_eq!(get("cf_ak_slow_key").status, 503);
    keys.set(Canned::json(200, "garbage"));
    assert_eq!(get("cf_ak_garbage_key").status, 503);

    // Usage: the batch of last uses arrives at the usage service.
    assert!(usage.wait_for(1, Duration::from_secs(5)), "no usage report; log:\n{}", envoy.log());
    let report: Value = serde_json::from_slice(&usage.requests()[0].body).unwrap();
    let at = report["key_live"].as_i64().unwrap_or(0);
    assert!((unix_now() - at).abs() < 30, "{report}");
}

#[test]
fn contract_004_session_tokens_and_003_oauth_organisation() {
    let (c4, c3) = (example_without_webhooks("004"), example("003"));
    let issuer = Issuer::new(&["s1"]);
    // The session provider takes RS256 and ES256: one key of each in its JWKS.
    let ec = {
        use jwt_simple::prelude::*;
        ES256KeyPair::generate().with_key_id("e1")
    };
    let mut set: Value = serde_json::from_str(&issuer.jwks(&[])).unwrap();
    {
        use base64::Engine;
        use jwt_simple::prelude::ECDSAP256PublicKeyLike;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let point = ec.public_key().public_key().to_bytes_uncompressed();
        set["keys"].as_array_mut().unwrap().push(json!({
            "kty": "EC", "crv": "P-256", "kid": "e1", "alg": "ES256", "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65])
        }));
    }
    let jwks = Server::mock(Canned::json(200, &set.to_string()));
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(c4, upstream.port()).cluster("session_jwks", jwks.port()));
    let now = unix_now();
    let es256 = {
        use jwt_simple::prelude::*;
        let claims = Claims::with_custom_claims(json!({ "workspace_ids": ["ws_4"] }), Duration::from_mins(10))
            .with_issuer("https://api.workspace.example")
            .with_subject("usr_ec");
        ec.sign(claims).unwrap()
    };
    // The same token with one signature bit flipped (the middle of r).
    let es256_forged = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (input, sig) = es256.rsplit_once('.').unwrap();
        let mut sig = b64.decode(sig).unwrap();
        sig[16] ^= 1;
        format!("{input}.{}", b64.encode(sig))
    };
    let session = |ws: Value| {
        issuer.token("s1", &json!({ "iss": "https://api.workspace.example", "sub": "usr_7", "exp": now + 600, "iat": now, "workspace_ids": ws }))
    };
    let two = session(json!(["ws_1", "ws_2"]));
    let single = issuer.token("s1", &json!({ "iss": "https://api.workspace.example", "sub": "usr_8", "exp": now + 600, "workspace_id": "ws_9" }));
    let saw = |ws: &str, sub: &str| vec![("x-auth-workspace", ws.to_string()), ("x-auth-subject", sub.to_string())];
    let cases = vec![
        allowed("session token, first workspace", Req::get("/v1/projects").bearer(&two).header("x-workspace-id", "ws_1"), saw("ws_1", "usr_7")),
        allowed("session token, second workspace", Req::get("/v1/projects").bearer(&two).header("x-workspace-id", "ws_2"), saw("ws_2", "usr_7")),
        denied("session token, other workspace", Req::get("/v1/projects").bearer(&two).header("x-workspace-id", "ws_3"), 403, json!({"detail": "Forbidden"})),
        denied("session token, no workspace header", Req::get("/v1/projects").bearer(&two), 400, json!({"detail": "Workspace required"})),
        allowed("single workspace claim", Req::get("/v1/projects").bearer(&single).header("x-workspace-id", "ws_9"), saw("ws_9", "usr_8")),
        allowed("ES256 session token", Req::get("/v1/projects").bearer(&es256).header("x-workspace-id", "ws_4"), saw("ws_4", "usr_ec")),
        denied("ES256 token, signature changed", Req::get("/v1/projects").bearer(&es256_forged).header("x-workspace-id", "ws_4"), 401, json!({"detail": CREDS})),
        allowed("API token in its workspace", Req::get("/v1/projects").bearer("wsk_example_workspace_one").header("x-workspace-id", "ws_1"), vec![("x-auth-workspace", "ws_1".into())]),
        denied("API token elsewhere", Req::get("/v1/projects").bearer("wsk_example_workspace_one").header("x-workspace-id", "ws_2"), 403, json!({"detail": "Forbidden"})),
        denied("forged workspace header without token", Req::get("/v1/projects").header("x-auth-workspace", "ws_1").header("x-workspace-id", "ws_1"), 401, json!({"detail": CREDS})),
    ];
    run_cases(&envoy, &upstream, cases);
    drop(envoy);

    // Contract 003: OAuth (Clerk JWT, full access) on MCP bypasses scopes, but acts only in its
    // own organisation, as keys do (full access never crosses a tenant).
    let mut c3 = c3;
    c3["routes"].as_array_mut().unwrap().insert(0, json!({ "match": { "prefix": "/v1/mcp/tools/" }, "auth": { "scopes": ["tools:platform.create_roadmap_item"] } }));
    let clerk = Issuer::new(&["c1"]);
    let jwks3 = Server::mock(Canned::json(200, &clerk.jwks(&[])));
    let envoy = Envoy::start(EnvoyOpts::new(c3, upstream.port()).cluster("clerk_jwks", jwks3.port()));
    let human = clerk.token("c1", &json!({ "iss": "https://your-app.clerk.accounts.dev", "sub": "user_h", "exp": now + 600, "org_id": "org_abc123" }));
    let org = |o: &str| vec![("x-organization-id", o.to_string())];
    let cases = vec![
        allowed("OAuth on MCP, own organisation", Req::post("/v1/mcp").bearer(&human).body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), org("org_abc123")),
        allowed("OAuth naming its own organisation", Req::post("/v1/mcp").bearer(&human).header("x-organization-id", "org_abc123").body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), org("org_abc123")),
        denied("OAuth naming another organisation", Req::post("/v1/mcp").bearer(&human).header("x-organization-id", "org_other"), 403, json!({"error": "forbidden"})),
        allowed("OAuth bypasses scope checks", Req::post("/v1/mcp/tools/create").bearer(&human), org("org_abc123")),
        denied(
            "key with a narrow scope on the same route",
            Req::post("/v1/mcp/tools/create").bearer("cf_ak_example_list_roadmap"),
            403,
            json!({"detail": "Insufficient scope: tools:platform.create_roadmap_item"}),
        ),
        denied("OAuth is not accepted on the REST API", Req::get("/v1/tools/platform/roadmap-items").bearer(&human), 401, json!({"detail": CREDS})),
        denied("key cannot switch organisation", Req::post("/v1/mcp").bearer("cf_ak_example_full_access").header("x-organization-id", "org_other"), 403, json!({"error": "forbidden"})),
    ];
    run_cases(&envoy, &upstream, cases);
}

/// A lookup belongs to the request that dispatched it, and Envoy cancels it when that request
/// ends. When its client resets while others wait for the same key, the lookup is handed to
/// the root context: every other waiter still gets its answer (before: 503 for each of them,
/// after their wait ran out).
#[test]
fn a_lookup_survives_the_reset_of_the_request_that_dispatched_it() {
    use std::io::Write;
    let key = "cf_ak_live_reset_while_waiting";
    let mut slow = Canned::json(200, &key_entry(key, "active"));
    slow.delay = Duration::from_millis(700);
    let keys = Server::mock(slow);
    let upstream = Server::echo();
    let mut cfg = config(30);
    cfg["api_keys"]["lookup"]["timeout_ms"] = json!(3000);
    cfg["api_keys"].as_object_mut().unwrap().remove("usage_report");
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()).cluster("keys", keys.port()).concurrency(1));

    // The first request dispatches the lookup, then its client goes away.
    let mut first = std::net::TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    first.write_all(format!("GET /v1/items HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\n\r\n").as_bytes()).unwrap();
    assert!(keys.wait_for(1, Duration::from_secs(5)), "the lookup started");
    // Three more wait for the same digest.
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let port = envoy.port();
            std::thread::spawn(move || send(port, &Req::get("/v1/items").bearer("cf_ak_live_reset_while_waiting")).status)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    drop(first);
    let statuses: Vec<u16> = waiters.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(statuses, vec![200, 200, 200], "{}", envoy.log());
    assert_eq!(keys.count(), 2, "looked up again once, for all three");
    assert_eq!(envoy.wasm_failures(), Vec::<String>::new());
}
