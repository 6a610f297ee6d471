//! Hostile requests end to end: each is answered with its documented status and body
//! (docs/configuration.md's reason table), nothing reaches the upstream for a denial, and the
//! wasm VM is alive afterwards.
//!
//! Some inputs never reach the filter: Envoy's codec answers them first (a header block above
//! `max_request_headers_kb`, more headers than `max_headers_count`, bytes a request line may not
//! hold), and its path normalisation rewrites or redirects paths before any HTTP filter runs.
//! Those rows assert Envoy's own answer, say so, and still assert that the upstream saw nothing.
//!
//! Every row the filter answers carries a correlation id; with the wasm log at debug the filter
//! logs one line per denial with its reason, so each row's reason code is checked too.

use std::time::Duration;

use api_auth_integration::*;
use base64::Engine;
use hmac::Mac;
use serde_json::{json, Value};

const ISS: &str = "https://idp.hostile.example";
const MIXED_ISS: &str = "https://mixed.hostile.example";
const KEY: &str = "hk_live_good_key";
const SECRET: &str = "whsec_hostile_secret";
const CREDS: &str = "Could not validate credentials";

fn config() -> Value {
    let remote = |path: &str| json!({ "remote": { "cluster": "jwks", "authority": "idp.hostile.example", "path": path,
                                                  "timeout_ms": 1000, "refresh_s": 300, "min_refetch_s": 1 } });
    json!({
        "providers": {
            "idp": { "issuer": ISS, "algorithms": ["RS256"], "jwks": remote("/idp/jwks.json"), "clock_skew_s": 5, "max_lifetime_s": 86400 },
            // A provider that allows an HMAC algorithm beside RSA, with only RSA keys: the
            // ground algorithm confusion needs.
            "mixed": { "issuer": MIXED_ISS, "algorithms": ["RS256", "HS256"], "jwks": remote("/mixed/jwks.json") }
        },
        "api_keys": {
            "prefixes": ["hk_"],
            "keys": [{ "id": "key_good", "sha256": sha256_hex(KEY.as_bytes()), "status": "active", "organization": "org_1", "workspaces": ["ws_1"] }]
        },
        "webhooks": { "hook": { "secrets": [{ "value": SECRET }], "max_body_bytes": 65536 } },
        "routes": [
            { "match": { "path": "/health" }, "auth": "none" },
            { "match": { "prefix": "/public/" }, "auth": "none" },
            { "match": { "prefix": "/hooks/" }, "auth": "none", "webhook": "hook" },
            { "match": { "prefix": "/api/admin/" }, "auth": { "credentials": ["jwt"], "roles": ["admin"] } },
            { "match": { "prefix": "/api/org/" }, "auth": { "organization": true } },
            { "match": { "prefix": "/api/ws/" }, "auth": { "workspace": true } },
            { "match": { "prefix": "/api/" }, "auth": { "providers": ["idp"] } },
            { "match": { "prefix": "/mixed/" }, "auth": { "credentials": ["jwt"], "providers": ["mixed"] } }
        ],
        "forward": { "headers": { "x-auth-subject": "subject", "x-auth-key-id": "key_id", "x-auth-org": "organization" } },
        "correlation_id": { "header": "x-correlation-id", "generate": true }
    })
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(mac.finalize().into_bytes()))
}

fn webhook_sig(body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A JSON value nested `depth` arrays deep.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// One row: the case, and the reason the filter must log for it (`None`: Envoy answers, or the
/// request is allowed).
struct Row {
    case: Case,
    reason: Option<&'static str>,
}

fn deny(name: &'static str, req: Req, status: u16, body: Value, reason: &'static str) -> Row {
    Row { case: denied(name, req, status, body), reason: Some(reason) }
}

/// A 401 with the documented body and the challenge for a presented credential.
fn invalid(name: &'static str, req: Req, reason: &'static str) -> Row {
    let mut case = denied(name, req, 401, json!({ "detail": CREDS }));
    case.headers.push(("www-authenticate", "Bearer error=\"invalid_token\"".into()));
    Row { case, reason: Some(reason) }
}

fn missing(name: &'static str, req: Req) -> Row {
    let mut case = denied(name, req, 401, json!({ "detail": CREDS }));
    case.headers.push(("www-authenticate", "Bearer".into()));
    Row { case, reason: Some("credentials_missing") }
}

fn allow(name: &'static str, req: Req, present: Vec<(&'static str, String)>) -> Row {
    Row { case: allowed(name, req, present), reason: None }
}

fn public(name: &'static str, req: Req) -> Row {
    Row { case: Case { name, req, status: 200, body: None, headers: vec![], upstream: Upstream::Saw { present: vec![], absent: vec![] } }, reason: None }
}

/// Envoy answers before the filter runs: its status, and the upstream saw nothing.
fn envoy_answers(name: &'static str, req: Req, status: u16) -> Row {
    Row { case: Case { name, req, status, body: None, headers: vec![], upstream: Upstream::None }, reason: None }
}

/// Envoy's `path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT` answers a `%2F`/`%5C` path
/// with a redirect to the unescaped, normalised path; the redirected request is judged anew.
fn redirected(name: &'static str, req: Req, location: &str) -> Row {
    Row { case: Case { name, req, status: 307, body: None, headers: vec![("location", location.to_string())], upstream: Upstream::None }, reason: None }
}

fn key() -> Req {
    Req::get("/api/x").header("x-api-key", KEY)
}

/// Turns the wasm log to debug (the filter follows within a tick) so that denials are logged
/// with their reason.
fn debug_denials(envoy: &Envoy) {
    assert_eq!(send(envoy.admin_port(), &Req::post("/logging?wasm=debug")).status, 200);
    // The filter follows the level on its timer; a denial logged before it does is missed.
    let probe = "hostile-probe";
    assert!(
        wait_until(Duration::from_secs(10), || {
            envoy.send(&Req::get("/api/x").header("x-correlation-id", probe));
            envoy.log().lines().any(|l| l.ends_with(&format!(" correlation_id={probe}")))
        }),
        "the filter never logged a denial at debug:\n{}",
        envoy.log()
    );
}

/// Runs the rows (each denial tagged with a correlation id), then checks each logged reason.
fn run_rows(envoy: &Envoy, upstream: &Server, tag: &str, rows: Vec<Row>) {
    let mut cases = Vec::new();
    let mut reasons = Vec::new();
    for (i, mut row) in rows.into_iter().enumerate() {
        if let Some(reason) = row.reason {
            let cid = format!("{tag}-{i}");
            row.case.req = row.case.req.header("x-correlation-id", &cid);
            row.case.headers.push(("x-correlation-id", cid.clone()));
            reasons.push((row.case.name, cid, reason));
        }
        cases.push(row.case);
    }
    run_cases(envoy, upstream, cases);
    let line_for = |log: &str, cid: &str| log.lines().find(|l| l.ends_with(&format!(" correlation_id={cid}"))).map(str::to_string);
    wait_until(Duration::from_secs(5), || {
        let log = envoy.log();
        reasons.iter().all(|(_, cid, _)| line_for(&log, cid).is_some())
    });
    let log = envoy.log();
    let wrong: Vec<String> = reasons
        .iter()
        .filter_map(|(name, cid, reason)| match line_for(&log, cid) {
            Some(line) if line.contains(&format!("denied reason={reason} ")) => None,
            Some(line) => Some(format!("- {name}: want reason={reason}, logged {}", &line[line.find("denied").unwrap_or(0)..])),
            None => Some(format!("- {name}: no denial line for {cid}")),
        })
        .collect();
    assert!(wrong.is_empty(), "reasons:\n{}", wrong.join("\n"));
}

/// The VM lives: a normal request still gets its normal answer, no request was failed by
/// the VM (no 5xx at all: no row expects one), no VM was created or reloaded since `start`,
/// no trap or panic was logged, and the filter counted no host error.
fn assert_vm_alive(envoy: &Envoy, issuer: &Issuer, start: (Option<u64>, Option<u64>)) {
    let now = unix_now();
    let tok = issuer.token("k1", &json!({ "iss": ISS, "sub": "user_ok", "iat": now, "exp": now + 600 }));
    let r = envoy.send(&Req::get("/api/after").bearer(&tok));
    assert_eq!(r.status, 200, "a valid JWT after the hostile rows: {}\n{}", r.text(), envoy.log());
    let r = envoy.send(&Req::get("/api/after").header("x-api-key", KEY));
    assert_eq!(r.status, 200, "a valid key after the hostile rows: {}", r.text());
    assert_eq!(envoy.stat("http.ingress.downstream_rq_5xx"), Some(0), "a request was failed with a 5xx (a dead VM answers 503)");
    let vms = (envoy.stat("wasm.envoy.wasm.runtime.v8.created"), envoy.stat("wasm.envoy.wasm.runtime.v8.active"));
    assert_eq!(vms, start, "wasm VMs (created, active) changed");
    assert_eq!(envoy.wasm_failures(), Vec::<String>::new(), "wasm failure stats or log lines");
    // The filter flushes its counters on its timer.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(envoy.stat("wasmcustom.api_auth.host_error"), Some(0));
}

#[test]
fn hostile_requests_get_their_documented_answers_and_the_vm_lives() {
    let issuer = Issuer::new(&["k1"]);
    let attacker = Issuer::new(&["k1", "attacker"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(config(), upstream.port()).cluster("jwks", jwks.port()).concurrency(2));
    let vms_at_start = (envoy.stat("wasm.envoy.wasm.runtime.v8.created"), envoy.stat("wasm.envoy.wasm.runtime.v8.active"));
    debug_denials(&envoy);
    // Everything below is judged with keys in hand (the first JWT waits for the first fetch).
    let now = unix_now();
    let claims = |extra: Value| {
        let mut c = json!({ "iss": ISS, "sub": "user_1", "iat": now, "exp": now + 600, "roles": ["member"] });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let tok = |extra: Value| issuer.token("k1", &claims(extra));
    let member = tok(json!({}));
    assert!(wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/api/x").bearer(&member)).status == 200), "{}", envoy.log());
    let raw = |header: &str, payload: &str| issuer.sign_raw("k1", header.as_bytes(), payload.as_bytes());
    let rs_header = |extra: Value| {
        let mut h = json!({ "alg": "RS256", "typ": "JWT", "kid": "k1" });
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h.to_string()
    };
    let with_header = |h: Value| issuer.sign_raw("k1", h.to_string().as_bytes(), claims(json!({})).to_string().as_bytes());
    let body_of = |t: &str| t.split('.').nth(1).unwrap().to_string();
    let unsigned = |alg: Value| format!("{}.{}.", b64(json!({ "alg": alg, "typ": "JWT" }).to_string()), body_of(&member));
    let sub = |s: &str| vec![("x-auth-subject", s.to_string())];
    let good_key = || vec![("x-auth-key-id", "key_good".to_string())];
    let role = |name, path: &str| deny(name, Req::get(path).bearer(&member), 403, json!({"detail": "Insufficient role"}), "role_required");
    let bin_body: Vec<u8> = vec![0xff, 0xfe, 0x00, 0x80, b'{', 0xc3, 0x28];
    let pem = issuer.public_pem("k1");
    let n_bytes = {
        let doc: Value = serde_json::from_str(&issuer.jwks(&[])).unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(doc["keys"][0]["n"].as_str().unwrap()).unwrap()
    };
    let mixed_claims = json!({ "iss": MIXED_ISS, "sub": "user_m", "iat": now, "exp": now + 600 });
    let jwk_of_attacker: Value = serde_json::from_str::<Value>(&attacker.jwks(&["attacker"])).unwrap()["keys"][0].clone();

    let mut rows = vec![
        // --- non-UTF-8 bytes ------------------------------------------------------------------
        invalid("non-UTF-8 bearer token", Req::get("/api/x").header("authorization", b"Bearer \xff\xfe\xfd".as_slice()), "credentials_malformed"),
        invalid("non-UTF-8 byte after a valid JWT", Req::get("/api/x").header("authorization", [format!("Bearer {member}").as_bytes(), b"\xff"].concat()), "credentials_malformed"),
        invalid("non-UTF-8 API key", Req::get("/api/x").header("x-api-key", b"hk_\xff\xfe".as_slice()), "credentials_malformed"),
        invalid("non-UTF-8 bytes inside a signed payload", Req::get("/api/x").bearer(&issuer.sign_raw("k1", rs_header(json!({})).as_bytes(), [&br#"{"iss":"https://idp.hostile.example","sub":"u"#[..], b"\xff\xfe", format!(r#"","iat":{now},"exp":{}}}"#, now + 600).as_bytes()].concat().as_slice())), "token_invalid"),
        invalid("non-UTF-8 bytes inside a signed header", Req::get("/api/x").bearer(&issuer.sign_raw("k1", b"{\"alg\":\"RS256\",\"kid\":\"k1\xff\"}", claims(json!({})).to_string().as_bytes())), "token_invalid"),
        deny("non-UTF-8 organisation header", Req::get("/api/org/x").header("x-api-key", KEY).header("x-organization-id", b"org_\xff".as_slice()), 403, json!({"detail": "Forbidden"}), "organization_forbidden"),
        deny("non-UTF-8 workspace header", Req::get("/api/ws/x").header("x-api-key", KEY).header("x-workspace-id", b"ws_\xff".as_slice()), 403, json!({"detail": "Forbidden"}), "workspace_forbidden"),
        missing("non-UTF-8 forged identity header without credentials", Req::get("/api/x").header("x-auth-subject", b"admin\xff".as_slice())),
        Row {
            case: Case {
                name: "non-UTF-8 forged identity headers are removed",
                req: key().header("x-auth-subject", b"admin\xff".as_slice()).header("x-auth-key-id", b"\xfeforged".as_slice()),
                status: 200,
                body: None,
                headers: vec![],
                upstream: Upstream::Saw { present: good_key(), absent: vec!["x-api-key", "x-auth-subject"] },
            },
            reason: None,
        },
        deny("non-UTF-8 webhook signature", Req::post("/hooks/x").header("x-webhook-signature", b"sha256=\xff\xfe".as_slice()).body(&bin_body), 401, json!({"detail": "Invalid signature"}), "signature_invalid"),
        deny("binary webhook body, signed for another body", Req::post("/hooks/x").header("x-webhook-signature", webhook_sig(b"other")).body(&bin_body), 401, json!({"detail": "Invalid signature"}), "signature_invalid"),
        public("binary (non-UTF-8) webhook body, signed", Req::post("/hooks/x").header("x-webhook-signature", webhook_sig(&bin_body)).body(&bin_body)),
        // Envoy's codec refuses these before any filter: 400 Bad Request.
        envoy_answers("non-UTF-8 byte in the path (Envoy's 400)", Req { path: "/api/\u{e9}".into(), ..Req::get("/") }, 400),
        envoy_answers("NUL byte in a header value (Envoy's 400)", Req::get("/api/x").header("authorization", b"Bearer hk_\x00x".as_slice()), 400),
        envoy_answers("non-ASCII header name (Envoy's 400)", Req::get("/api/x").header("x-\u{e9}", "1"), 400),
        // --- sizes ---------------------------------------------------------------------------
        // Envoy's max_request_headers_kb (60 by default) answers 431 before the filter runs.
        envoy_answers("64 KiB Authorization header (Envoy's 431)", Req::get("/api/x").header("authorization", format!("Bearer {}", "a".repeat(64 * 1024))), 431),
        invalid("17 KiB JWS, over the filter's 16 KiB bound", Req::get("/api/x").bearer(&format!("{}.{}.{}", b64("{\"alg\":\"RS256\"}"), "A".repeat(17 * 1024), "AAAA")), "token_invalid"),
        invalid("48 KiB bearer token", Req::get("/api/x").bearer(&"e".repeat(48 * 1024)), "token_invalid"),
        invalid("48 KiB API key", Req::get("/api/x").header("x-api-key", format!("hk_{}", "k".repeat(48 * 1024))), "key_unknown"),
        // --- duplicate credential headers --------------------------------------------------
        invalid("five x-api-key headers (over the bound of four)", (0..5).fold(Req::get("/api/x"), |r, _| r.header("x-api-key", KEY)), "credentials_malformed"),
        invalid("sixty x-api-key headers", (0..60).fold(Req::get("/api/x"), |r, _| r.header("x-api-key", KEY)), "credentials_malformed"),
        envoy_answers("a hundred x-api-key headers (Envoy's max_headers_count: 431)", (0..100).fold(Req::get("/api/x"), |r, _| r.header("x-api-key", KEY)), 431),
        // Envoy joins repeated Authorization headers with a comma: one malformed value.
        invalid("two Authorization headers", Req::get("/api/x").bearer(&member).bearer(&member), "credentials_malformed"),
        invalid("a valid JWT and an unknown key", Req::get("/api/x").bearer(&member).header("x-api-key", "hk_unknown"), "key_unknown"),
        invalid("a valid key and an expired JWT", key().bearer(&tok(json!({ "exp": now - 60 }))), "token_expired"),
        allow("four valid keys, at the bound", (0..4).fold(Req::get("/api/x"), |r, _| r.header("x-api-key", KEY)), good_key()),
        // --- long paths ----------------------------------------------------------------------
        missing("8 KiB path on a protected prefix", Req::get(&format!("/api/{}", "a".repeat(8 * 1024)))),
        allow("8 KiB path with a valid key", Req::get(&format!("/api/{}", "a".repeat(8 * 1024))).header("x-api-key", KEY), good_key()),
        deny("8 KiB path under no route", Req::get(&format!("/nowhere/{}", "a".repeat(8 * 1024))), 404, json!({"detail": "Not found"}), "route_not_found"),
        missing("40 KiB path of 20000 segments", Req::get(&format!("/api/{}", "a/".repeat(20_000)))),
        envoy_answers("70 KiB path (Envoy's 431)", Req::get(&format!("/api/{}", "a".repeat(70 * 1024))), 431),
        // --- paths Envoy normalises before the filter: judged as the router routes them ------
        role("dot segments into the admin prefix get admin's rules", "/public/../api/admin/x"),
        missing("dot segments into the admin prefix, no credentials", Req::get("/public/../api/admin/x")),
        role("%2e%2e into the admin prefix", "/public/%2e%2e/api/admin/x"),
        role("%2E%2E into the admin prefix", "/public/%2E%2E/api/admin/x"),
        role(".%2e into the admin prefix", "/public/.%2e/api/admin/x"),
        role("backslashes into the admin prefix", "/public\\..\\api\\admin\\x"),
        role("repeated slashes into the admin prefix", "//api//admin//x"),
        role("percent-encoded letters into the admin prefix", "/%61pi/%61dmin/x"),
        redirected("%2F encoded slashes (Envoy's redirect)", Req::get("/api%2Fadmin%2fx").bearer(&member), "/api/admin/x"),
        redirected("..%2F into the admin prefix (Envoy's redirect)", Req::get("/public/..%2Fapi/admin/x").bearer(&member), "/api/admin/x"),
        redirected("..%5C into the admin prefix (Envoy's redirect)", Req::get("/public/..%5Capi%5cadmin/x").bearer(&member), "/api/admin/x"),
        allow("dot segments out of the admin prefix", Req::get("/api/admin/../x").bearer(&member), sub("user_1")),
        public("dot segments onto a public path", Req::get("/api/../health")),
        deny("case is not normalised: /API/ is no route", Req::get("/API/admin/x").bearer(&member), 404, json!({"detail": "Not found"}), "route_not_found"),
        // A `;` parameter would hide the prefix from the filter (no route here), while servlet
        // containers drop it and serve /api/admin/x: refused before any route is chosen.
        bad_request("a path parameter hides the prefix", Req::get("/api;x/admin/x").bearer(&member)),
        bad_request("a path parameter on the admin segment", Req::get("/api/admin;x/x").bearer(&member)),
        bad_request("an empty path parameter on the last segment, public prefix", Req::get("/public/x;")),
        public("double-encoded dots stay encoded (one decoding, judged and routed alike)", Req::get("/public/%252e%252e/api/admin/x")),
        public("the query string is not the path", Req::get("/health?next=/../api/admin/x&b=%2F..%2F")),
        envoy_answers("a fragment in the request line (Envoy's 400)", Req::get("/health#/../api/admin/x"), 400),
        // --- alg: none and algorithm confusion -------------------------------------------------
        invalid("alg none, empty signature", Req::get("/api/x").bearer(&unsigned(json!("none"))), "token_invalid"),
        invalid("alg None", Req::get("/api/x").bearer(&unsigned(json!("None"))), "token_invalid"),
        invalid("alg NONE with a valid RS256 signature", Req::get("/api/x").bearer(&format!("{}{}", unsigned(json!("NONE")), member.rsplit('.').next().unwrap())), "token_invalid"),
        invalid("alg missing", Req::get("/api/x").bearer(&raw("{\"typ\":\"JWT\",\"kid\":\"k1\"}", &claims(json!({})).to_string())), "token_invalid"),
        invalid("alg empty", Req::get("/api/x").bearer(&unsigned(json!(""))), "token_invalid"),
        invalid("alg null", Req::get("/api/x").bearer(&unsigned(Value::Null)), "token_invalid"),
        invalid("no signature part", Req::get("/api/x").bearer(&member[..member.rfind('.').unwrap()]), "token_invalid"),
        invalid("HS256 keyed with the RSA public key (PEM), RS256-only provider", Req::get("/api/x").bearer(&hs256(pem.as_bytes(), &json!({"alg": "HS256", "kid": "k1"}), &claims(json!({})))), "token_invalid"),
        invalid("HS256 keyed with the RSA public key (PEM), provider allowing HS256", Req::get("/mixed/x").bearer(&hs256(pem.as_bytes(), &json!({"alg": "HS256", "kid": "k1"}), &mixed_claims)), "token_invalid"),
        invalid("HS256 keyed with the modulus, no kid, provider allowing HS256", Req::get("/mixed/x").bearer(&hs256(&n_bytes, &json!({"alg": "HS256"}), &mixed_claims)), "token_invalid"),
        invalid("PS256 header over an RS256 signature", Req::get("/api/x").bearer(&with_header(json!({"alg": "PS256", "kid": "k1"}))), "token_invalid"),
        invalid("ES256 header on an RSA kid", Req::get("/api/x").bearer(&with_header(json!({"alg": "ES256", "kid": "k1"}))), "token_invalid"),
        invalid("RS256 header, HMAC signature", Req::get("/api/x").bearer(&hs256(pem.as_bytes(), &json!({"alg": "RS256", "kid": "k1"}), &claims(json!({})))), "token_invalid"),
        invalid("embedded jwk header with the attacker's key", Req::get("/api/x").bearer(&attacker.sign_raw("attacker", json!({"alg": "RS256", "kid": "attacker", "jwk": jwk_of_attacker}).to_string().as_bytes(), claims(json!({})).to_string().as_bytes())), "token_invalid"),
        invalid("jku header, signed by another key under our kid", Req::get("/api/x").bearer(&attacker.sign_raw("k1", json!({"alg": "RS256", "kid": "k1", "jku": "https://attacker.example/jwks.json"}).to_string().as_bytes(), claims(json!({})).to_string().as_bytes())), "token_invalid"),
        invalid("crit header, validly signed", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}))), "token_invalid"),
        invalid("b64 false, validly signed", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": "k1", "b64": false}))), "token_invalid"),
        // --- huge, negative and odd times ----------------------------------------------------
        invalid("exp 1e308 (beyond max_lifetime_s)", Req::get("/api/x").bearer(&tok(json!({ "exp": 1e308 }))), "token_invalid"),
        invalid("exp 2^64", Req::get("/api/x").bearer(&raw(&rs_header(json!({})), &format!(r#"{{"iss":"{ISS}","sub":"u","iat":{now},"exp":18446744073709551616}}"#))), "token_invalid"),
        invalid("exp 1e400 (no double holds it)", Req::get("/api/x").bearer(&raw(&rs_header(json!({})), &format!(r#"{{"iss":"{ISS}","sub":"u","iat":{now},"exp":1e400}}"#))), "token_invalid"),
        invalid("exp -1", Req::get("/api/x").bearer(&tok(json!({ "exp": -1 }))), "token_expired"),
        invalid("exp -1e308", Req::get("/api/x").bearer(&tok(json!({ "exp": -1e308 }))), "token_expired"),
        invalid("exp as a string", Req::get("/api/x").bearer(&tok(json!({ "exp": (now + 600).to_string() }))), "token_invalid"),
        invalid("exp null", Req::get("/api/x").bearer(&tok(json!({ "exp": null }))), "token_invalid"),
        invalid("exp missing", Req::get("/api/x").bearer(&issuer.token("k1", &json!({ "iss": ISS, "sub": "u", "iat": now }))), "token_invalid"),
        invalid("iat -1e308 (lifetime beyond max_lifetime_s)", Req::get("/api/x").bearer(&tok(json!({ "iat": -1e308 }))), "token_invalid"),
        invalid("nbf 1e308", Req::get("/api/x").bearer(&tok(json!({ "nbf": 1e308 }))), "token_not_yet_valid"),
        invalid("exp fractional, past the skew", Req::get("/api/x").bearer(&tok(json!({ "exp": now as f64 - 10.5 }))), "token_expired"),
        // --- nesting -----------------------------------------------------------------------------
        invalid("claims nested 200 deep (over the parser's depth limit)", Req::get("/api/x").bearer(&raw(&rs_header(json!({})), &format!(r#"{{"iss":"{ISS}","sub":"u","iat":{now},"exp":{},"n":{}}}"#, now + 600, nested(200)))), "token_invalid"),
        invalid("claims nested 5000 deep", Req::get("/api/x").bearer(&raw(&rs_header(json!({})), &format!(r#"{{"iss":"{ISS}","sub":"u","iat":{now},"exp":{},"n":{}}}"#, now + 600, nested(5000)))), "token_invalid"),
        invalid("header nested 200 deep", Req::get("/api/x").bearer(&raw(&format!(r#"{{"alg":"RS256","kid":"k1","n":{}}}"#, nested(200)), &claims(json!({})).to_string())), "token_invalid"),
        allow("claims nested 100 deep (inside the limit) are fine", Req::get("/api/x").bearer(&raw(&rs_header(json!({})), &format!(r#"{{"iss":"{ISS}","sub":"deep","iat":{now},"exp":{},"n":{}}}"#, now + 600, nested(100)))), sub("deep")),
        deny("organisation claim is a nested object", Req::get("/api/org/x").bearer(&tok(json!({ "o": { "id": { "id": { "id": "org_1" } } } }))), 403, json!({"detail": "Organization required"}), "organization_required"),
        role("roles nested in arrays", "/api/admin/x").with_token(&tok(json!({ "roles": [["admin"], [["admin"]]] }))),
        Row {
            case: Case {
                name: "claim with CR LF is not forwarded as a header",
                req: Req::get("/api/x").bearer(&tok(json!({ "sub": "user\r\nx-injected: 1" }))),
                status: 200,
                body: None,
                headers: vec![],
                upstream: Upstream::Saw { present: vec![], absent: vec!["x-injected", "x-auth-subject", "authorization"] },
            },
            reason: None,
        },
        // --- odd kid values --------------------------------------------------------------------
        invalid("unknown kid", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": "nope"}))), "token_invalid"),
        invalid("empty kid", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": ""}))), "token_invalid"),
        invalid("8 KiB kid", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": "k".repeat(8 * 1024)}))), "token_invalid"),
        invalid("path traversal kid", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": "../../../../etc/passwd"}))), "token_invalid"),
        invalid("kid with NUL and a bidi override", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": "k1\u{0}\u{202e}"}))), "token_invalid"),
        invalid("kid in another case", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": "K1"}))), "token_invalid"),
        invalid("kid as a number", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": 1}))), "token_invalid"),
        invalid("kid null", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": null}))), "token_invalid"),
        invalid("kid as an array", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": ["k1"]}))), "token_invalid"),
        invalid("kid as an object", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256", "kid": {"kid": "k1"}}))), "token_invalid"),
        invalid("our kid, another key's signature", Req::get("/api/x").bearer(&attacker.token("k1", &claims(json!({})))), "token_invalid"),
        allow("no kid: the provider's keys are tried", Req::get("/api/x").bearer(&with_header(json!({"alg": "RS256"}))), sub("user_1")),
        // --- whitespace ------------------------------------------------------------------------
        // Envoy strips leading and trailing whitespace of a header value, and the filter takes
        // any run of spaces between scheme and token: the padded token is the same token.
        allow("spaces around the bearer token", Req::get("/api/x").header("authorization", format!("Bearer    {member}   ")), sub("user_1")),
        allow("tab after the bearer token", Req::get("/api/x").header("authorization", format!("Bearer {member}\t")), sub("user_1")),
        allow("API key padded with spaces", Req::get("/api/x").header("x-api-key", format!("  {KEY}  ")), good_key()),
        invalid("tab between scheme and token", Req::get("/api/x").header("authorization", format!("Bearer\t{member}")), "credentials_malformed"),
        invalid("space inside the token", Req::get("/api/x").header("authorization", format!("Bearer {} {}", &member[..20], &member[20..])), "credentials_malformed"),
        invalid("space after a dot inside the JWS", Req::get("/api/x").header("authorization", format!("Bearer {}", member.replacen('.', ". ", 1))), "credentials_malformed"),
        invalid("tab inside the token", Req::get("/api/x").header("authorization", format!("Bearer {}\t{}", &member[..20], &member[20..])), "credentials_malformed"),
        invalid("base64 padding on the JWS parts", Req::get("/api/x").bearer(&member.split('.').map(|p| format!("{p}==")).collect::<Vec<_>>().join(".")), "token_invalid"),
        invalid("token in quotes", Req::get("/api/x").bearer(&format!("\"{member}\"")), "token_invalid"),
        invalid("API key with a space inside", Req::get("/api/x").header("x-api-key", "hk_live_good _key"), "credentials_malformed"),
        invalid("scheme and whitespace only", Req::get("/api/x").header("authorization", "Bearer     "), "credentials_malformed"),
        invalid("API key of whitespace only", Req::get("/api/x").header("x-api-key", "    "), "credentials_malformed"),
        // --- content types Envoy does not take for gRPC ----------------------------------------
        // Only application/grpc and application/grpc+<subtype> are gRPC: a gRPC denial (an HTTP
        // 200 with grpc-status) to anything else would reach the client as a plain HTTP 200.
        missing("application/grpcforged, no credentials", Req::post("/api/x").header("content-type", "application/grpcforged")),
        missing("application/grpc-web, no credentials", Req::post("/api/x").header("content-type", "application/grpc-web")),
        missing("application/grpc;charset=utf-8, no credentials", Req::post("/api/x").header("content-type", "application/grpc;charset=utf-8")),
        deny("application/grpcforged under no route", Req::post("/nowhere").header("content-type", "application/grpcforged"), 404, json!({"detail": "Not found"}), "route_not_found"),
    ];
    // Webhook rows need no credentials; the others are independent of order.
    rows.push(public("a normal request at the end", Req::get("/health")));
    // A normalising Envoy leaves `;` parameters in place: the filter refuses those paths.
    let refused = rows.iter().filter(|r| r.reason == Some("path_not_normalized")).count() as u64;
    run_rows(&envoy, &upstream, "hostile", rows);

    // The path the router routes is the path that was judged: the upstream got the normalised
    // path for allowed requests.
    for (sent, routed) in [
        ("/api/admin/../x", "/api/x"),
        ("/api/../health", "/health"),
        ("//api//x/./y", "/api/x/y"),
        ("/%61pi/x", "/api/x"),
        ("/public/%252e%252e/api/admin/x", "/public/%252e%252e/api/admin/x"),
    ] {
        upstream.clear();
        let r = envoy.send(&Req::get(sent).bearer(&member));
        assert_eq!(r.status, 200, "{sent}: {}", r.text());
        assert_eq!(upstream.requests().first().map(|r| r.path.clone()).as_deref(), Some(routed), "{sent}");
    }
    // A correlation id that is not sane (non-UTF-8 bytes) is replaced by a generated one.
    let r = envoy.send(&key().header("x-correlation-id", b"id-\xff\xfe".as_slice()));
    assert_eq!(r.status, 200);
    let id = r.header("x-correlation-id").unwrap_or_default();
    assert!(id.len() == 36 && id.is_ascii(), "generated id: {id:?}");

    assert_vm_alive(&envoy, &issuer, vms_at_start);
    assert_eq!(
        envoy.stat("wasmcustom.api_auth.denied.path_not_normalized"),
        Some(refused),
        "a normalising Envoy hands the filter no other unnormalised path than those with ';' parameters"
    );
}

trait WithToken {
    fn with_token(self, token: &str) -> Row;
}

impl WithToken for Row {
    /// The same row with another bearer token.
    fn with_token(mut self, token: &str) -> Row {
        self.case.req.headers.retain(|(n, _)| n != "authorization");
        self.case.req = self.case.req.bearer(token);
        self
    }
}

fn bad_request(name: &'static str, req: Req) -> Row {
    deny(name, req, 400, json!({"detail": "Bad request"}), "path_not_normalized")
}

/// Envoy without `normalize_path`/`merge_slashes` (escaped slashes kept): the `:path` reaches the
/// filter as sent, and the filter refuses every path that still holds what normalisation would
/// remove (400 `path_not_normalized`, before any route, credential or webhook check), since the
/// router and the upstream could see another path than the one judged. The query string is
/// not judged.
#[test]
fn unnormalised_paths_are_refused_when_envoy_does_not_normalise() {
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(config(), upstream.port()).cluster("jwks", jwks.port()).without_path_normalization());
    let vms_at_start = (envoy.stat("wasm.envoy.wasm.runtime.v8.created"), envoy.stat("wasm.envoy.wasm.runtime.v8.active"));
    debug_denials(&envoy);
    let now = unix_now();
    let admin = issuer.token("k1", &json!({ "iss": ISS, "sub": "root", "iat": now, "exp": now + 600, "roles": ["admin"] }));
    assert!(wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/api/admin/x").bearer(&admin)).status == 200), "{}", envoy.log());
    let body = br#"{"event":"x"}"#;
    let mut rows: Vec<Row> = [
        "/public/../api/admin/x",
        "/public/..",
        "/public/.",
        "/public/./x",
        "/public//x",
        "//public/x",
        "/public/x/..",
        "/public/x/.",
        "/public\\..\\api\\admin\\x",
        "/public/%2e%2e/api/admin/x",
        "/public/%2E%2e/api/admin/x",
        "/public/.%2e/api/admin/x",
        "/public/a%2eb",
        "/public/..%2fapi/admin/x",
        "/public/a%2Fb",
        "/public/a%5cb",
        "/public/a%5Cb",
        "/api/x/..?q=1",
    ]
    .into_iter()
    .map(|p| bad_request("unnormalised path on a public prefix", Req::get(p)))
    .collect();
    rows.extend([
        bad_request("even with valid credentials", Req::get("/api/admin/../x").bearer(&admin)),
        bad_request("before the 401 of a protected route", Req::get("/api//x")),
        bad_request("before the 404 of no route", Req::get("/nowhere/../x")),
        bad_request("before a webhook signature", Req::post("/hooks/../api/admin/x").header("x-webhook-signature", webhook_sig(body)).body(body)),
        public("the query string is not judged", Req::get("/public/x?next=/../a//b%2f%2e%5c\\")),
        public("dots inside segment names are not dot segments", Req::get("/public/a.b/..c/.d/...")),
        allow("a normalised path with a valid key", key(), vec![("x-auth-key-id", "key_good".into())]),
        allow("a normalised path with a valid JWT", Req::get("/api/admin/x").bearer(&admin), vec![("x-auth-subject", "root".into())]),
    ]);
    let refused = rows.iter().filter(|r| r.reason == Some("path_not_normalized")).count() as u64;
    run_rows(&envoy, &upstream, "raw", rows);
    upstream.clear();
    assert_eq!(envoy.send(&Req::get("/public/x?next=/../a")).status, 200);
    assert_eq!(upstream.requests()[0].path, "/public/x?next=/../a", "the path went upstream as judged");
    assert_vm_alive(&envoy, &issuer, vms_at_start);
    assert_eq!(envoy.stat("wasmcustom.api_auth.denied.path_not_normalized"), Some(refused));
}

/// A dot segment with a path parameter, `..;` (or `.;`), is refused: judged as written,
/// `/public/..;/api/admin/x` would pass as the public prefix, and upstreams that drop path
/// parameters before resolving dot segments (Tomcat, Jetty, Spring) serve `/api/admin/x`. A
/// normalising Envoy does not remove it: 1.36.4 passes a literal `..;` unchanged (1.40.0
/// resolves it like `..`), and both decode `%2e%2e;` to `..;` after dot segments were removed.
/// So: 400 path_not_normalized wherever the filter sees such a segment, never the upstream.
#[test]
fn dot_segments_with_path_parameters_are_refused() {
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let mut problems = Vec::new();
    for opts in [
        EnvoyOpts::new(config(), upstream.port()).cluster("jwks", jwks.port()),
        EnvoyOpts::new(config(), upstream.port()).cluster("jwks", jwks.port()).without_path_normalization(),
    ] {
        let normalising = opts.normalize_path;
        let envoy = Envoy::start(opts);
        // (path, statuses that refuse it): 401 where Envoy resolved the segment itself and the
        // filter judged the admin route (no credentials are sent).
        let rows: &[(&str, &[u16])] = &[
            ("/public/%2e%2e;/api/admin/x", &[400]),
            ("/public/.%2e;jsessionid=1/api/admin/x", &[400]),
            ("/public/..;/api/admin/x", if normalising { &[400, 401] } else { &[400] }),
        ];
        for (path, want) in rows {
            upstream.clear();
            let r = envoy.send(&Req::get(path));
            if !want.contains(&r.status) || upstream.count() > 0 {
                let seen: Vec<String> = upstream.requests().iter().map(|r| r.path.clone()).collect();
                problems.push(format!("- normalize_path {normalising}, {path}: status {} want {want:?}, upstream saw {seen:?}", r.status));
            }
        }
    }
    assert!(problems.is_empty(), "judged as written, served past the filter:\n{}", problems.join("\n"));
}

/// Without Envoy's normalisation, percent-encoded unreserved characters (`%61` for `a`, ...)
/// are refused: `normalize_path` decodes them, and so do upstreams, so judged as written
/// `/api/%61dmin/x` would match the `/api/` route (any valid JWT) instead of `/api/admin/`
/// (role admin), and a member would reach what a decoding upstream serves as `/api/admin/x`.
#[test]
fn percent_encoded_letters_are_refused_when_envoy_does_not_normalise() {
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(config(), upstream.port()).cluster("jwks", jwks.port()).without_path_normalization());
    let now = unix_now();
    let member = issuer.token("k1", &json!({ "iss": ISS, "sub": "user_1", "iat": now, "exp": now + 600, "roles": ["member"] }));
    assert!(wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/api/x").bearer(&member)).status == 200));
    debug_denials(&envoy);
    run_rows(
        &envoy,
        &upstream,
        "pct",
        vec![
            bad_request("%61 in the admin prefix", Req::get("/api/%61dmin/x").bearer(&member)),
            bad_request("%41 (upper-case hex) in a segment", Req::get("/api/%41dmin/x").bearer(&member)),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// The bypasses of "judge the request the upstream will serve", with the example configurations
// of examples/ loaded unchanged. Each reached the upstream with 200 before:
// a `;` parameter hid the stronger route's prefix, a trailing slash or `HEAD` missed the exact
// route and fell to a weaker prefix, underscore twins of identity headers went upstream (CGI
// and WSGI read `x_user_id` as X-User-Id), and full-access OAuth users named any organisation.

const AGENTS_KEY: &str = "cf_ak_example_agents_only";
const LIST_KEY: &str = "cf_ak_example_list_roadmap";
const FULL_KEY: &str = "cf_ak_example_full_access";
const WEBHOOK_KEY_001: &str = "cflo_live_sk_EXAMPLE_01HX9VTPQR3KF8MZ";
const DENIED: &str = "api-auth-filter: denied reason=";

/// One request: its expected answer and, where the filter answers, the reason and the route
/// (index into the example's routes, -1 for none) it logs. The examples set no correlation id,
/// so the filter's line for a row is the one logged after it was sent.
struct Judged {
    case: Case,
    denial: Option<(&'static str, i64)>,
}

fn refused(name: &'static str, req: Req, status: u16, body: Value, reason: &'static str, route: i64) -> Judged {
    Judged { case: denied(name, req, status, body), denial: Some((reason, route)) }
}

fn not_normalized(name: &'static str, req: Req) -> Judged {
    refused(name, req, 400, json!({"detail": "Bad request"}), "path_not_normalized", -1)
}

/// A 403 of the route's `detail` format with the RFC 6750 insufficient_scope challenge (example
/// 003 sets protected_resource, so the challenge names the metadata URL).
fn scope_003(name: &'static str, req: Req, scope: &str, route: i64) -> Judged {
    let mut j = refused(name, req, 403, json!({ "detail": format!("Insufficient scope: {scope}") }), "insufficient_scope", route);
    j.case.headers.push(("www-authenticate", format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{METADATA_003}\"")));
    j
}

/// The same denial answering HEAD: status and headers, no body (run_judged checks it is empty).
fn headless(mut j: Judged) -> Judged {
    j.case.body = Some(Value::Null);
    j
}

const METADATA_003: &str = "https://api.clickflow.com/v1/.well-known/oauth-protected-resource";

/// Allowed: 200, the upstream saw `present` and none of `absent` (nor any credential header).
fn passed(name: &'static str, req: Req, present: Vec<(&'static str, String)>, absent: &[&'static str]) -> Judged {
    let mut gone = vec!["authorization", "x-api-key"];
    gone.extend_from_slice(absent);
    Judged { case: Case { name, req, status: 200, body: None, headers: vec![], upstream: Upstream::Saw { present, absent: gone } }, denial: None }
}

/// Envoy answers before the filter runs: its status, and the upstream saw nothing.
fn codec(name: &'static str, req: Req, status: u16) -> Judged {
    Judged { case: Case { name, req, status, body: None, headers: vec![], upstream: Upstream::None }, denial: None }
}

fn denial_lines(log: &str) -> Vec<String> {
    log.lines().filter(|l| l.contains(DENIED)).map(str::to_string).collect()
}

/// The wasm log at debug (the filter follows within a tick), proven by a denied probe, and
/// the log quiet again before the rows begin.
fn debug_denials_with(envoy: &Envoy, probe: &Req) {
    assert_eq!(send(envoy.admin_port(), &Req::post("/logging?wasm=debug")).status, 200);
    assert!(
        wait_until(Duration::from_secs(10), || {
            envoy.send(probe);
            !denial_lines(&envoy.log()).is_empty()
        }),
        "the filter never logged a denial at debug:\n{}",
        envoy.log()
    );
    settle(envoy);
}

/// Waits until no denial line was added for 400 ms (Envoy flushes its log every 100 ms).
fn settle(envoy: &Envoy) {
    let mut last = usize::MAX;
    while last != denial_lines(&envoy.log()).len() {
        last = denial_lines(&envoy.log()).len();
        std::thread::sleep(Duration::from_millis(400));
    }
}

/// Runs the rows one by one: each answer and upstream check, the one denial line a filter
/// answer logs (reason and route), and none for an Envoy answer or an allowed request. A HEAD
/// answer has no body. Panics with every failure.
fn run_judged(envoy: &Envoy, upstream: &Server, rows: &[Judged]) {
    let mut failures = Vec::new();
    for row in rows {
        let before = denial_lines(&envoy.log()).len();
        let (resp, mut problems) = check_case(envoy, upstream, &row.case);
        if row.case.req.method == "HEAD" && !resp.body.is_empty() {
            problems.push(format!("HEAD answered with a {}-byte body", resp.body.len()));
        }
        match row.denial {
            Some((reason, route)) => {
                wait_until(Duration::from_secs(5), || denial_lines(&envoy.log()).len() > before);
                let new = denial_lines(&envoy.log()).split_off(before);
                let want = format!("{DENIED}{reason} route={route} ");
                match new.as_slice() {
                    [line] if line.contains(&want) => {}
                    [line] => problems.push(format!("want `{}`, logged `{}`", want.trim(), &line[line.find(DENIED).unwrap_or(0)..])),
                    lines => problems.push(format!("want one denial line `{}`, logged {}", want.trim(), lines.len())),
                }
            }
            None => {
                // A denial line is flushed within 100 ms; give a wrong one the time to show.
                std::thread::sleep(Duration::from_millis(250));
                let new = denial_lines(&envoy.log()).split_off(before);
                if let Some(line) = new.first() {
                    problems.push(format!("the filter denied it: {}", &line[line.find(DENIED).unwrap_or(0)..]));
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("- {}: {}", row.case.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}\n--- Envoy log ---\n{}", failures.len(), rows.len(), failures.join("\n"), envoy.log());
    eprintln!("{} rows passed", rows.len());
}

/// After the rows: the filter's counters for these reasons (flushed on its timer) match the
/// rows, no 5xx, no VM failure.
fn assert_counted_and_alive(envoy: &Envoy, rows: &[Judged], reasons: &[&str]) {
    std::thread::sleep(Duration::from_millis(1200));
    for reason in reasons {
        let want = rows.iter().filter(|r| r.denial.is_some_and(|(r, _)| r == *reason)).count() as u64;
        assert_eq!(envoy.stat(&format!("wasmcustom.api_auth.denied.{reason}")), Some(want), "denied.{reason}");
    }
    assert_eq!(envoy.stat("http.ingress.downstream_rq_5xx"), Some(0), "a request was failed with a 5xx");
    assert_eq!(envoy.wasm_failures(), Vec::<String>::new(), "wasm failure stats or log lines");
}

/// Envoy with `headers_with_underscores_action: REJECT_REQUEST` (the shipped configuration)
/// answers a request carrying an underscore header with 400 itself, counted by its HTTP/1
/// codec; nothing reaches the filter or the upstream.
fn assert_rejected_by_envoy(envoy: &Envoy, upstream: &Server, rows: &[Judged]) {
    let rows: Vec<Judged> = rows
        .iter()
        .map(|r| codec(r.case.name, r.case.req.clone(), 400))
        .collect();
    let before = envoy.stat("http1.requests_rejected_with_underscores_in_headers").unwrap_or(0);
    run_judged(envoy, upstream, &rows);
    assert_eq!(
        envoy.stat("http1.requests_rejected_with_underscores_in_headers"),
        Some(before + rows.len() as u64),
        "Envoy counted each request it refused for an underscore header"
    );
}

fn clerk_000(issuer: &Issuer, extra: Value) -> String {
    let now = unix_now();
    let mut c = json!({ "iss": "https://clerk.cf0.example", "sub": "user_1", "iat": now, "exp": now + 600 });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    issuer.token("k1", &c)
}

/// Example 000 (session JWTs with organisation): the admin prefix behind a `;` parameter, and
/// the underscore twins of its forwarded identity headers (x-user-id, x-org-id).
#[test]
fn example_000_bypasses_are_refused() {
    let ex = example("000");
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let member = clerk_000(&issuer, json!({ "org_id": "org_1", "org_role": "org:member" }));
    let admin = clerk_000(&issuer, json!({ "org_id": "org_1", "org_role": "org:admin" }));
    let user = || vec![("x-user-id", "user_1".to_string()), ("x-org-id", "org_1".to_string())];
    let role = json!({"detail": "Insufficient role"});
    let twins = |sent: Req| sent.header("x_user_id", "root").header("x_org_id", "org_victim");
    let twin_rows = || {
        vec![
            passed("x_user_id and x_org_id on the public /health", twins(Req::get("/health")), vec![], &["x_user_id", "x_org_id", "x-user-id", "x-org-id"]),
            passed(
                "upper-case twins beside a member token",
                Req::get("/api/projects").bearer(&member).header("X_USER_ID", "root").header("X_Org_Id", "org_victim"),
                user(),
                &["x_user_id", "x_org_id"],
            ),
            passed("twins beside an admin token on the admin prefix", twins(Req::get("/api/admin/users").bearer(&admin)), user(), &["x_user_id", "x_org_id"]),
        ]
    };

    // As shipped: underscores refused by Envoy.
    let envoy = Envoy::start(EnvoyOpts::new(ex.clone(), upstream.port()).cluster("clerk_jwks", jwks.port()));
    assert!(wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/api/projects").bearer(&member)).status == 200), "{}", envoy.log());
    debug_denials_with(&envoy, &Req::get("/api/projects"));
    let rows = vec![
        not_normalized("member: /api/admin;x/users", Req::get("/api/admin;x/users").bearer(&member)),
        not_normalized("member: /api;x/admin/users", Req::get("/api;x/admin/users").bearer(&member)),
        not_normalized("member: /api/admin;/users", Req::get("/api/admin;/users").bearer(&member)),
        not_normalized("admin too: parameters are refused, not judged", Req::get("/api/admin;x/users").bearer(&admin)),
        not_normalized("without credentials: before the 401", Req::get("/api/admin;x/users")),
        not_normalized("on the public path", Req::get("/health;x")),
        not_normalized("member: /api/admin%3Bx/users (encoded)", Req::get("/api/admin%3Bx/users").bearer(&member)),
        refused("member: /api/admin/users/ (trailing slash) keeps the admin rules", Req::get("/api/admin/users/").bearer(&member), 403, role.clone(), "role_required", 2),
        refused("member: /api/admin (no slash) is the admin prefix", Req::get("/api/admin").bearer(&member), 403, role.clone(), "role_required", 2),
        refused("member: HEAD on the admin prefix", Req::new("HEAD", "/api/admin/users").bearer(&member), 403, Value::Null, "role_required", 2),
        passed("admin on the admin prefix", Req::get("/api/admin/users").bearer(&admin), user(), &[]),
        passed("member outside it", Req::get("/api/projects").bearer(&member), user(), &[]),
    ];
    run_judged(&envoy, &upstream, &rows);
    assert_counted_and_alive(&envoy, &rows, &["path_not_normalized"]);
    assert_rejected_by_envoy(&envoy, &upstream, &twin_rows());
    drop(envoy);

    // Envoy's default (ALLOW): the filter removes the twins itself.
    let envoy = Envoy::start(EnvoyOpts::new(ex.clone(), upstream.port()).cluster("clerk_jwks", jwks.port()).allow_underscore_headers());
    assert!(wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/api/projects").bearer(&member)).status == 200), "{}", envoy.log());
    debug_denials_with(&envoy, &Req::get("/api/projects"));
    let mut rows = twin_rows();
    rows.push(Judged {
        case: Case {
            name: "twins on a denied request: the filter's 401, nothing upstream",
            req: twins(Req::get("/api/projects")),
            status: 401,
            body: Some(json!({"detail": CREDS})),
            headers: vec![("www-authenticate", "Bearer".into())],
            upstream: Upstream::None,
        },
        denial: Some(("credentials_missing", 3)),
    });
    run_judged(&envoy, &upstream, &rows);
    assert_counted_and_alive(&envoy, &rows, &["path_not_normalized"]);
    drop(envoy);

    // `"path_parameters": "strip"` (the example plus that one field): parameters are removed
    // before matching, so /api/admin;x/users is judged by the admin route.
    let mut strip = ex;
    strip["path_parameters"] = json!("strip");
    let envoy = Envoy::start(EnvoyOpts::new(strip, upstream.port()).cluster("clerk_jwks", jwks.port()));
    assert!(wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/api/projects").bearer(&member)).status == 200), "{}", envoy.log());
    debug_denials_with(&envoy, &Req::get("/api/projects"));
    let rows = vec![
        refused("strip: member on /api/admin;x/users gets the admin rules", Req::get("/api/admin;x/users").bearer(&member), 403, role.clone(), "role_required", 2),
        refused("strip: member on /api;x/admin;y/users/", Req::get("/api;x/admin;y/users/").bearer(&member), 403, role, "role_required", 2),
        passed("strip: admin on /api/admin;x/users", Req::get("/api/admin;x/users").bearer(&admin), user(), &[]),
        not_normalized("strip: a segment that is only a parameter is still refused", Req::get("/api/;x/admin/users").bearer(&member)),
    ];
    run_judged(&envoy, &upstream, &rows);
    assert_counted_and_alive(&envoy, &rows, &["path_not_normalized"]);
}

/// Example 001 (tenant JWTs, X-API-Key, signed webhooks): the admin prefix behind an empty `;`
/// parameter and at its own bare path, and the twins of its credential and identity headers
/// on the public (signed) webhook route.
#[test]
fn example_001_bypasses_are_refused() {
    let ex = example("001");
    const HOOK_SECRET: &str = "whsec_example_001";
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let now = unix_now();
    let token = |roles: Value| {
        issuer.token(
            "k1",
            &json!({ "iss": "https://causeflow.clerk.accounts.dev", "aud": "https://api.causeflow.ai", "sub": "usr_1",
                     "tenant_id": "ten_EXAMPLE_01HX9VTPQR3KF8MZ", "roles": roles, "iat": now, "exp": now + 600 }),
        )
    };
    let member = token(json!(["member"]));
    let admin = token(json!(["admin"]));
    let tenant = |roles: &str| vec![("x-tenant-id", "ten_EXAMPLE_01HX9VTPQR3KF8MZ".to_string()), ("x-user-id", "usr_1".to_string()), ("x-user-roles", roles.to_string())];
    let role = json!({"detail": "Insufficient role"});
    let body = br#"{"event":"incident.created"}"#;
    let signed = || {
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
        mac.update(body);
        let sig = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>();
        Req::post("/hooks/causeflow").header("x-webhook-signature", format!("sha256={sig}")).body(body)
    };
    let twin_rows = || {
        vec![
            passed(
                "x_api_key, x_user_id and x_tenant_id on the public webhook route",
                signed().header("x_api_key", WEBHOOK_KEY_001).header("x_user_id", "root").header("x_tenant_id", "ten_victim").header("x_user_roles", "admin"),
                vec![],
                &["x_api_key", "x_user_id", "x_tenant_id", "x_user_roles", "x-user-id", "x-tenant-id"],
            ),
            passed(
                "x_tenant_id beside a member token",
                Req::get("/v1/incidents").bearer(&member).header("x_tenant_id", "ten_victim").header("x_user_roles", "admin"),
                tenant("member"),
                &["x_tenant_id", "x_user_roles"],
            ),
            passed(
                "x_api_key beside a valid x-api-key",
                Req::post("/v1/webhooks/subscriptions").header("x-api-key", WEBHOOK_KEY_001).header("x_api_key", "cflo_forged"),
                vec![("x-tenant-id", "ten_EXAMPLE_01HX9VTPQR3KF8MZ".to_string())],
                &["x_api_key"],
            ),
        ]
    };
    let start = |opts: EnvoyOpts| {
        let envoy = Envoy::start(opts.cluster("clerk_jwks", jwks.port()).env("CAUSEFLOW_WEBHOOK_SECRET", HOOK_SECRET));
        assert!(wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/v1/incidents").bearer(&member)).status == 200), "{}", envoy.log());
        debug_denials_with(&envoy, &Req::get("/v1/incidents"));
        envoy
    };

    let envoy = start(EnvoyOpts::new(ex.clone(), upstream.port()));
    let rows = vec![
        not_normalized("member: /v1/admin;/settings", Req::get("/v1/admin;/settings").bearer(&member)),
        not_normalized("member: /v1/admin;x/settings", Req::get("/v1/admin;x/settings").bearer(&member)),
        not_normalized("admin too", Req::get("/v1/admin;/settings").bearer(&admin)),
        not_normalized("the webhook prefix behind a parameter", Req::post("/hooks;x/causeflow").body(body)),
        refused("member: /v1/admin/settings/ keeps the admin rules", Req::get("/v1/admin/settings/").bearer(&member), 403, role.clone(), "role_required", 2),
        refused("member: /v1/admin (no slash) is the admin prefix", Req::get("/v1/admin").bearer(&member), 403, role.clone(), "role_required", 2),
        refused("member: HEAD /v1/admin/settings", Req::new("HEAD", "/v1/admin/settings").bearer(&member), 403, Value::Null, "role_required", 2),
        passed("admin on /v1/admin/settings", Req::get("/v1/admin/settings").bearer(&admin), tenant("admin"), &[]),
        passed("a signed webhook", signed(), vec![], &[]),
    ];
    run_judged(&envoy, &upstream, &rows);
    assert_counted_and_alive(&envoy, &rows, &["path_not_normalized"]);
    assert_rejected_by_envoy(&envoy, &upstream, &twin_rows());
    drop(envoy);

    let envoy = start(EnvoyOpts::new(ex, upstream.port()).allow_underscore_headers());
    let rows = twin_rows();
    run_judged(&envoy, &upstream, &rows);
    assert_counted_and_alive(&envoy, &rows, &["path_not_normalized"]);
}

/// Example 003 (scoped keys, MCP OAuth, RFC 9728): exact tool routes behind a parameter, a
/// trailing slash or HEAD; a lower-case method; the MCP prefix on segment boundaries; the
/// organisation header and its twin for full-access OAuth users.
#[test]
fn example_003_bypasses_are_refused() {
    let ex = example("003");
    let clerk = Issuer::new(&["c1"]);
    let jwks = Server::mock(Canned::json(200, &clerk.jwks(&[])));
    let upstream = Server::echo();
    let now = unix_now();
    let oauth = |extra: Value| {
        let mut c = json!({ "iss": "https://your-app.clerk.accounts.dev", "sub": "user_h", "iat": now, "exp": now + 600 });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        clerk.token("c1", &c)
    };
    let v2 = oauth(json!({ "o": { "id": "org_abc123", "rol": "admin" } }));
    let v1 = oauth(json!({ "org_id": "org_abc123" }));
    let no_org = oauth(json!({}));
    let org = |o: &str| vec![("x-organization-id", o.to_string())];
    let keyed = |id: &str| vec![("x-organization-id", "org_abc123".to_string()), ("x-auth-key-id", id.to_string())];
    let forbidden = json!({"error": "forbidden"});
    let twin_rows = || {
        vec![
            passed(
                "x_organization_id and x_api_key beside an OAuth token on /v1/mcp",
                Req::get("/v1/mcp").bearer(&v1).header("x_organization_id", "org_victim").header("x_api_key", FULL_KEY).header("x_auth_key_id", "key_full"),
                org("org_abc123"),
                &["x_organization_id", "x_api_key", "x_auth_key_id", "x-auth-key-id"],
            ),
            passed(
                "x_organization_id beside a key on a tool route",
                Req::post("/v1/tools/agents/run").bearer(AGENTS_KEY).header("x_organization_id", "org_victim"),
                keyed("key_agents"),
                &["x_organization_id"],
            ),
        ]
    };
    let start = |opts: EnvoyOpts| {
        let envoy = Envoy::start(opts.cluster("clerk_jwks", jwks.port()));
        assert!(wait_until(Duration::from_secs(20), || envoy.send(&Req::get("/v1/mcp").bearer(&v1)).status == 200), "{}", envoy.log());
        debug_denials_with(&envoy, &Req::get("/v1/projects"));
        envoy
    };

    let envoy = start(EnvoyOpts::new(ex.clone(), upstream.port()));
    let mut not_accepted = refused("JWT on /v1/mcp-admin: the /v1/ route takes keys only", Req::get("/v1/mcp-admin").bearer(&v1), 401, json!({"detail": CREDS}), "credential_not_accepted", 5);
    not_accepted.case.headers.push(("www-authenticate", format!("Bearer error=\"invalid_token\", resource_metadata=\"{METADATA_003}\"")));
    let mut rows = vec![
        // `;` parameters.
        not_normalized("agents key: GET /v1/tools/platform/roadmap-items;a", Req::get("/v1/tools/platform/roadmap-items;a").bearer(AGENTS_KEY)),
        not_normalized("agents key: POST /v1/tools/platform;x/roadmap-items", Req::post("/v1/tools/platform;x/roadmap-items").bearer(AGENTS_KEY)),
        not_normalized("list key: POST /v1/tools/agents/deploy;x", Req::post("/v1/tools/agents/deploy;x").bearer(LIST_KEY)),
        not_normalized("OAuth: /v1/mcp;x", Req::get("/v1/mcp;x").bearer(&v1)),
        // Envoy leaves %3B encoded; an upstream that decodes before it splits sees a parameter.
        not_normalized("agents key: GET /v1/tools/platform/roadmap-items%3Ba", Req::get("/v1/tools/platform/roadmap-items%3Ba").bearer(AGENTS_KEY)),
        // One trailing slash: the exact route still judges.
        scope_003("agents key: GET /v1/tools/platform/roadmap-items/", Req::get("/v1/tools/platform/roadmap-items/").bearer(AGENTS_KEY), "tools:platform.list_roadmap_items", 2),
        scope_003("list key: POST /v1/tools/platform/roadmap-items/", Req::post("/v1/tools/platform/roadmap-items/").bearer(LIST_KEY), "tools:platform.create_roadmap_item", 3),
        scope_003("list key: POST /v1/tools/agents/deploy/", Req::post("/v1/tools/agents/deploy/").bearer(LIST_KEY), "tools:agents.deploy", 4),
        passed("list key: GET /v1/tools/platform/roadmap-items/ (its own scope)", Req::get("/v1/tools/platform/roadmap-items/").bearer(LIST_KEY), keyed("key_list"), &[]),
        passed("agents key: POST /v1/tools/agents/deploy/ (its own scope)", Req::post("/v1/tools/agents/deploy/").bearer(AGENTS_KEY), keyed("key_agents"), &[]),
        // HEAD is GET.
        headless(scope_003("agents key: HEAD /v1/tools/platform/roadmap-items", Req::new("HEAD", "/v1/tools/platform/roadmap-items").bearer(AGENTS_KEY), "tools:platform.list_roadmap_items", 2)),
        headless(scope_003("agents key: HEAD /v1/tools/platform/roadmap-items/", Req::new("HEAD", "/v1/tools/platform/roadmap-items/").bearer(AGENTS_KEY), "tools:platform.list_roadmap_items", 2)),
        passed("list key: HEAD /v1/tools/platform/roadmap-items (its own scope)", Req::new("HEAD", "/v1/tools/platform/roadmap-items").bearer(LIST_KEY), keyed("key_list"), &[]),
        // The MCP prefix covers /v1/mcp, /v1/mcp/ and /v1/mcp/x, never /v1/mcp-admin.
        passed("OAuth: GET /v1/mcp", Req::get("/v1/mcp").bearer(&v1), org("org_abc123"), &[]),
        passed("OAuth: GET /v1/mcp/", Req::get("/v1/mcp/").bearer(&v1), org("org_abc123"), &[]),
        passed("OAuth: POST /v1/mcp/x", Req::post("/v1/mcp/x").bearer(&v2).body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), org("org_abc123"), &[]),
        not_accepted,
        passed("a key on /v1/mcp-admin (the /v1/ route)", Req::get("/v1/mcp-admin").bearer(LIST_KEY), keyed("key_list"), &[]),
        // The organisation header never crosses a tenant, full_access or not.
        refused("OAuth (o.id org_abc123) naming org_victim", Req::get("/v1/mcp").bearer(&v2).header("x-organization-id", "org_victim"), 403, forbidden.clone(), "organization_forbidden", 1),
        refused("OAuth (org_id org_abc123) naming org_victim", Req::get("/v1/mcp").bearer(&v1).header("X-Organization-Id", "org_victim"), 403, forbidden.clone(), "organization_forbidden", 1),
        refused("OAuth without an organisation naming org_victim", Req::get("/v1/mcp").bearer(&no_org).header("x-organization-id", "org_victim"), 403, forbidden.clone(), "organization_forbidden", 1),
        refused("OAuth without an organisation naming org_abc123", Req::post("/v1/mcp/x").bearer(&no_org).header("x-organization-id", "org_abc123"), 403, forbidden.clone(), "organization_forbidden", 1),
        refused("full-access key naming org_victim", Req::get("/v1/mcp").bearer(FULL_KEY).header("x-organization-id", "org_victim"), 403, forbidden, "organization_forbidden", 1),
        passed("OAuth (o.id) naming its own organisation", Req::get("/v1/mcp").bearer(&v2).header("x-organization-id", "org_abc123"), org("org_abc123"), &[]),
        passed("OAuth (org_id) naming its own organisation", Req::get("/v1/mcp").bearer(&v1).header("X-Organization-Id", "org_abc123"), org("org_abc123"), &[]),
        passed("OAuth without an organisation, no header", Req::get("/v1/mcp").bearer(&no_org), vec![], &["x-organization-id"]),
    ];
    // A method with a lower-case letter would fall from the GET-only route to /v1/, which
    // takes any key. The filter refuses it (method_invalid, its unit tests), but Envoy's HTTP/1
    // codec already answers `get` with its own 400 (1.36.4 and 1.40.0): nothing upstream.
    rows.push(codec("agents key: lower-case get (Envoy's 400)", Req::new("get", "/v1/tools/platform/roadmap-items").bearer(AGENTS_KEY), 400));
    run_judged(&envoy, &upstream, &rows);
    assert_counted_and_alive(&envoy, &rows, &["path_not_normalized", "organization_forbidden", "insufficient_scope"]);
    assert_rejected_by_envoy(&envoy, &upstream, &twin_rows());
    drop(envoy);

    let envoy = start(EnvoyOpts::new(ex, upstream.port()).allow_underscore_headers());
    let rows = twin_rows();
    run_judged(&envoy, &upstream, &rows);
    assert_counted_and_alive(&envoy, &rows, &["path_not_normalized"]);
}
