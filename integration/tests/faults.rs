//! Faults of the services the filter depends on, end to end: a JWKS server and a key service
//! (`api_keys.lookup`) that are slow past their timeout, answer 500, garbage or an over-large
//! body, or refuse connections. Every fault fails closed (`503 keys_unavailable` when nothing
//! is cached; keys in hand keep working) and the filter recovers when the service comes back,
//! without a restart.
//!
//! Covered elsewhere and not repeated here: a JWKS answering 500 at start, 503 and
//! `{"keys":"garbage"}` once keys are cached (jwt.rs); a key service answering 500, the string
//! `garbage` and a 900 ms delay with nothing cached (key_service.rs).
//!
//! No assertion is on timing: every wait polls with a generous deadline.

use std::time::{Duration, Instant};

use api_auth_integration::*;
use serde_json::{json, Value};

const UNAVAILABLE: &str = "Service unavailable";

/// The filter's counter once flushed (it adds its counts to Envoy's on its timer).
fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(&format!("wasmcustom.api_auth.{name}")).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// JWKS

/// How a JWKS server misbehaves.
#[derive(Clone, Copy, Debug)]
enum JwksFault {
    /// Answers after 1.5 s; the fetch times out after 300 ms.
    Slow,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a JWKS that holds no usable key.
    NoKeys,
    /// 200 with a valid JWKS padded past the filter's 256 KiB bound.
    OverLarge,
    /// Nothing listens on the cluster's port.
    Refused,
}

const JWKS_FAULTS: [JwksFault; 5] = [JwksFault::Slow, JwksFault::Garbage, JwksFault::NoKeys, JwksFault::OverLarge, JwksFault::Refused];

impl JwksFault {
    fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }

    fn issuer(self) -> String {
        format!("https://{}.faults.example", self.name())
    }

    /// The answer of a server with this fault (`None`: no server at all).
    fn answer(self, good: &str) -> Option<Canned> {
        match self {
            JwksFault::Slow => Some(Canned { delay: Duration::from_millis(1500), ..Canned::json(200, good) }),
            JwksFault::Garbage => Some(Canned { headers: vec![("content-type".into(), "text/html".into())], ..Canned::json(200, "<html>502 Bad Gateway</html>") }),
            JwksFault::NoKeys => Some(Canned::json(200, r#"{"keys":[{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"}]}"#)),
            JwksFault::OverLarge => Some(Canned::json(200, &format!("{good}{}", " ".repeat(300 * 1024)))),
            JwksFault::Refused => None,
        }
    }
}

/// One JWKS service: a mock on a fixed port, or nothing listening there.
struct Service {
    port: u16,
    server: Option<Server>,
}

impl Service {
    fn set(&mut self, answer: Option<Canned>) {
        match (answer, &self.server) {
            (Some(a), Some(s)) => s.set(a),
            (Some(a), None) => {
                // A server just dropped may hold the port for a moment.
                assert!(wait_until(Duration::from_secs(10), || std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok()), "port {} stays busy", self.port);
                self.server = Some(Server::mock_on(self.port, a));
            }
            // Dropped: it stops listening and closes the connections Envoy pooled.
            (None, _) => self.server = None,
        }
    }
}

fn jwks_config() -> Value {
    let providers: serde_json::Map<String, Value> = JWKS_FAULTS
        .iter()
        .map(|f| {
            let p = json!({
                "issuer": f.issuer(), "algorithms": ["RS256"],
                "jwks": { "remote": { "cluster": format!("jwks_{}", f.name()), "authority": "idp.faults.example", "path": "/jwks.json",
                                      "timeout_ms": 300, "refresh_s": 1, "min_refetch_s": 1 } }
            });
            (f.name(), p)
        })
        .collect();
    json!({
        "providers": providers,
        "routes": [{ "match": { "prefix": "/api/" }, "auth": { "credentials": ["jwt"] } }],
        "forward": { "headers": { "x-auth-subject": "subject" } }
    })
}

/// The failed fetches of a provider's JWKS so far, from the filter's warnings (the
/// `jwks_fetch_failed` counter does not say which provider).
fn fetch_failures(envoy: &Envoy, f: JwksFault) -> usize {
    let cluster = format!("from cluster jwks_{} ", f.name());
    envoy.log().lines().filter(|l| l.contains(&cluster) && (l.contains(" failed ") || l.contains("could not start"))).count()
}

/// One request per token, all at once (each may wait up to 3 s for keys): status and body.
fn statuses(envoy: &Envoy, tokens: &[String]) -> Vec<(u16, Value)> {
    let port = envoy.port();
    let handles: Vec<_> = tokens
        .iter()
        .map(|t| {
            let req = Req::get("/api/me").bearer(t);
            std::thread::spawn(move || {
                let r = send(port, &req);
                (r.status, r.json())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Each provider's JWKS server misbehaves in its own way, in one Envoy with two workers:
/// with nothing cached every request is 503 and nothing reaches the upstream; once the
/// servers answer well, each provider recovers; when they fail again (keys cached), the keys
/// in hand keep working and nothing new is accepted; and a rotation after the outage is
/// picked up.
#[test]
fn jwks_faults_fail_closed_keep_cached_keys_and_recover() {
    let issuer = Issuer::new(&["k1", "k2"]);
    let stranger = Issuer::new(&["k1", "k3"]);
    let good = issuer.jwks(&["k1"]);
    let mut services: Vec<Service> = JWKS_FAULTS.iter().map(|_| Service { port: free_port(), server: None }).collect();
    for (f, s) in JWKS_FAULTS.iter().zip(services.iter_mut()) {
        s.set(f.answer(&good));
    }
    let upstream = Server::echo();
    let mut opts = EnvoyOpts::new(jwks_config(), upstream.port()).concurrency(2);
    for (f, s) in JWKS_FAULTS.iter().zip(&services) {
        opts = opts.cluster(&format!("jwks_{}", f.name()), s.port);
    }
    let envoy = Envoy::start(opts);
    let now = unix_now();
    let token = |f: JwksFault, kid: &str, by: &Issuer| {
        by.token(kid, &json!({ "iss": f.issuer(), "sub": format!("user_{}", f.name()), "iat": now, "exp": now + 900 }))
    };
    let tokens: Vec<String> = JWKS_FAULTS.iter().map(|f| token(*f, "k1", &issuer)).collect();

    // 1. Nothing cached: every provider's request waits for keys, then 503.
    let got = statuses(&envoy, &tokens);
    for (f, got) in JWKS_FAULTS.iter().zip(&got) {
        assert_eq!(got, &(503, json!({ "detail": UNAVAILABLE })), "{f:?} with nothing cached\n{}", envoy.log());
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");

    // 2. The servers answer well: each provider recovers without a restart.
    for s in services.iter_mut() {
        s.set(Some(Canned::json(200, &good)));
    }
    for (f, t) in JWKS_FAULTS.iter().zip(&tokens) {
        assert!(
            wait_until(Duration::from_secs(30), || envoy.send(&Req::get("/api/me").bearer(t)).status == 200),
            "{f:?}: keys never picked up after the server came back\n{}",
            envoy.log()
        );
    }

    // 3. The faults again, keys cached: wait until each provider saw failed refreshes (the
    // refresh period is 1 s), then the keys in hand still verify, forged and unknown-kid
    // tokens are refused, and nothing answers 503.
    let failed_before: Vec<usize> = JWKS_FAULTS.iter().map(|f| fetch_failures(&envoy, *f)).collect();
    for (f, s) in JWKS_FAULTS.iter().zip(services.iter_mut()) {
        s.set(f.answer(&good));
    }
    for (f, before) in JWKS_FAULTS.iter().zip(failed_before) {
        assert!(
            wait_until(Duration::from_secs(30), || fetch_failures(&envoy, *f) >= before + 2),
            "{f:?}: the refreshes did not fail\n{}",
            envoy.log()
        );
    }
    let refused = (401, json!({ "detail": "Could not validate credentials" }));
    for (f, t) in JWKS_FAULTS.iter().zip(&tokens) {
        let r = envoy.send(&Req::get("/api/me").bearer(t));
        assert_eq!(r.status, 200, "{f:?}: the cached keys stopped working: {}\n{}", r.text(), envoy.log());
        let forged = envoy.send(&Req::get("/api/me").bearer(&token(*f, "k1", &stranger)));
        assert_eq!((forged.status, forged.json()), refused, "{f:?}: a token of another key under a known kid");
    }
    // An unknown kid asks for a refetch that fails: after the wait, refused (not 503: the
    // keys in hand answer for the provider).
    let unknown: Vec<String> = JWKS_FAULTS.iter().map(|f| token(*f, "k3", &stranger)).collect();
    for (f, got) in JWKS_FAULTS.iter().zip(statuses(&envoy, &unknown)) {
        assert_eq!(got, refused, "{f:?}: an unknown kid while the server is down");
    }
    assert_eq!(upstream.requests().iter().filter(|r| r.header("x-auth-subject").is_none()).count(), 0);

    // 4. Back, with a rotated key set: the new kid is picked up (refetch on an unknown kid, or
    // the next refresh) and the old keys go on.
    let rotated = issuer.jwks(&["k1", "k2"]);
    for s in services.iter_mut() {
        s.set(Some(Canned::json(200, &rotated)));
    }
    for f in JWKS_FAULTS {
        let t2 = token(f, "k2", &issuer);
        assert!(
            wait_until(Duration::from_secs(30), || envoy.send(&Req::get("/api/me").bearer(&t2)).status == 200),
            "{f:?}: rotated key never accepted after the outage\n{}",
            envoy.log()
        );
    }
    assert_eq!(envoy.wasm_failures(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Key service

const KEY_TIMEOUT_MS: u64 = 300;
const KEY_TTL_S: u64 = 4;

fn key_config() -> Value {
    json!({
        "api_keys": {
            "prefixes": ["sk_"],
            "keys": [],
            "lookup": { "cluster": "keys", "authority": "keys.internal", "path": "/v1/keys/lookup",
                        "timeout_ms": KEY_TIMEOUT_MS, "cache_ttl_s": KEY_TTL_S, "negative_cache_ttl_s": 1 }
        },
        "routes": [{ "match": { "prefix": "/v1/" }, "auth": {} }],
        "forward": { "headers": { "x-auth-key-id": "key_id" } }
    })
}

fn entry(key: &str) -> Value {
    json!({ "id": format!("id_{key}"), "sha256": sha256_hex(key.as_bytes()), "status": "active" })
}

fn good_answer(key: &str) -> Canned {
    Canned::json(200, &entry(key).to_string())
}

/// A key service that misbehaves for `key`: the answer, `None` for nothing listening.
fn key_faults(key: &str) -> Vec<(&'static str, Option<Canned>)> {
    vec![
        ("slow past the timeout", Some(Canned { delay: Duration::from_millis(KEY_TIMEOUT_MS + 1200), ..good_answer(key) })),
        ("500", Some(Canned::json(500, r#"{"error":"internal"}"#))),
        ("401 (the service refuses the filter: not an unknown key)", Some(Canned::json(401, "{}"))),
        ("HTML garbage", Some(Canned { headers: vec![("content-type".into(), "text/html".into())], ..Canned::json(200, "<html>oops</html>") })),
        ("an entry for another digest", Some(good_answer("sk_some_other_key"))),
        ("a truncated entry", Some(Canned::json(200, &entry(key).to_string()[..30]))),
        ("an entry padded past 64 KiB", Some(Canned::json(200, &format!("{}{}", entry(key), " ".repeat(70 * 1024))))),
        ("a 2 MiB body", Some(Canned::json(200, &format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20))))),
        ("connection refused", None),
    ]
}

/// The key service fails in every way with nothing cached (503, nothing upstream) and each
/// time the same key passes once it answers well (a failure is never cached); a cached answer
/// rides out an outage until its TTL and then fails closed; the service coming up where
/// nothing listened is picked up.
#[test]
fn key_service_faults_fail_closed_and_recover() {
    let port = free_port();
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(key_config(), upstream.port()).cluster("keys", port).concurrency(2));
    let get = |key: &str| {
        let r = envoy.send(&Req::get("/v1/items").bearer(key));
        (r.status, r.json())
    };
    let unavailable = (503, json!({ "detail": UNAVAILABLE }));

    // Nothing listens yet: fail closed, then up.
    assert_eq!(get("sk_first"), unavailable, "{}", envoy.log());
    assert_eq!(upstream.count(), 0);
    let mut service = Service { port, server: None };
    service.set(Some(good_answer("sk_first")));
    assert!(wait_until(Duration::from_secs(20), || get("sk_first").0 == 200), "service came up\n{}", envoy.log());

    for (i, (name, _)) in key_faults("").iter().enumerate() {
        let key = format!("sk_fault_{i}");
        let (_, answer) = key_faults(&key).swap_remove(i);
        service.set(answer);
        upstream.clear();
        assert_eq!(get(&key), unavailable, "{name}: nothing cached\n{}", envoy.log());
        assert_eq!(upstream.count(), 0, "{name}: reached the upstream");
        service.set(Some(good_answer(&key)));
        assert!(
            wait_until(Duration::from_secs(20), || get(&key).0 == 200),
            "{name}: the key did not pass once the service answered well\n{}",
            envoy.log()
        );
    }

    // A cached answer rides out an outage until cache_ttl_s, then fails closed; the service
    // back, it passes again.
    let key = "sk_cached";
    service.set(Some(good_answer(key)));
    assert!(wait_until(Duration::from_secs(20), || get(key).0 == 200));
    let cached_at = Instant::now();
    service.set(Some(Canned::json(500, "{}")));
    let r = get(key);
    if cached_at.elapsed() < Duration::from_secs(KEY_TTL_S - 1) {
        assert_eq!(r.0, 200, "a cached answer during the outage");
    }
    assert!(wait_until(Duration::from_secs(30), || get(key) == unavailable), "the cached answer expired into a 503");
    service.set(None);
    assert_eq!(get(key), unavailable, "refused while the entry is expired");
    service.set(Some(good_answer(key)));
    assert!(wait_until(Duration::from_secs(20), || get(key).0 == 200), "recovered after the outage\n{}", envoy.log());

    assert!(counter(&envoy, "key_lookup_failed") > 0 || wait_until(Duration::from_secs(3), || counter(&envoy, "key_lookup_failed") > 0));
    assert_eq!(envoy.wasm_failures(), Vec::<String>::new());
}
