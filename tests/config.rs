//! The configuration language: broken documents are refused with the path of the field at
//! fault (the shipped examples are loaded by `tests/examples.rs`).

use api_auth_filter::config::Config;
use serde_json::json;

#[test]
fn sections_are_checked_by_name() {
    let doc = json!({ "api_keys": { "prefixes": ["cm_"], "lookup": { "cluster": "keys", "path": "v1/keys/lookup" } } });
    assert_eq!(load(doc).unwrap_err(), "api_keys.lookup.path: must start with '/'");
    let doc = json!({ "api_keys": { "prefixes": ["cm_"], "usage_report": { "cluster": "keys", "path": "/u", "interval_s": 0 } } });
    assert_eq!(load(doc).unwrap_err(), "api_keys.usage_report.interval_s: must be at least 1");
    let doc = json!({ "webhooks": { "w": { "secrets": [{ "env": "NOT_SET_ANYWHERE_42" }] } } });
    assert_eq!(load(doc).unwrap_err(), "webhooks.w.secrets[0].env: environment variable NOT_SET_ANYWHERE_42 is not set in the wasm VM");
    let doc = json!({ "routes": [{ "match": { "path": "/h" }, "auth": "none", "webhook": "nope" }] });
    assert_eq!(load(doc).unwrap_err(), "routes[0].webhook: unknown webhook 'nope'");
}

/// A provider `p` whose keys come by discovery (and from `remote` too, when given).
fn discovery(d: serde_json::Value, remote: Option<serde_json::Value>) -> serde_json::Value {
    let mut jwks = json!({ "discovery": d });
    if let Some(r) = remote {
        jwks["remote"] = r;
    }
    json!({ "providers": { "p": { "issuer": "https://idp.example/tenant", "algorithms": ["RS256"], "jwks": jwks } } })
}

fn load(v: serde_json::Value) -> Result<Config, String> {
    Config::from_json(&serde_json::to_vec(&v).unwrap()).map_err(|e| e.to_string())
}

fn key(id: &str) -> serde_json::Value {
    json!({ "id": id, "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a" })
}

#[test]
fn broken_configs_name_the_field() {
    let route = |auth: serde_json::Value| json!({ "match": { "prefix": "/" }, "auth": auth });
    let keys = json!({ "prefixes": ["cm_"], "keys": [key("k1")] });
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("unknown top-level field", json!({ "rotues": [] }), "rotues: unknown field `rotues`"),
        (
            "unknown field inside auth",
            json!({ "api_keys": keys, "routes": [route(json!({})), route(json!({ "scopes": ["a"], "scoeps": [] }))] }),
            "routes[1].auth.scoeps: unknown field `scoeps`",
        ),
        ("auth string other than none", json!({ "routes": [route(json!("nope"))] }), "routes[0].auth: invalid value"),
        (
            "scope of the wrong type",
            json!({ "api_keys": keys, "routes": [route(json!({})), route(json!({})), route(json!({})), route(json!({ "scopes": [1] }))] }),
            "routes[3].auth.scopes[0]: invalid type: integer, expected a string",
        ),
        (
            "wildcard in a requirement",
            json!({ "api_keys": keys, "routes": [route(json!({ "scopes": ["ok", "tools:*"] }))] }),
            "routes[0].auth.scopes[1]: a requirement must be a non-empty name without '*'",
        ),
        (
            "template variable that the route does not have",
            json!({ "api_keys": keys, "routes": [{ "match": { "template": "/t/{tool}" }, "auth": { "scopes": ["tools:{tol}"] } }] }),
            "routes[0].auth.scopes[0]: {tol} is not a variable of the route's template",
        ),
        (
            "two matchers",
            json!({ "routes": [{ "match": { "path": "/a", "prefix": "/a" }, "auth": "none" }] }),
            "routes[0].match: exactly one of path, prefix, template, route_name or route_metadata is required",
        ),
        (
            "bad template",
            json!({ "routes": [{ "match": { "template": "/a/{x...}/b" }, "auth": "none" }] }),
            "routes[0].match.template: {x...} must be the last segment",
        ),
        ("path without slash", json!({ "routes": [{ "match": { "path": "health" }, "auth": "none" }] }), "routes[0].match.path: must start with '/'"),
        (
            "bad method",
            json!({ "routes": [{ "match": { "path": "/a", "methods": ["GET", "PO ST"] }, "auth": "none" }] }),
            "routes[0].match.methods[1]: not an HTTP method",
        ),
        ("unknown credential kind", json!({ "routes": [route(json!({ "credentials": ["jwt", "cookie"] }))] }), "routes[0].auth.credentials[1]: must be \"jwt\" or \"api_key\" or \"opaque\""),
        (
            "api_key route without api_keys",
            json!({ "routes": [route(json!({ "credentials": ["api_key"] }))] }),
            "routes[0].auth.credentials: accepts only API keys but no api_keys section is configured",
        ),
        ("unknown default format", json!({ "errors": "xml" }), "errors: unknown error format 'xml'"),
        ("unknown route format", json!({ "routes": [{ "match": { "path": "/" }, "auth": "none", "errors": "xml" }] }), "routes[0].errors: unknown error format 'xml'"),
        ("unmatched value", json!({ "unmatched": "maybe" }), "unmatched: unknown variant"),
        ("bad digest", json!({ "api_keys": { "prefixes": ["cm_"], "keys": [key("a"), { "id": "b", "sha256": "abc" }] } }), "api_keys.keys[1].sha256: must be 64 hex digits (SHA-256 of the key)"),
        ("duplicate digest", json!({ "api_keys": { "prefixes": ["cm_"], "keys": [key("a"), key("b")] } }), "api_keys.keys[1].sha256: duplicate digest"),
        ("duplicate id", json!({ "api_keys": { "prefixes": ["cm_"], "keys": [key("a"), { "id": "a", "sha256": "12915890d01a68962df5423d96ee91665058ebcc28a407acb79ae3959d07dea9" }] } }), "api_keys.keys[1].id: duplicate id, also at api_keys.keys[0]"),
        ("bad status", json!({ "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "a", "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a", "status": "paused" }] } }), "api_keys.keys[0].status: unknown variant"),
        ("bad expiry", json!({ "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "a", "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a", "expires_at": "tomorrow" }] } }), "api_keys.keys[0].expires_at: must be an RFC 3339 timestamp"),
        ("no prefixes", json!({ "api_keys": { "keys": [] } }), "api_keys.prefixes: at least one prefix is required"),
        ("authorization as key header", json!({ "api_keys": { "prefixes": ["cm_"], "headers": ["x-api-key", "Authorization"] } }), "api_keys.headers[1]: Authorization is always read"),
        ("bad header name", json!({ "workspace_header": "x workspace" }), "workspace_header: not a valid header name"),
        ("unknown forward field", json!({ "forward": { "headers": { "x-user": "subjet" } } }), "forward.headers.x-user: unknown principal field 'subjet'"),
        ("forward over a credential", json!({ "forward": { "headers": { "authorization": "subject" } } }), "forward.headers.authorization: cannot overwrite a credential or pseudo header"),
        ("unknown reason in a format", json!({ "error_formats": { "mine": { "reasons": { "role_requird": {} } } } }), "error_formats.mine.reasons.role_requird: unknown reason"),
        ("bad base format", json!({ "error_formats": { "mine": { "base": "xml" } } }), "error_formats.mine.base: unknown built-in format 'xml'"),
        ("bad override status", json!({ "error_formats": { "mine": { "reasons": { "role_required": { "status": 200 } } } } }), "error_formats.mine.reasons.role_required.status: must be a 4xx or 5xx status"),
        ("token cache too large", json!({ "token_cache": { "max_entries": 65537 } }), "token_cache.max_entries: at most 65536"),
        ("token cache negative", json!({ "token_cache": { "max_entries": -1 } }), "token_cache.max_entries: invalid value: integer"),
        ("token cache of the wrong type", json!({ "token_cache": { "max_entries": "big" } }), "token_cache.max_entries: invalid type: string"),
        ("unknown token cache field", json!({ "token_cache": { "entries": 10 } }), "token_cache.entries: unknown field `entries`"),
        ("not JSON", json!("just a string"), "invalid type: string"),
        // An object is read from a JSON object only: serde's derive also took an array, field by
        // field in declaration order, so `[100]` was a cache of 100 entries.
        ("an object written as an array", json!({ "token_cache": [100] }), "token_cache: invalid type: sequence, expected struct RawTokenCache"),
        ("a match written as an array", json!({ "routes": [{ "match": ["GET"], "auth": "none" }] }), "routes[0].match: invalid type: sequence, expected struct RawMatch"),
        ("two key sources", discovery(json!({ "cluster": "idp" }), Some(json!({ "cluster": "idp", "path": "/jwks" }))), "providers.p.jwks: exactly one of remote, inline or discovery is required"),
        ("no key source", json!({ "providers": { "p": { "issuer": "https://idp.example", "algorithms": ["RS256"], "jwks": {} } } }), "providers.p.jwks: exactly one of remote, inline or discovery is required"),
        ("discovery without a cluster", discovery(json!({ "cluster": "" }), None), "providers.p.jwks.discovery.cluster: must not be empty"),
        ("discovery authority with a path", discovery(json!({ "cluster": "idp", "authority": "idp.example/keys" }), None), "providers.p.jwks.discovery.authority: must be a host or host:port"),
        ("discovery authority with userinfo", discovery(json!({ "cluster": "idp", "authority": "u:pw@idp.example" }), None), "providers.p.jwks.discovery.authority: must be a host or host:port"),
        ("discovery authority with a bad port", discovery(json!({ "cluster": "idp", "authority": "idp.example:http" }), None), "providers.p.jwks.discovery.authority: must be a host or host:port"),
        ("discovery timeout", discovery(json!({ "cluster": "idp", "timeout_ms": 0 }), None), "providers.p.jwks.discovery.timeout_ms: must be between 1 and 60000"),
        ("discovery refresh", discovery(json!({ "cluster": "idp", "refresh_s": 0 }), None), "providers.p.jwks.discovery.refresh_s: must be at least 1"),
        ("unknown discovery field", discovery(json!({ "cluster": "idp", "path": "/jwks" }), None), "providers.p.jwks.discovery.path: unknown field `path`"),
        (
            "discovery for an issuer that is no URL",
            json!({ "providers": { "p": { "issuer": "idp", "algorithms": ["RS256"], "jwks": { "discovery": { "cluster": "idp" } } } } }),
            "providers.p.issuer: jwks.discovery needs an https (or http) URL without userinfo, query or fragment",
        ),
        (
            "discovery for an issuer with a query",
            json!({ "providers": { "p": { "issuer": "https://idp.example/?t=1", "algorithms": ["RS256"], "jwks": { "discovery": { "cluster": "idp" } } } } }),
            "providers.p.issuer: jwks.discovery needs",
        ),
        (
            "discovery for HMAC only",
            json!({ "providers": { "p": { "issuer": "https://idp.example", "algorithms": ["HS256"], "jwks": { "discovery": { "cluster": "idp" } } } } }),
            "providers.p.jwks.discovery: only HMAC algorithms are allowed",
        ),
    ];
    for (what, doc, want) in cases {
        match load(doc) {
            Ok(_) => panic!("{what}: accepted, want error starting {want:?}"),
            Err(e) => assert!(e.starts_with(want), "{what}: got {e:?}, want it to start with {want:?}"),
        }
    }
}

#[test]
fn errors_never_quote_values() {
    // A secret typed into the wrong place must not come back in the message.
    let doc = json!({ "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "a", "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a", "status": "cm_live_secret_value" }] } });
    let e = load(doc).unwrap_err();
    assert!(!e.contains("cm_live_secret_value"), "{e}");
    let bad_digest = json!({ "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "a", "sha256": "cm_live_secret_value" }] } });
    let e = load(bad_digest).unwrap_err();
    assert!(!e.contains("cm_live_secret_value"), "{e}");
    let syntax = Config::from_json(b"{\"api_keys\": {\"prefixes\": [\"cm_secret\"").unwrap_err().to_string();
    assert!(!syntax.contains("cm_secret"), "{syntax}");
    // Values holding the delimiters serde quotes them with (found by fuzzing: fuzz/regressions).
    for doc in [
        json!({ "unmatched": "`whsec_SECRET" }),
        json!({ "unmatched": "a`, expected whsec_SECRET" }),
        json!({ "routes": [{ "match": { "path": "/" }, "auth": "\"whsec_SECRET" }] }),
        json!({ "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "a", "sha256": "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a", "status": "`cm_live_SECRET" }] } }),
        json!({ "unmatched": 5, "errors": ["whsec_SECRET"] }),
    ] {
        let e = load(doc.clone()).unwrap_err();
        assert!(!e.contains("SECRET"), "{doc}: {e}");
    }
    // What the user needs stays: the path, the kind of error and what was expected.
    let e = load(json!({ "unmatched": "`whsec_SECRET" })).unwrap_err();
    assert!(e.starts_with("unmatched: unknown variant, expected `deny` or `allow`"), "{e}");
    let e = load(json!({ "routes": [{ "match": { "path": "/" }, "auth": "\"whsec_SECRET" }] })).unwrap_err();
    assert!(e.starts_with("routes[0].auth: invalid value: string, expected"), "{e}");
    let e = load(json!({ "routes": [{ "match": { "path": "/" }, "auth": "none", "webhok": "x" }] })).unwrap_err();
    assert!(e.contains("unknown field `webhok`, expected one of"), "{e}");
}

#[test]
fn defaults() {
    let cfg = load(json!({ "api_keys": { "prefixes": ["cm_"] } })).unwrap();
    let keys = cfg.api_keys.as_ref().unwrap();
    assert_eq!(keys.headers, vec!["x-api-key"]);
    assert!(cfg.forward.strip_credentials);
    assert_eq!(cfg.workspace_header, "x-workspace-id");
    assert_eq!(cfg.organization_header, "x-organization-id");
    assert_eq!(cfg.unmatched, api_auth_filter::config::Unmatched::Deny);
    assert_eq!(cfg.token_cache_entries, api_auth_filter::config::DEFAULT_TOKEN_CACHE_ENTRIES);
    assert_eq!(cfg.token_cache_entries, 4096, "docs/configuration.md gives the default");
    for n in [0, 1, 65_536] {
        assert_eq!(load(json!({ "token_cache": { "max_entries": n } })).unwrap().token_cache_entries, n, "{n} is allowed");
    }
    assert_eq!(load(json!({ "token_cache": {} })).unwrap().token_cache_entries, 4096, "an empty section keeps the default");
    let empty_headers = load(json!({ "api_keys": { "prefixes": ["wsk_"], "headers": [] } })).unwrap();
    assert!(empty_headers.api_keys.unwrap().headers.is_empty());
}

#[test]
fn discovery_defaults_like_remote_and_finds_its_documents_under_the_issuer() {
    use api_auth_filter::config::KeySource;
    let cfg = load(discovery(json!({ "cluster": "idp" }), None)).unwrap();
    let KeySource::Remote(r) = &cfg.providers[0].keys else { panic!("discovery keys are fetched") };
    assert_eq!((r.cluster.as_str(), r.authority.as_str()), ("idp", "idp.example"), "the authority defaults to the issuer's host");
    assert_eq!((r.timing.timeout, r.timing.refresh, r.timing.min_refetch), (1500, 300_000, 30_000), "remote's defaults");
    assert!(!r.allow_symmetric_keys, "a discovered JWKS never gives HMAC keys");
    let d = r.discovery.as_ref().expect("discovery");
    assert_eq!(r.path, "/tenant/.well-known/openid-configuration");
    assert_eq!(d.oauth_path, "/.well-known/oauth-authorization-server/tenant");
    let cfg = load(discovery(json!({ "cluster": "idp", "authority": "login.idp.example:8443", "timeout_ms": 900, "refresh_s": 60, "min_refetch_s": 5 }), None)).unwrap();
    let KeySource::Remote(r) = &cfg.providers[0].keys else { panic!("discovery keys are fetched") };
    assert_eq!(r.authority, "login.idp.example:8443");
    assert_eq!((r.timing.timeout, r.timing.refresh, r.timing.min_refetch), (900, 60_000, 5_000));
    let remote = load(json!({ "providers": { "p": { "issuer": "https://idp.example/tenant", "algorithms": ["RS256"], "jwks": { "remote": { "cluster": "idp", "path": "/tenant/.well-known/openid-configuration" } } } } })).unwrap();
    let KeySource::Remote(plain) = &remote.providers[0].keys else { panic!("remote") };
    assert_ne!(plain.cache_key, r.cache_key, "never the shared record of a remote JWKS");
}

/// A name given twice in a map is refused, as a field given twice in an object is: serde's
/// `BTreeMap` kept the last entry, so the first one a reader sees was not the one in force.
/// The map is named, and the name when it is a plain one.
#[test]
fn a_name_given_twice_is_refused() {
    let provider = r#"{"issuer": "https://idp.example", "algorithms": ["RS256"], "jwks": {"remote": {"cluster": "c", "path": "/k"}}}"#;
    let cases = [
        (format!(r#"{{"providers": {{"p": {provider}, "q": {provider}, "p": {provider}}}}}"#), "providers: duplicate name `p`"),
        (r#"{"forward": {"headers": {"x-user": "subject", "x-org": "organization", "x-user": "email"}}}"#.to_string(), "forward.headers: duplicate name `x-user`"),
        (r#"{"error_formats": {"mine": {"reasons": {"role_required": {}, "role_required": {"status": 403}}}}}"#.to_string(), "error_formats.mine.reasons: duplicate name `role_required`"),
        (r#"{"error_formats": {"my format": {}, "my format": {"base": "openai"}}}"#.to_string(), "error_formats: duplicate name"),
    ];
    for (doc, want) in cases {
        match Config::from_json(doc.as_bytes()) {
            Ok(_) => panic!("accepted: {doc}"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.strip_prefix(want).is_some_and(|rest| rest.starts_with(" at line 1 column ")), "got {e:?}, want {want:?} and the place: {doc}");
            }
        }
    }
}
