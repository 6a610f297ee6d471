//! The key service against the real built filter inside a real Envoy, on SQLite and on
//! PostgreSQL: the checks of integration/tests/key_service.rs, with keys created, revoked and
//! expired through the admin API instead of a canned answer. Then what the service alone must
//! refuse, and what it must not lose.

mod common;

use std::time::{Duration, Instant};

use api_auth_integration::*;
use common::*;
use serde_json::{json, Value};

const CREDS: &str = "Could not validate credentials";
const TTL: u64 = 2;

fn filter_config(keys_port_cluster: &str) -> Value {
    json!({
        "api_keys": {
            "prefixes": [PREFIX],
            "keys": [],
            "lookup": { "cluster": keys_port_cluster, "path": "/v1/keys/lookup", "timeout_ms": 2000,
                        "cache_ttl_s": TTL, "negative_cache_ttl_s": 1 },
            "usage_report": { "cluster": keys_port_cluster, "path": "/v1/keys/usage", "interval_s": 1 }
        },
        "routes": [{ "match": { "prefix": "/v1/" }, "auth": { "scopes": ["tools:platform.list_roadmap_items"] } }],
        "forward": { "headers": { "x-auth-key-id": "key_id" } }
    })
}

/// Polls until `f` gives 401 with the credentials body; how long that took.
fn refused_within(envoy: &Envoy, key: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let r = envoy.send(&Req::get("/v1/items").bearer(key));
        if r.status == 401 {
            assert_eq!(r.json(), json!({"detail": CREDS}));
            return t0.elapsed();
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(t0.elapsed() < within, "still passing after {:?}", t0.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn last_used(svc: &Service, id: &str) -> Option<i64> {
    svc.entry(id)["last_used_at"].as_str().map(parse_rfc3339)
}

/// Seconds of `YYYY-MM-DDTHH:MM:SSZ` (what the service writes).
fn parse_rfc3339(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().expect("digits");
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

/// The whole lifecycle through Envoy (two workers) against one service on `db`.
fn lifecycle(db: &str) {
    let svc = Service::start(db);
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(filter_config("keys"), upstream.port()).cluster("keys", svc.port).concurrency(2));
    let get = |k: &str| envoy.send(&Req::get("/v1/items").bearer(k));

    // Never issued: the service says 404, the filter 401.
    let r = get("cf_ak_never_issued_by_anyone");
    assert_eq!((r.status, r.json()), (401, json!({"detail": CREDS})), "{}", svc.log());

    // Created through the admin API: works at once, with the entry's scopes and id.
    let t0 = unix_now();
    let (key, entry) = svc.create(&json!({ "name": "ci", "scopes": ["tools:*"], "organization": "org_abc123" }));
    let id = entry["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(PREFIX), "{key}");
    let r = get(&key);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), envoy.log());
    let seen = upstream.requests().last().cloned().expect("upstream request");
    assert_eq!(seen.header("x-auth-key-id").as_deref(), Some(id.as_str()));
    assert_eq!(seen.header("authorization"), None, "the key is stripped");

    // The entry's scopes count: a key without the route's scope is refused.
    let (narrow, _) = svc.create(&json!({ "scopes": ["bots:read"] }));
    let r = get(&narrow);
    assert_eq!(r.status, 403, "{}", r.text());

    // last_used_at advances with use (usage_report every second, monotonic in the store).
    assert!(wait_until(Duration::from_secs(6), || last_used(&svc, &id).is_some_and(|t| t >= t0)), "no usage recorded:\n{}", svc.log());
    let first = last_used(&svc, &id).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(&key).status, 200);
    assert!(wait_until(Duration::from_secs(6), || last_used(&svc, &id).is_some_and(|t| t > first)), "last_used_at did not advance from {first}");

    // Revoked: refused within cache_ttl_s (plus the poll).
    let r = svc.admin("POST", &format!("/{id}/revoke"), None);
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("revoked")));
    let took = refused_within(&envoy, &key, Duration::from_secs(TTL + 3));
    assert!(took <= Duration::from_millis(TTL * 1000 + 700), "revocation took {took:?} for a {TTL} s TTL");
    eprintln!("{}: revoked key refused after {took:?} (cache_ttl_s {TTL})", if db.starts_with("postgres") { "postgres" } else { "sqlite" });

    // Expired by date at creation: refused at once. Expired through the API: within the TTL.
    let (old, _) = svc.create(&json!({ "scopes": ["tools:*"], "expires_at": unix_now() - 10 }));
    assert_eq!(get(&old).status, 401);
    let (later, e) = svc.create(&json!({ "scopes": ["tools:*"], "expires_at": "2999-01-01T00:00:00Z" }));
    assert_eq!(get(&later).status, 200);
    let r = svc.admin("POST", &format!("/{}/expire", e["id"].as_str().unwrap()), None);
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("expired")));
    refused_within(&envoy, &later, Duration::from_secs(TTL + 3));

    // Deleted: unknown once the cached answer runs out.
    let (gone, e) = svc.create(&json!({ "scopes": ["tools:*"] }));
    assert_eq!(get(&gone).status, 200);
    assert_eq!(svc.admin("DELETE", &format!("/{}", e["id"].as_str().unwrap()), None).status, 204);
    refused_within(&envoy, &gone, Duration::from_secs(TTL + 3));

    // No key is in the listing, nor the digest the lookup takes.
    let listing = svc.admin("GET", "", None).text();
    for k in [&key, &narrow, &old, &later] {
        assert!(!listing.contains(k.as_str()) && !listing.contains(&sha256_hex(k.as_bytes())), "{listing}");
    }
    // Nor in the service's log.
    let log = svc.log();
    assert!(!log.contains(&key) && !log.contains(&sha256_hex(key.as_bytes())) && !log.contains(ADMIN), "{log}");
    assert_eq!(envoy.wasm_failures(), Vec::<String>::new());
}

#[test]
fn sqlite_lifecycle_through_envoy() {
    let dir = temp_dir("sqlite");
    let db = dir.join("keys.db");
    lifecycle(&db.to_string_lossy());
    // The keys are nowhere in the database files in the clear (the digests are).
    let mut bytes = Vec::new();
    for f in std::fs::read_dir(&*dir).unwrap().filter_map(Result::ok) {
        bytes.extend(std::fs::read(f.path()).unwrap_or_default());
    }
    assert!(bytes.windows(PREFIX.len()).filter(|w| *w == PREFIX.as_bytes()).count() > 0, "the prefix column is there");
    let text = String::from_utf8_lossy(&bytes);
    for m in text.match_indices(PREFIX) {
        // Whatever follows a stored prefix is never a key's body (40 base62 + 6).
        let rest: String = text[m.0 + PREFIX.len()..].chars().take(46).collect();
        assert!(!rest.chars().all(|c| c.is_ascii_alphanumeric()), "a key in the clear: {PREFIX}{rest}");
    }
}

#[test]
fn postgres_lifecycle_through_envoy() {
    let pg = Postgres::start();
    lifecycle(&pg.url());
}

/// Two Envoys (two workers each), each with its own replica of the service, on one PostgreSQL:
/// a key created on one replica works through both Envoys; revoked on the other, both refuse it
/// within the TTL; both Envoys' uses land in one `last_used_at`.
#[test]
fn two_envoys_two_replicas_one_postgres() {
    let pg = Postgres::start();
    let (a, b) = (Service::start(&pg.url()), Service::start(&pg.url()));
    let upstream = Server::echo();
    let ea = Envoy::start(EnvoyOpts::new(filter_config("keys"), upstream.port()).cluster("keys", a.port).concurrency(2));
    let eb = Envoy::start(EnvoyOpts::new(filter_config("keys"), upstream.port()).cluster("keys", b.port).concurrency(2));
    let (key, entry) = a.create(&json!({ "scopes": ["tools:*"] }));
    let id = entry["id"].as_str().unwrap().to_string();
    for e in [&ea, &eb] {
        for _ in 0..4 {
            assert_eq!(e.send(&Req::get("/v1/items").bearer(&key)).status, 200);
        }
    }
    assert_eq!(b.entry(&id)["status"], json!("active"));
    assert!(wait_until(Duration::from_secs(6), || last_used(&a, &id).is_some()), "no usage recorded");
    assert_eq!(b.admin("POST", &format!("/{id}/revoke"), None).status, 200);
    let t0 = Instant::now();
    for e in [&ea, &eb] {
        refused_within(e, &key, Duration::from_secs(TTL + 3));
    }
    assert!(t0.elapsed() <= Duration::from_millis(TTL * 1000 + 900), "{:?}", t0.elapsed());
    assert_eq!(a.entry(&id)["status"], json!("revoked"));
}

/// The header secret of the production shape, as envoy/envoy.yaml ships it (block
/// `key_service_secret` of its `demo_keys` cluster): the service refuses calls without it, and
/// Envoy adds it to the filter's own lookups and usage reports, so keys work and usage lands.
/// The test bed's bootstrap with that block in the key service's cluster, run by hand.
#[test]
fn envoy_adds_the_shipped_service_secret_to_the_filters_calls() {
    let block = shipped_block("key_service_secret", 4);
    let secret = block
        .lines()
        .find_map(|l| l.split("key: x-api-auth-keys-secret, value: ").nth(1))
        .map(|v| v.trim_end_matches([' ', '}']).to_string())
        .expect("the secret in the shipped block");
    let dir = temp_dir("hdr");
    let svc = Service::start_with(&dir.join("k.db").to_string_lossy(), &[("API_AUTH_KEYS_ADMIN_TOKEN", ADMIN), ("API_AUTH_KEYS_SERVICE_SECRET", &secret)]);
    let upstream = Server::echo();
    let opts = EnvoyOpts::new(filter_config("keys"), upstream.port()).cluster("keys", svc.port);
    let (port, admin) = (free_port(), free_port());
    let yaml = bootstrap_yaml(&opts, port, admin, &wasm_path());
    let head = "  - name: keys\n    type: STATIC\n    connect_timeout: 1s\n";
    assert!(yaml.contains(head), "the test bed's cluster form changed:\n{yaml}");
    let yaml = yaml.replace(head, &format!("{head}{block}"));
    std::fs::write(dir.join("envoy.yaml"), yaml).unwrap();
    let bin = std::env::var("ENVOY").map(std::path::PathBuf::from).unwrap_or_else(|_| repo_root().join(".tools/envoy-1.40.0/envoy/_bin/envoy"));
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _envoy = Kill(
        std::process::Command::new(bin)
            .arg("-c")
            .arg(dir.join("envoy.yaml"))
            .args(["--concurrency", "1", "--use-dynamic-base-id", "--log-path"])
            .arg(dir.join("envoy.log"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start Envoy"),
    );
    let ready = wait_until(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok() && send(admin, &Req::get("/ready")).status == 200);
    assert!(ready, "Envoy not ready: {}", std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default());

    // Without the secret the service refuses (the filter would answer 503 keys_unavailable).
    let (key, entry) = svc.create(&json!({ "scopes": ["tools:*"] }));
    assert_eq!(svc.lookup(&format!(r#"{{"sha256":"{}"}}"#, sha256_hex(key.as_bytes()))).status, 401);
    // Through Envoy the filter's lookup carries it.
    let r = send(port, &Req::get("/v1/items").bearer(&key));
    assert_eq!(r.status, 200, "{}\n{}", r.text(), svc.log());
    let id = entry["id"].as_str().unwrap();
    assert!(wait_until(Duration::from_secs(6), || last_used(&svc, id).is_some()), "the usage report did not land:\n{}", svc.log());
    drop(svc);
}

// ---------------------------------------------------------------------------------------------
// The service alone

#[test]
fn refuses_to_start_without_an_admin_token() {
    let dir = temp_dir("noadmin");
    let db = dir.join("k.db").to_string_lossy().to_string();
    for env in [vec![], vec![("API_AUTH_KEYS_ADMIN_TOKEN", "")], vec![("API_AUTH_KEYS_ADMIN_TOKEN", "short")]] {
        let err = Service::try_start(&db, &env).err().expect("must not start");
        assert!(err.contains("API_AUTH_KEYS_ADMIN_TOKEN"), "{err}");
    }
}

#[test]
fn bad_input_is_refused_and_nothing_is_stored_or_leaked() {
    let dir = temp_dir("bad");
    let svc = Service::start(&dir.join("k.db").to_string_lossy());
    let (key, entry) = svc.create(&json!({ "scopes": ["tools:*"], "organization": "org_1" }));
    let id = entry["id"].as_str().unwrap().to_string();
    let digest = sha256_hex(key.as_bytes());

    // Lookups: the one good form answers; every other is a 400 (413 when too large), with one
    // body that names nothing.
    let good = svc.lookup(&format!(r#"{{"sha256":"{digest}"}}"#));
    assert_eq!((good.status, good.json()["id"].clone()), (200, json!(id)));
    assert_eq!(good.json().as_object().unwrap().keys().cloned().collect::<Vec<_>>(), ["id", "organization", "permissions", "scopes", "sha256", "status", "workspaces"]);
    let bad_request = json!({"detail": "Bad request"});
    let sql = "' OR '1'='1";
    for body in [
        String::new(),
        "not json".into(),
        "[]".into(),
        r#"{"sha256": 1}"#.into(),
        format!(r#"{{"sha256":"{}"}}"#, digest.to_uppercase()),
        format!(r#"{{"sha256":"{digest}", "extra": 1}}"#),
        format!(r#"{{"sha256":"{digest}0"}}"#),
        format!(r#"{{"sha256":"{}"}}"#, &digest[..63]),
        format!(r#"{{"sha256":"{sql}"}}"#),
        format!(r#"{{"sha256":"{}%"}}"#, &digest[..63]),
        r#"{"sha256":"' UNION SELECT id, sha256, prefix, name, status, scopes, permissions, organization, workspaces, expires_at, created_at, last_used_at FROM api_keys --"}"#.into(),
        r#"{"key": "cf_ak_x"}"#.into(),
    ] {
        let r = svc.lookup(&body);
        assert_eq!((r.status, r.json()), (400, bad_request.clone()), "{body}");
    }
    let r = svc.lookup(&format!(r#"{{"sha256":"{digest}","pad":"{}"}}"#, "x".repeat(2000)));
    assert_eq!(r.status, 413);
    assert!(!r.text().contains(&digest));
    // Unknown and deleted keys answer alike.
    let unknown = svc.lookup(&format!(r#"{{"sha256":"{}"}}"#, sha256_hex(b"cf_ak_never")));
    assert_eq!((unknown.status, unknown.json()), (404, json!({"detail": "Not found"})));
    let r = send(svc.port, &Req::get("/v1/keys/lookup"));
    assert_eq!(r.status, 405);

    // Admin: without the token, with a wrong one, another scheme, a prefix of it, twice:
    // 401 on every route, nothing done.
    let wrong: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("authorization", "Bearer wrong".into())],
        vec![("authorization", format!("Basic {ADMIN}"))],
        vec![("authorization", format!("Bearer {}", &ADMIN[..ADMIN.len() - 1]))],
        vec![("authorization", format!("Bearer {ADMIN}x"))],
        vec![("authorization", format!("Bearer  {ADMIN}"))],
        vec![("authorization", format!("Bearer {ADMIN}")), ("authorization", format!("Bearer {ADMIN}"))],
        vec![("x-api-key", ADMIN.into())],
    ];
    let routes = [
        ("POST", "/admin/v1/keys".to_string(), json!({ "scopes": ["x"] }).to_string()),
        ("GET", "/admin/v1/keys".into(), String::new()),
        ("GET", format!("/admin/v1/keys/{id}"), String::new()),
        ("POST", format!("/admin/v1/keys/{id}/revoke"), String::new()),
        ("POST", format!("/admin/v1/keys/{id}/expire"), String::new()),
        ("DELETE", format!("/admin/v1/keys/{id}"), String::new()),
    ];
    for headers in &wrong {
        for (method, path, body) in &routes {
            let mut req = Req::new(method, path).body(body);
            for (n, v) in headers {
                req = req.header(n, v);
            }
            let r = send(svc.port, &req);
            assert_eq!((r.status, r.json()), (401, json!({"detail": "Unauthorized"})), "{method} {path} {headers:?}");
            assert!(!r.text().contains(&id) && !r.text().contains("org_1"));
        }
    }
    assert_eq!(svc.list().len(), 1);
    assert_eq!(svc.entry(&id)["status"], json!("active"));

    // Create: unknown fields, wrong types, SQL metacharacters in every identifier field, a
    // prefix the service does not issue, a bad date: 400, nothing stored.
    let metas = ["'", "\"", ";", "' OR 1=1 --", "1; SELECT 1", "x'); DROP TABLE api_keys; --", "a b", "%", "\\", "\u{0}", ""];
    let mut bodies = vec![
        json!({ "scopes": ["x"], "sha256": digest }),
        json!({ "scopes": ["x"], "id": "key_mine" }),
        json!({ "scopes": ["x"], "status": "active" }),
        json!({ "scopes": "x" }),
        json!({ "prefix": "sk_" }),
        json!({ "prefix": "cf_ak_'--" }),
        json!({ "expires_at": "tomorrow" }),
        json!({ "expires_at": "2026-01-01T00:00:00Z'; DROP TABLE api_keys; --" }),
        json!({ "expires_at": -5 }),
        json!({ "expires_at": [1] }),
        json!({ "name": "" }),
        json!({ "name": "line\nbreak" }),
        json!({ "scopes": vec!["s"; 101] }),
    ];
    for m in metas {
        bodies.push(json!({ "scopes": [m] }));
        bodies.push(json!({ "permissions": [m] }));
        bodies.push(json!({ "workspaces": [m] }));
        bodies.push(json!({ "organization": m }));
    }
    for b in &bodies {
        let r = svc.admin("POST", "", Some(b));
        assert_eq!(r.status, 400, "{b} -> {}", r.text());
        assert!(r.json()["detail"].as_str().is_some_and(|d| d.starts_with("Bad request")), "{}", r.text());
        assert!(!r.text().contains("DROP") && !r.text().contains("key_mine"), "the answer quotes the input: {}", r.text());
    }
    for raw in ["", "{", "null", "[]", "{\"scopes\": [\"x\"]} trailing"] {
        let r = send(svc.port, &Req::post("/admin/v1/keys").bearer(ADMIN).body(raw));
        assert_eq!(r.status, 400, "{raw}");
    }
    let r = send(svc.port, &Req::post("/admin/v1/keys").bearer(ADMIN).body(format!(r#"{{"name":"{}"}}"#, "x".repeat(70_000))));
    assert_eq!(r.status, 413);
    assert_eq!(svc.list().len(), 1, "nothing stored");

    // A name is display text: quotes are kept verbatim (bound, never spliced into SQL).
    let evil = "Bob's key'); DROP TABLE api_keys; --";
    let (_, e2) = svc.create(&json!({ "name": evil }));
    assert_eq!(svc.entry(e2["id"].as_str().unwrap())["name"], json!(evil));
    assert_eq!(svc.list().len(), 2, "the table is intact");

    // Key ids in paths: metacharacters find nothing and change nothing.
    for bad in ["'%20OR%20'1'='1", "%27%3B%20DELETE%20FROM%20api_keys%3B--", "*", "%25"] {
        for (m, p) in [("GET", ""), ("POST", "/revoke"), ("POST", "/expire"), ("DELETE", "")] {
            let r = send(svc.port, &Req::new(m, &format!("/admin/v1/keys/{bad}{p}")).bearer(ADMIN));
            assert_eq!(r.status, 404, "{m} {bad}{p}: {}", r.text());
        }
    }
    assert_eq!(svc.list().len(), 2);
    assert_eq!(svc.entry(&id)["status"], json!("active"));

    // Usage: malformed batches are refused whole; a good one moves last_used_at forward only.
    let now = unix_now();
    for body in [
        "[]".to_string(),
        "nope".into(),
        format!(r#"{{"{id}": "soon"}}"#),
        format!(r#"{{"{id}": -1}}"#),
        format!(r#"{{"{id}": 1.5}}"#),
        format!(r#"{{"{id}": {now}, "": 5}}"#),
        format!(r#"{{"{id}": {now}, "x": null}}"#),
    ] {
        let r = send(svc.port, &Req::post("/v1/keys/usage").body(&body));
        assert_eq!(r.status, 400, "{body}");
    }
    // Over 4 MiB: refused (413, or the connection closed before the rest was read), nothing kept.
    let big = format!(r#"{{"{id}": {now}, "pad": "{}"}}"#, "x".repeat(5 << 20));
    let r = try_post(svc.port, "/v1/keys/usage", &big);
    assert!(matches!(r, None | Some((413, _))), "{r:?}");
    assert_eq!(svc.entry(&id)["last_used_at"], Value::Null, "nothing stored from a refused batch");
    let usage = |body: String| send(svc.port, &Req::post("/v1/keys/usage").body(body)).status;
    assert_eq!(usage(format!(r#"{{"{id}": {}, "key_unknown": {now}, "' OR 1=1 --": {now}}}"#, now - 100)), 204);
    assert_eq!(last_used(&svc, &id), Some(now - 100));
    assert_eq!(usage(format!(r#"{{"{id}": {}}}"#, now - 500)), 204);
    assert_eq!(last_used(&svc, &id), Some(now - 100), "never backwards");
    assert_eq!(usage(format!(r#"{{"{id}": {}}}"#, now + 86_400 * 365)), 204);
    let t = last_used(&svc, &id).unwrap_or(0);
    assert!((now..=unix_now()).contains(&t), "a future time is taken as now: {t}");

    // The log never shows a key, a digest or the token, also when a client puts them in a URL.
    for path in [format!("/{key}"), format!("/v1/keys/lookup/{digest}"), format!("/admin/v1/keys/{key}"), format!("/x?k={key}")] {
        assert_eq!(send(svc.port, &Req::get(&path).bearer(ADMIN)).status, 404, "{path}");
    }
    let log = svc.log();
    assert!(log.contains("POST /admin/v1/keys/{id}/revoke 404"), "the log names routes:\n{log}");
    assert!(!log.contains(&key) && !log.contains(&digest) && !log.contains(ADMIN), "{log}");
    drop(svc);
}

#[test]
fn a_service_secret_guards_the_filter_side() {
    let dir = temp_dir("secret");
    let secret = "envoy-to-keys-secret-51f0";
    let svc = Service::start_with(&dir.join("k.db").to_string_lossy(), &[("API_AUTH_KEYS_ADMIN_TOKEN", ADMIN), ("API_AUTH_KEYS_SERVICE_SECRET", secret)]);
    let body = format!(r#"{{"sha256":"{}"}}"#, sha256_hex(b"x"));
    assert_eq!(svc.lookup(&body).status, 401);
    let with = |v: &str| send(svc.port, &Req::post("/v1/keys/lookup").header("x-api-auth-keys-secret", v).body(&body)).status;
    assert_eq!(with("wrong"), 401);
    assert_eq!(with(secret), 404);
    assert_eq!(send(svc.port, &Req::post("/v1/keys/usage").body("{}")).status, 401);
    drop(svc);
}

/// With `--admin-listen`, the admin API is only on its own listener, and the filter's
/// endpoints only on the other: the port Envoy reaches cannot create or revoke keys, even with
/// the token.
#[test]
fn the_admin_api_can_have_a_listener_of_its_own() {
    let dir = temp_dir("split");
    let svc = Service::try_start_args(&dir.join("k.db").to_string_lossy(), &[("API_AUTH_KEYS_ADMIN_TOKEN", ADMIN)], &["--admin-listen", "127.0.0.1:0"]).expect("start");
    assert_ne!(svc.port, svc.admin_port);
    let (key, _) = svc.create(&json!({ "scopes": ["x"] }));
    let r = send(svc.port, &Req::post("/admin/v1/keys").bearer(ADMIN).body("{}"));
    assert_eq!((r.status, r.json()), (404, json!({"detail": "Not found"})));
    assert_eq!(send(svc.port, &Req::get("/admin/v1/keys").bearer(ADMIN)).status, 404);
    assert_eq!(svc.lookup(&format!(r#"{{"sha256":"{}"}}"#, sha256_hex(key.as_bytes()))).status, 200);
    let on_admin = send(svc.admin_port, &Req::post("/v1/keys/lookup").body(format!(r#"{{"sha256":"{}"}}"#, sha256_hex(key.as_bytes()))));
    assert_eq!(on_admin.status, 404);
    assert_eq!(svc.list().len(), 1);
    drop(svc);
}

/// SIGKILL under load: every create and revocation acknowledged before the kill holds after a
/// restart on the same store, and usage reported after the restart lands.
fn killed_under_load(db: &str) {
    let mut svc = Service::start(db);
    let port = svc.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked: Vec<(String, String, bool)> = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let body = json!({ "name": format!("w{w}-{i}"), "scopes": ["tools:*"] }).to_string();
                    let Some((201, v)) = try_post(port, "/admin/v1/keys", &body) else { break };
                    let (key, id) = (v["key"].as_str().unwrap_or("").to_string(), v["entry"]["id"].as_str().unwrap_or("").to_string());
                    acked.push((key, id.clone(), false));
                    if i % 2 == 0 {
                        let Some((200, _)) = try_post(port, &format!("/admin/v1/keys/{id}/revoke"), "") else { break };
                        if let Some(last) = acked.last_mut() {
                            last.2 = true;
                        }
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    svc.kill();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked: Vec<(String, String, bool)> = workers.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    assert!(acked.len() >= 20, "too little load before the kill: {}", acked.len());
    eprintln!("killed after {} acknowledged creates, {} acknowledged revocations", acked.len(), acked.iter().filter(|a| a.2).count());

    let svc = Service::start(db);
    for (key, id, revoked) in &acked {
        let r = svc.lookup(&format!(r#"{{"sha256":"{}"}}"#, sha256_hex(key.as_bytes())));
        assert_eq!(r.status, 200, "acknowledged key {id} lost");
        assert_eq!(r.json()["id"], json!(id));
        if *revoked {
            assert_eq!(r.json()["status"], json!("revoked"), "acknowledged revocation of {id} lost");
        }
    }
    let id = &acked[0].1;
    let at = unix_now();
    assert_eq!(send(svc.port, &Req::post("/v1/keys/usage").body(format!(r#"{{"{id}": {at}}}"#))).status, 204);
    assert_eq!(last_used(&svc, id), Some(at));
}

#[test]
fn sqlite_survives_sigkill_under_load() {
    let dir = temp_dir("kill");
    killed_under_load(&dir.join("k.db").to_string_lossy());
}

#[test]
fn postgres_survives_sigkill_under_load() {
    let pg = Postgres::start();
    killed_under_load(&pg.url());
}

// ---------------------------------------------------------------------------------------------
// make bench (ignored by make test): speed is measured, never asserted.

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

/// Lookups per second the service answers (`threads` keep-alive clients, 90 % known digests),
/// and the filter's cold key path through Envoy against it (each request a key no worker has
/// seen) beside the cached path (one key again and again), one client, keep-alive.
fn bench_store(label: &str, db: &str, seconds: u64) -> String {
    let svc = Service::start(db);
    let n_keys = 2000;
    let keys: Vec<String> = (0..n_keys).map(|i| svc.create(&json!({ "name": format!("b{i}"), "scopes": ["tools:*"] })).0).collect();
    let bodies: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
        (0..n_keys)
            .map(|i| {
                let d = if i % 10 == 9 { sha256_hex(format!("unknown-{i}").as_bytes()) } else { sha256_hex(keys[i].as_bytes()) };
                format!(r#"{{"sha256":"{d}"}}"#)
            })
            .collect(),
    );
    let threads = 4;
    let end = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let bodies = bodies.clone();
            let port = svc.port;
            std::thread::spawn(move || {
                let mut c = KeepAlive::connect(port);
                let mut lat = Vec::new();
                let mut i = t * 7919;
                while Instant::now() < end {
                    let t0 = Instant::now();
                    let st = c.request("POST", "/v1/keys/lookup", None, &bodies[i % bodies.len()]);
                    lat.push(t0.elapsed());
                    assert!(st == 200 || st == 404, "{st}");
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = workers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    lat.sort();
    let rps = lat.len() as f64 / seconds as f64;
    let mut out = format!(
        "| {label} | service lookups, {threads} keep-alive clients | {rps:.0}/s | {:.2} ms | {:.2} ms |\n",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );

    let upstream = Server::echo();
    let mut cfg = filter_config("keys");
    cfg["api_keys"]["lookup"]["cache_ttl_s"] = json!(300);
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()).cluster("keys", svc.port).concurrency(2));
    let mut c = KeepAlive::connect(envoy.port());
    let auth = |k: &str| format!("Bearer {k}");
    // Warm the connection pools with one key, then time the cached path on it.
    for _ in 0..50 {
        assert_eq!(c.request("GET", "/v1/items", Some(&auth(&keys[0])), ""), 200);
    }
    let mut time = |key: &str| {
        let t0 = Instant::now();
        let st = c.request("GET", "/v1/items", Some(&auth(key)), "");
        assert_eq!(st, 200);
        t0.elapsed()
    };
    let mut warm: Vec<Duration> = (0..1000).map(|_| time(&keys[0])).collect();
    let mut cold: Vec<Duration> = keys[1..].iter().map(|k| time(k)).collect();
    warm.sort();
    cold.sort();
    for (what, l) in [("through Envoy, key cached", &warm), ("through Envoy, cold key (one lookup each)", &cold)] {
        out.push_str(&format!(
            "| {label} | {what}, 1 keep-alive client | {:.0}/s | {:.2} ms | {:.2} ms |\n",
            l.len() as f64 / l.iter().sum::<Duration>().as_secs_f64(),
            percentile(l, 0.5).as_secs_f64() * 1e3,
            percentile(l, 0.99).as_secs_f64() * 1e3
        ));
    }
    out
}

#[test]
#[ignore = "make bench"]
fn bench_key_service() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let dir = temp_dir("bench");
    let mut rows = bench_store("SQLite", &dir.join("k.db").to_string_lossy(), seconds);
    let pg = Postgres::start();
    rows.push_str(&bench_store("PostgreSQL", &pg.url(), seconds));
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let text = format!(
        "# Key service benchmarks\n\nWritten by `make bench` (`keyservice/tests/e2e.rs`, `bench_key_service`; `BENCH_SECONDS`={seconds}). \
         {cores} cores ({cpu}), shared by the load generator, the service, its database and Envoy (2 workers), so these are \
         figures for this machine, not limits. The service is the dev-profile build `make test` runs (dependencies at opt-level 3). \
         Service lookups: 2000 keys, 90 % of lookups for a known digest, 10 % unknown. Through Envoy: the filter (cache_ttl_s 300) \
         in front of an echo upstream; a cold key is one no worker has seen, so each such request waits for one lookup.\n\n\
         | store | what | rate | p50 | p99 |\n|---|---|---|---|---|\n{rows}"
    );
    std::fs::write(repo_root().join("keyservice/BENCHMARKS.md"), &text).expect("write keyservice/BENCHMARKS.md");
    println!("{text}");
}
