//! `providers.<p>.jwks.discovery` end to end: the built filter in Envoy finds a real
//! authorization server's keys (oidc-provider, the test bed of `api_auth_integration::oidc`)
//! from its issuer alone, at an issuer with a path, verifies its RFC 9068 access tokens
//! (`typ: at+jwt` required), follows a key rotation through the document, and refuses
//! everything while the document names another issuer or keys on another host. Needs
//! `make node-tools`.

use api_auth_integration::oidc::*;
use api_auth_integration::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A configuration with one provider found by discovery through the cluster `idp`, and one
/// route that needs its tokens.
fn config(issuer: &str) -> Value {
    json!({
        "providers": { "idp": {
            "issuer": issuer,
            "algorithms": ["RS256"],
            "audiences": [RESOURCE_JWT],
            // RFC 9068: only access tokens (oidc-provider's at+jwt), never an ID token.
            "typ": "at+jwt",
            "jwks": { "discovery": { "cluster": "idp", "min_refetch_s": 1 } }
        } },
        "routes": [ { "match": { "prefix": "/api/" }, "auth": { "credentials": ["jwt"] } } ]
    })
}

fn status(envoy: &Envoy, token: &str) -> u16 {
    envoy.send(&Req::get("/api/things").bearer(token)).status
}

#[test]
fn keys_found_from_the_issuer_alone_and_a_rotation_followed() {
    let bed = AuthServer::start();
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(config(bed.issuer()), upstream.port()).cluster("idp", bed.port()));
    let token = bed.client_credentials_token(AGENT.id, AGENT.secret, "read", Some(RESOURCE_JWT));
    // The first request waits for the document and the keys.
    assert_eq!(status(&envoy, &token), 200, "a token of the issuer, keys found by discovery");
    // Its signature, changed: refused (the keys are the issuer's, not anything).
    let (head_payload, sig) = token.rsplit_once('.').expect("a JWS");
    let mut forged_sig = sig.as_bytes().to_vec();
    forged_sig[5] = if forged_sig[5] == b'A' { b'B' } else { b'A' };
    let forged = format!("{head_payload}.{}", String::from_utf8(forged_sig).expect("ascii"));
    assert_eq!(status(&envoy, &forged), 401, "a changed signature");
    // Another resource's token is opaque to the filter: not a JWT of this provider.
    let other = bed.client_credentials_token(AGENT.id, AGENT.secret, "read", Some(RESOURCE_OPAQUE));
    assert_eq!(status(&envoy, &other), 401, "an opaque token on a JWT-only route");

    // The server rotates: a new key signs, published at the same jwks_uri. The filter meets an
    // unknown kid and fetches again (document, then keys), at most every min_refetch_s.
    bed.rotate_keys(false);
    let rotated = bed.client_credentials_token(AGENT.id, AGENT.secret, "read", Some(RESOURCE_JWT));
    let ok = wait_until(Duration::from_secs(8), || status(&envoy, &rotated) == 200);
    assert!(ok, "a token signed by the rotated key is accepted within min_refetch_s");
    assert_eq!(status(&envoy, &token), 200, "the old key stays while it is published");

    let log = envoy.log();
    for t in [&token, &rotated, &forged] {
        assert!(!log.contains(t.as_str()), "a token in Envoy's log");
    }
    assert!(envoy.wasm_failures().is_empty(), "{:?}", envoy.wasm_failures());
}

#[test]
fn a_document_naming_another_issuer_or_keys_elsewhere_is_never_trusted() {
    let bed = AuthServer::start();
    let upstream = Server::echo();
    let token = bed.client_credentials_token(AGENT.id, AGENT.secret, "read", Some(RESOURCE_JWT));
    let real = bed.discovery();
    let mut other_issuer = real.clone();
    other_issuer["issuer"] = json!("http://127.0.0.1:1/oidc");
    let mut keys_elsewhere = real.clone();
    keys_elsewhere["jwks_uri"] = json!("http://keys.example/oidc/jwks");
    for (what, doc) in [("another issuer", other_issuer), ("jwks_uri on another host", keys_elsewhere)] {
        // The cluster reaches a server that answers every path with this document.
        let metadata = Server::mock(Canned::json(200, &doc.to_string()));
        let envoy = Envoy::start(EnvoyOpts::new(config(bed.issuer()), upstream.port()).cluster("idp", metadata.port()));
        let resp = envoy.send(&Req::get("/api/things").bearer(&token));
        assert_eq!(resp.status, 503, "{what}: no keys, keys_unavailable, never a pass");
        let calls = metadata.requests();
        assert!(!calls.is_empty() && calls.iter().all(|r| r.path.ends_with("/.well-known/openid-configuration")), "{what}: only the document was fetched");
        assert!(envoy.log().contains("discovery for issuer"), "{what}: the refusal is logged");
    }
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
}
