//! `jwks.discovery` against the mock host: the issuer's metadata document, then the keys at its
//! `jwks_uri`, through the provider's cluster; the RFC 8414 document after a 404; documents of
//! another issuer, keys on another host or over http, garbage and errors load no keys and
//! keep the keys in hand; every refresh (and an unknown `kid`) reads the document again.

use api_auth_filter::glue::mock::{MadeCall, MockHost};
use api_auth_filter::glue::{Action, Stream, Worker, KEY_WAIT_MS};
use api_auth_filter::stats::Counter;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

const NOW_MS: u64 = 1_790_000_000_000;
const ISS: &str = "https://idp.example/tenant";
const OPENID: &str = "/tenant/.well-known/openid-configuration";
const OAUTH: &str = "/.well-known/oauth-authorization-server/tenant";

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn key(kid: &str) -> &'static ES256KeyPair {
    static KEYS: std::sync::OnceLock<(ES256KeyPair, ES256KeyPair)> = std::sync::OnceLock::new();
    let (a, b) = KEYS.get_or_init(|| (ES256KeyPair::generate().with_key_id("e1"), ES256KeyPair::generate().with_key_id("e2")));
    if kid == "e1" { a } else { b }
}

fn jwks(kid: &str) -> String {
    let point = key(kid).public_key().public_key().to_bytes_uncompressed();
    json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..65]) }] }).to_string()
}

fn token(kid: &str, sub: &str) -> String {
    let mut c = Claims::create(jwt_simple::prelude::Duration::from_hours(1)).with_issuer(ISS).with_subject(sub);
    c.issued_at = Some(jwt_simple::prelude::Duration::from_secs(NOW_MS / 1000 - 10));
    c.expires_at = Some(jwt_simple::prelude::Duration::from_secs(NOW_MS / 1000 + 86_400));
    c.invalid_before = None;
    key(kid).sign(c).unwrap()
}

fn metadata(issuer: &str, jwks_uri: &str) -> String {
    json!({ "issuer": issuer, "jwks_uri": jwks_uri, "token_endpoint": format!("{ISS}/token"), "response_types_supported": ["code"] }).to_string()
}

fn config() -> Value {
    json!({
        "providers": { "idp": { "issuer": ISS, "algorithms": ["ES256"],
            "jwks": { "discovery": { "cluster": "idp", "timeout_ms": 1000, "refresh_s": 60, "min_refetch_s": 1 } } } },
        "routes": [{ "match": { "prefix": "/api" }, "auth": {} }],
        "forward": { "headers": { "x-auth-subject": "subject" } }
    })
}

fn worker(host: MockHost) -> Worker<MockHost> {
    Worker::configure(host, &serde_json::to_vec(&config()).unwrap()).expect("configuration loads")
}

fn calls(w: &Worker<MockHost>) -> Vec<MadeCall> {
    w.host.calls.borrow().clone()
}

fn last_call(w: &Worker<MockHost>) -> MadeCall {
    w.host.calls.borrow().last().cloned().expect("a call")
}

/// Answers the last call the worker made, which must be a GET of `path` through the
/// provider's cluster with the issuer's host as authority.
fn serve(w: &Worker<MockHost>, path: &str, status: u16, body: &str) {
    let call = last_call(w);
    assert_eq!((call.cluster.as_str(), call.authority.as_str(), call.method.as_str(), call.path.as_str()), ("idp", "idp.example", "GET", path));
    let size = w.host.answer(status, body.as_bytes());
    w.on_call_response(call.token, size);
}

/// Sends a request with `token`; the status it got (`None`: passed or still waiting).
fn request(w: &Worker<MockHost>, ctx: u32, token: &str) -> Action {
    let bearer = format!("Bearer {token}").into_bytes();
    w.host.start(ctx, "GET", "/api/x", &[("authorization", &bearer)]);
    w.on_request_headers(ctx, true)
}

/// A counter, flushed to the host or not yet.
fn count(w: &Worker<MockHost>, c: Counter) -> u64 {
    w.pending_count(c) + w.host.counter(&c.name())
}

fn status(w: &Worker<MockHost>, ctx: u32) -> Option<u16> {
    w.host.request(ctx).answered.map(|(s, _, _)| s)
}

/// A worker with the first keys (`e1` at `/tenant/jwks`) in hand.
fn with_keys() -> Worker<MockHost> {
    let w = worker(MockHost::new(NOW_MS));
    serve(&w, OPENID, 200, &metadata(ISS, "https://idp.example/tenant/jwks"));
    serve(&w, "/tenant/jwks", 200, &jwks("e1"));
    assert_eq!(request(&w, 1, &token("e1", "first")), Action::Continue);
    w
}

#[test]
fn the_document_then_the_keys_then_a_request_is_verified() {
    let w = worker(MockHost::new(NOW_MS));
    assert_eq!(calls(&w).len(), 1, "configuring asked for the document at once");
    assert_eq!(request(&w, 7, &token("e1", "user_1")), Action::Pause, "no keys yet: waits");
    assert!(matches!(w.stream(7), Some(Stream::WaitingForKeys { provider: 0, .. })));

    serve(&w, OPENID, 200, &metadata(ISS, "https://idp.example/tenant/jwks?v=1#ignored"));
    assert_eq!(calls(&w).len(), 2, "then the keys");
    assert_eq!(w.host.request(7).resumed, 0, "still waiting for the keys");
    serve(&w, "/tenant/jwks?v=1", 200, &jwks("e1"));

    let r = w.host.request(7);
    assert_eq!((r.resumed, r.answered.map(|a| a.0)), (1, None), "resumed, not answered");
    assert_eq!(w.host.header(7, "x-auth-subject").as_deref(), Some(&b"user_1"[..]));
    assert_eq!((count(&w, Counter::JwksFetchOk), count(&w, Counter::JwksFetchFailed)), (1, 0), "one fetch: two calls");
    assert_eq!(request(&w, 8, &token("e1", "user_2")), Action::Continue, "decided at once");
    w.on_tick();
    assert_eq!(calls(&w).len(), 2, "nothing more to fetch before the refresh");
}

#[test]
fn a_404_falls_back_to_the_rfc_8414_document() {
    let w = worker(MockHost::new(NOW_MS));
    assert_eq!(request(&w, 7, &token("e1", "user_1")), Action::Pause);
    serve(&w, OPENID, 404, "not found");
    serve(&w, OAUTH, 200, &metadata(ISS, "https://idp.example/oauth/jwks"));
    serve(&w, "/oauth/jwks", 200, &jwks("e1"));
    assert_eq!(w.host.request(7).resumed, 1);
    assert_eq!(w.host.header(7, "x-auth-subject").as_deref(), Some(&b"user_1"[..]));

    // A 404 of the fallback is a failed fetch; other statuses do not fall back.
    for (first, second) in [(404, Some(404)), (500, None), (403, None)] {
        let w = worker(MockHost::new(NOW_MS));
        serve(&w, OPENID, first, "");
        if let Some(s) = second {
            serve(&w, OAUTH, s, "");
        }
        assert_eq!(calls(&w).len(), 1 + usize::from(second.is_some()), "{first}: nothing more is asked");
        assert_eq!(count(&w, Counter::JwksFetchFailed), 1, "{first}");
    }
}

/// The documents that must load no keys, each with what it is.
fn refused() -> Vec<(&'static str, u16, String)> {
    vec![
        ("another issuer", 200, metadata("https://evil.example/tenant", "https://idp.example/tenant/jwks")),
        ("the issuer with a trailing slash", 200, metadata("https://idp.example/tenant/", "https://idp.example/tenant/jwks")),
        ("keys on another host", 200, metadata(ISS, "https://evil.example/tenant/jwks")),
        ("keys on another port", 200, metadata(ISS, "https://idp.example:8443/tenant/jwks")),
        ("keys over http for an https issuer", 200, metadata(ISS, "http://idp.example/tenant/jwks")),
        ("keys behind userinfo", 200, metadata(ISS, "https://user:pw@idp.example/tenant/jwks")),
        ("a relative jwks_uri", 200, metadata(ISS, "/tenant/jwks")),
        ("no jwks_uri", 200, json!({ "issuer": ISS }).to_string()),
        ("garbage", 200, "<html>hello</html>".to_string()),
        ("an empty body", 200, String::new()),
        ("an over-large document", 200, format!("{{\"issuer\":\"{ISS}\",\"x\":\"{}\"}}", "a".repeat(70 * 1024))),
        ("a server error", 500, metadata(ISS, "https://idp.example/tenant/jwks")),
    ]
}

#[test]
fn a_refused_document_loads_no_keys_and_the_request_gets_keys_unavailable() {
    for (what, code, body) in refused() {
        let w = worker(MockHost::new(NOW_MS));
        assert_eq!(request(&w, 7, &token("e1", "user_1")), Action::Pause, "{what}");
        serve(&w, OPENID, code, &body);
        assert_eq!(calls(&w).len(), 1, "{what}: no keys asked for");
        assert_eq!((count(&w, Counter::JwksFetchOk), count(&w, Counter::JwksFetchFailed)), (0, 1), "{what}: a failed fetch");
        w.host.advance(KEY_WAIT_MS);
        w.on_tick();
        assert_eq!(status(&w, 7), Some(503), "{what}");
        assert_eq!(w.host.request(7).details.map(|d| d.0).as_deref(), Some("api_auth.keys_unavailable"), "{what}");
        assert_eq!(w.host.request(7).resumed, 0, "{what}: never passed");
        // Backed off, then asked again: the document, never the keys of the refused one.
        assert_eq!(calls(&w).len(), 2, "{what}: retried after the backoff");
        assert_eq!(last_call(&w).path, OPENID, "{what}");
    }
}

#[test]
fn a_refused_document_at_a_refresh_keeps_the_keys_in_hand() {
    for (what, code, body) in refused() {
        let w = with_keys();
        w.host.advance(60_000);
        w.on_tick();
        assert_eq!(last_call(&w).path, OPENID, "{what}: the refresh reads the document again");
        serve(&w, OPENID, code, &body);
        assert_eq!(calls(&w).len(), 3, "{what}: no keys asked for");
        assert_eq!(count(&w, Counter::JwksFetchFailed), 1, "{what}");
        assert_eq!(request(&w, 2, &token("e1", "still")), Action::Continue, "{what}: the keys in hand still verify");
        assert_eq!(w.host.header(2, "x-auth-subject").as_deref(), Some(&b"still"[..]), "{what}");
    }
}

#[test]
fn a_refresh_reads_the_document_again_and_follows_a_new_jwks_uri() {
    let w = with_keys();
    w.host.advance(59_000);
    w.on_tick();
    assert_eq!(calls(&w).len(), 2, "not before refresh_s");
    w.host.advance(1_000);
    w.on_tick();
    serve(&w, OPENID, 200, &metadata(ISS, "https://idp.example/tenant/jwks/v2"));
    serve(&w, "/tenant/jwks/v2", 200, &jwks("e2"));
    assert_eq!(count(&w, Counter::JwksFetchOk), 2);
    assert_eq!(request(&w, 2, &token("e2", "rotated")), Action::Continue, "the new keys verify");
    assert_eq!(request(&w, 3, &token("e1", "old")), Action::Pause, "the old key is gone: an unknown kid waits for a refetch");
}

#[test]
fn an_unknown_kid_refetches_through_the_document() {
    let w = with_keys();
    w.host.advance(1_500);
    assert_eq!(request(&w, 4, &token("e2", "rotated")), Action::Pause, "waits for a refetch");
    w.on_tick();
    serve(&w, OPENID, 200, &metadata(ISS, "https://idp.example/tenant/jwks"));
    serve(&w, "/tenant/jwks", 200, &jwks("e2"));
    assert_eq!(w.host.request(4).resumed, 1);
    assert_eq!(w.host.header(4, "x-auth-subject").as_deref(), Some(&b"rotated"[..]));
}

#[test]
fn keys_that_fail_after_a_good_document_are_a_failed_fetch() {
    let w = with_keys();
    w.host.advance(60_000);
    w.on_tick();
    serve(&w, OPENID, 200, &metadata(ISS, "https://idp.example/tenant/jwks"));
    serve(&w, "/tenant/jwks", 503, "");
    assert_eq!(count(&w, Counter::JwksFetchFailed), 1);
    assert_eq!(request(&w, 2, &token("e1", "still")), Action::Continue);
}

#[test]
fn two_workers_share_one_discovery_and_its_keys() {
    let first = MockHost::new(NOW_MS);
    let second = first.sibling();
    let a = worker(first);
    let b = worker(second);
    assert!(calls(&b).is_empty(), "the second worker asks for nothing");
    serve(&a, OPENID, 200, &metadata(ISS, "https://idp.example/tenant/jwks"));
    assert!(calls(&b).is_empty(), "the lease is held between the two calls");
    b.on_tick();
    assert!(calls(&b).is_empty());
    serve(&a, "/tenant/jwks", 200, &jwks("e1"));
    assert_eq!(request(&b, 5, &token("e1", "user_b")), Action::Pause, "no keys yet in the second worker");
    b.on_tick();
    assert_eq!(b.host.request(5).resumed, 1, "adopted from shared data on its tick");
    assert!(calls(&b).is_empty(), "still no call of its own");
}
