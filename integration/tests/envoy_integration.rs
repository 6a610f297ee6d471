//! The filter among Envoy's own filters, as envoy/envoy.yaml ships it: the demo configuration
//! (`make run`) with the shipped access log, RBAC rule on filter state, per-key local rate
//! limit, Prometheus tags and failure policy, each block taken from envoy/envoy.yaml unchanged
//! (`Shipped`). What an operator relies on: the access log names the reason of a denial and the
//! principal of an allow, RBAC and the rate limit act on the filter's verdict (never on what the
//! client sent), counters carry `reason`/`kind` labels, gRPC callers get gRPC statuses.

use std::time::{Duration, Instant};

use api_auth_integration::*;
use serde_json::{json, Value};

const CREDS: &str = "Could not validate credentials";
const KEY_ALL: &str = "cm_example_all_services";
const KEY_LLM: &str = "cm_example_llm_only";
const KEY_BOTS: &str = "cm_example_bots_reader";
const KEY_REVOKED: &str = "cm_example_revoked";

/// The demo Envoy of `make run`: examples/demo.json (the configuration envoy/envoy.yaml embeds),
/// its JWT provider's JWKS served here, and every shipped block.
/// Its key service (`api_keys.lookup`, cluster `demo_keys`) is a mock that knows no key until
/// a test says otherwise, and its webhook secret the one envoy/envoy.yaml sets.
struct Demo {
    issuer: Issuer,
    _jwks: Server,
    keys: Server,
    upstream: Server,
    envoy: Envoy,
}

/// `DEMO_WEBHOOK_SECRET` in envoy/envoy.yaml's vm_config.
const DEMO_WEBHOOK_SECRET: &str = "whsec_demo_local_testing_only";

fn demo() -> Demo {
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let keys = Server::mock(Canned::json(404, r#"{"detail":"Not found"}"#));
    let upstream = Server::echo();
    let envoy = Envoy::start(
        EnvoyOpts::new(example("demo"), upstream.port())
            .cluster("demo_issuer", jwks.port())
            .cluster("demo_keys", keys.port())
            .env("DEMO_WEBHOOK_SECRET", DEMO_WEBHOOK_SECRET)
            .shipped(&Shipped::ALL),
    );
    Demo { issuer, _jwks: jwks, keys, upstream, envoy }
}

impl Demo {
    /// A token of the demo provider, as `api-auth mint-token --sub user_demo --org org_demo`.
    fn token(&self) -> String {
        let now = unix_now();
        self.issuer.token(
            "k1",
            &json!({ "iss": "https://demo-issuer.local", "sub": "user_demo", "org_id": "org_demo", "iat": now, "nbf": now - 1, "exp": now + 300, "scope": "bots:read", "permissions": ["llm"] }),
        )
    }
}

fn chat(key: &str) -> Req {
    Req::post("/v1/chat/completions").bearer(key).body(r#"{"model":"m"}"#)
}

fn grpc(req: Req) -> Req {
    req.header("content-type", "application/grpc").header("te", "trailers")
}

/// Fails with the Envoy log attached.
fn check(envoy: &Envoy, problems: Vec<String>) {
    assert!(problems.is_empty(), "{} problem(s):\n- {}\n--- access log ---\n{}\n--- Envoy log ---\n{}", problems.len(), problems.join("\n- "), envoy.access_log().join("\n"), envoy.log());
}

#[test]
fn rbac_on_filter_state_blocks_the_named_key_and_passes_the_others() {
    let d = demo();
    let token = d.token();
    let cases = vec![
        Case { name: "key_all: the filter allows it, RBAC's blocked-keys policy does not", req: chat(KEY_ALL), status: 403, body: None, headers: vec![], upstream: Upstream::None },
        allowed("key_llm passes RBAC", chat(KEY_LLM), vec![("x-auth-key-id", "key_llm".into())]),
        allowed("a JWT (no key id in filter state) passes RBAC", Req::get("/api/v1/me").bearer(&token), vec![("x-auth-subject", "user_demo".into()), ("x-auth-organization", "org_demo".into())]),
        // RBAC reads the filter's verdict, not the request: a client's own x-auth-key-id is
        // neither what RBAC matches nor what reaches the upstream.
        allowed("key_llm claiming to be key_all in x-auth-key-id", chat(KEY_LLM).header("x-auth-key-id", "key_all"), vec![("x-auth-key-id", "key_llm".into())]),
    ];
    let mut problems = Vec::new();
    for case in &cases {
        let (resp, p) = check_case(&d.envoy, &d.upstream, case);
        problems.extend(p.into_iter().map(|p| format!("{}: {p}", case.name)));
        if case.status == 403 && resp.text() != "RBAC: access denied" {
            problems.push(format!("{}: body {:?}, want RBAC's own \"RBAC: access denied\"", case.name, resp.text()));
        }
    }
    // The filter allowed all four; RBAC denied one of them after it.
    let lines = d.envoy.access_log_lines(4, Duration::from_secs(5));
    match lines.first() {
        Some(l) if l.contains(" 403 rbac_access_denied_matched_policy[blocked-keys] ") && l.contains("key=key_all") => {}
        other => problems.push(format!("access log of the RBAC denial: {other:?}")),
    }
    match lines.get(3) {
        Some(l) if l.contains(" 200 via_upstream ") && l.contains("key=key_llm") => {}
        other => problems.push(format!("access log of key_llm claiming key_all: {other:?}")),
    }
    let stat = |name: &str| d.envoy.stat(name);
    if stat("http.ingress.rbac.denied") != Some(1) || stat("http.ingress.rbac.allowed") != Some(3) {
        problems.push(format!("RBAC stats: denied {:?} (want 1), allowed {:?} (want 3)", stat("http.ingress.rbac.denied"), stat("http.ingress.rbac.allowed")));
    }
    check(&d.envoy, problems);
}

#[test]
fn access_log_names_the_reason_of_a_denial_and_the_principal_of_an_allow() {
    let d = demo();
    let token = d.token();
    // (request, status, what its access-log line must contain)
    let rows: Vec<(Req, u16, Vec<&str>)> = vec![
        (Req::post("/v1/chat/completions"), 401, vec!["\"POST /v1/chat/completions HTTP/1.1\" 401 api_auth.credentials_missing ", "kind=- key=- sub=-"]),
        (Req::get("/api/v1/bots").bearer(KEY_REVOKED), 401, vec![" 401 api_auth.key_revoked ", "key=-"]),
        (Req::post("/api/v1/bots").bearer(KEY_BOTS), 403, vec![" 403 api_auth.insufficient_scope ", "key=-"]),
        (Req::get("/nowhere"), 404, vec![" 404 api_auth.route_not_found "]),
        // The query string is not logged (it may carry anything).
        (Req::get("/api/v1/bots?note=query-never-logged").bearer(KEY_BOTS), 200, vec!["\"GET /api/v1/bots HTTP/1.1\" 200 via_upstream ", "kind=api_key key=key_bots_ro sub=- org=-"]),
        (Req::get("/api/v1/me").bearer(&token), 200, vec![" 200 via_upstream ", "kind=jwt key=- sub=user_demo org=org_demo"]),
        (Req::get("/api/v1/me").bearer(&d.issuer.token("k1", &json!({ "iss": "https://demo-issuer.local", "sub": "user_demo", "exp": unix_now() - 600 }))), 401, vec![" 401 api_auth.token_expired ", "sub=-"]),
    ];
    let mut problems = Vec::new();
    for (req, status, _) in &rows {
        let r = d.envoy.send(req);
        if r.status != *status {
            problems.push(format!("{} {}: status {} want {status}", req.method, req.path, r.status));
        }
    }
    let lines = d.envoy.access_log_lines(rows.len(), Duration::from_secs(5));
    if lines.len() != rows.len() {
        problems.push(format!("{} access-log lines, want {}", lines.len(), rows.len()));
    }
    for ((req, _, want), line) in rows.iter().zip(&lines) {
        for w in want {
            if !line.contains(w) {
                problems.push(format!("{} {}: line {line:?} lacks {w:?}", req.method, req.path));
            }
        }
    }
    let all = lines.join("\n");
    for secret in [KEY_BOTS, KEY_REVOKED, token.as_str(), "query-never-logged"] {
        if all.contains(secret) {
            problems.push("a credential or a query string reached the access log".into());
        }
    }
    check(&d.envoy, problems);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// What `make run` shows beyond the static keys: a key the demo key service knows (200 with its
/// id), one it does not (401 key_unknown), and POST /hooks/demo with a right and a wrong
/// signature, each with its access-log line.
#[test]
fn the_demo_key_service_and_the_signed_webhook() {
    use hmac::Mac;
    let d = demo();
    let key = "cm_demo_from_key_service";
    let digest = sha256_hex(key.as_bytes());
    d.keys.set(Canned::json(200, &json!({ "id": "key_service_demo", "sha256": digest, "status": "active", "permissions": ["llm"] }).to_string()));
    let mut problems = Vec::new();
    let r = d.envoy.send(&chat(key));
    if r.status != 200 || d.upstream.requests().last().and_then(|q| q.header("x-auth-key-id")).as_deref() != Some("key_service_demo") {
        problems.push(format!("a key of the key service: status {} (want 200 with x-auth-key-id key_service_demo)", r.status));
    }
    match d.keys.requests().first() {
        Some(q) if q.method == "POST" && q.path == "/v1/keys/lookup" && serde_json::from_slice::<Value>(&q.body).ok() == Some(json!({ "sha256": digest })) => {}
        other => problems.push(format!("the lookup the key service got: {other:?}")),
    }
    d.keys.set(Canned::json(404, r#"{"detail":"Not found"}"#));
    let r = d.envoy.send(&chat("cm_unknown_to_everyone"));
    if r.status != 401 {
        problems.push(format!("an unknown key: status {} want 401", r.status));
    }

    let body = r#"{"event":"demo.ping"}"#;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(DEMO_WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let hook = |sig: &str| Req::post("/hooks/demo").header("x-webhook-signature", format!("sha256={sig}")).body(body);
    let before = d.upstream.count();
    let r = d.envoy.send(&hook(&sig));
    if r.status != 200 || d.upstream.count() != before + 1 || d.upstream.requests().last().map(|q| q.body.clone()) != Some(body.as_bytes().to_vec()) {
        problems.push(format!("a signed webhook: status {} (want 200 and the body upstream)", r.status));
    }
    let r = d.envoy.send(&hook(&"0".repeat(64)));
    if r.status != 401 || d.upstream.count() != before + 1 {
        problems.push(format!("a wrong signature: status {} (want 401, nothing upstream)", r.status));
    }
    let lines = d.envoy.access_log_lines(4, Duration::from_secs(5));
    let want = [" 200 via_upstream ", " 401 api_auth.key_unknown ", "\"POST /hooks/demo HTTP/1.1\" 200 via_upstream ", "\"POST /hooks/demo HTTP/1.1\" 401 api_auth.signature_invalid "];
    for (i, w) in want.iter().enumerate() {
        if !lines.get(i).is_some_and(|l| l.contains(w)) {
            problems.push(format!("access-log line {i}: {:?} lacks {w:?}", lines.get(i)));
        }
    }
    if lines.first().is_some_and(|l| !l.contains("key=key_service_demo")) {
        problems.push(format!("the key service's key id is not in the access log: {:?}", lines.first()));
    }
    check(&d.envoy, problems);
}

/// `max_tokens` of the shipped descriptor for `key_id` = `value`.
fn shipped_budget(value: &str) -> usize {
    let block = Shipped::LocalRateLimit.yaml(0);
    let lines: Vec<&str> = block.lines().collect();
    let at = lines.iter().position(|l| l.contains(&format!("value: {value} }}"))).unwrap_or_else(|| panic!("no descriptor for {value} in:\n{block}"));
    let bucket = lines[at + 1];
    let n = bucket.split("max_tokens:").nth(1).and_then(|r| r.split(',').next()).map(str::trim).unwrap_or_else(|| panic!("no max_tokens after {value}: {bucket}"));
    n.parse().unwrap_or_else(|_| panic!("max_tokens {n:?}"))
}

#[test]
fn the_rate_limit_is_per_key_and_keyed_on_the_filters_verdict() {
    let d = demo();
    let budget = shipped_budget("key_llm");
    assert!((1..=20).contains(&budget), "key_llm's demo budget {budget}: the test sends it in well under its refill time");
    let mut problems = Vec::new();
    // key_llm: its budget, then 429 from the local rate limit (the upstream sees nothing).
    for i in 1..=budget {
        let r = d.envoy.send(&chat(KEY_LLM));
        if r.status != 200 {
            problems.push(format!("key_llm request {i} of its budget {budget}: {}", r.status));
        }
    }
    d.upstream.clear();
    let over = d.envoy.send(&chat(KEY_LLM));
    if over.status != 429 || over.text() != "local_rate_limited" {
        problems.push(format!("key_llm over its budget: {} {:?}, want the local rate limit's 429", over.status, over.text()));
    }
    if d.upstream.count() != 0 {
        problems.push("the upstream saw a rate-limited request".into());
    }
    // gRPC callers over the budget get RESOURCE_EXHAUSTED, not a retry-inviting UNAVAILABLE.
    let g = d.envoy.send(&grpc(Req::post("/v1/chat/completions").bearer(KEY_LLM)));
    if g.status != 200 || g.header("grpc-status") != Some("8") {
        problems.push(format!("gRPC over the budget: {} grpc-status {:?}, want 200 and 8", g.status, g.header("grpc-status")));
    }
    // Another key has its own bucket, also when it claims key_llm's id in x-auth-key-id (the
    // filter replaces that header with the key's own id before the rate limit reads it).
    for (i, req) in [Req::get("/api/v1/bots").bearer(KEY_BOTS), Req::get("/api/v1/bots").bearer(KEY_BOTS).header("x-auth-key-id", "key_llm")].into_iter().cycle().take(2 * budget + 2).enumerate() {
        let r = d.envoy.send(&req);
        if r.status != 200 {
            problems.push(format!("key_bots_ro request {} after key_llm's 429: {}", i + 1, r.status));
        }
    }
    // key_bots_ro's bucket (the shipped entry without a value: one bucket per key id) runs out
    // too, later; a JWT (no key id) still passes then.
    let mut ok = 2 * budget + 2;
    let started = Instant::now();
    let limited = loop {
        let r = d.envoy.send(&Req::get("/api/v1/bots").bearer(KEY_BOTS));
        if r.status == 429 {
            break true;
        }
        ok += 1;
        if ok > 500 || r.status != 200 {
            break false;
        }
    };
    if !limited || ok <= budget {
        problems.push(format!("key_bots_ro: {ok} requests passed, then {}", if limited { "429" } else { "no 429" }));
    }
    eprintln!("key_bots_ro: {ok} requests before its 429 ({:?})", started.elapsed());
    let token = d.token();
    let jwt = d.envoy.send(&Req::get("/api/v1/me").bearer(&token));
    if jwt.status != 200 {
        problems.push(format!("a JWT after both keys ran out: {}", jwt.status));
    }
    // key_llm's HTTP and gRPC request, key_bots_ro's last one.
    if d.envoy.stat("per_key.http_local_rate_limit.rate_limited") != Some(3) {
        problems.push(format!("per_key.http_local_rate_limit.rate_limited = {:?}, want 3", d.envoy.stat("per_key.http_local_rate_limit.rate_limited")));
    }
    let lines = d.envoy.access_log_lines(budget + 1, Duration::from_secs(5));
    match lines.get(budget) {
        Some(l) if l.contains(" 429 local_rate_limited ") && l.contains("key=key_llm") => {}
        other => problems.push(format!("access log of the 429: {other:?}")),
    }
    check(&d.envoy, problems);
}

#[test]
fn counters_carry_reason_and_kind_labels_in_prometheus() {
    let d = demo();
    let token = d.token();
    let sends = [
        (Req::post("/v1/chat/completions"), 401),
        (Req::get("/api/v1/bots"), 401),
        (Req::get("/api/v1/bots").bearer(KEY_REVOKED), 401),
        (Req::post("/v1/audio/speech").bearer(KEY_LLM), 403),
        (Req::get("/api/v1/bots").bearer(KEY_BOTS), 200),
        (chat(KEY_LLM), 200),
        // Allowed by the filter (and counted so), denied by RBAC after it.
        (chat(KEY_ALL), 403),
        (Req::get("/api/v1/me").bearer(&token), 200),
    ];
    let mut problems = Vec::new();
    for (req, status) in &sends {
        let r = d.envoy.send(req);
        if r.status != *status {
            problems.push(format!("{} {}: {} want {status}", req.method, req.path, r.status));
        }
    }
    for (sample, want) in [
        ("api_auth_denied{reason=\"credentials_missing\"}", 2),
        ("api_auth_denied{reason=\"key_revoked\"}", 1),
        ("api_auth_denied{reason=\"permission_denied\"}", 1),
        ("api_auth_denied{reason=\"token_expired\"}", 0),
        ("api_auth_allowed_by{kind=\"api_key\"}", 3),
        ("api_auth_allowed_by{kind=\"jwt\"}", 1),
        ("api_auth_allowed_by{kind=\"public\"}", 0),
        ("api_auth_allowed{}", 4),
    ] {
        if let Err(e) = d.envoy.prometheus_reaches(sample, want) {
            problems.push(e);
        }
    }
    let prom = d.envoy.admin("/stats/prometheus");
    // The tags replace the per-reason names; one metric family each.
    for gone in ["api_auth_denied_credentials_missing", "api_auth_allowed_by_api_key"] {
        if prom.contains(gone) {
            problems.push(format!("{gone} still in /stats/prometheus"));
        }
    }
    for family in ["# TYPE api_auth_denied counter", "# TYPE api_auth_allowed_by counter"] {
        if prom.matches(family).count() != 1 {
            problems.push(format!("{family:?} {} times", prom.matches(family).count()));
        }
    }
    // /stats keeps the full names.
    if d.envoy.stat("wasmcustom.api_auth.denied.credentials_missing") != Some(2) {
        problems.push(format!("/stats wasmcustom.api_auth.denied.credentials_missing = {:?}", d.envoy.stat("wasmcustom.api_auth.denied.credentials_missing")));
    }
    check(&d.envoy, problems);
}

#[test]
fn a_grpc_denial_is_a_grpc_status() {
    let d = demo();
    let rows = [
        ("no credentials", grpc(Req::post("/v1/chat/completions")), "16", Some(CREDS), "api_auth.credentials_missing"),
        ("revoked key", grpc(Req::post("/v1/chat/completions").bearer(KEY_REVOKED)), "16", Some(CREDS), "api_auth.key_revoked"),
        ("permission denied", grpc(Req::post("/v1/audio/speech").bearer(KEY_LLM)), "7", None, "api_auth.permission_denied"),
        ("RBAC", grpc(chat(KEY_ALL)), "7", None, "rbac_access_denied_matched_policy[blocked-keys]"),
    ];
    let mut problems = Vec::new();
    for (name, req, status, message, _) in &rows {
        d.upstream.clear();
        let r = d.envoy.send(req);
        if r.status != 200 || r.header("grpc-status") != Some(status) {
            problems.push(format!("{name}: HTTP {} grpc-status {:?}, want 200 and {status}", r.status, r.header("grpc-status")));
        }
        if !r.header("content-type").is_some_and(|c| c.starts_with("application/grpc")) {
            problems.push(format!("{name}: content-type {:?}", r.header("content-type")));
        }
        if let Some(m) = message {
            if r.header("grpc-message") != Some(m) {
                problems.push(format!("{name}: grpc-message {:?} want {m:?}", r.header("grpc-message")));
            }
        } else if r.header("grpc-message").is_none_or(str::is_empty) {
            problems.push(format!("{name}: no grpc-message"));
        }
        if !r.body.is_empty() {
            problems.push(format!("{name}: a trailers-only answer has no body, got {} bytes", r.body.len()));
        }
        if d.upstream.count() != 0 {
            problems.push(format!("{name}: the upstream saw the request"));
        }
    }
    let lines = d.envoy.access_log_lines(rows.len(), Duration::from_secs(5));
    for ((name, _, status, _, details), line) in rows.iter().zip(&lines) {
        if !line.contains(&format!(" 200 {details} grpc={status} ")) {
            problems.push(format!("{name}: access-log line {line:?}"));
        }
    }
    check(&d.envoy, problems);
}

#[test]
fn fail_reload_is_configured_and_the_shipped_config_validates() {
    // The shipped file itself, on the Envoy under test (ENVOY: 1.40.0 by default, 1.36.4 in
    // make test-oldest).
    let (ok, out) = envoy_validate(&shipped_envoy_yaml());
    assert!(ok && out.contains("OK"), "envoy --mode validate envoy/envoy.yaml:\n{out}");
    assert!(!out.contains("deprecated"), "a deprecated field in envoy/envoy.yaml:\n{out}");

    let d = demo();
    let dump: Value = serde_json::from_str(&d.envoy.admin("/config_dump")).expect("config_dump JSON");
    let mut wasm = Vec::new();
    find_wasm_configs(&dump, &mut wasm);
    // The bootstrap as given, and the listener Envoy built from it.
    assert_eq!(wasm.len(), 2, "the wasm filter in the dumped bootstrap and in the dumped listener");
    let mut problems = Vec::new();
    for pc in &wasm {
        if pc["failure_policy"] != "FAIL_RELOAD" {
            problems.push(format!("failure_policy {}", pc["failure_policy"]));
        }
        if pc.get("fail_open").is_some_and(|f| f != false) {
            problems.push(format!("fail_open {}", pc["fail_open"]));
        }
        if pc["reload_config"]["backoff"]["base_interval"] != "1s" {
            problems.push(format!("reload backoff {}", pc["reload_config"]));
        }
    }
    // The VM is healthy: nothing reloaded, and a request gets its normal answer.
    if d.envoy.send(&chat(KEY_LLM)).status != 200 {
        problems.push("a normal request failed".into());
    }
    for stat in ["wasm.api_auth.vm_reload", "wasm.api_auth.vm_reload_success", "wasm.api_auth.vm_reload_failure"] {
        if d.envoy.stat(stat) != Some(0) {
            problems.push(format!("{stat} = {:?}, want 0", d.envoy.stat(stat)));
        }
    }
    check(&d.envoy, problems);
}

/// Every wasm filter's `config` (a PluginConfig) in a config dump.
fn find_wasm_configs(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if m.get("@type").and_then(Value::as_str) == Some("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm") {
                out.push(m.get("config").cloned().unwrap_or(Value::Null));
            }
            m.values().for_each(|x| find_wasm_configs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| find_wasm_configs(x, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// A VM that crashes: what FAIL_RELOAD changes against FAIL_CLOSED, on the Envoy under test.

/// A minimal proxy-wasm (ABI 0.2.1) module, encoded here byte by byte: it lets requests through,
/// except that the second request of each VM instance traps (`unreachable`), as a filter with a
/// bug would. A fresh VM starts counting again.
fn crashing_module() -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, items: &[Vec<u8>], out: &mut Vec<u8>) {
        let mut payload = Vec::new();
        leb(items.len(), &mut payload);
        items.iter().for_each(|i| payload.extend_from_slice(i));
        out.push(id);
        leb(payload.len(), out);
        out.extend_from_slice(&payload);
    }
    const I32: u8 = 0x7f;
    let types: Vec<Vec<u8>> = vec![
        vec![0x60, 0, 0],                         // 0: () -> ()
        vec![0x60, 1, I32, 1, I32],               // 1: (i32) -> i32
        vec![0x60, 2, I32, I32, 0],               // 2: (i32, i32) -> ()
        vec![0x60, 2, I32, I32, 1, I32],          // 3: (i32, i32) -> i32
        vec![0x60, 3, I32, I32, I32, 1, I32],     // 4: (i32, i32, i32) -> i32
        vec![0x60, 1, I32, 0],                    // 5: (i32) -> ()
    ];
    let nothing = vec![0x0b];
    let one = vec![0x41, 1, 0x0b];
    let zero = vec![0x41, 0, 0x0b];
    // count += 1; if count == 2 { unreachable }; 0 (Continue)
    let request_headers = vec![0x23, 0, 0x41, 1, 0x6a, 0x24, 0, 0x23, 0, 0x41, 2, 0x46, 0x04, 0x40, 0x00, 0x0b, 0x41, 0, 0x0b];
    let functions: Vec<(&str, u8, Vec<u8>)> = vec![
        ("proxy_abi_version_0_2_1", 0, nothing.clone()),
        ("proxy_on_memory_allocate", 1, vec![0x41, 0x80, 0x08, 0x0b]), // a fixed 1024
        ("proxy_on_context_create", 2, nothing.clone()),
        ("proxy_on_vm_start", 3, one.clone()),
        ("proxy_on_configure", 3, one.clone()),
        ("proxy_on_request_headers", 4, request_headers),
        ("proxy_on_response_headers", 4, zero),
        ("proxy_on_done", 1, one),
        ("proxy_on_log", 5, nothing.clone()),
        ("proxy_on_delete", 5, nothing),
    ];
    let name = |s: &str| {
        let mut v = Vec::new();
        leb(s.len(), &mut v);
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut exports = vec![[name("memory"), vec![0x02, 0]].concat()];
    exports.extend(functions.iter().enumerate().map(|(i, (n, _, _))| [name(n), vec![0x00, i as u8]].concat()));
    let codes: Vec<Vec<u8>> = functions
        .iter()
        .map(|(_, _, body)| {
            let mut code = Vec::new();
            leb(body.len() + 1, &mut code);
            code.push(0); // no locals
            code.extend_from_slice(body);
            code
        })
        .collect();
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    section(1, &types, &mut m);
    section(3, &functions.iter().map(|(_, t, _)| vec![*t]).collect::<Vec<_>>(), &mut m);
    section(5, &[vec![0x00, 1]], &mut m); // one memory, one page
    section(6, &[vec![I32, 1, 0x41, 0, 0x0b]], &mut m); // the request count, mutable, 0
    section(7, &exports, &mut m);
    section(10, &codes, &mut m);
    m
}

/// Sends the crash sequence: a request, the one that traps, one right after; then (after more
/// than the reload backoff) one more. Its statuses, and how many requests reached the upstream
/// after the first.
fn crash_sequence(envoy: &Envoy, upstream: &Server) -> (Vec<u16>, usize) {
    let req = Req::get("/anything");
    let mut statuses = vec![envoy.send(&req).status];
    upstream.clear();
    statuses.push(envoy.send(&req).status);
    statuses.push(envoy.send(&req).status);
    let through = upstream.count();
    // FAIL_RELOAD's backoff: base_interval 1 s, jittered up to 1.5 s.
    std::thread::sleep(Duration::from_millis(1700));
    statuses.push(envoy.send(&req).status);
    (statuses, through)
}

#[test]
fn a_crashed_vm_is_replaced_under_fail_reload_and_stays_down_under_fail_closed() {
    let dir = std::env::temp_dir().join(format!("api-auth-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let module = dir.join("crash.wasm");
    std::fs::write(&module, crashing_module()).expect("write module");
    let upstream = Server::echo();
    let start = |reload: bool| {
        let mut opts = EnvoyOpts::new(json!({}), upstream.port());
        opts.wasm = Some(module.clone());
        if reload {
            opts = opts.shipped(&[Shipped::FailurePolicy]);
        }
        Envoy::start(opts)
    };
    let mut problems = Vec::new();
    let stat = |e: &Envoy, s: &str| e.stat(&format!("wasm.api_auth.{s}")).unwrap_or(u64::MAX);

    let reload = start(true);
    let (statuses, through) = crash_sequence(&reload, &upstream);
    eprintln!("FAIL_RELOAD: {statuses:?}");
    if statuses[0] != 200 || statuses[1] == 200 || statuses[2] == 200 || statuses[3] != 200 {
        problems.push(format!("FAIL_RELOAD: statuses {statuses:?}, want 200, a denial (the crash), a denial (before the reload), 200 (a fresh VM)"));
    }
    if through != 0 {
        problems.push(format!("FAIL_RELOAD: {through} request(s) passed a crashed VM"));
    }
    if stat(&reload, "vm_reload_success") != 1 || stat(&reload, "vm_reload_backoff") < 1 {
        problems.push(format!("FAIL_RELOAD: vm_reload_success {} (want 1), vm_reload_backoff {} (want >= 1)", stat(&reload, "vm_reload_success"), stat(&reload, "vm_reload_backoff")));
    }
    if !reload.log().contains("unreachable") {
        problems.push("FAIL_RELOAD: the trap is not in Envoy's log".into());
    }
    drop(reload);

    let closed = start(false);
    let (statuses, through) = crash_sequence(&closed, &upstream);
    eprintln!("FAIL_CLOSED: {statuses:?}");
    if statuses[0] != 200 || statuses[1..].contains(&200) {
        problems.push(format!("FAIL_CLOSED: statuses {statuses:?}, want 200 then denials only"));
    }
    if through != 0 || upstream.count() != 0 {
        problems.push("FAIL_CLOSED: a request passed a crashed VM".into());
    }
    if stat(&closed, "vm_reload_success") != 0 {
        problems.push(format!("FAIL_CLOSED: vm_reload_success {}", stat(&closed, "vm_reload_success")));
    }
    let log = closed.log();
    drop(closed);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(problems.is_empty(), "{}\n--- Envoy log (FAIL_CLOSED) ---\n{log}", problems.join("\n"));
}

/// (tag name, regex) of each tag extractor in the shipped stats_tags block.
fn shipped_stats_tags() -> Vec<(String, String)> {
    let block = Shipped::StatsTags.yaml(0);
    let mut tags = Vec::new();
    let mut name = None;
    for line in block.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("- tag_name: ") {
            name = Some(n.to_string());
        } else if let Some(r) = line.strip_prefix("regex: ") {
            let r = r.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')).unwrap_or_else(|| panic!("a single-quoted regex: {line}"));
            tags.push((name.take().expect("tag_name before regex"), r.to_string()));
        }
    }
    tags
}

#[test]
fn the_istio_stats_tags_are_the_shipped_ones_and_envoy_takes_them() {
    let path = repo_root().join("envoy/istio/stats-tags.yaml");
    let text = std::fs::read_to_string(&path).expect("envoy/istio/stats-tags.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| l.trim() == "custom_bootstrap.json: |").expect("custom_bootstrap.json in the ConfigMap");
    let body: Vec<&str> = lines[at + 1..].iter().take_while(|l| l.starts_with("    ") || l.trim().is_empty()).copied().collect();
    let fragment = body.join("\n");
    let json: Value = serde_json::from_str(&fragment).unwrap_or_else(|e| panic!("custom_bootstrap.json is not JSON: {e}\n{fragment}"));
    let istio: Vec<(String, String)> = json["stats_config"]["stats_tags"]
        .as_array()
        .expect("stats_config.stats_tags")
        .iter()
        .map(|t| (t["tag_name"].as_str().unwrap().to_string(), t["regex"].as_str().unwrap().to_string()))
        .collect();
    let shipped = shipped_stats_tags();
    assert_eq!(shipped.len(), 2, "reason and kind: {shipped:?}");
    assert_eq!(istio, shipped, "envoy/istio/stats-tags.yaml and envoy/envoy.yaml name different tag extractors");
    // Envoy takes the fragment as a bootstrap of its own (Istio merges it into the one it
    // generates).
    let dir = std::env::temp_dir().join(format!("api-auth-istio-tags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("custom_bootstrap.json");
    std::fs::write(&file, &fragment).expect("write fragment");
    let (ok, out) = envoy_validate(&file);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "envoy --mode validate custom_bootstrap.json:\n{out}");
}
