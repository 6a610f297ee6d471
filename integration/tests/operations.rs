//! What an operator sees: the filter's counters in Envoy's stats (also Prometheus), and one
//! denial log line per refused request once the wasm log level asks for it; never a key.

use std::time::{Duration, Instant};

use api_auth_integration::*;

/// Waits for a Prometheus sample line `name{} value` (or `name value`) to show `want`, once it reaches `want` (the filter
/// flushes its counters on its timer).
fn prometheus_reaches(envoy: &Envoy, name: &str, want: u64) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let text = envoy.admin("/stats/prometheus");
        let value = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix("{} ").or_else(|| rest.strip_prefix(' '))))
            .and_then(|v| v.trim().parse::<u64>().ok());
        if value == Some(want) {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("{name} = {value:?}, want {want}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
        if let Err(e) = prometheus_reaches(&envoy, name, want) {
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
