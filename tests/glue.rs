//! The host glue against the mock host: waiting for keys and resuming, timeouts, failed
//! dispatches, one fetch for two workers, one lookup for many waiters (also when the request
//! that dispatched it ends), webhook bodies, correlation ids and counters.

use api_auth_filter::glue::mock::MockHost;
use api_auth_filter::glue::{Action, Stream, Worker, KEY_WAIT_MS};
use base64::Engine;
use hmac::Mac;
use serde_json::{json, Value};

const NOW_MS: u64 = 1_790_000_000_000;
const SECRET: &[u8] = b"glue-test-hmac-secret-0123456789abcdef";
const ISS: &str = "https://idp.glue.example";
const KEY: &str = "gk_live_key";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn token(sub: &str) -> String {
    let claims = json!({ "iss": ISS, "sub": sub, "iat": NOW_MS / 1000 - 10, "exp": NOW_MS / 1000 + 600 });
    let input = format!("{}.{}", b64(br#"{"alg":"HS256","kid":"k1"}"#), b64(claims.to_string().as_bytes()));
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn jwks() -> String {
    json!({ "keys": [{ "kty": "oct", "kid": "k1", "alg": "HS256", "k": b64(SECRET) }] }).to_string()
}

fn config() -> Value {
    json!({
        "providers": { "idp": { "issuer": ISS, "algorithms": ["HS256"],
            "jwks": { "remote": { "cluster": "jwks", "path": "/jwks.json", "timeout_ms": 1000, "min_refetch_s": 1, "allow_symmetric_keys": true } } } },
        "api_keys": { "prefixes": ["gk_"], "lookup": { "cluster": "keys", "path": "/lookup", "timeout_ms": 500, "cache_ttl_s": 30 } },
        "webhooks": { "hook": { "secrets": [{ "value": "whsec_glue" }], "max_body_bytes": 64 } },
        "routes": [
            { "match": { "prefix": "/hooks" }, "auth": "none", "webhook": "hook" },
            { "match": { "prefix": "/api" }, "auth": {}, "errors": "openai" }
        ],
        "forward": { "headers": { "x-auth-subject": "subject", "x-auth-key-id": "key_id" } },
        "correlation_id": { "header": "x-correlation-id", "generate": true }
    })
}

fn worker(host: MockHost) -> Worker<MockHost> {
    Worker::configure(host, &serde_json::to_vec(&config()).unwrap()).expect("configuration loads")
}

fn bearer(t: &str) -> Vec<u8> {
    format!("Bearer {t}").into_bytes()
}

fn answer_status(w: &Worker<MockHost>, ctx: u32) -> Option<u16> {
    w.host.request(ctx).answered.map(|(s, _, _)| s)
}

/// The JWKS fetch the tick made, answered.
fn serve_jwks(w: &Worker<MockHost>) {
    let fetch = w.host.calls.borrow().iter().rev().find(|c| c.cluster == "jwks").cloned().expect("a JWKS fetch");
    let size = w.host.answer(200, jwks().as_bytes());
    w.on_call_response(fetch.token, size);
}

#[test]
fn a_request_waits_for_the_first_keys_and_is_resumed_with_them() {
    let w = worker(MockHost::new(NOW_MS));
    // Configuring fetched at once, from the root context.
    let calls = w.host.calls.borrow().clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!((calls[0].cluster.as_str(), calls[0].method.as_str(), calls[0].path.as_str(), calls[0].context), ("jwks", "GET", "/jwks.json", 0));

    w.host.start(7, "GET", "/api/x", &[("authorization", &bearer(&token("user_1")))]);
    assert_eq!(w.on_request_headers(7, true), Action::Pause);
    assert!(matches!(w.stream(7), Some(Stream::WaitingForKeys { provider: 0, .. })));
    assert_eq!(w.host.request(7).resumed, 0);

    serve_jwks(&w);
    let r = w.host.request(7);
    assert_eq!((r.resumed, r.answered), (1, None), "resumed, not answered");
    assert_eq!(w.host.header(7, "x-auth-subject").as_deref(), Some(&b"user_1"[..]));
    assert_eq!(w.host.header(7, "authorization"), None, "credentials stripped");
    // Later requests are decided at once, in their own callback.
    w.host.start(8, "GET", "/api/y", &[("authorization", &bearer(&token("user_2")))]);
    assert_eq!(w.on_request_headers(8, true), Action::Continue);
    assert_eq!(w.host.request(8).resumed, 0);
}

#[test]
fn a_wait_that_outlasts_its_deadline_gets_503_in_the_route_format() {
    let w = worker(MockHost::new(NOW_MS));
    w.host.start(7, "GET", "/api/x", &[("authorization", &bearer(&token("user_1"))), ("x-correlation-id", b"cid-7")]);
    assert_eq!(w.on_request_headers(7, true), Action::Pause);
    w.host.advance(KEY_WAIT_MS - 1);
    w.on_tick();
    assert_eq!(answer_status(&w, 7), None, "still waiting");
    w.host.advance(1);
    w.on_tick();
    let (status, headers, body) = w.host.request(7).answered.expect("answered");
    assert_eq!(status, 503);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body, json!({ "error": { "message": "Service unavailable", "type": "keys_unavailable", "code": "keys_unavailable" } }));
    assert!(headers.contains(&("x-correlation-id".to_string(), "cid-7".to_string())), "{headers:?}");
    assert_eq!(w.host.request(7).resumed, 0, "a denial is never resumed");
    assert_eq!(w.stream(7), None);
}

#[test]
fn a_lookup_that_cannot_start_is_refused_at_once() {
    let host = MockHost::new(NOW_MS);
    host.dispatch_fails.set(true);
    let w = worker(host);
    w.host.start(3, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(3, true), Action::Pause);
    assert_eq!(answer_status(&w, 3), Some(503), "keys_unavailable without a wait");
    assert_eq!(w.stream(3), None);
    assert_eq!(w.pending_count(api_auth_filter::stats::Counter::KeyLookupFailed), 1);
}

#[test]
fn two_workers_share_one_fetch_and_adopt_its_keys() {
    let first = MockHost::new(NOW_MS);
    let second = first.sibling();
    let a = worker(first);
    let b = worker(second);
    assert_eq!(a.host.calls.borrow().len(), 1, "the first worker took the lease and fetched");
    assert!(b.host.calls.borrow().iter().all(|c| c.cluster != "jwks"), "the second did not fetch");
    serve_jwks(&a);
    b.host.start(5, "GET", "/api/x", &[("authorization", &bearer(&token("user_b")))]);
    assert_eq!(b.on_request_headers(5, true), Action::Pause, "no keys yet in the second worker");
    b.on_tick();
    assert_eq!(b.host.request(5).resumed, 1, "adopted from shared data on its tick");
    assert_eq!(b.host.header(5, "x-auth-subject").as_deref(), Some(&b"user_b"[..]));
    assert!(b.host.calls.borrow().iter().all(|c| c.cluster != "jwks"), "still no fetch of its own");
}

fn lookup_answer() -> Vec<u8> {
    json!({ "id": "key_remote", "sha256": sha256_hex(KEY.as_bytes()), "status": "active" }).to_string().into_bytes()
}

#[test]
fn many_waiters_share_one_lookup() {
    let w = worker(MockHost::new(NOW_MS));
    for ctx in 10..14 {
        w.host.start(ctx, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
        assert_eq!(w.on_request_headers(ctx, true), Action::Pause);
    }
    let lookups: Vec<_> = w.host.calls.borrow().iter().filter(|c| c.cluster == "keys").cloned().collect();
    assert_eq!(lookups.len(), 1, "one lookup for four requests");
    assert_eq!(lookups[0].body, format!("{{\"sha256\":\"{}\"}}", sha256_hex(KEY.as_bytes())).into_bytes(), "the digest, never the key");
    let size = w.host.answer(200, &lookup_answer());
    w.on_call_response(lookups[0].token, size);
    for ctx in 10..14 {
        let r = w.host.request(ctx);
        assert_eq!((r.resumed, r.answered), (1, None), "request {ctx}");
        assert_eq!(w.host.header(ctx, "x-auth-key-id").as_deref(), Some(&b"key_remote"[..]));
    }
    // The answer is cached: the next request is decided at once, without a call.
    w.host.start(20, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(20, true), Action::Continue);
    assert_eq!(w.host.calls.borrow().iter().filter(|c| c.cluster == "keys").count(), 1);
}

#[test]
fn when_the_request_that_dispatched_a_lookup_ends_the_others_still_get_the_answer() {
    let w = worker(MockHost::new(NOW_MS));
    for ctx in [10, 11, 12] {
        w.host.start(ctx, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
        assert_eq!(w.on_request_headers(ctx, true), Action::Pause);
    }
    let first = w.host.calls.borrow().iter().find(|c| c.cluster == "keys").cloned().unwrap();
    assert_eq!(first.context, 10, "dispatched by the first request");
    // The client of request 10 resets: the SDK would deliver the answer to its context, which
    // is gone, and drop it.
    w.on_done(10);
    w.host.effective.set(0);
    w.on_tick();
    let again: Vec<_> = w.host.calls.borrow().iter().filter(|c| c.cluster == "keys").cloned().collect();
    assert_eq!(again.len(), 2, "handed on: looked up again");
    assert_eq!(again[1].context, 0, "from the root context, which no request can take down");
    // An answer to the cancelled call (should one come) is ignored; the new one answers.
    let size = w.host.answer(200, &lookup_answer());
    w.on_call_response(first.token, size);
    assert_eq!(w.host.request(11).resumed, 0);
    w.on_call_response(again[1].token, size);
    for ctx in [11, 12] {
        let r = w.host.request(ctx);
        assert_eq!((r.resumed, r.answered), (1, None), "request {ctx}");
    }
}

#[test]
fn a_lookup_nobody_waits_for_any_more_is_dropped() {
    let w = worker(MockHost::new(NOW_MS));
    w.host.start(10, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(10, true), Action::Pause);
    w.on_done(10);
    w.on_tick();
    assert_eq!(w.host.calls.borrow().iter().filter(|c| c.cluster == "keys").count(), 1, "not looked up again");
}

fn signed(body: &[u8]) -> Vec<u8> {
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(b"whsec_glue").unwrap();
    mac.update(body);
    format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()).into_bytes()
}

#[test]
fn webhook_bodies_in_chunks_with_trailers_and_over_the_limit() {
    let w = worker(MockHost::new(NOW_MS));
    let body = br#"{"event":"ping","n":1}"#;
    // In chunks: held until the end, then verified.
    w.host.start(1, "POST", "/hooks/a", &[("x-webhook-signature", &signed(body))]);
    assert_eq!(w.on_request_headers(1, false), Action::Pause);
    assert!(matches!(w.stream(1), Some(Stream::AwaitingBody { .. })));
    let n = w.host.push_body(1, &body[..5]);
    assert_eq!(w.on_request_body(1, n, false), Action::Pause);
    let n = w.host.push_body(1, &body[5..]);
    assert_eq!(w.on_request_body(1, n, true), Action::Continue);
    assert_eq!(answer_status(&w, 1), None);
    // Trailers end the body.
    w.host.start(2, "POST", "/hooks/a", &[("x-webhook-signature", &signed(body))]);
    assert_eq!(w.on_request_headers(2, false), Action::Pause);
    let n = w.host.push_body(2, body);
    assert_eq!(w.on_request_body(2, n, false), Action::Pause);
    assert_eq!(w.on_request_trailers(2), Action::Continue);
    // A signature for another body.
    w.host.start(3, "POST", "/hooks/a", &[("x-webhook-signature", &signed(b"other"))]);
    assert_eq!(w.on_request_headers(3, false), Action::Pause);
    let n = w.host.push_body(3, body);
    assert_eq!(w.on_request_body(3, n, true), Action::Pause);
    assert_eq!(answer_status(&w, 3), Some(401));
    // Over the limit: refused as soon as it is known, not at the end.
    w.host.start(4, "POST", "/hooks/a", &[("x-webhook-signature", &signed(&[b'x'; 65]))]);
    assert_eq!(w.on_request_headers(4, false), Action::Pause);
    let n = w.host.push_body(4, &[b'x'; 65]);
    assert_eq!(w.on_request_body(4, n, false), Action::Pause);
    assert_eq!(answer_status(&w, 4), Some(413));
    // Headers only, no body at all: verified at once over the empty body.
    w.host.start(5, "POST", "/hooks/a", &[("x-webhook-signature", &signed(b""))]);
    assert_eq!(w.on_request_headers(5, true), Action::Continue);
}

#[test]
fn the_correlation_id_goes_back_on_the_response_and_counters_flush_on_the_tick() {
    let w = worker(MockHost::new(NOW_MS));
    serve_jwks(&w);
    w.host.start(1, "GET", "/api/x", &[("authorization", &bearer(&token("u"))), ("x-correlation-id", b"abc-1")]);
    assert_eq!(w.on_request_headers(1, true), Action::Continue);
    assert_eq!(w.host.header(1, "x-correlation-id").as_deref(), Some(&b"abc-1"[..]), "upstream gets it");
    assert_eq!(w.on_response_headers(1), Action::Continue);
    assert_eq!(w.host.request(1).response_headers, vec![("x-correlation-id".to_string(), b"abc-1".to_vec())]);
    w.on_done(1);
    assert_eq!(w.stream(1), None, "nothing kept after the request");
    // A generated one when the client sends none.
    w.host.start(2, "GET", "/api/x", &[("authorization", &bearer(&token("u")))]);
    assert_eq!(w.on_request_headers(2, true), Action::Continue);
    let id = w.host.header(2, "x-correlation-id").expect("generated");
    assert_eq!(id.len(), 36);
    // A denial.
    w.host.start(3, "GET", "/api/x", &[]);
    assert_eq!(w.on_request_headers(3, true), Action::Pause);
    assert_eq!(w.host.counter("api_auth.allowed"), 0, "nothing flushed before the tick");
    w.on_tick();
    assert_eq!(w.host.counter("api_auth.allowed"), 2);
    assert_eq!(w.host.counter("api_auth.allowed_by.jwt"), 2);
    assert_eq!(w.host.counter("api_auth.allowed_by.api_key"), 0);
    assert_eq!(w.host.counter("api_auth.denied.credentials_missing"), 1);
    assert_eq!(w.host.counter("api_auth.jwks_fetch_ok"), 1);
    assert_eq!(w.host.counter("api_auth.token_cache_miss"), 1);
    assert_eq!(w.host.counter("api_auth.token_cache_hit"), 1);
    w.on_tick();
    assert_eq!(w.host.counter("api_auth.allowed"), 2, "flushed once");
}

#[test]
fn the_token_cache_holds_the_configured_number_of_tokens_and_hits_forward_the_right_principal() {
    // FIFO over a, b, c, c, a, b: two entries evict a before it comes back, three keep all.
    for (max_entries, want_hits) in [(2, 1), (3, 3), (0, 0)] {
        let mut cfg = config();
        cfg["token_cache"] = json!({ "max_entries": max_entries });
        cfg["forward"]["headers"]["x-auth-email"] = json!("claim:sub");
        let w = Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&cfg).unwrap()).expect("loads");
        serve_jwks(&w);
        for (ctx, sub) in (1..).zip(["a", "b", "c", "c", "a", "b"]) {
            w.host.start(ctx, "GET", "/api/x", &[("authorization", &bearer(&token(sub)))]);
            assert_eq!(w.on_request_headers(ctx, true), Action::Continue, "{max_entries}: {sub}");
            assert_eq!(w.host.header(ctx, "x-auth-subject").as_deref(), Some(sub.as_bytes()), "{max_entries}: request {ctx}");
            assert_eq!(w.host.header(ctx, "x-auth-email").as_deref(), Some(sub.as_bytes()), "{max_entries}: request {ctx}, the claim");
            w.on_done(ctx);
        }
        w.on_tick();
        assert_eq!(w.host.counter("api_auth.token_cache_hit"), want_hits, "max_entries {max_entries}");
        assert_eq!(w.host.counter("api_auth.token_cache_miss"), 6 - want_hits, "max_entries {max_entries}");
    }
}

#[test]
fn headers_the_host_will_not_give_are_refused_never_passed() {
    let w = worker(MockHost::new(NOW_MS));
    w.host.start(1, "GET", "/api/x", &[]);
    w.host.headers_fail.set(true);
    assert_eq!(w.on_request_headers(1, true), Action::Pause);
    assert_eq!(answer_status(&w, 1), Some(503));
    assert_eq!(w.pending_count(api_auth_filter::stats::Counter::HostError), 1);
    assert_eq!(w.pending_count(api_auth_filter::stats::Counter::Denied(api_auth_filter::deny::Reason::HostError)), 1);
    assert_eq!(w.host.request(1).details, Some(("api_auth.host_error".to_string(), None)), "an honest reason");
}

#[test]
fn a_request_without_a_configuration_is_refused_with_the_documented_bytes() {
    let host = MockHost::new(NOW_MS);
    host.start(1, "GET", "/api/x", &[]);
    assert_eq!(api_auth_filter::glue::stream::refuse_unconfigured(&host), Action::Pause);
    let (status, headers, body) = host.request(1).answered.expect("answered");
    assert_eq!(status, 503);
    assert_eq!(headers, vec![("content-type".to_string(), "application/json".to_string())]);
    assert_eq!(body, br#"{"detail":"Service unavailable"}"#);
    assert_eq!(host.request(1).details, Some(("api_auth.unconfigured".to_string(), None)));
}

#[test]
fn an_unknown_kid_waits_for_one_refetch() {
    let w = worker(MockHost::new(NOW_MS));
    serve_jwks(&w);
    let other = {
        let claims = json!({ "iss": ISS, "sub": "rotated", "iat": NOW_MS / 1000, "exp": NOW_MS / 1000 + 600 });
        let input = format!("{}.{}", b64(br#"{"alg":"HS256","kid":"k2"}"#), b64(claims.to_string().as_bytes()));
        format!("{input}.{}", b64(&[0u8; 32]))
    };
    w.host.advance(1500);
    w.host.start(4, "GET", "/api/x", &[("authorization", &bearer(&other))]);
    assert_eq!(w.on_request_headers(4, true), Action::Pause, "waits for a refetch");
    w.on_tick();
    let fetches = w.host.calls.borrow().iter().filter(|c| c.cluster == "jwks").count();
    assert_eq!(fetches, 2, "refetched once");
    serve_jwks(&w);
    let (status, _, _) = w.host.request(4).answered.expect("decided after the refetch");
    assert_eq!(status, 401, "still an unknown kid: token_invalid");
}

#[test]
fn an_allow_hands_the_principal_to_envoy_and_a_denial_names_its_reason() {
    let mut cfg = config();
    cfg["filter_state"] = json!(["kind", "subject", "key_id", "provider", "organization", "workspace", "scopes"]);
    let w = Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&cfg).unwrap()).unwrap();
    let size = w.host.answer(200, &lookup_answer());
    w.host.start(1, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(1, true), Action::Pause);
    let call = w.host.calls.borrow().iter().find(|c| c.cluster == "keys").cloned().unwrap();
    w.on_call_response(call.token, size);
    let state = w.host.request(1).filter_state;
    let names: Vec<(&str, &[u8])> = state.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    assert_eq!(names, vec![("api_auth.kind", &b"api_key"[..]), ("api_auth.key_id", &b"key_remote"[..])], "present fields only");
    // A denial: its reason as the response-code details, no filter state.
    w.host.start(2, "GET", "/api/x", &[]);
    assert_eq!(w.on_request_headers(2, true), Action::Pause);
    let r = w.host.request(2);
    assert_eq!(r.details, Some(("api_auth.credentials_missing".to_string(), None)));
    assert!(r.filter_state.is_empty());
}

#[test]
fn filter_state_is_written_only_where_configured() {
    for (fields, want) in [(json!(["subject"]), vec!["api_auth.subject"]), (json!(["kind", "subject"]), vec!["api_auth.kind", "api_auth.subject"]), (json!([]), vec![]), (json!(null), vec![])] {
        let mut cfg = config();
        if !fields.is_null() {
            cfg["filter_state"] = fields;
        }
        let w = Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&cfg).unwrap()).unwrap();
        serve_jwks(&w);
        w.host.start(1, "GET", "/api/x", &[("authorization", &bearer(&token("user_fs")))]);
        assert_eq!(w.on_request_headers(1, true), Action::Continue);
        let got: Vec<String> = w.host.request(1).filter_state.into_iter().map(|(n, _)| n).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn a_grpc_denial_is_a_grpc_status_with_the_plain_message() {
    let w = worker(MockHost::new(NOW_MS));
    w.host.start(1, "POST", "/api/pkg.Service/Method", &[("content-type", b"application/grpc")]);
    assert_eq!(w.on_request_headers(1, false), Action::Pause);
    let r = w.host.request(1);
    let (_, headers, body) = r.answered.expect("answered");
    assert_eq!(r.details, Some(("api_auth.credentials_missing".to_string(), Some(16))), "UNAUTHENTICATED");
    assert_eq!(body, b"Could not validate credentials", "grpc-message, not the JSON body");
    assert!(!headers.iter().any(|(n, _)| n == "content-type"), "{headers:?}");
    assert!(headers.iter().any(|(n, v)| n == "www-authenticate" && v == "Bearer"), "{headers:?}");
    // The same request without the gRPC content type gets the JSON body.
    w.host.start(2, "POST", "/api/pkg.Service/Method", &[("content-type", b"application/json")]);
    w.on_request_headers(2, false);
    let (_, _, body) = w.host.request(2).answered.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"], "credentials_missing");
}

fn browser_config() -> Value {
    let mut cfg = config();
    cfg["providers"]["idp"]["from_cookies"] = json!(["__session"]);
    cfg["providers"]["idp"]["authorized_parties"] = json!(["https://app.glue.example"]);
    let routes = cfg["routes"].as_array_mut().unwrap();
    routes.insert(0, json!({ "match": { "route_name": "admin-api" }, "auth": { "credentials": ["jwt"], "roles": ["admin"] } }));
    routes.insert(1, json!({ "match": { "route_metadata": { "filter": "api_auth", "key": "policy", "value": "keys-only" } }, "auth": { "credentials": ["api_key"] } }));
    cfg
}

#[test]
fn routes_bound_to_the_router_follow_its_choice() {
    let w = Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&browser_config()).unwrap()).unwrap();
    serve_jwks(&w);
    let user = bearer(&token("user_1"));
    let decide = |ctx: u32, props: &[(&str, &[u8])]| {
        w.host.start(ctx, "GET", "/api/anything", &[("authorization", &user)]);
        w.host.requests.borrow_mut().get_mut(&ctx).unwrap().properties = props.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        w.on_request_headers(ctx, true);
        w.host.request(ctx).details.map(|(d, _)| d)
    };
    // The router chose the admin route: its rules apply whatever the path.
    assert_eq!(decide(1, &[("xds.route_name", b"admin-api")]), Some("api_auth.role_required".into()));
    // Another route name, or none: the path decides (/api takes any valid credential).
    assert_eq!(decide(2, &[("xds.route_name", b"public-api")]), None);
    assert_eq!(decide(3, &[]), None);
    // Route metadata.
    assert_eq!(
        decide(4, &[("xds.route_metadata.filter_metadata.api_auth.policy", b"keys-only")]),
        Some("api_auth.credential_not_accepted".into())
    );
    assert_eq!(decide(5, &[("xds.route_metadata.filter_metadata.api_auth.policy", b"other")]), None);
}

#[test]
fn cookie_tokens_count_for_their_provider_and_need_an_allowed_origin_on_unsafe_methods() {
    let w = Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&browser_config()).unwrap()).unwrap();
    serve_jwks(&w);
    let cookie = format!("theme=dark; __session={}; lang=en", token("user_c")).into_bytes();
    let run = |ctx: u32, method: &str, headers: &[(&str, &[u8])]| {
        w.host.start(ctx, method, "/api/x", headers);
        let action = w.on_request_headers(ctx, true);
        (action, w.host.request(ctx))
    };
    let (action, r) = run(1, "GET", &[("cookie", &cookie)]);
    assert_eq!(action, Action::Continue, "{:?}", r.details);
    assert_eq!(w.host.header(1, "x-auth-subject").as_deref(), Some(&b"user_c"[..]));
    assert_eq!(w.host.header(1, "cookie").as_deref(), Some(&b"theme=dark; lang=en"[..]), "the token cookie never goes upstream");
    // POST: only from an allowed origin.
    let (action, r) = run(2, "POST", &[("cookie", &cookie), ("origin", b"https://app.glue.example")]);
    assert_eq!((action, r.details), (Action::Continue, None));
    for (ctx, origin) in [(3, &b"https://evil.example"[..]), (4, b"null")] {
        let (_, r) = run(ctx, "POST", &[("cookie", &cookie), ("origin", origin)]);
        assert_eq!(r.details.map(|(d, _)| d).as_deref(), Some("api_auth.origin_forbidden"));
        assert_eq!(r.answered.map(|(s, _, _)| s), Some(403));
    }
    let (_, r) = run(5, "DELETE", &[("cookie", &cookie)]);
    assert_eq!(r.details.map(|(d, _)| d).as_deref(), Some("api_auth.origin_forbidden"), "no Origin at all");
    // A header credential wins: the cookie is not read (nor removed).
    let (action, _) = run(6, "POST", &[("cookie", &cookie), ("x-api-key", b"gk_unknown_but_present")]);
    assert_eq!(action, Action::Pause, "the key is looked up; the cookie does not stand in");
    // Two different tokens in the same cookie name: which one is meant cannot be told.
    let two = format!("__session={}; __session={}", token("a"), token("b")).into_bytes();
    let (_, r) = run(7, "GET", &[("cookie", &two)]);
    assert_eq!(r.details.map(|(d, _)| d).as_deref(), Some("api_auth.credentials_malformed"));
    // Another cookie name is no credential.
    let other = format!("session={}", token("x")).into_bytes();
    let (_, r) = run(8, "GET", &[("cookie", &other)]);
    assert_eq!(r.details.map(|(d, _)| d).as_deref(), Some("api_auth.credentials_missing"));
}

#[test]
fn a_lookup_whose_dispatcher_gave_up_waiting_does_not_stay_in_flight() {
    let w = worker(MockHost::new(NOW_MS));
    w.host.start(10, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(10, true), Action::Pause);
    // The service is slow: the request's wait ends (503), then the request ends.
    w.host.advance(1001);
    w.on_tick();
    assert_eq!(answer_status(&w, 10), Some(503));
    w.on_done(10);
    // A later request for the same key asks again instead of waiting for a call no one tracks.
    w.host.advance(60_000);
    w.host.start(11, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(11, true), Action::Pause);
    assert_eq!(w.host.calls.borrow().iter().filter(|c| c.cluster == "keys").count(), 2);
}

#[test]
fn a_handed_on_lookup_gives_its_waiters_the_time_of_the_new_call() {
    let w = worker(MockHost::new(NOW_MS));
    for ctx in [10, 11] {
        w.host.start(ctx, "GET", "/api/x", &[("x-api-key", KEY.as_bytes())]);
        assert_eq!(w.on_request_headers(ctx, true), Action::Pause);
    }
    // Just before the waiters' deadline (timeout 500 + 500 ms) the dispatcher's client resets.
    w.host.advance(990);
    w.on_done(10);
    w.host.advance(20);
    w.on_tick();
    assert_eq!(answer_status(&w, 11), None, "still waiting, for the new call");
    let again = w.host.calls.borrow().iter().rev().find(|c| c.cluster == "keys").cloned().unwrap();
    let size = w.host.answer(200, &lookup_answer());
    w.on_call_response(again.token, size);
    assert_eq!(w.host.request(11).resumed, 1);
}

#[test]
fn what_the_host_will_not_do_or_give_fails_closed() {
    let w = worker(MockHost::new(NOW_MS));
    serve_jwks(&w);
    // Identity headers that cannot be set (or forged ones that cannot be removed).
    w.host.header_writes_fail.set(true);
    w.host.start(1, "GET", "/api/x", &[("authorization", &bearer(&token("u")))]);
    assert_eq!(w.on_request_headers(1, true), Action::Pause);
    assert_eq!(answer_status(&w, 1), Some(503));
    w.host.header_writes_fail.set(false);
    // A webhook body that cannot be read is not taken for an empty one.
    w.host.body_fails.set(true);
    w.host.start(2, "POST", "/hooks/a", &[("x-webhook-signature", &signed(b""))]);
    assert_eq!(w.on_request_headers(2, false), Action::Pause);
    w.host.push_body(2, b"not empty");
    assert_eq!(w.on_request_trailers(2), Action::Pause);
    assert_eq!(answer_status(&w, 2), Some(503));
}

// --- issue 20: isolation between configurations, floods, held headers, failures of the host ---

fn keyed_config(lookup_cluster: &str, ttl_s: u64, usage_cluster: &str) -> Value {
    let mut cfg = config();
    cfg["api_keys"]["lookup"] = json!({ "cluster": lookup_cluster, "path": "/lookup", "timeout_ms": 500, "cache_ttl_s": ttl_s, "negative_cache_ttl_s": 60 });
    cfg["api_keys"]["usage_report"] = json!({ "cluster": usage_cluster, "path": "/usage", "interval_s": 1 });
    cfg
}

fn configured(host: MockHost, cfg: &Value) -> Worker<MockHost> {
    Worker::configure(host, &serde_json::to_vec(cfg).unwrap()).expect("configuration loads")
}

/// Sends a key on `ctx`; answers the lookup it makes (if any) with `status`. The request's
/// outcome: None (went upstream), or the status it was answered with.
fn with_key(w: &Worker<MockHost>, ctx: u32, key: &str, status: u16, body: &[u8]) -> Option<u16> {
    let before = w.host.calls.borrow().len();
    w.host.start(ctx, "GET", "/api/x", &[("x-api-key", key.as_bytes())]);
    if w.on_request_headers(ctx, true) == Action::Pause && answer_status(w, ctx).is_none() {
        let call = w.host.calls.borrow().get(before).cloned().expect("a lookup");
        let size = w.host.answer(status, body);
        w.on_call_response(call.token, size);
    }
    answer_status(w, ctx)
}

fn lookups_to(w: &Worker<MockHost>, cluster: &str) -> usize {
    w.host.calls.borrow().iter().filter(|c| c.cluster == cluster).count()
}

#[test]
fn two_configurations_in_one_vm_never_share_key_answers_or_usage() {
    let host_a = MockHost::new(NOW_MS);
    let host_b = host_a.sibling();
    let host_a2 = host_a.sibling();
    let a = configured(host_a, &keyed_config("keys_a", 60, "usage_a"));
    let b = configured(host_b, &keyed_config("keys_b", 60, "usage_b"));
    let a2 = configured(host_a2, &keyed_config("keys_a", 60, "usage_a"));
    // A's service knows the key.
    assert_eq!(with_key(&a, 1, KEY, 200, &lookup_answer()), None);
    assert_eq!(lookups_to(&a, "keys_a"), 1);
    // B asks its own service, which does not: refused.
    assert_eq!(with_key(&b, 2, KEY, 404, b"{}"), Some(401), "A's answer decided at B");
    assert_eq!(lookups_to(&b, "keys_b"), 1, "B's service was asked");
    // B's 404 does not make A (another worker of A's configuration, reading shared data) refuse.
    a2.host.dispatch_fails.set(true);
    assert_eq!(with_key(&a2, 3, KEY, 200, &lookup_answer()), None, "B's 404 decided at A");
    // A's usage is reported to A's service only.
    // A merges its uses within the period; B's tick ends the period first.
    let advance = |ms: u64| [&a, &b, &a2].iter().for_each(|w| w.host.advance(ms));
    advance(500);
    a.on_tick();
    advance(1500);
    b.on_tick();
    a.on_tick();
    let posted = |w: &Worker<MockHost>, cluster: &str| -> Vec<String> {
        w.host.calls.borrow().iter().filter(|c| c.cluster == cluster).map(|c| String::from_utf8_lossy(&c.body).into_owned()).collect()
    };
    assert!(posted(&b, "usage_b").iter().all(|r| !r.contains("key_remote")), "A's usage went to B: {:?}", posted(&b, "usage_b"));
    assert!(posted(&a, "usage_a").iter().any(|r| r.contains("key_remote")), "A's usage reported to A: {:?}", posted(&a, "usage_a"));
}

#[test]
fn a_cached_answer_lives_as_long_as_the_readers_ttl() {
    let host_long = MockHost::new(NOW_MS);
    let host_short = host_long.sibling();
    let long = configured(host_long, &keyed_config("keys", 60, "usage"));
    let short = configured(host_short, &keyed_config("keys", 1, "usage"));
    assert_eq!(with_key(&long, 1, KEY, 200, &lookup_answer()), None);
    // The same service: its answer is shared, within the reader's own TTL.
    assert_eq!(with_key(&short, 2, KEY, 500, b""), None);
    assert_eq!(lookups_to(&short, "keys"), 0, "served from the shared answer");
    short.host.advance(1500);
    long.host.advance(1500);
    // Older than the short TTL: looked up again (the service now says revoked).
    let revoked = json!({ "id": "key_remote", "sha256": sha256_hex(KEY.as_bytes()), "status": "revoked" }).to_string();
    assert_eq!(with_key(&short, 3, KEY, 200, revoked.as_bytes()), Some(401), "the writer's TTL decided");
    assert_eq!(lookups_to(&short, "keys"), 1);
}

/// Keys whose digest falls in the shared slot of `key` (an attacker finds them offline).
fn colliding_keys(key: &str, n: usize) -> Vec<String> {
    use sha2::Digest;
    let slot = |k: &str| {
        let d = sha2::Sha256::digest(k.as_bytes());
        (u32::from(d[0]) << 8 | u32::from(d[1])) % 4096
    };
    let want = slot(key);
    (0..).map(|i| format!("gk_flood_{i}")).filter(|k| slot(k) == want).take(n).collect()
}

#[test]
fn a_flood_of_unknown_keys_never_evicts_the_keys_in_use() {
    let host = MockHost::new(NOW_MS);
    let other = host.sibling();
    let w = configured(host, &keyed_config("keys", 60, "usage"));
    assert_eq!(with_key(&w, 1, KEY, 200, &lookup_answer()), None);
    // Unknown keys: some in the key's shared slot, and more than a worker keeps parsed.
    let mut flood = colliding_keys(KEY, 4);
    flood.extend((0..1500).map(|i| format!("gk_unknown_{i}")));
    for (ctx, k) in (100..).zip(&flood) {
        assert_eq!(with_key(&w, ctx, k, 404, b"{}"), Some(401));
        w.on_done(ctx);
    }
    // The service goes down: the key in use still passes, in this worker and in another.
    w.host.dispatch_fails.set(true);
    assert_eq!(with_key(&w, 2, KEY, 200, &lookup_answer()), None, "evicted from this worker");
    let fresh = configured(other, &keyed_config("keys", 60, "usage"));
    fresh.host.dispatch_fails.set(true);
    assert_eq!(with_key(&fresh, 3, KEY, 200, &lookup_answer()), None, "evicted from shared data");
}

#[test]
fn a_held_webhook_keeps_only_the_headers_its_signature_needs() {
    let w = worker(MockHost::new(NOW_MS));
    let body = br#"{"event":"ping"}"#;
    let filler = vec![b'f'; 16 * 1024];
    w.host.start(1, "POST", "/hooks/a", &[("x-webhook-signature", &signed(body)), ("x-filler", &filler), ("user-agent", b"probe")]);
    assert_eq!(w.on_request_headers(1, false), Action::Pause);
    let Some(Stream::AwaitingBody { headers, .. }) = w.stream(1) else { panic!("held") };
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["x-webhook-signature"], "held for the whole wait");
    let n = w.host.push_body(1, body);
    assert_eq!(w.on_request_body(1, n, true), Action::Continue, "and it still verifies");
}

#[test]
fn a_route_binding_the_host_will_not_read_fails_closed() {
    let w = Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&browser_config()).unwrap()).unwrap();
    serve_jwks(&w);
    for (ctx, failing) in [(1, "xds.route_name"), (2, "xds.route_metadata")] {
        *w.host.property_reads_fail.borrow_mut() = vec![failing.to_string()];
        w.host.start(ctx, "GET", "/api/anything", &[("authorization", &bearer(&token("user_1")))]);
        assert_eq!(w.on_request_headers(ctx, true), Action::Pause, "{failing}: fell through to a weaker route");
        assert_eq!(answer_status(&w, ctx), Some(503), "{failing}");
    }
    // Properties that are just not there are no error: the path decides.
    w.host.property_reads_fail.borrow_mut().clear();
    w.host.start(3, "GET", "/api/anything", &[("authorization", &bearer(&token("user_1")))]);
    assert_eq!(w.on_request_headers(3, true), Action::Continue);
}

#[test]
fn a_filter_state_write_that_fails_fails_closed() {
    let mut cfg = config();
    cfg["filter_state"] = json!(["subject"]);
    let w = configured(MockHost::new(NOW_MS), &cfg);
    serve_jwks(&w);
    w.host.property_writes_fail.set(true);
    w.host.start(1, "GET", "/api/x", &[("authorization", &bearer(&token("user_1")))]);
    assert_eq!(w.on_request_headers(1, true), Action::Pause, "went upstream without its filter state");
    assert_eq!(answer_status(&w, 1), Some(503));
    // Without filter state configured nothing is written, so nothing can fail.
    let w = worker(MockHost::new(NOW_MS));
    serve_jwks(&w);
    w.host.property_writes_fail.set(true);
    w.host.start(2, "GET", "/api/x", &[("authorization", &bearer(&token("user_1")))]);
    assert_eq!(w.on_request_headers(2, true), Action::Continue);
}

#[test]
fn the_other_cookies_keep_their_bytes() {
    let w = Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&browser_config()).unwrap()).unwrap();
    serve_jwks(&w);
    let mut cookie = b"theme=\xff\xfe; ".to_vec();
    cookie.extend_from_slice(format!("__session={}; ", token("user_c")).as_bytes());
    cookie.extend_from_slice(b"lang=\xe9t\xe9");
    w.host.start(1, "GET", "/api/x", &[("cookie", &cookie)]);
    assert_eq!(w.on_request_headers(1, true), Action::Continue);
    assert_eq!(w.host.header(1, "cookie").as_deref(), Some(&b"theme=\xff\xfe; lang=\xe9t\xe9"[..]));
}

#[test]
fn waking_the_waiters_of_many_distinct_keys_is_not_quadratic() {
    let w = worker(MockHost::new(NOW_MS));
    let n: u32 = 20_000;
    for ctx in 1..=n {
        w.host.start(ctx, "GET", "/api/x", &[("x-api-key", format!("gk_wait_{ctx}").as_bytes())]);
        assert_eq!(w.on_request_headers(ctx, true), Action::Pause);
    }
    let calls = w.host.calls.borrow().clone();
    let size = w.host.answer(404, b"{}");
    let started = std::time::Instant::now();
    for call in calls.iter().filter(|c| c.cluster == "keys") {
        w.on_call_response(call.token, size);
    }
    let took = started.elapsed();
    eprintln!("{n} answers in {took:?}");
    assert_eq!(answer_status(&w, n), Some(401));
    // Linear: well under a second even unoptimised; the scan of every stream per answer it
    // replaced took 5.3 s here when measured (3ab3247): a wall-clock bound, so a busy machine
    // can make it fail, never pass wrongly.
    assert!(took < std::time::Duration::from_secs(3), "{took:?} for {n} answers");
}
