//! `providers.<p>.introspection` against the mock host: an opaque bearer token is POSTed to
//! the provider's endpoint (form body, client_secret_basic) once, whatever the number of
//! requests waiting; active answers are cached for `cache_ttl_s` and never past `exp`, inactive
//! ones for `negative_cache_ttl_s`; failures are 503 and never cached; answers are shared only
//! between configurations that ask the same endpoint as the same client.

use api_auth_filter::glue::mock::{MadeCall, MockHost};
use api_auth_filter::glue::{Action, Worker};
use api_auth_filter::stats::Counter;
use base64::Engine;
use serde_json::{json, Value};

const NOW_MS: u64 = 1_790_000_000_000;
const NOW: i64 = (NOW_MS / 1000) as i64;
const ISS: &str = "https://idp.example/oidc";
/// Opaque: no dots, and `+`, `/`, `=` that a form body must escape.
const TOKEN: &str = "op+aque/Token_value-1==";
const SECRET: &str = "intro-secret-value";

fn config() -> Value {
    json!({
        "providers": { "idp": {
            "issuer": ISS,
            "audiences": ["https://api.example/"],
            "algorithms": ["HS256"],
            "jwks": { "inline": { "keys": [{ "kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA" }] } },
            "introspection": {
                "cluster": "idp", "path": "/oidc/token/introspection",
                "client_id": "api-auth filter", "client_secret": { "value": SECRET },
                "timeout_ms": 1000, "cache_ttl_s": 60, "negative_cache_ttl_s": 5
            }
        } },
        "routes": [
            { "match": { "prefix": "/api" }, "auth": { "credentials": ["opaque", "jwt"] } },
            { "match": { "prefix": "/jwt-only" }, "auth": { "credentials": ["jwt"] } }
        ],
        "forward": { "headers": { "x-auth-subject": "subject", "x-auth-scopes": "scopes", "x-auth-kind": "kind" } }
    })
}

fn configured(host: MockHost, cfg: &Value) -> Worker<MockHost> {
    Worker::configure(host, &serde_json::to_vec(cfg).unwrap()).expect("configuration loads")
}

fn active(extra: Value) -> Vec<u8> {
    let mut a = json!({ "active": true, "client_id": "agent", "scope": "read tools:x", "iss": ISS,
        "aud": "https://api.example/", "exp": NOW + 600, "iat": NOW - 5, "token_type": "Bearer" });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            a.as_object_mut().unwrap().remove(k);
        } else {
            a[k] = v.clone();
        }
    }
    a.to_string().into_bytes()
}

fn calls_to(w: &Worker<MockHost>, cluster: &str) -> Vec<MadeCall> {
    w.host.calls.borrow().iter().filter(|c| c.cluster == cluster).cloned().collect()
}

fn send(w: &Worker<MockHost>, ctx: u32, path: &str, token: &str) -> Action {
    let bearer = format!("Bearer {token}").into_bytes();
    w.host.start(ctx, "GET", path, &[("authorization", &bearer)]);
    w.on_request_headers(ctx, true)
}

/// Sends `token` on `ctx`; answers the introspection call it makes (if any). The request's
/// outcome: None (went upstream), or the status it was answered with.
fn with_token(w: &Worker<MockHost>, ctx: u32, token: &str, status: u16, body: &[u8]) -> Option<u16> {
    let before = w.host.calls.borrow().len();
    if send(w, ctx, "/api/x", token) == Action::Pause && answered(w, ctx).is_none() {
        let call = w.host.calls.borrow().get(before).cloned().expect("an introspection call");
        let size = w.host.answer(status, body);
        w.on_call_response(call.token, size);
    }
    answered(w, ctx)
}

fn answered(w: &Worker<MockHost>, ctx: u32) -> Option<u16> {
    w.host.request(ctx).answered.map(|(s, _, _)| s)
}

/// The reason of a local answer (its response-code details, `api_auth.<reason>`).
fn reason(w: &Worker<MockHost>, ctx: u32) -> String {
    let (details, _) = w.host.request(ctx).details.expect("answered");
    details.strip_prefix("api_auth.").unwrap_or(&details).to_string()
}

fn count(w: &Worker<MockHost>, c: Counter) -> u64 {
    w.pending_count(c) + w.host.counter(&c.name())
}

#[test]
fn an_opaque_token_is_introspected_once_and_its_principal_forwarded() {
    let w = configured(MockHost::new(NOW_MS), &config());
    for ctx in 10..14 {
        assert_eq!(send(&w, ctx, "/api/x", TOKEN), Action::Pause, "waits for the answer");
    }
    let calls = calls_to(&w, "idp");
    assert_eq!(calls.len(), 1, "one call for four requests");
    let call = &calls[0];
    assert_eq!((call.method.as_str(), call.path.as_str(), call.authority.as_str()), ("POST", "/oidc/token/introspection", "idp.example"));
    assert_eq!(call.body, b"token=op%2Baque%2FToken_value-1%3D%3D&token_type_hint=access_token".to_vec());
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("api-auth%20filter:{SECRET}"));
    assert_eq!(call.authorization.as_deref(), Some(format!("Basic {basic}").as_bytes()), "client_secret_basic");
    let size = w.host.answer(200, &active(json!({})));
    w.on_call_response(call.token, size);
    for ctx in 10..14 {
        let r = w.host.request(ctx);
        assert_eq!((r.resumed, r.answered.map(|a| a.0)), (1, None), "request {ctx}");
        assert_eq!(w.host.header(ctx, "x-auth-subject").as_deref(), Some(&b"agent"[..]), "no sub: the client_id");
        assert_eq!(w.host.header(ctx, "x-auth-scopes").as_deref(), Some(&b"read,tools:x"[..]), "scope split on spaces");
        assert_eq!(w.host.header(ctx, "x-auth-kind").as_deref(), Some(&b"opaque"[..]));
        assert_eq!(w.host.header(ctx, "authorization"), None, "the token never goes upstream");
    }
    // Cached: decided at once, no call; a `sub` is the subject when there is one.
    assert_eq!(send(&w, 20, "/api/x", TOKEN), Action::Continue);
    assert_eq!(calls_to(&w, "idp").len(), 1);
    assert_eq!(with_token(&w, 21, "another-token", 200, &active(json!({ "sub": "user_7" }))), None);
    assert_eq!(w.host.header(21, "x-auth-subject").as_deref(), Some(&b"user_7"[..]));
    assert_eq!((count(&w, Counter::IntrospectionCall), count(&w, Counter::IntrospectionCacheHit)), (2, 1));
    // The shared records hold the digest, never the token.
    let keys = w.host.shared_keys();
    assert!(keys.iter().any(|k| k.starts_with("api-auth/introspection/")), "{keys:?}");
    for k in keys {
        let v = w.host.shared_value(&k).unwrap_or_default();
        assert!(!k.contains(TOKEN) && !String::from_utf8_lossy(&v).contains(TOKEN), "{k}");
    }
}

#[test]
fn the_answer_decides_with_the_providers_rules() {
    let cases: [(&str, Value, u16, &str); 7] = [
        ("inactive", json!({ "active": false }), 401, "token_invalid"),
        ("another audience", json!({ "aud": "https://other.example/" }), 401, "audience_mismatch"),
        ("another issuer", json!({ "iss": "https://evil.example" }), 401, "issuer_unknown"),
        ("expired", json!({ "exp": NOW - 120 }), 401, "token_expired"),
        ("not yet valid", json!({ "nbf": NOW + 600 }), 401, "token_not_yet_valid"),
        ("no exp", json!({ "exp": null }), 401, "token_invalid"),
        ("no iss: the provider's", json!({ "iss": null }), 0, ""),
    ];
    for (what, extra, status, why) in cases {
        let w = configured(MockHost::new(NOW_MS), &config());
        let body = if extra.get("active") == Some(&json!(false)) { extra.to_string().into_bytes() } else { active(extra) };
        let got = with_token(&w, 1, TOKEN, 200, &body);
        if status == 0 {
            assert_eq!(got, None, "{what}");
            continue;
        }
        assert_eq!(got, Some(status), "{what}");
        assert_eq!(reason(&w, 1), why, "{what}");
    }
}

#[test]
fn failures_are_503_and_never_cached() {
    for (status, body) in [(500, &b"oops"[..]), (401, br#"{"error":"invalid_client"}"#), (200, b"not json"), (200, br#"{"active":"yes"}"#)] {
        let w = configured(MockHost::new(NOW_MS), &config());
        assert_eq!(with_token(&w, 1, TOKEN, status, body), Some(503), "{status} {body:?}");
        assert_eq!(reason(&w, 1), "keys_unavailable");
        assert_eq!(with_token(&w, 2, TOKEN, 200, &active(json!({}))), None, "asked again, and now good");
        assert_eq!(calls_to(&w, "idp").len(), 2);
        assert_eq!(count(&w, Counter::IntrospectionFailed), 1);
    }
    // A call that cannot start: refused at once.
    let w = configured(MockHost::new(NOW_MS), &config());
    w.host.dispatch_fails.set(true);
    assert_eq!(send(&w, 1, "/api/x", TOKEN), Action::Pause);
    assert_eq!(answered(&w, 1), Some(503));
    // An answer too large to be one.
    let w = configured(MockHost::new(NOW_MS), &config());
    let huge = active(json!({ "padding": "x".repeat(20_000) }));
    assert_eq!(with_token(&w, 1, TOKEN, 200, &huge), Some(503));
}

#[test]
fn answers_live_for_their_ttl_and_never_past_exp() {
    let w = configured(MockHost::new(NOW_MS), &config());
    // Active until NOW + 100 (+ the 60 s skew), cached for 60 s; times below from NOW.
    assert_eq!(with_token(&w, 1, TOKEN, 200, &active(json!({ "exp": NOW + 100 }))), None);
    w.host.advance(59_000);
    assert_eq!(send(&w, 2, "/api/x", TOKEN), Action::Continue, "within cache_ttl_s: no call");
    w.host.advance(2_000);
    // Past cache_ttl_s: asked again (revoked meanwhile: inactive).
    assert_eq!(with_token(&w, 3, TOKEN, 200, br#"{"active":false}"#), Some(401));
    assert_eq!(calls_to(&w, "idp").len(), 2, "asked again after cache_ttl_s");
    w.host.advance(4_000);
    assert_eq!(send(&w, 4, "/api/x", TOKEN), Action::Pause, "the inactive answer is cached");
    assert_eq!(answered(&w, 4), Some(401));
    w.host.advance(1_500);
    // At 66.5 s: active until exp + skew = 70 s.
    assert_eq!(with_token(&w, 5, TOKEN, 200, &active(json!({ "exp": NOW + 10 }))), None, "after negative_cache_ttl_s: asked again");
    assert_eq!(calls_to(&w, "idp").len(), 3);
    // At 80 s the answer is still cached (until 126.5 s) but its exp has passed: refused
    // without a call.
    w.host.advance(13_500);
    let before = calls_to(&w, "idp").len();
    assert_eq!(send(&w, 6, "/api/x", TOKEN), Action::Pause);
    assert_eq!((answered(&w, 6), reason(&w, 6)), (Some(401), "token_expired".to_string()));
    assert_eq!(calls_to(&w, "idp").len(), before, "no call: the cached answer's exp decided");
}

#[test]
fn kinds_and_routes() {
    let w = configured(MockHost::new(NOW_MS), &config());
    // A route that takes only JWTs refuses an opaque token without asking.
    assert_eq!(send(&w, 1, "/jwt-only/x", TOKEN), Action::Pause);
    assert_eq!((answered(&w, 1), reason(&w, 1)), (Some(401), "credential_not_accepted".to_string()));
    // A JWS-shaped token is a JWT: verified as one, never introspected.
    assert_eq!(send(&w, 2, "/api/x", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"), Action::Pause);
    assert_eq!(answered(&w, 2), Some(401));
    assert!(calls_to(&w, "idp").is_empty());
    // Without introspection anywhere, an opaque token is a malformed JWT, as before.
    let mut plain = config();
    plain["providers"]["idp"].as_object_mut().unwrap().remove("introspection");
    plain["routes"][0]["auth"] = json!({});
    let p = configured(MockHost::new(NOW_MS), &plain);
    assert_eq!(send(&p, 1, "/api/x", TOKEN), Action::Pause);
    assert_eq!((answered(&p, 1), reason(&p, 1)), (Some(401), "token_invalid".to_string()));
    assert!(p.host.calls.borrow().is_empty());
}

#[test]
fn only_the_same_endpoint_and_client_share_answers() {
    let host_a = MockHost::new(NOW_MS);
    let a = configured(host_a.sibling(), &config());
    let a2 = configured(host_a.sibling(), &config());
    let mut other_client = config();
    other_client["providers"]["idp"]["introspection"]["client_id"] = json!("reader");
    let b = configured(host_a.sibling(), &other_client);
    assert_eq!(with_token(&a, 1, TOKEN, 200, &active(json!({}))), None);
    // Another worker of the same configuration reads the shared answer.
    assert_eq!(send(&a2, 2, "/api/x", TOKEN), Action::Continue);
    assert!(calls_to(&a2, "idp").is_empty());
    // Another client asks for itself (and may be told another answer).
    assert_eq!(with_token(&b, 3, TOKEN, 200, br#"{"active":false}"#), Some(401));
    assert_eq!(calls_to(&b, "idp").len(), 1);
    // ... which does not change what A knows.
    assert_eq!(send(&a2, 4, "/api/x", TOKEN), Action::Continue);
}

#[test]
fn a_call_whose_request_ended_is_handed_on() {
    let w = configured(MockHost::new(NOW_MS), &config());
    for ctx in [10, 11] {
        assert_eq!(send(&w, ctx, "/api/x", TOKEN), Action::Pause);
    }
    let first = calls_to(&w, "idp")[0].clone();
    assert_eq!(first.context, 10);
    w.on_done(10);
    w.host.effective.set(0);
    w.on_tick();
    let again = calls_to(&w, "idp");
    assert_eq!(again.len(), 2, "asked again from the root context");
    assert_eq!((again[1].context, &again[1].body), (0, &first.body), "the same question");
    assert_eq!(again[1].authorization, first.authorization);
    let size = w.host.answer(200, &active(json!({})));
    w.on_call_response(again[1].token, size);
    let r = w.host.request(11);
    assert_eq!((r.resumed, r.answered), (1, None));
}

#[test]
fn a_bad_introspection_section_is_refused_with_its_path() {
    let bad = |edit: &dyn Fn(&mut Value), path: &str| {
        let mut cfg = config();
        edit(&mut cfg["providers"]["idp"]["introspection"]);
        let err = api_auth_filter::config::Config::from_json_with_env(&serde_json::to_vec(&cfg).unwrap(), &|_| None).unwrap_err();
        assert_eq!(err.path, path, "{err}");
        assert!(!err.to_string().contains(SECRET), "{err}");
    };
    bad(&|i| i["cluster"] = json!(""), "providers.idp.introspection.cluster");
    bad(&|i| i["path"] = json!("introspect"), "providers.idp.introspection.path");
    bad(&|i| i["path"] = json!("/i?x=1"), "providers.idp.introspection.path");
    bad(&|i| i["client_id"] = json!(""), "providers.idp.introspection.client_id");
    bad(&|i| i["client_secret"] = json!({ "env": "NOT_SET" }), "providers.idp.introspection.client_secret.env");
    bad(&|i| i["client_secret"] = json!({}), "providers.idp.introspection.client_secret");
    bad(&|i| i["cache_ttl_s"] = json!(3601), "providers.idp.introspection.cache_ttl_s");
    bad(&|i| i["timeout_ms"] = json!(0), "providers.idp.introspection.timeout_ms");
    bad(&|i| i["authority"] = json!("a/b"), "providers.idp.introspection.authority");
    // "opaque" needs a provider that introspects.
    let mut cfg = config();
    cfg["providers"]["idp"].as_object_mut().unwrap().remove("introspection");
    let err = api_auth_filter::config::Config::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap_err();
    assert_eq!(err.path, "routes[0].auth.credentials[0]");
}

#[test]
fn workers_share_one_call_per_token() {
    let host = MockHost::new(NOW_MS);
    let a = configured(host.sibling(), &config());
    let b = configured(host.sibling(), &config());
    assert_eq!(send(&a, 1, "/api/x", TOKEN), Action::Pause);
    assert_eq!(calls_to(&a, "idp").len(), 1);
    // B's requests wait for A's call: B asks nothing.
    for ctx in [2, 3] {
        assert_eq!(send(&b, ctx, "/api/x", TOKEN), Action::Pause);
    }
    assert!(calls_to(&b, "idp").is_empty(), "one call in the whole process");
    b.on_tick();
    assert!(calls_to(&b, "idp").is_empty() && answered(&b, 2).is_none(), "still waiting for A's call");
    // A's answer lands in shared data; B's next tick finds it.
    let call = calls_to(&a, "idp")[0].clone();
    let size = a.host.answer(200, &active(json!({})));
    a.on_call_response(call.token, size);
    assert_eq!(a.host.request(1).resumed, 1);
    b.on_tick();
    for ctx in [2, 3] {
        let r = b.host.request(ctx);
        assert_eq!((r.resumed, r.answered), (1, None), "request {ctx}");
        assert_eq!(b.host.header(ctx, "x-auth-subject").as_deref(), Some(&b"agent"[..]));
    }
    assert!(calls_to(&b, "idp").is_empty());

    // A's call fails: nothing is cached, its claim goes, and B asks itself on its next tick.
    let token = "second-token";
    assert_eq!(send(&a, 4, "/api/x", token), Action::Pause);
    assert_eq!(send(&b, 5, "/api/x", token), Action::Pause);
    assert!(calls_to(&b, "idp").is_empty());
    let call = calls_to(&a, "idp").last().cloned().unwrap();
    let size = a.host.answer(500, b"down");
    a.on_call_response(call.token, size);
    assert_eq!(answered(&a, 4), Some(503));
    b.host.effective.set(0);
    b.on_tick();
    let asked = calls_to(&b, "idp");
    assert_eq!(asked.len(), 1, "B asks once A's claim is gone");
    assert_eq!(asked[0].context, 0, "from the root context");
    let size = b.host.answer(200, &active(json!({})));
    b.on_call_response(asked[0].token, size);
    let r = b.host.request(5);
    assert_eq!((r.resumed, r.answered), (1, None));

    // A claim whose worker never answers lapses: B asks once it has.
    let token = "third-token";
    assert_eq!(send(&a, 6, "/api/x", token), Action::Pause);
    assert_eq!(send(&b, 7, "/api/x", token), Action::Pause);
    for w in [&a, &b] {
        w.host.advance(1_600);
    }
    b.on_tick();
    assert_eq!(calls_to(&b, "idp").len(), 2, "asked after the claim's 1.5 s lapsed");
}

/// A provider whose keys and introspection endpoint both come from its discovery document.
fn discovered_config() -> Value {
    let mut cfg = config();
    let p = &mut cfg["providers"]["idp"];
    p["jwks"] = json!({ "discovery": { "cluster": "idp", "timeout_ms": 1000 } });
    p["algorithms"] = json!(["RS256"]);
    p["introspection"].as_object_mut().unwrap().remove("path");
    cfg
}

fn jwks() -> String {
    // One RSA key (the test sends opaque tokens only: its value does not matter, its presence
    // does).
    json!({ "keys": [{ "kty": "RSA", "kid": "k1", "alg": "RS256", "e": "AQAB",
        "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw" }] })
    .to_string()
}

fn serve(w: &Worker<MockHost>, path: &str, body: &str) {
    let call = w.host.calls.borrow().last().cloned().expect("a call");
    assert_eq!((call.method.as_str(), call.path.as_str()), ("GET", path));
    let size = w.host.answer(200, body.as_bytes());
    w.on_call_response(call.token, size);
}

#[test]
fn the_introspection_endpoint_may_come_from_the_discovery_document() {
    let document = |endpoint: &str| {
        json!({ "issuer": ISS, "jwks_uri": "https://idp.example/oidc/jwks", "introspection_endpoint": endpoint }).to_string()
    };
    let host = MockHost::new(NOW_MS);
    let w = configured(host.sibling(), &discovered_config());
    // Before the document, an opaque token waits for it (with the keys).
    assert_eq!(send(&w, 1, "/api/x", TOKEN), Action::Pause);
    serve(&w, "/oidc/.well-known/openid-configuration", &document("https://idp.example/oidc/token/introspection"));
    serve(&w, "/oidc/jwks", &jwks());
    let call = calls_to(&w, "idp").last().cloned().unwrap();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("POST", "/oidc/token/introspection"), "the document's endpoint");
    let size = w.host.answer(200, &active(json!({})));
    w.on_call_response(call.token, size);
    let r = w.host.request(1);
    assert_eq!((r.resumed, r.answered), (1, None), "waited for the keys, then for the answer");
    // Another worker learns the path from shared data on its tick.
    let other = configured(host.sibling(), &discovered_config());
    other.host.effective.set(0);
    other.on_tick();
    assert_eq!(send(&other, 2, "/api/x", "another-opaque-token"), Action::Pause);
    let asked = calls_to(&other, "idp").into_iter().filter(|c| c.method == "POST").collect::<Vec<_>>();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/oidc/token/introspection");

    // A document naming the endpoint on another host: no call, 503.
    let w = configured(MockHost::new(NOW_MS), &discovered_config());
    serve(&w, "/oidc/.well-known/openid-configuration", &document("https://elsewhere.example/introspect"));
    serve(&w, "/oidc/jwks", &jwks());
    assert_eq!(send(&w, 1, "/api/x", TOKEN), Action::Pause);
    assert_eq!((answered(&w, 1), reason(&w, 1)), (Some(503), "keys_unavailable".to_string()));
    assert!(calls_to(&w, "idp").iter().all(|c| c.method == "GET"), "never introspected elsewhere");
    // No path and no discovery: refused at load.
    let mut cfg = config();
    cfg["providers"]["idp"]["introspection"].as_object_mut().unwrap().remove("path");
    let err = api_auth_filter::config::Config::from_json(&serde_json::to_vec(&cfg).unwrap()).unwrap_err();
    assert_eq!(err.path, "providers.idp.introspection.path");
}
