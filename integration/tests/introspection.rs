//! `providers.<p>.introspection` end to end (RFC 7662): the built filter in Envoy asks a real
//! authorization server (oidc-provider, the test bed of `api_auth_integration::oidc`) about
//! opaque bearer tokens, with client_secret_basic and a secret read from the wasm VM's
//! environment. An active token for the provider's audience passes with its principal (the
//! client as subject, its scopes) and never reaches the upstream; a revoked one stops within
//! `cache_ttl_s`; an expired one is refused from the cache at its `exp`, without asking again;
//! another audience, an unknown token and a route that takes only JWTs are refused; the endpoint
//! down with nothing cached is `503 keys_unavailable` and nothing goes upstream; 100 concurrent
//! requests with one new token over two workers make one call. Also: a provider with `typ:
//! "at+jwt"` refuses the server's own ID token while taking its JWT access tokens.
//!
//! What the filter really sent is read at the server (`AuthServer::calls`), beside the filter's
//! counters; each answer's reason from the shipped access log (`%RESPONSE_CODE_DETAILS%`).
//! Tokens and secrets never appear in a message: failure messages show Envoy's log with them
//! blanked out. Needs `make node-tools`.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use api_auth_integration::oidc::*;
use api_auth_integration::*;
use serde_json::{json, Value};

/// The wasm VM's environment variable the client secret is read from.
const SECRET_ENV: &str = "IDP_INTROSPECTION_SECRET";
/// What the agent asks for (both are scopes of every resource of the bed).
const SCOPES: &str = "read tools:agents.deploy";
/// The introspection endpoint under the issuer (oidc-provider's default route).
const INTROSPECTION: &str = "/token/introspection";
/// `cache_ttl_s` and `negative_cache_ttl_s` of the tests that watch a revocation.
const CACHE_TTL_S: u64 = 2;
const NEGATIVE_CACHE_TTL_S: u64 = 1;

/// One provider, the bed's issuer, whose opaque tokens are introspected through `cluster`
/// (JWKS found by discovery through `idp`), tokens for [`RESOURCE_OPAQUE`] only; a route for
/// opaque tokens (`/api/`) and one for JWTs only (`/jwt-only/`); the subject and scopes
/// forwarded.
fn config(bed: &AuthServer, cluster: &str, cache_ttl_s: u64) -> Value {
    json!({
        "providers": { "idp": {
            "issuer": bed.issuer(),
            "algorithms": ["RS256"],
            "audiences": [RESOURCE_OPAQUE],
            "jwks": { "discovery": { "cluster": "idp" } },
            "introspection": {
                "cluster": cluster,
                "path": format!("{}{INTROSPECTION}", bed.issuer_path()),
                "client_id": RESOURCE_SERVER.id,
                "client_secret": { "env": SECRET_ENV },
                "timeout_ms": 1000,
                "cache_ttl_s": cache_ttl_s,
                "negative_cache_ttl_s": NEGATIVE_CACHE_TTL_S
            }
        } },
        "forward": { "headers": { "x-auth-subject": "subject", "x-auth-scopes": "scopes" } },
        "routes": [
            { "match": { "prefix": "/api/" }, "auth": { "credentials": ["opaque"] } },
            { "match": { "prefix": "/jwt-only/" }, "auth": { "credentials": ["jwt"] } }
        ]
    })
}

/// Envoy with `cfg`, the cluster `idp` on `idp_port` (plus `extra` clusters), the client secret
/// `secret` in the VM's environment, `workers` worker threads and the shipped access log.
fn start_envoy(cfg: Value, upstream: &Server, idp_port: u16, extra: &[(&str, u16)], secret: &str, workers: u32) -> Envoy {
    let mut opts = EnvoyOpts::new(cfg, upstream.port()).cluster("idp", idp_port).env(SECRET_ENV, secret).concurrency(workers).shipped(&[Shipped::AccessLog]);
    for (name, port) in extra {
        opts = opts.cluster(name, *port);
    }
    Envoy::start(opts)
}

fn agent_token(bed: &AuthServer, resource: Option<&str>) -> String {
    bed.client_credentials_token(AGENT.id, AGENT.secret, SCOPES, resource)
}

/// The filter's counter once flushed (it adds its counts to Envoy's on its timer).
fn counter(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(&format!("wasmcustom.api_auth.{name}")).unwrap_or(0)
}

/// Waits (bounded) until the counter shows `want`; its last value.
fn counter_reaches(envoy: &Envoy, name: &str, want: u64) -> u64 {
    wait_until(Duration::from_secs(5), || counter(envoy, name) == want);
    counter(envoy, name)
}

/// The introspection requests the authorization server received.
fn introspections(bed: &AuthServer) -> u64 {
    bed.calls("POST", INTROSPECTION)
}

/// `GET path` with `token` as bearer: its status and why (the access log's response-code
/// details: `api_auth.<reason>` for the filter's own answers, `via_upstream` for a forwarded
/// one). Requests are sent one at a time, so the line after the ones before is this one's.
fn judge(envoy: &Envoy, path: &str, token: &str) -> (u16, String) {
    let before = envoy.access_log().len();
    let status = envoy.send(&Req::get(path).bearer(token)).status;
    let lines = envoy.access_log_lines(before + 1, Duration::from_secs(5));
    // `[start] "GET /path HTTP/1.1" 401 api_auth.token_invalid grpc=...`
    let why = lines.get(before).and_then(|l| l.splitn(3, '"').nth(2)).and_then(|rest| rest.split_whitespace().nth(1)).unwrap_or("no access log line");
    (status, why.to_string())
}

/// `text` with every one of `secrets` blanked out.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |t, s| t.replace(s, "<redacted>"))
}

/// The end of Envoy's log, secrets blanked out: for failure messages.
fn log_tail(envoy: &Envoy, secrets: &[&str]) -> String {
    let log = redact(&envoy.log(), secrets);
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The client secret's spellings that could leak: itself and inside the Basic credentials.
fn secret_spellings() -> Vec<String> {
    let basic = basic(RESOURCE_SERVER.id, RESOURCE_SERVER.secret);
    vec![RESOURCE_SERVER.secret.to_string(), basic.trim_start_matches("Basic ").to_string()]
}

/// Envoy's log names neither a token nor the client secret, and the VM never failed.
fn assert_clean(envoy: &Envoy, tokens: &[&str]) {
    let log = envoy.log();
    for (i, t) in tokens.iter().enumerate() {
        assert!(!log.contains(t), "token #{i} appears in Envoy's log");
    }
    for (i, s) in secret_spellings().iter().enumerate() {
        assert!(!log.contains(s.as_str()), "the client secret (spelling #{i}) appears in Envoy's log");
    }
    let failures = envoy.wasm_failures();
    assert!(failures.is_empty(), "wasm failures: {}", redact(&failures.join("\n"), tokens));
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.filter(|s| !s.is_empty()).collect();
    v.sort();
    v
}

/// Items 1, 2, 6 and 7 of the plan, and a JWT-only route: an active token passes with the
/// client as subject and its scopes, the upstream never sees it; the answer is reused; another
/// audience, no audience, an unknown token and a JWT-only route are refused; a revocation stops
/// the token within `cache_ttl_s`; Envoy's log holds no token and no secret.
#[test]
fn an_active_token_passes_with_its_principal_and_a_revoked_one_stops_within_the_cache_ttl() {
    let bed = AuthServer::start();
    let upstream = Server::echo();
    let envoy = start_envoy(config(&bed, "idp", CACHE_TTL_S), &upstream, bed.port(), &[], RESOURCE_SERVER.secret, 1);
    let token = agent_token(&bed, Some(RESOURCE_OPAQUE));
    let other = agent_token(&bed, Some(RESOURCE_OTHER));
    let unbound = agent_token(&bed, None);
    let unknown = "opaque-token-nobody-issued-0123456789abcdef";
    for t in [&token, &other, &unbound] {
        assert!(jwt_parts(t).is_none(), "the bed issued an opaque token");
    }
    let tokens = [token.as_str(), other.as_str(), unbound.as_str()];
    let tail = || log_tail(&envoy, &tokens);

    // 1. Active, for the provider's audience: allowed with its principal.
    let (status, why) = judge(&envoy, "/api/things", &token);
    let first_allowed = Instant::now();
    assert_eq!((status, why.as_str()), (200, "via_upstream"), "an active token for the audience\n{}", tail());
    let seen = upstream.requests();
    let forwarded = seen.last().expect("the upstream got the request");
    assert!(forwarded.header("authorization").is_none(), "Authorization reached the upstream");
    for (name, value) in &forwarded.headers {
        assert!(!String::from_utf8_lossy(value).contains(token.as_str()), "the token reached the upstream in {name}");
    }
    assert!(!String::from_utf8_lossy(&forwarded.body).contains(token.as_str()), "the token reached the upstream in the body");
    // client_credentials: the answer has no sub, the client is the subject.
    assert_eq!(forwarded.header("x-auth-subject").as_deref(), Some(AGENT.id), "the subject is the agent's client_id");
    let scopes = forwarded.header("x-auth-scopes").unwrap_or_default();
    assert_eq!(sorted(scopes.split(',').map(str::to_string)), sorted(SCOPES.split(' ').map(str::to_string)), "the token's scopes, forwarded");
    assert_eq!(introspections(&bed), 1, "one introspection call");
    assert_eq!(counter_reaches(&envoy, "introspection_call", 1), 1, "api_auth.introspection_call");

    // The answer is reused while cached: no second call.
    let (status, _) = judge(&envoy, "/api/things", &token);
    assert_eq!(status, 200, "the same token again\n{}", tail());
    if first_allowed.elapsed() < Duration::from_secs(CACHE_TTL_S) {
        assert_eq!(introspections(&bed), 1, "a cached answer is reused, not asked again");
    }

    // A route that takes only JWTs refuses an opaque token, however active.
    let (status, why) = judge(&envoy, "/jwt-only/things", &token);
    assert_eq!((status, why.as_str()), (401, "api_auth.credential_not_accepted"), "an opaque token on a JWT-only route\n{}", tail());

    // 6. Another audience, and no audience at all, for a provider with audiences.
    let (status, why) = judge(&envoy, "/api/things", &other);
    assert_eq!((status, why.as_str()), (401, "api_auth.audience_mismatch"), "a token for RESOURCE_OTHER\n{}", tail());
    let (status, why) = judge(&envoy, "/api/things", &unbound);
    assert_eq!((status, why.as_str()), (401, "api_auth.audience_mismatch"), "a token without aud\n{}", tail());
    // A token the server never issued: inactive.
    let (status, why) = judge(&envoy, "/api/things", unknown);
    assert_eq!((status, why.as_str()), (401, "api_auth.token_invalid"), "a token nobody issued\n{}", tail());
    assert_eq!(upstream.count(), 2, "only the two allowed requests reached the upstream");

    // 2. Revoked at the server: it may pass while its answer is cached, then 401 within
    // cache_ttl_s (with a margin for the polling and the call).
    let calls_before = introspections(&bed);
    bed.revoke(&token);
    let revoked_at = Instant::now();
    let mut passed_late = None;
    let refused = wait_until(Duration::from_secs(CACHE_TTL_S + 3), || {
        let (status, _) = judge(&envoy, "/api/things", &token);
        if status == 200 && revoked_at.elapsed() > Duration::from_secs(CACHE_TTL_S + 1) {
            passed_late = Some(revoked_at.elapsed());
        }
        status == 401
    });
    assert!(refused, "a revoked token is still allowed {:?} after the revocation\n{}", revoked_at.elapsed(), tail());
    assert_eq!(passed_late, None, "allowed after cache_ttl_s ({CACHE_TTL_S} s) had run out");
    let (status, why) = judge(&envoy, "/api/things", &token);
    assert_eq!((status, why.as_str()), (401, "api_auth.token_invalid"), "a revoked token (inactive)\n{}", tail());
    assert!(introspections(&bed) > calls_before, "the expired cache entry was asked about again");

    // 7. Nothing secret in Envoy's log.
    assert_clean(&envoy, &tokens);
}

/// Item 3: a token living 3 s, `cache_ttl_s` 60 and no clock skew: it passes, then is refused
/// as `token_expired` once its `exp` has passed, from the cached answer (the cache never
/// outlives `exp`), without a second introspection call.
#[test]
fn an_expired_token_is_refused_at_its_exp_without_asking_again() {
    const TTL_S: i64 = 3;
    let bed = AuthServer::start_with(&json!({ "ttl_s": TTL_S }));
    let upstream = Server::echo();
    let mut cfg = config(&bed, "idp", 60);
    cfg["providers"]["idp"]["clock_skew_s"] = json!(0);
    let envoy = start_envoy(cfg, &upstream, bed.port(), &[], RESOURCE_SERVER.secret, 1);
    let issued = unix_now();
    let token = agent_token(&bed, Some(RESOURCE_OPAQUE));
    let tail = || log_tail(&envoy, &[token.as_str()]);

    let (status, why) = judge(&envoy, "/api/things", &token);
    assert_eq!((status, why.as_str()), (200, "via_upstream"), "a token living {TTL_S} s, fresh\n{}", tail());
    assert_eq!(introspections(&bed), 1);

    // exp >= issued + TTL_S (iat is not before `issued`); refused from then on, and soon.
    let refused = wait_until(Duration::from_secs(TTL_S as u64 + 5), || judge(&envoy, "/api/things", &token).0 == 401);
    let refused_at = unix_now();
    assert!(refused, "a token past its exp is still allowed\n{}", tail());
    assert!(refused_at >= issued + TTL_S, "refused {} s after issue, before its exp", refused_at - issued);
    assert!(refused_at <= issued + TTL_S + 2, "refused only {} s after issue: the cached answer outlived exp", refused_at - issued);
    let (status, why) = judge(&envoy, "/api/things", &token);
    assert_eq!((status, why.as_str()), (401, "api_auth.token_expired"), "an expired token\n{}", tail());

    assert_eq!(introspections(&bed), 1, "the expired token was asked about again: the cache must answer until exp, and exp itself refuse");
    assert!(counter_reaches(&envoy, "denied.token_expired", 2) >= 2, "denied.token_expired");
    assert_eq!(counter(&envoy, "introspection_call"), 1, "api_auth.introspection_call");
    assert_clean(&envoy, &[token.as_str()]);
}

/// Item 4: with nothing cached, an endpoint that refuses connections, and then the server
/// stopped, are `503 keys_unavailable` and nothing goes upstream; an answer cached before the
/// server stopped still serves its token.
#[test]
fn the_endpoint_down_with_nothing_cached_is_503_and_nothing_goes_upstream() {
    let bed = AuthServer::start();
    let upstream = Server::echo();
    let token = agent_token(&bed, Some(RESOURCE_OPAQUE));
    let cached = agent_token(&bed, Some(RESOURCE_OPAQUE));
    let fresh = agent_token(&bed, Some(RESOURCE_OPAQUE));
    let tokens = [token.as_str(), cached.as_str(), fresh.as_str()];

    // Introspection through a cluster where nothing listens (keys still found through idp).
    {
        let closed = free_port();
        let envoy = start_envoy(config(&bed, "introspect", 60), &upstream, bed.port(), &[("introspect", closed)], RESOURCE_SERVER.secret, 1);
        let (status, why) = judge(&envoy, "/api/things", &token);
        assert_eq!((status, why.as_str()), (503, "api_auth.keys_unavailable"), "introspection endpoint refusing connections\n{}", log_tail(&envoy, &tokens));
        assert_eq!(upstream.count(), 0, "nothing reached the upstream");
        assert!(wait_until(Duration::from_secs(5), || counter(&envoy, "introspection_failed") >= 1), "api_auth.introspection_failed");
        assert!(counter(&envoy, "introspection_call") >= 1, "api_auth.introspection_call");
        assert_eq!(introspections(&bed), 0, "the bed was never asked");
        assert_clean(&envoy, &tokens);
    }

    // The real endpoint, then the server stopped: the answer cached before stays good (cache_ttl_s
    // 60), a token never seen is 503.
    let envoy = start_envoy(config(&bed, "idp", 60), &upstream, bed.port(), &[], RESOURCE_SERVER.secret, 1);
    let tail = || log_tail(&envoy, &tokens);
    assert_eq!(judge(&envoy, "/api/things", &cached).0, 200, "while the server is up\n{}", tail());
    assert_eq!(upstream.count(), 1);
    drop(bed);
    let (status, why) = judge(&envoy, "/api/things", &fresh);
    assert_eq!((status, why.as_str()), (503, "api_auth.keys_unavailable"), "server stopped, nothing cached\n{}", tail());
    assert_eq!(upstream.count(), 1, "the refused request did not reach the upstream");
    assert_eq!(judge(&envoy, "/api/things", &cached).0, 200, "a cached answer rides out the outage\n{}", tail());
    assert!(wait_until(Duration::from_secs(5), || counter(&envoy, "introspection_failed") >= 1), "api_auth.introspection_failed");
    assert_clean(&envoy, &tokens);
}

/// A wrong client secret: the server refuses the filter (401 invalid_client). That is a failed
/// call (503, as the key service's 401 is), never an answer about the token, and nothing goes
/// upstream.
#[test]
fn a_refused_client_secret_is_a_failed_call_not_an_inactive_token() {
    let bed = AuthServer::start();
    let upstream = Server::echo();
    let envoy = start_envoy(config(&bed, "idp", 60), &upstream, bed.port(), &[], "not-the-filter-secret", 1);
    let token = agent_token(&bed, Some(RESOURCE_OPAQUE));
    let (status, why) = judge(&envoy, "/api/things", &token);
    assert_eq!((status, why.as_str()), (503, "api_auth.keys_unavailable"), "introspection refused with 401 invalid_client\n{}", log_tail(&envoy, &[token.as_str(), "not-the-filter-secret"]));
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
    assert!(introspections(&bed) >= 1, "the server was asked");
    assert!(wait_until(Duration::from_secs(5), || counter(&envoy, "introspection_failed") >= 1), "api_auth.introspection_failed");
    assert!(!envoy.log().contains("not-the-filter-secret"), "the configured secret appears in Envoy's log");
    assert_clean(&envoy, &[token.as_str()]);
}

/// Item 5: 100 requests at once with one token nobody has seen, over two workers: every one
/// allowed after exactly one introspection call (the server's count and the filter's counter).
#[test]
fn concurrent_requests_for_one_new_token_make_one_call_over_two_workers() {
    const N: usize = 100;
    let bed = AuthServer::start();
    let upstream = Server::echo();
    let envoy = start_envoy(config(&bed, "idp", 60), &upstream, bed.port(), &[], RESOURCE_SERVER.secret, 2);
    let token = agent_token(&bed, Some(RESOURCE_OPAQUE));
    let tail = || log_tail(&envoy, &[token.as_str()]);

    let barrier = Barrier::new(N);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    envoy.send(&Req::get("/api/things").bearer(&token)).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a request thread")).collect()
    });
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(allowed, N, "statuses {:?}\n{}", sorted(statuses.iter().map(u16::to_string)).join(" "), tail());
    assert_eq!(upstream.count(), N);
    // Every worker flushed its counts once `allowed` shows them all.
    assert_eq!(counter_reaches(&envoy, "allowed", N as u64), N as u64, "api_auth.allowed");

    // Both workers took connections (Envoy's per-worker listener counters).
    let stats = envoy.admin("/stats");
    let per_worker: Vec<u64> = (0..2)
        .map(|w| {
            let suffix = format!(".worker_{w}.downstream_cx_total: ");
            stats.lines().find(|l| l.starts_with("listener.127.0.0.1_") && l.contains(&suffix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
        })
        .collect();
    assert!(per_worker.iter().all(|n| *n > 0), "connections per worker {per_worker:?}: the test did not exercise both workers");

    let (asked, counted) = (introspections(&bed), counter(&envoy, "introspection_call"));
    assert_eq!(counted, asked, "api_auth.introspection_call against the calls the server received");
    assert_eq!(asked, 1, "one introspection call for one token, whatever the workers (connections per worker {per_worker:?})");
    assert_clean(&envoy, &[token.as_str()]);
}

/// Item 8: a provider with `typ: "at+jwt"` (and introspection) takes the server's RFC 9068
/// access tokens and its opaque tokens, and refuses its ID token (`token_invalid`), which a
/// provider without `typ` takes: the `typ` check alone tells them apart. A JWT is never sent
/// to introspection.
#[test]
fn an_at_jwt_provider_refuses_the_servers_id_token() {
    let bed = AuthServer::start();
    let upstream = Server::echo();
    let access = bed.client_credentials_token(AGENT.id, AGENT.secret, SCOPES, Some(RESOURCE_JWT));
    let id_token = bed.id_token(AGENT.id, "end-user-1");
    let opaque = agent_token(&bed, Some(RESOURCE_OPAQUE));
    let (header, claims) = jwt_parts(&id_token).expect("the ID token is a JWT");
    assert!(header.get("typ").is_none_or(|t| !t.as_str().unwrap_or("").eq_ignore_ascii_case("at+jwt")), "the ID token is not typed as an access token");
    assert_eq!((claims["iss"].as_str(), claims["aud"].as_str()), (Some(bed.issuer()), Some(AGENT.id)));
    let tokens = [access.as_str(), id_token.as_str(), opaque.as_str()];

    let provider_config = |typ: Option<&str>| {
        let mut cfg = config(&bed, "idp", 60);
        let p = &mut cfg["providers"]["idp"];
        // The ID token's aud is the client: an audience here, so that only `typ` can refuse it.
        p["audiences"] = json!([RESOURCE_JWT, RESOURCE_OPAQUE, AGENT.id]);
        if let Some(typ) = typ {
            p["typ"] = json!(typ);
        }
        cfg["routes"] = json!([{ "match": { "prefix": "/api/" }, "auth": { "credentials": ["jwt", "opaque"] } }]);
        cfg
    };

    let typed = start_envoy(provider_config(Some("at+jwt")), &upstream, bed.port(), &[], RESOURCE_SERVER.secret, 1);
    let tail = || log_tail(&typed, &tokens);
    // The first JWT waits for the keys found by discovery.
    let (status, why) = judge(&typed, "/api/things", &access);
    assert_eq!((status, why.as_str()), (200, "via_upstream"), "an at+jwt access token\n{}", tail());
    let (status, why) = judge(&typed, "/api/things", &id_token);
    assert_eq!((status, why.as_str()), (401, "api_auth.token_invalid"), "an ID token where an access token is required\n{}", tail());
    assert_eq!(introspections(&bed), 0, "a JWT is never introspected");
    let (status, why) = judge(&typed, "/api/things", &opaque);
    assert_eq!((status, why.as_str()), (200, "via_upstream"), "an opaque token of the same provider\n{}", tail());
    assert_eq!(introspections(&bed), 1);
    assert_clean(&typed, &tokens);
    drop(typed);

    // The control: without `typ`, the same ID token passes (it is a valid JWT of the issuer).
    let untyped = start_envoy(provider_config(None), &upstream, bed.port(), &[], RESOURCE_SERVER.secret, 1);
    let (status, why) = judge(&untyped, "/api/things", &id_token);
    assert_eq!((status, why.as_str()), (200, "via_upstream"), "the ID token without a typ requirement\n{}", log_tail(&untyped, &tokens));
    assert_clean(&untyped, &tokens);
}

/// No `path`: the endpoint is the discovery document's `introspection_endpoint` (oidc-provider
/// names `<issuer>/token/introspection`), found with the keys.
#[test]
fn the_endpoint_comes_from_the_discovery_document_when_no_path_is_given() {
    let bed = AuthServer::start();
    let upstream = Server::echo();
    let mut cfg = config(&bed, "idp", 60);
    cfg["providers"]["idp"]["introspection"].as_object_mut().expect("introspection").remove("path");
    let envoy = start_envoy(cfg, &upstream, bed.port(), &[], RESOURCE_SERVER.secret, 1);
    let token = agent_token(&bed, Some(RESOURCE_OPAQUE));
    assert_eq!(judge(&envoy, "/api/things", &token), (200, "via_upstream".to_string()), "{}", log_tail(&envoy, &[token.as_str()]));
    assert_eq!(introspections(&bed), 1, "asked at the document's endpoint");
    let other = agent_token(&bed, Some(RESOURCE_OTHER));
    assert_eq!(judge(&envoy, "/api/things", &other).0, 401, "another audience");
    assert_eq!(upstream.count(), 1);
    assert_clean(&envoy, &[token.as_str(), other.as_str()]);
}
