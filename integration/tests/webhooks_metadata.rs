//! Signed webhooks (contracts 001 and 004), RFC 9728 metadata and challenges (003) and
//! correlation ids (004), end to end.

use api_auth_integration::*;
use hmac::Mac;
use serde_json::{json, Value};

const SECRET: &str = "whsec_your_webhook_secret";
const BODY: &str = r#"{"event":"incident.created","incidentId":"inc_01HX9VT"}"#;

fn sign(secret: &str, msg: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn passes(name: &'static str, req: Req) -> Case {
    Case { name, req, status: 200, body: None, headers: vec![], upstream: Upstream::Saw { present: vec![], absent: vec![] } }
}

#[test]
fn contract_001_signed_webhooks() {
    let cfg = example("001");
    let upstream = Server::echo();
    let jwks = Server::mock(Canned::json(200, r#"{"keys":[]}"#));
    let envoy = Envoy::start(
        EnvoyOpts::new(cfg, upstream.port()).cluster("clerk_jwks", jwks.port()).env("CAUSEFLOW_WEBHOOK_SECRET", SECRET),
    );
    let sig = format!("sha256={}", sign(SECRET, BODY.as_bytes()));
    // The contract's own shell recipe yields this value (openssl dgst -sha256 -hmac).
    assert_eq!(sig, "sha256=a5af0c939461c09e5354613bd7ecb7a2736d8c0db9a81cc943a57dac5f6a52c0");
    let bad = json!({"detail": "Invalid signature"});
    let hook = |s: &str| Req::post("/hooks/causeflow").header("x-webhook-signature", s).body(BODY);
    // Before anything else: a forged webhook never even opens a connection to the upstream.
    let forged = envoy.send(&hook(&format!("sha256={}", sign("whsec_forged", BODY.as_bytes()))));
    assert_eq!(forged.status, 401);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(upstream.connections(), 0, "the upstream was contacted before the signature was checked");
    let cases = vec![
        passes("valid signature", hook(&sig)),
        passes("upper-case hex", hook(&sig.to_uppercase().replacen("SHA256=", "sha256=", 1))),
        denied("wrong secret", hook(&format!("sha256={}", sign("whsec_other", BODY.as_bytes()))), 401, bad.clone()),
        denied("no signature", Req::post("/hooks/causeflow").body(BODY), 401, bad.clone()),
        denied("signature without prefix", hook(&sig["sha256=".len()..]), 401, bad.clone()),
        denied("body changed", Req::post("/hooks/causeflow").header("x-webhook-signature", &sig).body(r#"{"event":"x"}"#), 401, bad.clone()),
        denied("bodyless request", Req::get("/hooks/causeflow").header("x-webhook-signature", &sig), 401, bad.clone()),
        passes(
            "bodyless request signed over the empty body",
            Req::get("/hooks/causeflow").header("x-webhook-signature", format!("sha256={}", sign(SECRET, b""))),
        ),
    ];
    run_cases(&envoy, &upstream, cases);
    // The body reached the upstream intact.
    upstream.clear();
    assert_eq!(envoy.send(&hook(&sig)).status, 200);
    assert_eq!(upstream.requests()[0].body, BODY.as_bytes());

    // A chunked body ended by trailers: the stream ends in on_request_trailers, and the
    // signature is checked over the whole body there.
    let trailed = |s: &str| hook(s).trailers(&[("x-checksum", "1")]);
    run_cases(
        &envoy,
        &upstream,
        vec![
            passes("valid signature, chunked body with trailers", trailed(&sig)),
            denied("wrong secret, chunked body with trailers", trailed(&format!("sha256={}", sign("whsec_other", BODY.as_bytes()))), 401, bad.clone()),
        ],
    );
    upstream.clear();
    assert_eq!(envoy.send(&trailed(&sig)).status, 200);
    assert_eq!(upstream.requests()[0].body, BODY.as_bytes(), "the whole body went upstream");
}

#[test]
fn contract_004_workspaces_public_routes_timestamped_webhooks_and_correlation() {
    let mut cfg = example("004");
    // Session JWTs are covered by the JWT suite; here the API token and the public routes.
    cfg["providers"]["session"]["jwks"] = json!({ "inline": { "keys": [{ "kty": "oct", "k": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }] } });
    cfg["providers"]["session"]["algorithms"] = json!(["HS256"]);
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()).env("WEBHOOK_SECRET", SECRET));
    let tok = "wsk_example_workspace_one";
    let now = unix_now().to_string();
    let ts_sig = format!("sha256={}", sign(SECRET, format!("{now}.{BODY}").as_bytes()));
    let old = (unix_now() - 400).to_string();
    let old_sig = format!("sha256={}", sign(SECRET, format!("{old}.{BODY}").as_bytes()));
    let ws = |extra: Vec<(&'static str, String)>| {
        let mut v = vec![("x-auth-workspace", "ws_1".to_string())];
        v.extend(extra);
        v
    };
    let mut cases = vec![];
    for (method, path) in [("GET", "/health"), ("POST", "/v1/auth/session"), ("POST", "/v1/auth/register"), ("POST", "/v1/auth/accept-invite"), ("POST", "/v1/auth/verify-email"), ("POST", "/v1/auth/resend-verification")] {
        cases.push(passes("public endpoint", Req::new(method, path)));
    }
    cases.extend([
        denied("no token", Req::get("/v1/projects"), 401, json!({"detail": "Could not validate credentials"})),
        denied("no workspace header", Req::get("/v1/projects").bearer(tok), 400, json!({"detail": "Workspace required"})),
        denied("foreign workspace", Req::get("/v1/projects").bearer(tok).header("x-workspace-id", "ws_2"), 403, json!({"detail": "Forbidden"})),
        allowed("own workspace", Req::get("/v1/projects").bearer(tok).header("x-workspace-id", "ws_1"), ws(vec![])),
        allowed(
            "sane correlation id kept and sent upstream",
            Req::get("/v1/projects").bearer(tok).header("x-workspace-id", "ws_1").header("x-correlation-id", "req-42"),
            ws(vec![("x-correlation-id", "req-42".into())]),
        ),
        passes(
            "timestamped webhook",
            Req::post("/v1/webhooks/provider").header("x-signature", &ts_sig).header("x-signature-timestamp", &now).body(BODY),
        ),
        denied(
            "replayed webhook outside the window",
            Req::post("/v1/webhooks/provider").header("x-signature", &old_sig).header("x-signature-timestamp", &old).body(BODY),
            401,
            json!({"detail": "Invalid signature"}),
        ),
        denied(
            "webhook MAC over the body only",
            Req::post("/v1/webhooks/provider")
                .header("x-signature", format!("sha256={}", sign(SECRET, BODY.as_bytes())))
                .header("x-signature-timestamp", &now)
                .body(BODY),
            401,
            json!({"detail": "Invalid signature"}),
        ),
        denied(
            "webhook body over 1 MiB",
            Req::post("/v1/webhooks/provider").header("x-signature", &ts_sig).header("x-signature-timestamp", &now).body(vec![b'a'; (1 << 20) + 1]),
            413,
            json!({"detail": "Payload too large"}),
        ),
    ]);
    run_cases(&envoy, &upstream, cases);

    // Correlation ids: returned on allowed and denied responses; generated (UUID v4) when
    // absent or not sane.
    let ok = envoy.send(&Req::get("/v1/projects").bearer(tok).header("x-workspace-id", "ws_1").header("x-correlation-id", "req-42"));
    assert_eq!(ok.header("x-correlation-id"), Some("req-42"));
    let denied = envoy.send(&Req::get("/v1/projects").header("x-correlation-id", "req-43"));
    assert_eq!((denied.status, denied.header("x-correlation-id")), (401, Some("req-43")));
    for sent in [None, Some("bad id with spaces")] {
        let mut req = Req::get("/v1/projects");
        if let Some(v) = sent {
            req = req.header("x-correlation-id", v);
        }
        let r = envoy.send(&req);
        let id = r.header("x-correlation-id").unwrap_or("").to_string();
        let parts: Vec<&str> = id.split('-').collect();
        assert!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12] && parts[2].starts_with('4'),
            "generated id {id:?}"
        );
    }
    let a = envoy.send(&Req::get("/health")).header("x-correlation-id").map(str::to_string);
    let b = envoy.send(&Req::get("/health")).header("x-correlation-id").map(str::to_string);
    assert!(a.is_some() && a != b, "ids differ per request: {a:?} {b:?}");
}

#[test]
fn contract_003_metadata_and_challenges() {
    let mut cfg = example("003");
    cfg.as_object_mut().unwrap().remove("providers");
    for r in cfg["routes"].as_array_mut().unwrap() {
        if r["match"]["prefix"] == "/v1/mcp" {
            r["auth"]["credentials"] = json!(["api_key"]);
        }
    }
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()));
    let url = "https://api.clickflow.com/v1/.well-known/oauth-protected-resource";
    let meta = Case {
        name: "metadata answered by the filter",
        req: Req::get("/v1/.well-known/oauth-protected-resource"),
        status: 200,
        body: Some(json!({
            "resource": "https://api.clickflow.com/v1/mcp",
            "authorization_servers": ["https://your-app.clerk.accounts.dev"]
        })),
        headers: vec![("content-type", "application/json".into())],
        upstream: Upstream::None,
    };
    let mut missing = denied("MCP without a token", Req::get("/v1/mcp"), 401, json!({"error": "unauthorized"}));
    missing.headers.push(("www-authenticate", format!("Bearer resource_metadata=\"{url}\"")));
    let mut invalid = denied("MCP with a bad token", Req::get("/v1/mcp").bearer("cf_ak_nope"), 401, json!({"error": "unauthorized"}));
    invalid.headers.push(("www-authenticate", format!("Bearer error=\"invalid_token\", resource_metadata=\"{url}\"")));
    let mut scope = denied(
        "missing scope",
        Req::post("/v1/tools/platform/roadmap-items").bearer("cf_ak_example_list_roadmap"),
        403,
        json!({"detail": "Insufficient scope: tools:platform.create_roadmap_item"}),
    );
    scope.headers.push((
        "www-authenticate",
        format!("Bearer error=\"insufficient_scope\", scope=\"tools:platform.create_roadmap_item\", resource_metadata=\"{url}\""),
    ));
    run_cases(&envoy, &upstream, vec![meta, missing, invalid, scope]);
    let _: Value = Value::Null;
}
