//! Decisions on the contracts' API-key rows, in-process (the same rows run end to end in
//! `integration/`). Configurations come from the repository's `examples/`, less the sections a
//! row does not need; inline configurations cover what the examples do not.

mod common;

use api_auth_filter::config::Config;
use api_auth_filter::engine::{decide, Decision, Env, Request};
use serde_json::{json, Value};

const NOW: i64 = 1_790_000_000; // 2026-09-21

struct Out {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
    allow: Option<api_auth_filter::engine::Allow>,
}

fn run(cfg: &Config, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Out {
    let headers: Vec<(String, Vec<u8>)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect();
    let keys = api_auth_filter::engine::inline_keys(cfg);
    match decide(cfg, &Request { method, path, headers: &api_auth_filter::credentials::view(&headers) }, &Env { now: NOW, keys: &keys, random: [7; 16], key_lookup: &api_auth_filter::engine::no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &api_auth_filter::engine::NoCache, signatures: &api_auth_filter::jwt::OwnCode }) {
        Decision::Allow(a) => Out { status: 200, body: Value::Null, headers: vec![], allow: Some(a) },
        Decision::Wait(w) => panic!("unexpected wait for keys: {w:?}"),
        Decision::Respond(r) => Out { status: r.status, body: serde_json::from_slice(&r.body).unwrap(), headers: r.headers, allow: None },
        Decision::Deny(d) => Out {
            status: d.response.status,
            body: serde_json::from_slice(&d.response.body).unwrap(),
            headers: d.response.headers,
            allow: None,
        },
    }
}

fn config(v: &Value) -> Config {
    Config::from_json(&serde_json::to_vec(v).unwrap()).unwrap_or_else(|e| panic!("config: {e}"))
}

fn without(mut v: Value, fields: &[&str]) -> Value {
    for f in fields {
        v.as_object_mut().unwrap().remove(*f);
    }
    v
}

fn bearer(k: &str) -> Vec<u8> {
    format!("Bearer {k}").into_bytes()
}

/// method, path, headers, want status, want body (Null when allowed)
type Row<'a> = (&'a str, &'a str, Vec<(&'a str, &'a [u8])>, u16, Value);

const CREDS: &str = "Could not validate credentials";

#[test]
fn contract_002_inference_keys() {
    let ex = common::example("002");
    let cfg = config(&without(ex, &["providers"]));
    let all = bearer("cm_example_all_services");
    let llm = bearer("cm_example_llm_only");
    let bots = bearer("cm_example_bots_reader");
    let revoked = bearer("cm_example_revoked");
    let openai = |msg: &str, code: &str| json!({"error": {"message": msg, "type": code, "code": code}});
    let anthropic = |kind: &str, msg: &str| json!({"type": "error", "error": {"type": kind, "message": msg}});
    let rows: Vec<Row> = vec![
        ("POST", "/v1/chat/completions", vec![], 401, openai(CREDS, "credentials_missing")),
        ("POST", "/v1/chat/completions", vec![("authorization", &llm)], 200, Value::Null),
        ("POST", "/v1/chat/completions?stream=true", vec![("authorization", &all)], 200, Value::Null),
        ("POST", "/v1/audio/speech", vec![("authorization", &llm)], 403, openai("Permission denied: tts", "permission_denied")),
        ("POST", "/v1/audio/transcriptions", vec![("authorization", &llm)], 403, openai("Permission denied: stt", "permission_denied")),
        ("POST", "/v1/audio/translations", vec![("authorization", &all)], 200, Value::Null),
        ("POST", "/v1/search", vec![("authorization", &llm)], 403, openai("Permission denied: search", "permission_denied")),
        ("POST", "/v1/images/generations", vec![("authorization", &all)], 200, Value::Null),
        ("POST", "/v1/messages", vec![("x-api-key", b"cm_example_llm_only")], 200, Value::Null),
        ("POST", "/v1/messages", vec![("authorization", &llm)], 200, Value::Null),
        ("POST", "/anthropic/v1/messages", vec![("x-api-key", b"cm_example_llm_only")], 200, Value::Null),
        ("POST", "/v1/messages", vec![], 401, anthropic("authentication_error", CREDS)),
        ("POST", "/v1/messages", vec![("x-api-key", b"cm_example_revoked")], 401, anthropic("authentication_error", CREDS)),
        ("POST", "/v1/messages", vec![("x-api-key", b"cm_nope")], 401, anthropic("authentication_error", CREDS)),
        ("GET", "/api/v1/bots", vec![("authorization", &bots)], 200, Value::Null),
        ("GET", "/api/v1/bots/42", vec![("authorization", &bots)], 200, Value::Null),
        ("POST", "/api/v1/bots", vec![("authorization", &bots)], 403, json!({"detail": "Insufficient scope: bots:write"})),
        ("DELETE", "/api/v1/bots/42", vec![("authorization", &bots)], 403, json!({"detail": "Insufficient scope: bots:write"})),
        // Scopes default to empty: a key with every permission still has no resource access.
        ("GET", "/api/v1/bots", vec![("authorization", &all)], 403, json!({"detail": "Insufficient scope: bots:read"})),
        ("GET", "/api/v1/conversations", vec![("authorization", &bots)], 403, json!({"detail": "Insufficient scope: conversations:read"})),
        ("PATCH", "/api/v1/conversations/1", vec![("authorization", &bots)], 403, json!({"detail": "Insufficient scope: conversations:write"})),
        ("GET", "/api/v1/knowledge", vec![("authorization", &llm)], 403, json!({"detail": "Insufficient scope: knowledge:read"})),
        ("POST", "/api/v1/webhooks", vec![("authorization", &bots)], 403, json!({"detail": "Insufficient scope: webhooks:write"})),
        ("GET", "/api/v1/whatsapp", vec![("authorization", &bots)], 403, json!({"detail": "Insufficient scope: whatsapp:read"})),
        ("GET", "/api/v1/bots", vec![("authorization", &revoked)], 401, json!({"detail": CREDS})),
        ("GET", "/api/v1/bots", vec![], 401, json!({"detail": CREDS})),
        ("GET", "/elsewhere", vec![("authorization", &all)], 404, json!({"detail": "Not found"})),
        // A key and a second, bad key: every credential must be valid.
        ("GET", "/api/v1/bots", vec![("authorization", &bots), ("x-api-key", b"cm_nope")], 401, json!({"detail": CREDS})),
        // A JWT where no provider is configured can never pass.
        ("GET", "/api/v1/bots", vec![("authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln")], 401, json!({"detail": CREDS})),
    ];
    check(&cfg, rows);
}

#[test]
fn contract_003_scoped_keys() {
    let ex = common::example("003");
    let cfg = config(&without(ex, &["providers", "protected_resource"]));
    let full = bearer("cf_ak_example_full_access");
    let agents = bearer("cf_ak_example_agents_only");
    let list = bearer("cf_ak_example_list_roadmap");
    let revoked = bearer("cf_ak_example_revoked");
    let old = bearer("cf_ak_example_expired");
    let unknown = bearer("cf_ak_nope");
    let rows: Vec<Row> = vec![
        ("GET", "/v1/tools/platform/roadmap-items", vec![("authorization", &full)], 200, Value::Null),
        ("POST", "/v1/tools/platform/roadmap-items", vec![("authorization", &full)], 200, Value::Null),
        ("GET", "/v1/tools/platform/roadmap-items", vec![("authorization", &list)], 200, Value::Null),
        (
            "POST",
            "/v1/tools/platform/roadmap-items",
            vec![("authorization", &list)],
            403,
            json!({"detail": "Insufficient scope: tools:platform.create_roadmap_item"}),
        ),
        (
            "GET",
            "/v1/tools/platform/roadmap-items",
            vec![("authorization", &agents)],
            403,
            json!({"detail": "Insufficient scope: tools:platform.list_roadmap_items"}),
        ),
        ("POST", "/v1/tools/agents/run", vec![("authorization", &agents)], 200, Value::Null),
        ("POST", "/v1/tools/agents/run", vec![("authorization", &list)], 403, json!({"detail": "Insufficient scope: tools:agents.run"})),
        ("POST", "/v1/tools/agents/run", vec![("authorization", &full)], 200, Value::Null),
        ("GET", "/v1/anything", vec![("authorization", &list)], 200, Value::Null),
        ("GET", "/v1/anything", vec![("authorization", &revoked)], 401, json!({"detail": CREDS})),
        ("GET", "/v1/anything", vec![("authorization", &old)], 401, json!({"detail": CREDS})),
        ("GET", "/v1/mcp", vec![], 401, json!({"error": "unauthorized"})),
        ("GET", "/v1/mcp", vec![("authorization", &unknown)], 401, json!({"error": "unauthorized"})),
        ("GET", "/v1/mcp", vec![("authorization", &agents)], 200, Value::Null),
        ("GET", "/v1/.well-known/oauth-protected-resource", vec![], 200, Value::Null),
        // The default organisation of the keys is org_abc123; another one is refused.
        ("GET", "/v1/anything", vec![("authorization", &list), ("x-organization-id", b"org_abc123")], 200, Value::Null),
        ("GET", "/v1/anything", vec![("authorization", &list), ("x-organization-id", b"org_other")], 403, json!({"detail": "Forbidden"})),
    ];
    check(&cfg, rows);
}

fn check(cfg: &Config, rows: Vec<Row>) {
    let mut failures = Vec::new();
    for (method, path, headers, status, body) in rows {
        let out = run(cfg, method, path, &headers);
        if out.status != status || out.body != body {
            failures.push(format!("{method} {path} {:?}: got {} {}, want {status} {body}", names(&headers), out.status, out.body));
        }
        if status == 401 {
            let www = out.headers.iter().find(|(n, _)| n == "www-authenticate").map(|(_, v)| v.as_str());
            let presented = !headers.is_empty();
            let want = if presented { Some("Bearer error=\"invalid_token\"") } else { Some("Bearer") };
            if www != want {
                failures.push(format!("{method} {path}: www-authenticate {www:?}, want {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

fn names(h: &[(&str, &[u8])]) -> Vec<String> {
    h.iter().map(|(n, _)| n.to_string()).collect()
}

#[test]
fn forwarding_strips_credentials_and_blocks_forgery() {
    let cfg = config(&json!({
        "api_keys": { "prefixes": ["cm_"], "keys": [
            { "id": "key_llm", "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a", "permissions": ["llm"], "organization": "org_1" }
        ] },
        "routes": [
            { "match": { "path": "/public" }, "auth": "none" },
            { "match": { "prefix": "/" }, "auth": {} }
        ],
        "forward": { "headers": { "x-auth-key-id": "key_id", "x-auth-org": "organization", "x-auth-kind": "kind", "x-auth-scopes": "scopes" } }
    }));
    let out = run(
        &cfg,
        "GET",
        "/x",
        &[("authorization", b"Bearer cm_example_llm_only"), ("x-auth-key-id", b"forged"), ("x-auth-org", b"forged"), ("x-auth-scopes", b"forged")],
    );
    let a = out.allow.expect("allowed");
    for h in ["x-auth-key-id", "x-auth-org", "x-auth-scopes", "authorization"] {
        assert!(a.remove.iter().any(|r| r == h), "{h} removed");
    }
    // Headers the request does not have cost no removal call.
    assert!(!a.remove.iter().any(|r| r == "x-api-key" || r == "x-auth-kind"), "{:?}", a.remove);
    let set: Vec<(&str, &str)> = a.set.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert!(set.contains(&("x-auth-key-id", "key_llm")));
    assert!(set.contains(&("x-auth-org", "org_1")));
    assert!(set.contains(&("x-auth-kind", "api_key")));
    assert!(!set.iter().any(|(n, _)| *n == "x-auth-scopes"), "empty lists are not forwarded");
    // Public routes also lose forged identity headers, and set none.
    let public = run(&cfg, "GET", "/public", &[("x-auth-key-id", b"forged")]).allow.expect("public");
    assert!(public.remove.iter().any(|r| r == "x-auth-key-id"));
    assert!(public.set.is_empty());
}

#[test]
fn strip_credentials_off_keeps_them() {
    let cfg = config(&json!({
        "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "k", "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a" }] },
        "routes": [{ "match": { "prefix": "/" }, "auth": {} }],
        "forward": { "strip_credentials": false }
    }));
    let a = run(&cfg, "GET", "/", &[("x-api-key", b"cm_example_llm_only")]).allow.expect("allowed");
    assert!(a.remove.is_empty());
}

#[test]
fn unmatched_allow_and_methods() {
    let cfg = config(&json!({
        "routes": [{ "match": { "path": "/only-get", "methods": ["get"] }, "auth": "none" }],
        "unmatched": "allow"
    }));
    assert!(run(&cfg, "GET", "/only-get", &[]).allow.is_some());
    // POST falls through to the unmatched policy, here allow.
    assert!(run(&cfg, "POST", "/only-get", &[]).allow.is_some());
    let deny = config(&json!({ "routes": [{ "match": { "path": "/only-get", "methods": ["GET"] }, "auth": "none" }] }));
    assert_eq!(run(&deny, "POST", "/only-get", &[]).status, 404);
}

#[test]
fn roles_organisation_workspace_and_formats() {
    let cfg = config(&json!({
        "api_keys": { "prefixes": ["wsk_"], "headers": [], "keys": [
            { "id": "tok_ws1", "sha256": "8668c3cef16941ebf59d72c6e75f5134b9a6e6ee139c07ce31297daabaadd623", "workspaces": ["ws_1"], "scopes": ["*"], "permissions": ["*"] }
        ] },
        "routes": [
            { "match": { "prefix": "/admin" }, "auth": { "roles": ["admin"] }, "errors": "mine" },
            { "match": { "prefix": "/org" }, "auth": { "organization": true } },
            { "match": { "prefix": "/v1/" }, "auth": { "workspace": true } }
        ],
        "error_formats": { "mine": { "base": "detail", "reasons": { "role_required": { "message": "Admin role required" } } } },
        "forward": { "headers": { "x-auth-workspace": "workspace" } }
    }));
    let tok = b"Bearer wsk_example_workspace_one".as_slice();
    let r = run(&cfg, "GET", "/admin", &[("authorization", tok)]);
    assert_eq!((r.status, r.body), (403, json!({"detail": "Admin role required"})));
    let r = run(&cfg, "GET", "/org", &[("authorization", tok)]);
    assert_eq!((r.status, r.body), (403, json!({"detail": "Organization required"})));
    let r = run(&cfg, "GET", "/v1/items", &[("authorization", tok)]);
    assert_eq!((r.status, r.body), (400, json!({"detail": "Workspace required"})));
    let r = run(&cfg, "GET", "/v1/items", &[("authorization", tok), ("x-workspace-id", b"ws_2")]);
    assert_eq!((r.status, r.body), (403, json!({"detail": "Forbidden"})));
    let r = run(&cfg, "GET", "/v1/items", &[("authorization", tok), ("x-workspace-id", b"ws_\xff")]);
    assert_eq!(r.status, 403);
    let ok = run(&cfg, "GET", "/v1/items", &[("authorization", tok), ("x-workspace-id", b"ws_1")]).allow.expect("allowed");
    assert!(ok.set.contains(&("x-auth-workspace".to_string(), "ws_1".to_string())));
    // Key headers are off ([]): x-api-key is not a credential here.
    let r = run(&cfg, "GET", "/v1/items", &[("x-api-key", b"wsk_example_workspace_one"), ("x-workspace-id", b"ws_1")]);
    assert_eq!(r.status, 401);
}

#[test]
fn verified_token_cache_reuses_only_the_same_token_with_the_same_keys_and_checks_time_again() {
    use api_auth_filter::engine::{KeySlot, VerifiedCache};
    use api_auth_filter::token_cache::TokenCache;

    let secret = b"0123456789abcdef0123456789abcdef";
    let cfg = config(&json!({
        "providers": { "p": { "issuer": "https://iss", "algorithms": ["HS256"], "require_exp": true,
            "jwks": { "inline": { "keys": [{ "kty": "oct", "k": base64_url(secret) }] } } } },
        "routes": [{ "match": { "prefix": "/" }, "auth": {} }],
        "forward": { "headers": { "x-sub": "subject" } }
    }));
    let keys = api_auth_filter::engine::inline_keys(&cfg);
    let cache = TokenCache::new(2);
    let decide_with = |token: &str, now: i64, keys: &[KeySlot]| {
        let headers = vec![("authorization".to_string(), format!("Bearer {token}").into_bytes())];
        let env = Env { now, keys, random: [0; 16], key_lookup: &api_auth_filter::engine::no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &cache, signatures: &api_auth_filter::jwt::OwnCode };
        match decide(&cfg, &Request { method: "GET", path: "/", headers: &api_auth_filter::credentials::view(&headers) }, &env) {
            Decision::Allow(a) => (200, a.set),
            Decision::Deny(d) => (d.response.status, vec![]),
            _ => (0, vec![]),
        }
    };
    let good = hs256(secret, &json!({ "iss": "https://iss", "sub": "a", "exp": NOW + 100 }));
    assert_eq!(decide_with(&good, NOW, &keys), (200, vec![("x-sub".to_string(), "a".to_string())]));
    assert_eq!(cache.take_counts(), (0, 1));
    let entry = cache.get(&good).expect("verified once, cached");
    assert_eq!((entry.provider, entry.keys_version, entry.principal.subject.as_deref()), (0, 0, Some("a")));
    assert_eq!(decide_with(&good, NOW, &keys), (200, vec![("x-sub".to_string(), "a".to_string())]));
    assert_eq!(cache.take_counts(), (2, 0), "the second request used the entry");
    // Expiry is checked on every request, cached or not.
    assert_eq!(decide_with(&good, NOW + 200, &keys).0, 401);
    // Other keys (a new version) never reuse the entry: the token is verified again, and
    // here fails against a key set that lost the secret.
    let rotated = vec![KeySlot { keys: Some(std::rc::Rc::new(api_auth_filter::jwt::KeySet::default())), version: 1, ..KeySlot::default() }];
    assert_eq!(decide_with(&good, NOW, &rotated).0, 401);
    // A forged token with the same claims, or the token with one byte more, never borrows it.
    let forged = hs256(b"another-secret-another-secret-xx", &json!({ "iss": "https://iss", "sub": "a", "exp": NOW + 100 }));
    assert_eq!(decide_with(&forged, NOW, &keys).0, 401);
    let mut tampered = good.clone();
    tampered.push('A');
    assert_eq!(decide_with(&tampered, NOW, &keys).0, 401);
    // Bounded: the oldest entry goes first.
    let second = hs256(secret, &json!({ "iss": "https://iss", "sub": "b", "exp": NOW + 100 }));
    let third = hs256(secret, &json!({ "iss": "https://iss", "sub": "c", "exp": NOW + 100 }));
    for t in [&second, &third] {
        assert_eq!(decide_with(t, NOW, &keys).0, 200);
    }
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&good).is_none(), "evicted");
    assert!(cache.get(&third).is_some());
}

#[test]
fn claim_forwarding_works_from_the_cache_too_and_claims_are_kept_only_when_forwarded() {
    use api_auth_filter::engine::VerifiedCache;
    use api_auth_filter::token_cache::TokenCache;
    let secret = b"0123456789abcdef0123456789abcdef";
    let with_forward = |forward: Value| {
        config(&json!({
            "providers": { "p": { "issuer": "https://iss", "algorithms": ["HS256"],
                "jwks": { "inline": { "keys": [{ "kty": "oct", "k": base64_url(secret) }] } } } },
            "routes": [{ "match": { "prefix": "/" }, "auth": {} }],
            "forward": forward
        }))
    };
    let token = hs256(
        secret,
        &json!({ "iss": "https://iss", "sub": "a", "email": "a@b.test", "o": { "id": "org_9", "n": 3 }, "l": ["x", 2, {}], "exp": NOW + 100 }),
    );
    let headers = vec![("authorization".to_string(), format!("Bearer {token}").into_bytes())];
    let allow = |cfg: &Config, cache: &TokenCache| {
        let keys = api_auth_filter::engine::inline_keys(cfg);
        let env = Env { now: NOW, keys: &keys, random: [0; 16], key_lookup: &api_auth_filter::engine::no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: cache, signatures: &api_auth_filter::jwt::OwnCode };
        match decide(cfg, &Request { method: "GET", path: "/", headers: &api_auth_filter::credentials::view(&headers) }, &env) {
            Decision::Allow(mut a) => {
                a.set.sort();
                a
            }
            other => panic!("not allowed: {other:?}"),
        }
    };
    // Two headers name the same path (one slot), a nested string, a number, a list, a claim
    // the token lacks.
    let cfg = with_forward(json!({ "headers": {
        "x-email": "claim:email", "x-org": "claim:o.id", "x-org-again": "claim:o.id",
        "x-n": "claim:o.n", "x-l": "claim:l", "x-none": "claim:o.none"
    } }));
    assert_eq!(cfg.forward.claim_paths.len(), 5, "one slot per distinct path");
    let want: Vec<(String, String)> =
        [("x-email", "a@b.test"), ("x-l", "x,2"), ("x-n", "3"), ("x-org", "org_9"), ("x-org-again", "org_9")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
    let cache = TokenCache::new(4);
    for round in ["verified", "cached"] {
        let a = allow(&cfg, &cache);
        assert_eq!(a.set, want, "{round}");
    }
    assert_eq!(cache.take_counts(), (1, 1));
    // What the entry keeps of the claims: the forwarded values, nothing else.
    let entry = cache.get(&token).expect("cached");
    let kept: Vec<Option<&str>> = (0..6).map(|slot| entry.principal.claims.get(slot)).collect();
    // Slots in the order of the header names: email, l, o.n, o.none, o.id.
    assert_eq!(kept, vec![Some("a@b.test"), Some("x,2"), Some("3"), None, Some("org_9"), None]);
    // No claim forwarded: the cached principal holds no claims.
    let cfg = with_forward(json!({ "headers": { "x-sub": "subject" } }));
    let cache = TokenCache::new(4);
    assert_eq!(allow(&cfg, &cache).set, vec![("x-sub".to_string(), "a".to_string())]);
    let entry = cache.get(&token).expect("cached");
    assert!(entry.principal.claims.is_empty());
}

#[test]
fn a_cached_token_is_not_reused_on_a_route_that_chooses_another_provider() {
    use api_auth_filter::token_cache::TokenCache;
    // Two providers share the issuer: each route's choice (the first it accepts, in the
    // configuration's order of provider names) decides which rules apply.
    let secret = b"0123456789abcdef0123456789abcdef";
    let jwks = json!({ "inline": { "keys": [{ "kty": "oct", "k": base64_url(secret) }] } });
    let cfg = config(&json!({
        "providers": {
            "a_strict": { "issuer": "https://iss", "algorithms": ["HS256"], "audiences": ["api"], "jwks": jwks },
            "b_lax": { "issuer": "https://iss", "algorithms": ["HS256"], "jwks": jwks }
        },
        "routes": [
            { "match": { "prefix": "/lax/" }, "auth": { "providers": ["b_lax"] } },
            { "match": { "prefix": "/" }, "auth": { "providers": ["a_strict", "b_lax"] } }
        ]
    }));
    let keys = api_auth_filter::engine::inline_keys(&cfg);
    let cache = TokenCache::new(16);
    let status = |path: &str, token: &str| {
        let headers = vec![("authorization".to_string(), format!("Bearer {token}").into_bytes())];
        let env = Env { now: NOW, keys: &keys, random: [0; 16], key_lookup: &api_auth_filter::engine::no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &cache, signatures: &api_auth_filter::jwt::OwnCode };
        match decide(&cfg, &Request { method: "GET", path, headers: &api_auth_filter::credentials::view(&headers) }, &env) {
            Decision::Allow(_) => 200,
            Decision::Deny(d) => d.response.status,
            _ => 0,
        }
    };
    let no_aud = hs256(secret, &json!({ "iss": "https://iss", "sub": "a", "exp": NOW + 100 }));
    assert_eq!(status("/lax/x", &no_aud), 200, "the lax provider takes it");
    assert_eq!(status("/other", &no_aud), 401, "the strict provider comes first here and wants an audience");
    assert_eq!(status("/lax/x", &no_aud), 200);
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    use hmac::Mac;
    let input = format!("{}.{}", base64_url(br#"{"alg":"HS256","typ":"JWT"}"#), base64_url(claims.to_string().as_bytes()));
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", base64_url(&mac.finalize().into_bytes()))
}

/// A path Envoy would still normalise is refused before any route is matched, public routes
/// included: the router could route another path than the one judged.
#[test]
fn paths_that_are_not_normalised_are_refused() {
    let cfg = config(&json!({
        "routes": [
            { "match": { "prefix": "/public/" }, "auth": "none" },
            { "match": { "prefix": "/" }, "auth": { "credentials": ["api_key"] } }
        ],
        "api_keys": { "prefixes": ["cm_"], "keys": [] }
    }));
    assert_eq!(run(&cfg, "GET", "/public/x?next=//a/../b", &[]).status, 200, "the query string does not count");
    for path in ["/public/../admin", "/public//x", "/public/./x", "/public/%2e%2e/admin", "/public/a%2Fb", "/public\\x"] {
        let out = run(&cfg, "GET", path, &[]);
        assert_eq!((out.status, out.body), (400, json!({"detail": "Bad request"})), "{path}");
    }
}

fn key_config(extra: Value) -> Value {
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(b"cm_override_key").iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut cfg = json!({
        "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "k1", "sha256": digest, "permissions": ["items:write"], "scopes": ["member,admin", "read"] }] },
        "routes": [
            { "match": { "prefix": "/items", "methods": ["POST"] }, "auth": { "permissions": ["items:write"] } },
            { "match": { "prefix": "/public" }, "auth": "none" }
        ],
        "unmatched": "allow"
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    cfg
}

#[test]
fn override_headers_never_reach_the_upstream_and_may_refuse_the_request() {
    let key = bearer("cm_override_key");
    let names = ["x-http-method-override", "X_HTTP_Method", "x-method-override", "x-original-url", "x_rewrite_url", "x-original-uri", "x-forwarded-uri"];
    // Default: removed from every forwarded request (authenticated, public, unmatched).
    let cfg = config(&key_config(json!({})));
    for name in names {
        for (method, path, creds) in [("POST", "/items", Some(&key)), ("GET", "/public", None), ("GET", "/elsewhere", None)] {
            let mut headers: Vec<(&str, &[u8])> = vec![(name, b"DELETE")];
            if let Some(k) = creds {
                headers.push(("authorization", k));
            }
            let out = run(&cfg, method, path, &headers);
            assert_eq!(out.status, 200, "{name} {path}");
            assert!(out.allow.unwrap().remove.contains(&name.to_string()), "{name} on {path} goes upstream");
        }
    }
    // refuse: 400 override_header_refused before the route, in every case.
    let cfg = config(&key_config(json!({ "forward": { "override_headers": { "action": "refuse" } } })));
    for name in names {
        let out = run(&cfg, "POST", "/items", &[(name, b"DELETE"), ("authorization", &key)]);
        assert_eq!((out.status, out.body), (400, json!({ "detail": "Bad request" })), "{name}");
        assert_eq!(run(&cfg, "GET", "/public", &[(name, b"/admin")]).status, 400);
    }
    assert_eq!(run(&cfg, "POST", "/items", &[("authorization", &key)]).status, 200, "none: allowed");
    // A named one let through as named; its twin still refused.
    let cfg = config(&key_config(json!({ "forward": { "override_headers": { "action": "refuse", "allow": ["X-HTTP-Method-Override"] } } })));
    let out = run(&cfg, "POST", "/items", &[("x-http-method-override", b"PATCH"), ("authorization", &key)]);
    assert!(!out.allow.unwrap().remove.iter().any(|n| n == "x-http-method-override"));
    assert_eq!(run(&cfg, "POST", "/items", &[("x_http_method_override", b"PATCH"), ("authorization", &key)]).status, 400);
    let err = Config::from_json(br#"{"forward": {"override_headers": {"allow": ["x-api-key"]}}}"#).unwrap_err();
    assert_eq!(err.path, "forward.override_headers.allow[0]");
}

#[test]
fn a_forwarded_list_item_holding_the_separator_refuses_the_credential() {
    let key = bearer("cm_override_key");
    let forward = |field: &str| json!({ "forward": { "headers": { "x-auth-list": field } } });
    // The key's scopes hold "member,admin": forwarded, it would read as two scopes upstream.
    let out = run(&config(&key_config(forward("scopes"))), "POST", "/items", &[("authorization", &key)]);
    assert_eq!((out.status, out.body), (401, json!({ "detail": CREDS })));
    // Not forwarded: no harm, allowed; another list forwarded: allowed.
    let out = run(&config(&key_config(forward("permissions"))), "POST", "/items", &[("authorization", &key)]);
    assert_eq!(out.allow.unwrap().set, vec![("x-auth-list".to_string(), "items:write".to_string())]);
    // Written to filter state: the same rule.
    let cfg = key_config(json!({ "filter_state": ["scopes"] }));
    assert_eq!(run(&config(&cfg), "POST", "/items", &[("authorization", &key)]).status, 401);
}

/// gRPC is what Envoy takes for gRPC (`Grpc::Common::hasGrpcContentType`): the content type
/// `application/grpc`, or `application/grpc+` and a subtype, byte for byte. Only then is a
/// denial a grpc-status (sent as an HTTP 200); anything else gets the route's JSON denial with
/// its HTTP status, or a REST client would read the denial as a success.
#[test]
fn grpc_is_recognised_as_envoy_recognises_it() {
    use api_auth_filter::engine::is_grpc;
    let grpc: &[&[&[u8]]] = &[
        &[b"application/grpc"],
        &[b"application/grpc+proto"],
        &[b"application/grpc+json"],
        &[b"application/grpc+"],
        // Envoy joins repeated content types with ',' (empty ones skipped): the first decides...
        &[b"application/grpc+proto", b"application/json"],
        &[b"", b"application/grpc"],
    ];
    let not_grpc: &[&[&[u8]]] = &[
        &[],
        &[b""],
        &[b"application/grpcforged"],
        &[b"application/grpcweb"],
        &[b"application/grpc-web"],
        &[b"application/grpc-web+proto"],
        &[b"application/grpc-web-text"],
        &[b"application/grpc;charset=utf-8"],
        &[b"application/grpc; charset=utf-8"],
        &[b"application/grpc "],
        &[b" application/grpc"],
        &[b"application/grpc\xff"],
        &[b"Application/grpc"],
        &[b"APPLICATION/GRPC"],
        &[b"application/gRPC+proto"],
        &[b"application/grp"],
        &[b"application/json"],
        &[b"text/grpc"],
        // ...and `application/grpc` followed by anything, ',' included, is not gRPC.
        &[b"application/grpc", b"application/grpc"],
        &[b"application/grpc", b"application/json"],
        &[b"application/json", b"application/grpc"],
        &[b"application/grpc,application/json"],
    ];
    let headers = |values: &[&[u8]]| -> Vec<(String, Vec<u8>)> {
        let mut h = vec![("accept".to_string(), b"application/grpc".to_vec())];
        h.extend(values.iter().map(|v| ("content-type".to_string(), v.to_vec())));
        h
    };
    for (values, want) in grpc.iter().map(|v| (v, true)).chain(not_grpc.iter().map(|v| (v, false))) {
        let h = headers(values);
        let shown: Vec<String> = values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        assert_eq!(is_grpc(&api_auth_filter::credentials::view(&h)), want, "content-type {shown:?}");
    }
    // The same through decide: without credentials, on a protected route and on no route.
    let cfg = config(&without(common::example("002"), &["providers"]));
    let keys = api_auth_filter::engine::inline_keys(&cfg);
    let env = Env { now: NOW, keys: &keys, random: [7; 16], key_lookup: &api_auth_filter::engine::no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &api_auth_filter::engine::NoCache, signatures: &api_auth_filter::jwt::OwnCode };
    for (values, want_grpc) in grpc.iter().map(|v| (v, true)).chain(not_grpc.iter().map(|v| (v, false))) {
        let h = headers(values);
        let shown: Vec<String> = values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect();
        for (path, status, grpc_status, message) in [("/v1/chat/completions", 401, 16, CREDS), ("/nowhere", 404, 12, "Not found")] {
            let Decision::Deny(d) = decide(&cfg, &Request { method: "POST", path, headers: &api_auth_filter::credentials::view(&h) }, &env) else {
                panic!("{path} {shown:?}: not denied");
            };
            let r = d.response;
            assert_eq!(r.status, status, "{path} {shown:?}");
            if want_grpc {
                assert_eq!((r.grpc_status, r.body.as_slice()), (Some(grpc_status), message.as_bytes()), "{path} {shown:?}");
            } else {
                assert_eq!(r.grpc_status, None, "{path} {shown:?}: a gRPC answer to a request Envoy does not take for gRPC");
                let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path} {shown:?}: body not JSON: {e}"));
                let shown_message = body["error"]["message"].as_str().or(body["detail"].as_str());
                assert_eq!(shown_message, Some(message), "{path} {shown:?}: {body}");
                assert!(r.headers.iter().any(|(n, v)| n == "content-type" && v == "application/json"), "{path} {shown:?}");
            }
        }
    }
}
