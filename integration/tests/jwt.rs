//! JWT providers end to end: contracts 000 and 001 with tokens minted here, a JWKS server
//! that the filter fetches through Envoy, key rotation, and JWKS faults.

use std::time::{Duration, Instant};

use api_auth_integration::*;
use serde_json::{json, Value};

const CREDS: &str = "Could not validate credentials";

fn claims(extra: Value) -> Value {
    let now = unix_now();
    let mut c = json!({ "iss": "https://clerk.cf0.example", "sub": "user_1", "iat": now, "nbf": now - 1, "exp": now + 60 });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn start_000(jwks: &Server, tweak: impl FnOnce(&mut Value), concurrency: u32) -> (Server, Envoy) {
    let mut cfg = example("000");
    tweak(&mut cfg);
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()).cluster("clerk_jwks", jwks.port()).concurrency(concurrency));
    (upstream, envoy)
}

#[test]
fn contract_000_session_jwt_with_organisation() {
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let (upstream, envoy) = start_000(&jwks, |_| {}, 1);
    let now = unix_now();
    let tok = |extra: Value| issuer.token("k1", &claims(extra));
    let v2_org = tok(json!({ "o": { "id": "org_9", "rol": "admin", "per": "org:sys_memberships:read,org:billing:manage" } }));
    let v1_admin = tok(json!({ "org_id": "org_1", "org_role": "org:admin" }));
    let v1_member = tok(json!({ "org_id": "org_1", "org_role": "org:member" }));
    let no_org = tok(json!({ "email": "a@b.example" }));
    let user = |org: Option<&str>| {
        let mut p = vec![("x-user-id", "user_1".to_string())];
        if let Some(o) = org {
            p.push(("x-org-id", o.to_string()));
        }
        p
    };
    let mut missing = denied("no token", Req::get("/api/auth/me"), 401, json!({"detail": CREDS}));
    missing.headers.push(("www-authenticate", "Bearer".into()));
    let mut expired = denied("expired beyond skew", Req::get("/api/auth/me").bearer(&tok(json!({ "exp": now - 30 }))), 401, json!({"detail": CREDS}));
    expired.headers.push(("www-authenticate", "Bearer error=\"invalid_token\"".into()));
    let cases = vec![
        Case { name: "health is public", req: Req::get("/health"), status: 200, body: None, headers: vec![], upstream: Upstream::Saw { present: vec![], absent: vec!["x-user-id"] } },
        missing,
        expired,
        allowed("me without organisation", Req::get("/api/auth/me").bearer(&no_org), user(None)),
        allowed("session check", Req::post("/api/auth/session").bearer(&no_org), user(None)),
        denied("organisation required", Req::get("/api/projects").bearer(&no_org), 403, json!({"detail": "Organization required"})),
        allowed("Clerk v2 organisation", Req::get("/api/projects").bearer(&v2_org), user(Some("org_9"))),
        allowed("Clerk v1 organisation", Req::get("/api/projects").bearer(&v1_member), user(Some("org_1"))),
        allowed("v1 admin on admin route", Req::get("/api/admin/users").bearer(&v1_admin), user(Some("org_1"))),
        allowed("v2 admin on admin route", Req::get("/api/admin/users").bearer(&v2_org), user(Some("org_9"))),
        denied("member on admin route", Req::get("/api/admin/users").bearer(&v1_member), 403, json!({"detail": "Insufficient role"})),
        denied("wrong issuer", Req::get("/api/auth/me").bearer(&tok(json!({ "iss": "https://evil.example" }))), 401, json!({"detail": CREDS})),
        denied("not yet valid", Req::get("/api/auth/me").bearer(&tok(json!({ "nbf": now + 120 }))), 401, json!({"detail": CREDS})),
        denied("tampered payload", Req::get("/api/auth/me").bearer(&tamper(&v1_admin)), 401, json!({"detail": CREDS})),
        denied("alg none", Req::get("/api/auth/me").bearer(&alg_none(&claims(json!({ "org_id": "org_1" })))), 401, json!({"detail": CREDS})),
        denied("garbage token", Req::get("/api/auth/me").bearer("not.a.jwt"), 401, json!({"detail": CREDS})),
        denied("forged user header without token", Req::get("/api/auth/me").header("x-user-id", "admin"), 401, json!({"detail": CREDS})),
        allowed("forged user header is replaced", Req::get("/api/auth/me").bearer(&no_org).header("x-user-id", "admin"), user(None)),
    ];
    run_cases(&envoy, &upstream, cases);
    // Minted right before it is sent: expired two seconds ago, inside the 5 s skew.
    let within = issuer.token("k1", &claims(json!({ "exp": unix_now() - 2 })));
    let r = envoy.send(&Req::get("/api/auth/me").bearer(&within));
    assert_eq!(r.status, 200, "expired within the skew: {}", r.text());
}

fn tamper(token: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["org_id"] = json!("org_other");
    format!("{}.{}.{}", parts[0], b64.encode(payload.to_string()), parts[2])
}

fn alg_none(claims: &Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(claims.to_string()))
}

#[test]
fn contract_001_tenant_claims_and_audience() {
    // Webhooks are exercised in their own suite.
    let cfg = example_without_webhooks("001");
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()).cluster("clerk_jwks", jwks.port()));
    let now = unix_now();
    let base = |aud: Value, roles: Value| {
        json!({ "sub": "usr_01HX9VTPQR3KF8MZWBYD5N6JCE", "email": "alice@acme.org", "tenant_id": "ten_EXAMPLE_01HX9VTPQR3KF8MZ",
                "roles": roles, "iss": "https://causeflow.clerk.accounts.dev", "aud": aud, "exp": now + 60, "iat": now })
    };
    let member = issuer.token("k1", &base(json!("https://api.causeflow.ai"), json!(["member"])));
    let admin = issuer.token("k1", &base(json!(["https://other", "https://api.causeflow.ai"]), json!(["admin"])));
    let wrong_aud = issuer.token("k1", &base(json!("https://other.example"), json!(["admin"])));
    let tenant = |roles: &str| {
        vec![
            ("x-tenant-id", "ten_EXAMPLE_01HX9VTPQR3KF8MZ".to_string()),
            ("x-user-id", "usr_01HX9VTPQR3KF8MZWBYD5N6JCE".to_string()),
            ("x-user-roles", roles.to_string()),
        ]
    };
    let cases = vec![
        allowed("member reads incidents", Req::get("/v1/incidents").bearer(&member), tenant("member")),
        denied("member on admin", Req::get("/v1/admin/settings").bearer(&member), 403, json!({"detail": "Insufficient role"})),
        allowed("admin on admin, audience in a list", Req::get("/v1/admin/settings").bearer(&admin), tenant("admin")),
        denied("wrong audience", Req::get("/v1/incidents").bearer(&wrong_aud), 401, json!({"detail": CREDS})),
        allowed(
            "API key on the webhook endpoints",
            Req::post("/v1/webhooks/subscriptions").header("x-api-key", "cflo_live_sk_EXAMPLE_01HX9VTPQR3KF8MZ"),
            vec![("x-tenant-id", "ten_EXAMPLE_01HX9VTPQR3KF8MZ".to_string())],
        ),
        denied("JWT not accepted on key-only routes", Req::post("/v1/webhooks/subscriptions").bearer(&admin), 401, json!({"detail": CREDS})),
        denied("key not accepted on JWT routes", Req::get("/v1/incidents").header("x-api-key", "cflo_live_sk_EXAMPLE_01HX9VTPQR3KF8MZ"), 401, json!({"detail": CREDS})),
    ];
    run_cases(&envoy, &upstream, cases);
}

#[test]
fn one_fetch_for_all_workers_and_rotation_without_restart() {
    let issuer = Issuer::new(&["k1", "k2"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&["k1"])));
    let (_upstream, envoy) = start_000(
        &jwks,
        |cfg| {
            cfg["providers"]["clerk"]["jwks"]["remote"]["min_refetch_s"] = json!(1);
        },
        2,
    );
    let t1 = issuer.token("k1", &claims(json!({})));
    for _ in 0..20 {
        assert_eq!(envoy.send(&Req::get("/api/auth/me").bearer(&t1)).status, 200, "{}", envoy.log());
    }
    std::thread::sleep(Duration::from_millis(600));
    let fetches = jwks.count();
    assert_eq!(fetches, 1, "two workers and the main thread share one JWKS fetch; log:\n{}", envoy.log());

    // Rotation: the new kid is not known yet; the filter refetches (at most every
    // min_refetch_s) and the request passes without a restart.
    jwks.set(Canned::json(200, &issuer.jwks(&["k1", "k2"])));
    std::thread::sleep(Duration::from_millis(1100));
    let t2 = issuer.token("k2", &claims(json!({})));
    let r = envoy.send(&Req::get("/api/auth/me").bearer(&t2));
    assert_eq!(r.status, 200, "rotated key: {}\n{}", r.text(), envoy.log());
    assert_eq!(envoy.send(&Req::get("/api/auth/me").bearer(&t1)).status, 200);
    assert!(jwks.count() >= 2);
}

#[test]
fn jwks_faults_fail_closed_and_recover() {
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(500, "{}"));
    let (_upstream, envoy) = start_000(&jwks, |cfg| cfg["providers"]["clerk"]["jwks"]["remote"]["refresh_s"] = json!(1), 1);
    let t1 = issuer.token("k1", &claims(json!({})));
    // Down at start: the request waits (bounded) and then gets keys_unavailable.
    let started = Instant::now();
    let r = envoy.send(&Req::get("/api/auth/me").bearer(&t1));
    assert_eq!((r.status, r.json()), (503, json!({"detail": "Service unavailable"})), "{}", envoy.log());
    assert!(started.elapsed() >= Duration::from_millis(2500), "waited for the keys first");
    // Up again: recovered without a restart.
    jwks.set(Canned::json(200, &issuer.jwks(&[])));
    assert!(
        wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/api/auth/me").bearer(&t1)).status == 200),
        "keys picked up after the JWKS came back; log:\n{}",
        envoy.log()
    );
    // Down mid-run, then garbage: the cached keys keep working, and nothing new is accepted.
    jwks.set(Canned::json(503, "unavailable"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(envoy.send(&Req::get("/api/auth/me").bearer(&t1)).status, 200);
    jwks.set(Canned::json(200, r#"{"keys": "garbage"}"#));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(envoy.send(&Req::get("/api/auth/me").bearer(&t1)).status, 200);
    let other = Issuer::new(&["k1"]);
    let forged = other.token("k1", &claims(json!({})));
    assert_eq!(envoy.send(&Req::get("/api/auth/me").bearer(&forged)).status, 401);
}

/// ES384 and EdDSA tokens from a remote JWKS, verified by the filter's own P-384 and Ed25519
/// code (crypto/: the host's verify_signature has neither) inside the real Envoy: minted by
/// jwt-simple (its pure-Rust build: the p384 and ed25519-compact crates), so the signer is not
/// the verifier. A changed signature byte, a key id pointing at the other key, and an algorithm
/// outside the provider's list are refused with contract 000's body.
#[test]
fn es384_and_eddsa_from_a_remote_jwks() {
    use base64::Engine;
    use jwt_simple::prelude::*;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let es = ES384KeyPair::generate().with_key_id("p384");
    let ed = Ed25519KeyPair::generate().with_key_id("ed");
    let point = es.public_key().public_key().to_bytes_uncompressed();
    let keys = json!({ "keys": [
        { "kty": "EC", "crv": "P-384", "kid": "p384", "x": b64.encode(&point[1..49]), "y": b64.encode(&point[49..97]) },
        { "kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64.encode(ed.public_key().to_bytes()) },
    ] });
    let jwks = Server::mock(Canned::json(200, &keys.to_string()));
    let (upstream, envoy) = start_000(&jwks, |cfg| cfg["providers"]["clerk"]["algorithms"] = json!(["ES384", "EdDSA"]), 1);
    let claims = || Claims::create(jwt_simple::prelude::Duration::from_mins(5)).with_issuer("https://clerk.cf0.example").with_subject("user_1");
    let es_token = es.sign(claims()).unwrap();
    let ed_token = ed.sign(claims()).unwrap();
    let flip = |token: &str| {
        let (input, sig) = token.rsplit_once('.').unwrap();
        let mut sig = b64.decode(sig).unwrap();
        sig[7] ^= 0x10;
        format!("{input}.{}", b64.encode(&sig))
    };
    // The header re-encoded with the other key's id, the signature left as it was.
    let rekey = |token: &str, kid: &str| {
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut header: Value = serde_json::from_slice(&b64.decode(&parts[0]).unwrap()).unwrap();
        header["kid"] = json!(kid);
        parts[0] = b64.encode(header.to_string());
        parts.join(".")
    };
    let es256 = ES256KeyPair::generate().with_key_id("p384").sign(claims()).unwrap();
    let user = vec![("x-user-id", "user_1".to_string())];
    let creds = json!({ "detail": CREDS });
    let cases = vec![
        allowed("ES384", Req::get("/api/auth/me").bearer(&es_token), user.clone()),
        allowed("EdDSA", Req::get("/api/auth/me").bearer(&ed_token), user),
        denied("ES384 signature changed", Req::get("/api/auth/me").bearer(&flip(&es_token)), 401, creds.clone()),
        denied("EdDSA signature changed", Req::get("/api/auth/me").bearer(&flip(&ed_token)), 401, creds.clone()),
        denied("EdDSA signature under the P-384 key id", Req::get("/api/auth/me").bearer(&rekey(&ed_token, "p384")), 401, creds.clone()),
        denied("ES384 signature under the Ed25519 key id", Req::get("/api/auth/me").bearer(&rekey(&es_token, "ed")), 401, creds.clone()),
        denied("ES256 is not among the provider's algorithms", Req::get("/api/auth/me").bearer(&es256), 401, creds),
    ];
    run_cases(&envoy, &upstream, cases);
}
