//! `api-auth explain`: the filter's own decisions on the contracts' rows, with their exact
//! bodies and challenges; credentials are never echoed.

mod common;

use common::{ok, run, TempDir};
use serde_json::{json, Value};

const CREDS: &str = "Could not validate credentials";

/// Explains as JSON: (the whole report, its body parsed as JSON when there is one).
fn explain(config: &str, method: &str, path: &str, headers: &[&str]) -> Value {
    let mut args = vec!["explain", "--json", config, method, path];
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    let out = ok(&args);
    for h in headers {
        let value = h.split_once(':').map_or("", |(_, v)| v.trim());
        if h.to_ascii_lowercase().starts_with("authorization") || h.to_ascii_lowercase().starts_with("x-api-key") {
            assert!(!out.all().contains(value), "a credential was echoed: {}", out.stdout);
        }
    }
    out.json()
}

fn header<'a>(report: &'a Value, name: &str) -> Option<&'a str> {
    report["headers"].as_array()?.iter().find(|p| p[0] == name).and_then(|p| p[1].as_str())
}

/// One denial row: status, exact body bytes, reason code.
fn denied(report: &Value, status: u16, body: &str, reason: &str) {
    assert_eq!(report["decision"], "deny", "{report}");
    assert_eq!(report["status"], status, "{report}");
    assert_eq!(report["body"], body, "{report}");
    assert_eq!(report["reason"], reason, "{report}");
    assert_eq!(header(report, "content-type"), Some("application/json"), "{report}");
}

fn allowed(report: &Value) {
    assert_eq!(report["decision"], "allow", "{report}");
    assert!(report.get("status").is_none(), "{report}");
}

#[test]
fn contract_002_rows() {
    let (cfg, _) = common::example("002");
    // Exact bytes: the documented APIs' field order, not serde_json's.
    let openai = |msg: &str, code: &str| format!(r#"{{"error":{{"message":"{msg}","type":"{code}","code":"{code}"}}}}"#);
    let llm = "Authorization: Bearer cm_example_llm_only";
    let bots = "authorization: Bearer cm_example_bots_reader";

    let r = explain(&cfg, "POST", "/v1/chat/completions", &[]);
    denied(&r, 401, r#"{"error":{"message":"Could not validate credentials","type":"credentials_missing","code":"credentials_missing"}}"#, "credentials_missing");
    assert_eq!(header(&r, "www-authenticate"), Some("Bearer"));
    assert_eq!(r["route"]["index"], 0);
    assert_eq!(r["route"]["match"], json!({"methods": ["POST"], "path": "/v1/chat/completions"}));
    assert_eq!(r["route"]["requirements"]["permissions"], json!(["llm"]));
    assert_eq!(r["route"]["requirements"]["errors"], "openai");

    let r = explain(&cfg, "POST", "/v1/chat/completions?stream=true", &[llm]);
    allowed(&r);
    assert_eq!(r["principal"]["key_id"], "key_llm");
    assert_eq!(r["principal"]["kind"], "api_key");
    assert_eq!(r["upstream"]["remove"], json!(["authorization"]));
    assert_eq!(r["upstream"]["set"], json!([["x-auth-key-id", "key_llm"]]));

    let r = explain(&cfg, "POST", "/v1/audio/speech", &[llm]);
    denied(&r, 403, &openai("Permission denied: tts", "permission_denied"), "permission_denied");
    assert_eq!(r["detail"], "tts");
    assert_eq!(header(&r, "www-authenticate"), None);

    let r = explain(&cfg, "POST", "/v1/messages", &["x-api-key: cm_example_revoked"]);
    denied(&r, 401, r#"{"type":"error","error":{"type":"authentication_error","message":"Could not validate credentials"}}"#, "key_revoked");
    assert_eq!(header(&r, "www-authenticate"), Some("Bearer error=\"invalid_token\""));

    allowed(&explain(&cfg, "POST", "/v1/messages", &["x-api-key: cm_example_llm_only"]));

    let r = explain(&cfg, "GET", "/api/v1/bots/42", &[bots]);
    allowed(&r);
    assert_eq!(r["route"]["index"], 8);
    assert_eq!(r["principal"]["scopes"], json!(["bots:read"]));

    let r = explain(&cfg, "POST", "/api/v1/bots", &[bots]);
    denied(&r, 403, r#"{"detail":"Insufficient scope: bots:write"}"#, "insufficient_scope");
    assert_eq!(header(&r, "www-authenticate"), Some("Bearer error=\"insufficient_scope\", scope=\"bots:write\""));
    assert_eq!(r["route"]["index"], 9);

    // Scopes default to empty: every permission, still no resource access.
    let r = explain(&cfg, "GET", "/api/v1/bots", &["authorization: Bearer cm_example_all_services"]);
    denied(&r, 403, r#"{"detail":"Insufficient scope: bots:read"}"#, "insufficient_scope");

    let r = explain(&cfg, "GET", "/api/v1/bots", &["authorization: Bearer cm_example_bots_reader", "x-api-key: cm_nope"]);
    denied(&r, 401, &json!({"detail": CREDS}).to_string(), "key_unknown");

    let r = explain(&cfg, "GET", "/elsewhere", &[bots]);
    denied(&r, 404, r#"{"detail":"Not found"}"#, "route_not_found");
    assert_eq!(r["route"], Value::Null);
}

#[test]
fn contract_003_rows() {
    let (cfg, _) = common::example("003");
    let meta = "resource_metadata=\"https://api.clickflow.com/v1/.well-known/oauth-protected-resource\"";
    let list = "Authorization: Bearer cf_ak_example_list_roadmap";
    let agents = "Authorization: Bearer cf_ak_example_agents_only";

    let r = explain(&cfg, "POST", "/v1/tools/platform/roadmap-items", &[list]);
    denied(&r, 403, r#"{"detail":"Insufficient scope: tools:platform.create_roadmap_item"}"#, "insufficient_scope");
    assert_eq!(
        header(&r, "www-authenticate").map(str::to_string),
        Some(format!("Bearer error=\"insufficient_scope\", scope=\"tools:platform.create_roadmap_item\", {meta}"))
    );
    assert_eq!(r["route"]["index"], 3);

    let r = explain(&cfg, "POST", "/v1/tools/agents/run", &[agents]);
    allowed(&r);
    assert_eq!(r["route"]["match"], json!({"template": "/v1/tools/agents/{tool}"}));
    assert_eq!(r["route"]["requirements"]["scopes"], json!(["tools:agents.{tool}"]));
    let r = explain(&cfg, "POST", "/v1/tools/agents/run", &[list]);
    denied(&r, 403, r#"{"detail":"Insufficient scope: tools:agents.run"}"#, "insufficient_scope");

    let r = explain(&cfg, "GET", "/v1/mcp", &[]);
    denied(&r, 401, r#"{"error":"unauthorized"}"#, "credentials_missing");
    assert_eq!(header(&r, "www-authenticate").map(str::to_string), Some(format!("Bearer {meta}")));
    let r = explain(&cfg, "GET", "/v1/mcp", &["Authorization: Bearer cf_ak_nope"]);
    denied(&r, 401, r#"{"error":"unauthorized"}"#, "key_unknown");
    assert_eq!(header(&r, "www-authenticate").map(str::to_string), Some(format!("Bearer error=\"invalid_token\", {meta}")));

    let r = explain(&cfg, "GET", "/v1/anything", &["Authorization: Bearer cf_ak_example_expired"]);
    denied(&r, 401, &json!({"detail": CREDS}).to_string(), "key_expired");
    let r = explain(&cfg, "GET", "/v1/anything", &["Authorization: Bearer cf_ak_example_revoked"]);
    denied(&r, 401, &json!({"detail": CREDS}).to_string(), "key_revoked");

    let r = explain(&cfg, "GET", "/v1/anything", &[list, "x-organization-id: org_other"]);
    denied(&r, 403, r#"{"detail":"Forbidden"}"#, "organization_forbidden");
    let r = explain(&cfg, "GET", "/v1/anything", &[list, "X-Organization-Id: org_abc123", "x-auth-key-id: forged"]);
    allowed(&r);
    // Forwarded headers are removed first (no forgery), then set from the principal.
    assert_eq!(r["upstream"]["remove"], json!(["x-auth-key-id", "x-organization-id", "authorization"]));
    assert_eq!(r["upstream"]["set"], json!([["x-auth-key-id", "key_list"], ["x-organization-id", "org_abc123"]]));
    assert_eq!(r["request"]["headers"], json!([["authorization", "<redacted>"], ["x-organization-id", "org_abc123"], ["x-auth-key-id", "forged"]]));

    let r = explain(&cfg, "GET", "/v1/.well-known/oauth-protected-resource", &[]);
    assert_eq!(r["decision"], "respond");
    assert_eq!(r["status"], 200);
    assert_eq!(r["route"], Value::Null);
    let doc: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(doc["resource"], "https://api.clickflow.com/v1/mcp");
}

#[test]
fn text_output_redacts_credentials_and_shows_the_exact_answer() {
    let (cfg, _) = common::example("002");
    let out = ok(&[
        "explain", &cfg, "POST", "/api/v1/bots", "-H", "Authorization: Bearer cm_example_bots_reader", "-H", "x-api-key: cm_example_bots_reader",
        "-H", "cookie: session=abc123", "-H", "accept: application/json",
    ]);
    let want = format!(
        "request   POST /api/v1/bots
headers   authorization: <redacted>
          x-api-key: <redacted>
          cookie: <redacted>
          accept: application/json
route     routes[9] {{\"prefix\":\"/api/v1/bots\"}}
requires  credentials: jwt, api_key
          scopes (all): bots:write
          error format: detail
decision  deny
reason    insufficient_scope (bots:write)
status    403
response  content-type: application/json
          www-authenticate: Bearer error=\"insufficient_scope\", scope=\"bots:write\"
body      {}
",
        r#"{"detail":"Insufficient scope: bots:write"}"#
    );
    assert_eq!(out.stdout, want);
    assert!(!out.all().contains("cm_example_bots_reader") && !out.all().contains("abc123"));

    let out = ok(&["explain", &cfg, "POST", "http://127.0.0.1:10000/v1/chat/completions", "-H", "authorization:Bearer cm_example_llm_only"]);
    assert!(out.stdout.starts_with("request   POST /v1/chat/completions\n"), "{}", out.stdout);
    assert!(out.stdout.contains("\ndecision  allow\nprincipal api_key key_llm\n          permissions: llm\nupstream  remove authorization\n"), "{}", out.stdout);
    assert!(!out.all().contains("cm_example_llm_only"));
}

#[test]
fn remote_keys_and_key_services_show_as_waits() {
    let (cfg, _) = common::example("000");
    // A well-formed, unexpired token of the configured issuer: only its keys are missing.
    let claims = json!({"iss": "https://clerk.cf0.example", "sub": "u", "exp": common::unix_now() + 600});
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!("{}.{}.c2ln", b64(&json!({"alg": "RS256", "kid": "k1"})), b64(&claims));
    let r = explain(&cfg, "GET", "/api/auth/me", &[&format!("authorization: Bearer {token}")]);
    assert_eq!(r["decision"], "wait", "{r}");
    assert_eq!(r["wait"], json!({"jwks": {"provider": "clerk", "cluster": "clerk_jwks", "path": "/.well-known/jwks.json", "refetch": false}}));
    assert_eq!(r["route"]["index"], 1);

    let dir = TempDir::new();
    let file = dir.write(
        "lookup.json",
        json!({
            "api_keys": { "prefixes": ["sk_"], "keys": [],
                          "lookup": { "cluster": "keys", "path": "/v1/keys/lookup" } },
            "routes": [ { "match": { "prefix": "/" }, "auth": { "credentials": ["api_key"] } } ]
        })
        .to_string(),
    );
    let r = explain(&file, "GET", "/x", &["x-api-key: sk_live_secret_value"]);
    assert_eq!(r["decision"], "wait", "{r}");
    assert_eq!(r["wait"], json!({"key_service": {"cluster": "keys", "path": "/v1/keys/lookup"}}));
    let text = ok(&["explain", &file, "GET", "/x", "-H", "x-api-key: sk_live_secret_value"]);
    assert!(text.stdout.contains("decision  wait\nwaits     the key service"), "{}", text.stdout);
    assert!(!text.all().contains("sk_live_secret_value"));
    // Nor the digest that would be sent.
    assert!(!text.all().contains(&common::sha256_hex(b"sk_live_secret_value")));
}

#[test]
fn discovered_keys_show_as_a_wait_for_the_document_unless_given() {
    let dir = TempDir::new();
    let file = dir.write(
        "discovery.json",
        json!({
            "providers": { "idp": { "issuer": "https://clerk.cf0.example", "algorithms": ["RS256"],
                                    "jwks": { "discovery": { "cluster": "idp" } } } },
            "routes": [ { "match": { "prefix": "/" }, "auth": {} } ]
        })
        .to_string(),
    );
    let claims = json!({"iss": "https://clerk.cf0.example", "sub": "u", "exp": common::unix_now() + 600});
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!("{}.{}.c2ln", b64(&json!({"alg": "RS256", "kid": "k1"})), b64(&claims));
    let r = explain(&file, "GET", "/x", &[&format!("authorization: Bearer {token}")]);
    assert_eq!(r["decision"], "wait", "no keys are claimed before they are fetched: {r}");
    assert_eq!(r["wait"], json!({"jwks": {"provider": "idp", "cluster": "idp", "path": "/.well-known/openid-configuration", "refetch": false, "discovery": true}}));
    let text = ok(&["explain", &file, "GET", "/x", "-H", &format!("authorization: Bearer {token}")]);
    let flat = text.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("GET /.well-known/openid-configuration, then the keys at its jwks_uri"), "{}", text.stdout);
    let check = ok(&["check", &file]);
    assert!(check.stdout.contains("idp: JWKS by discovery through cluster idp"), "{}", check.stdout);
}

#[test]
fn webhook_routes_verify_the_body_when_given() {
    let (cfg, _) = common::example("001");
    let dir = TempDir::new();
    let body = dir.write("body.json", r#"{"event":"incident.created","incidentId":"inc_01HX9VT"}"#);
    let env = "CAUSEFLOW_WEBHOOK_SECRET=whsec_your_webhook_secret";
    // HMAC-SHA256 of the body with that secret (contract 001's known answer).
    let good = "x-webhook-signature: sha256=a5af0c939461c09e5354613bd7ecb7a2736d8c0db9a81cc943a57dac5f6a52c0";
    let base = ["explain", "--json", "--env", env, &cfg, "POST", "/hooks/causeflow"];

    let out = ok(&[&base[..], &["-H", good, "--body", &body]].concat());
    let r = out.json();
    allowed(&r);
    assert_eq!(r["webhook"], json!({"name": "inbound", "signature": "valid"}));
    assert_eq!(r["route"]["requirements"], json!({"public": true, "webhook": "inbound", "errors": "detail"}));
    assert!(!out.all().contains("whsec_your_webhook_secret"));

    let bad = "x-webhook-signature: sha256=a5af0c939461c09e5354613bd7ecb7a2736d8c0db9a81cc943a57dac5f6a52c1";
    let r = ok(&[&base[..], &["-H", bad, "--body", &body]].concat()).json();
    denied(&r, 401, r#"{"detail":"Invalid signature"}"#, "signature_invalid");
    assert_eq!(r["webhook"]["signature"], "invalid");

    let r = ok(&[&base[..], &["-H", good]].concat()).json();
    allowed(&r);
    assert_eq!(r["webhook"]["signature"], "not checked");

    let r = ok(&["explain", "--json", "--env", env, &cfg, "POST", "/v1/webhooks/in", "-H", "x-api-key: cflo_live_sk_EXAMPLE_01HX9VTPQR3KF8MZ", "--body", &body]).json();
    allowed(&r);
    assert!(r.get("webhook").is_none(), "{r}");
    assert_eq!(r["notes"], json!(["--body is only read on a webhook route; this route has none"]));
}

#[test]
fn usage_errors() {
    let (cfg, _) = common::example("002");
    let cases: Vec<Vec<&str>> = vec![
        vec!["explain", &cfg, "GET"],
        vec!["explain", &cfg, "GET", "/x", "extra"],
        vec!["explain", &cfg, "GET", "no-slash"],
        vec!["explain", &cfg, "G E T", "/x"],
        vec!["explain", &cfg, "GET", "/x", "-H", "no colon"],
        vec!["explain", &cfg, "GET", "/x", "--now", "yesterday"],
        vec!["explain", &cfg, "GET", "/x", "--frobnicate"],
        // 002's only provider has inline keys: --jwks has nothing to feed.
        vec!["explain", &cfg, "GET", "/x", "--jwks", "/dev/null"],
    ];
    for args in cases {
        let out = run(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("api-auth: "), "{}", out.stderr);
    }
    let out = run(&["explain", "/nonexistent.json", "GET", "/x"]);
    assert_eq!(out.code, 1);
}

/// The tenant rule and the judged form, as `explain` shows them: an OAuth user of a
/// `full_access` provider (contract 003's MCP route) passes scopes, but never names another
/// organisation; `HEAD .../` is judged as `GET ...`.
#[test]
fn full_access_never_crosses_a_tenant_and_the_judged_form_is_shown() {
    let dir = TempDir::new();
    let key = dir.path("demo-key.pem");
    let jwks = dir.write("jwks.json", ok(&["jwks", "--key", &key]).stdout);
    let cfg = dir.write(
        "config.json",
        json!({
            "providers": { "clerk": { "issuer": "https://clerk.test", "algorithms": ["RS256"], "full_access": true,
                                      "jwks": { "remote": { "cluster": "jwks", "path": "/jwks.json" } } } },
            "routes": [{ "match": { "prefix": "/v1/mcp" }, "auth": { "scopes": ["tools:mcp"] }, "errors": "error" }],
            "forward": { "headers": { "x-organization-id": "organization" } }
        })
        .to_string(),
    );
    let token = ok(&["mint-token", "--key", &key, "--iss", "https://clerk.test", "--org", "org_own"]).stdout.trim().to_string();
    let auth = format!("authorization: Bearer {token}");
    let run = |method: &str, path: &str, extra: &[&str]| {
        let mut args = vec!["explain", "--json", "--jwks", &jwks, &cfg, method, path, "-H", &auth];
        for h in extra {
            args.extend(["-H", h]);
        }
        ok(&args).json()
    };
    let r = run("GET", "/v1/mcp", &["x-organization-id: org_victim"]);
    denied(&r, 403, r#"{"error":"forbidden"}"#, "organization_forbidden");
    let r = run("GET", "/v1/mcp", &["x-organization-id: org_own"]);
    allowed(&r);
    assert_eq!(r["principal"]["organization"], "org_own", "{r}");
    assert_eq!(r["principal"]["full_access"], true, "{r}");
    let r = run("HEAD", "/v1/mcp/tools/", &[]);
    allowed(&r);
    assert_eq!(r["judged_as"], json!({ "method": "GET", "path": "/v1/mcp/tools" }), "{r}");
    let text = ok(&["explain", "--jwks", &jwks, &cfg, "GET", "/v1/mcp", "-H", &auth]).stdout;
    assert!(text.contains("full access (passes permission and scope checks, never another organisation or workspace)"), "{text}");
    assert!(!text.contains(&token));
    // Refused before any route: in the default format, not the route's.
    let r = run("get", "/v1/mcp", &[]);
    denied(&r, 400, r#"{"detail":"Bad request"}"#, "method_invalid");
    let r = run("GET", "/v1/mcp;x", &[]);
    denied(&r, 400, r#"{"detail":"Bad request"}"#, "path_not_normalized");
}

/// Routes bound to the router's choice are explained with the choice given.
#[test]
fn routes_bound_to_the_router_take_the_route_name_and_metadata() {
    let dir = TempDir::new();
    let cfg = dir.write(
        "config.json",
        json!({
            "api_keys": { "prefixes": ["k_"], "keys": [] },
            "routes": [
                { "match": { "route_name": "admin-api" }, "auth": { "roles": ["admin"] } },
                { "match": { "route_metadata": { "filter": "api_auth", "key": "policy", "value": "public" } }, "auth": "none" },
                { "match": { "prefix": "/" }, "auth": {} }
            ]
        })
        .to_string(),
    );
    let route = |extra: &[&str]| {
        let mut args = vec!["explain", "--json", &cfg, "GET", "/anything"];
        args.extend(extra);
        ok(&args).json()
    };
    assert_eq!(route(&["--route-name", "admin-api"])["route"]["index"], 0);
    assert_eq!(route(&["--route-metadata", "api_auth=policy=public"])["route"]["index"], 1);
    assert_eq!(route(&["--route-name", "other"])["route"]["index"], 2);
    assert_eq!(route(&[])["route"]["index"], 2);
    assert_eq!(run(&["explain", &cfg, "GET", "/", "--route-metadata", "novalue"]).code, 2);
}

#[test]
fn an_mcp_call_is_judged_on_its_body() {
    let (cfg, _) = common::example("003");
    let call = |tool: &str| json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": { "name": tool } }).to_string();
    let judged = |key: &str, body: &str| {
        let dir = TempDir::new();
        let file = dir.0.join("body.json");
        std::fs::write(&file, body).unwrap();
        let auth = format!("Authorization: Bearer {key}");
        let out = ok(&["explain", "--json", &cfg, "POST", "/v1/mcp", "-H", &auth, "--body", file.to_str().unwrap()]);
        assert!(!out.all().contains(key), "a credential was echoed");
        out.json()
    };
    let r = judged("cf_ak_example_agents_only", &call("agents.deploy"));
    assert_eq!((r["decision"].clone(), r["mcp"]["call"].clone()), (json!("allow"), json!({ "method": "tools/call", "name": "agents.deploy" })), "{r}");
    let r = judged("cf_ak_example_list_roadmap", &call("agents.deploy"));
    assert_eq!((r["decision"].clone(), r["status"].clone(), r["reason"].clone()), (json!("deny"), json!(200), json!("insufficient_scope")), "{r}");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["result"]["content"][0]["text"], "Insufficient scope: tools:agents.deploy");
    assert_eq!(body["id"], 9);
    let r = judged("cf_ak_example_full_access", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#);
    assert_eq!((r["status"].clone(), r["reason"].clone()), (json!(400), json!("mcp_parse_error")), "{r}");
    // Without --body the allow waits for the body, as in Envoy.
    let r = explain(&cfg, "POST", "/v1/mcp", &["Authorization: Bearer cf_ak_example_list_roadmap"]);
    assert_eq!((r["decision"].clone(), r["mcp"]["call"].clone()), (json!("allow"), json!("not checked")), "{r}");
}
