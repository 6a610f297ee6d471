//! What an operator sees: the filter's counters in Envoy's stats (also Prometheus), and one
//! denial log line per refused request once the wasm log level asks for it; never a key.

use std::time::{Duration, Instant};

use api_auth_integration::*;

#[test]
fn counters_in_prometheus_and_denial_log_lines_on_demand() {
    let mut cfg = example("002");
    cfg.as_object_mut().unwrap().remove("providers");
    cfg["correlation_id"] = serde_json::json!({ "header": "x-correlation-id", "generate": true });
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()));

    // Envoy runs with --log-level info: no denial lines yet.
    assert_eq!(envoy.send(&Req::get("/api/v1/bots").bearer("cm_example_revoked")).status, 401);
    for _ in 0..3 {
        assert_eq!(envoy.send(&Req::get("/api/v1/bots").bearer("cm_example_bots_reader")).status, 200);
    }
    assert_eq!(envoy.send(&Req::post("/api/v1/bots").bearer("cm_example_bots_reader")).status, 403);
    assert_eq!(envoy.send(&Req::get("/nowhere")).status, 404);

    let mut problems = Vec::new();
    for (name, want) in [
        ("api_auth_allowed", 3),
        ("api_auth_denied_key_revoked", 1),
        ("api_auth_denied_insufficient_scope", 1),
        ("api_auth_denied_route_not_found", 1),
        ("api_auth_denied_token_expired", 0),
    ] {
        if let Err(e) = envoy.prometheus_reaches(name, want) {
            problems.push(e);
        }
    }
    assert!(envoy.admin("/stats").contains("wasmcustom.api_auth.allowed: 3"), "/stats names the counter under wasmcustom.");
    assert!(problems.is_empty(), "{problems:?}\n{}", envoy.admin("/stats/prometheus"));
    assert!(!envoy.log().contains("denied reason="), "no denial lines at info");

    // The operator turns wasm debug logs on at run time; the filter follows within a tick.
    let on = send(envoy.admin_port(), &Req::post("/logging?wasm=debug"));
    assert_eq!(on.status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    let cid = "op-check-1";
    let r = envoy.send(&Req::get("/api/v1/bots").bearer("cm_example_revoked").header("x-correlation-id", cid));
    assert_eq!(r.status, 401);
    let end = Instant::now() + Duration::from_secs(3);
    while !envoy.log().contains("denied reason=key_revoked") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = envoy.log();
    let line = log.lines().find(|l| l.contains("denied reason=key_revoked")).unwrap_or_else(|| panic!("no denial line:\n{log}"));
    assert!(line.contains("route=8") && line.contains("correlation_id=op-check-1"), "route and correlation id: {line}");
    assert!(!log.contains("cm_example_revoked") && !log.contains("cm_example_bots_reader"), "a key reached the log");
}

/// Two filters of one image share a VM (same `vm_id` and code) with their own root contexts and
/// configurations: every request is judged by the configuration of the filter it passes
/// through. Filter `a` guards `/a/` and answers in the `detail` format; filter `b` guards `/b/`
/// and answers in the OpenAI format; each lets the other's paths through. (A VM that judged
/// every request with one root's configuration fails the format checks.)
#[test]
fn two_filters_sharing_one_vm_judge_with_their_own_configuration() {
    let guard = |prefix: &str, errors: &str| {
        serde_json::json!({
            "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "k", "sha256": sha256_hex(b"cm_shared_vm_key"), "permissions": ["*"] }] },
            "routes": [
                { "match": { "prefix": prefix }, "auth": { "credentials": ["api_key"] } },
                { "match": { "prefix": "/" }, "auth": "none" }
            ],
            "errors": errors,
            // The first filter leaves the key for the second.
            "forward": { "strip_credentials": false }
        })
    };
    let filter = |name: &str, cfg: &serde_json::Value| {
        wasm_filter_yaml(name, "shared", "\n                fail_open: false", Some(&cfg.to_string()), &wasm_path(), "")
    };
    let filters = format!("{}{}", filter("a", &guard("/a/", "detail")), filter("b", &guard("/b/", "openai")));
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts { filters_yaml: Some(filters), ..EnvoyOpts::new(serde_json::json!({}), upstream.port()) });
    for _ in 0..3 {
        let a = envoy.send(&Req::get("/a/x"));
        assert_eq!(a.status, 401);
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert!(body.get("detail").is_some(), "/a/ is refused by filter a, in its format: {body}");
        let b = envoy.send(&Req::get("/b/x"));
        assert_eq!(b.status, 401);
        let body: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        assert!(body["error"].get("message").is_some(), "/b/ is refused by filter b, in its format: {body}");
        let keyed = envoy.send(&Req::get("/a/x").bearer("cm_shared_vm_key"));
        assert_eq!(keyed.status, 200, "{}", String::from_utf8_lossy(&keyed.body));
        assert_eq!(envoy.send(&Req::get("/b/x").bearer("cm_shared_vm_key")).status, 200);
        assert_eq!(envoy.send(&Req::get("/c")).status, 200);
    }
}
