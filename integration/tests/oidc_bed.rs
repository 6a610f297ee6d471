//! The test bed's authorization server (oidc-provider, `api_auth_integration::oidc`) is what the
//! filter's discovery, introspection and at+jwt tests (issue 22) rely on: discovery at an issuer
//! with a path names that issuer and its endpoints; opaque tokens introspect active with their
//! scope, and inactive once revoked or expired; a token for a resource indicator is an RFC 9068
//! JWT for that audience, signed by a key of the `jwks_uri`. No filter or Envoy here.
//! Needs `make node-tools`. Tokens never appear in a message.

use api_auth_integration::oidc::*;
use api_auth_integration::wait_until;
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use std::time::Duration;

const SCOPES: &str = "read tools:agents.deploy";

fn agent_token(bed: &AuthServer, scope: &str, resource: Option<&str>) -> String {
    bed.client_credentials_token(AGENT.id, AGENT.secret, scope, resource)
}

/// Checks `token`'s RS256 signature against the key of its `kid` in `jwks`.
fn signed_by_jwks(token: &str, jwks: &Value) -> bool {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (header, _) = jwt_parts(token).expect("a JWT");
    let Some(jwk) = jwks["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == header["kid"]) else {
        return false;
    };
    let num = |name: &str| rsa::BigUint::from_bytes_be(&b64.decode(jwk[name].as_str().expect("n, e")).expect("base64url"));
    let key = rsa::RsaPublicKey::new(num("n"), num("e")).expect("RSA key");
    let (input, sig) = token.rsplit_once('.').expect("signature");
    let digest = sha2::Sha256::digest(input.as_bytes());
    key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &b64.decode(sig).expect("base64url")).is_ok()
}

#[test]
fn discovery_at_the_issuer_path_names_the_issuer_and_its_endpoints() {
    let bed = AuthServer::start();
    let issuer = bed.issuer().to_string();
    assert_eq!(issuer, format!("http://127.0.0.1:{}{ISSUER_PATH}", bed.port()));
    assert_eq!(bed.issuer_path(), ISSUER_PATH);

    let doc = bed.discovery();
    assert_eq!(doc["issuer"], issuer.as_str(), "the document names the issuer exactly");
    for (field, endpoint) in [
        ("jwks_uri", "/jwks"),
        ("token_endpoint", "/token"),
        ("introspection_endpoint", "/token/introspection"),
        ("revocation_endpoint", "/token/revocation"),
    ] {
        assert_eq!(doc[field], format!("{issuer}{endpoint}"), "{field}");
    }
    assert!(doc["grant_types_supported"].as_array().expect("grant types").contains(&json!("client_credentials")));
    assert!(doc["token_endpoint_auth_methods_supported"].as_array().expect("auth methods").contains(&json!("client_secret_basic")));

    // The same document at RFC 8414's place and at the issuer path's oauth-authorization-server,
    // whatever Host the caller sends (the filter's fallback, a cluster's authority).
    for path in [format!("/.well-known/oauth-authorization-server{ISSUER_PATH}"), format!("{ISSUER_PATH}/.well-known/oauth-authorization-server")] {
        let resp = bed.get(&path);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.json()["issuer"], issuer.as_str(), "{path}");
        assert_eq!(resp.json()["jwks_uri"], doc["jwks_uri"], "{path}");
    }
    assert_eq!(bed.get("/.well-known/openid-configuration").status, 404, "nothing outside the issuer path");

    let jwks = bed.jwks();
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0]["kid"].is_string());
    assert!(keys[0].get("d").is_none(), "public keys only");
}

#[test]
fn opaque_tokens_introspect_active_until_revoked() {
    let bed = AuthServer::start();
    let issuer = bed.issuer().to_string();

    // No resource: opaque, no `aud`; scopes are the static ones the client may have.
    let token = agent_token(&bed, SCOPES, None);
    assert!(jwt_parts(&token).is_none(), "opaque");
    let answer = bed.introspect(&token);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], SCOPES);
    assert_eq!(answer["client_id"], AGENT.id);
    assert_eq!(answer["iss"], issuer.as_str());
    assert_eq!(answer["token_type"], "Bearer");
    let exp = answer["exp"].as_i64().expect("exp");
    assert!((590..=610).contains(&(exp - api_auth_integration::unix_now())), "exp about ttl_s (600 s) ahead");
    assert!(answer.get("aud").is_none(), "no resource, no aud: {:?}", answer.get("aud"));
    assert!(answer.get("sub").is_none(), "client_credentials tokens have no sub at introspection");

    // A resource indicator of an opaque resource: `aud` is the indicator, a string.
    let bound = agent_token(&bed, "read", Some(RESOURCE_OPAQUE));
    assert!(jwt_parts(&bound).is_none(), "opaque");
    let answer = bed.introspect(&bound);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["aud"], RESOURCE_OPAQUE);
    assert_eq!(answer["scope"], "read");

    // Another client may not introspect the agent's token: it reads as inactive.
    let other = bed.introspect_as(READER.id, READER.secret, &token);
    assert_eq!((other.status, other.json()), (200, json!({ "active": false })));
    // A wrong secret is a client error, never an answer about the token.
    assert_eq!(bed.introspect_as(RESOURCE_SERVER.id, "wrong", &token).status, 401);
    // Only the client a token was issued to may revoke it.
    assert_eq!(bed.revoke_as(RESOURCE_SERVER.id, RESOURCE_SERVER.secret, &token).status, 400);
    assert_eq!(bed.introspect(&token)["active"], true);

    bed.revoke(&token);
    assert_eq!(bed.introspect(&token), json!({ "active": false }));
    assert_eq!(bed.introspect(&bound)["active"], true, "revoking one token leaves the other");
    assert_eq!(bed.introspect("not-a-token-of-this-server"), json!({ "active": false }));
}

#[test]
fn a_resource_indicator_token_is_an_rfc9068_jwt_for_that_audience() {
    let bed = AuthServer::start();
    let token = agent_token(&bed, SCOPES, Some(RESOURCE_JWT));
    let (header, claims) = jwt_parts(&token).expect("a JWT");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["aud"], RESOURCE_JWT);
    assert_eq!(claims["iss"], bed.issuer());
    assert_eq!(claims["client_id"], AGENT.id);
    assert_eq!(claims["sub"], AGENT.id, "client_credentials: sub is the client");
    assert_eq!(claims["scope"], SCOPES);
    assert!(claims["jti"].is_string() && claims["iat"].is_i64() && claims["exp"].is_i64());
    assert!(signed_by_jwks(&token, &bed.jwks()), "signed by a key of jwks_uri");

    // JWTs are not introspected (nor revoked): oidc-provider refuses them outright.
    let resp = bed.introspect_as(RESOURCE_SERVER.id, RESOURCE_SERVER.secret, &token);
    assert_eq!((resp.status, resp.json()["error"].clone()), (400, json!("unsupported_token_type")));

    // A client not allowed that resource gets no token for it; unknown resources neither.
    let refused = bed.client_credentials(READER.id, READER.secret, "read", Some(RESOURCE_JWT));
    assert_eq!((refused.status, refused.json()["error"].clone()), (400, json!("invalid_target")));
    let unknown = bed.client_credentials(AGENT.id, AGENT.secret, "read", Some("https://unknown.example.test/"));
    assert_eq!(unknown.json()["error"], "invalid_target");
    // A static scope outside the client's own is refused, not dropped.
    let scope = bed.client_credentials(READER.id, READER.secret, SCOPES, None);
    assert_eq!(scope.json()["error"], "invalid_scope");

    // Key rotation: the new key signs, the old one stays published until retired; opaque
    // tokens outlive it.
    let opaque = agent_token(&bed, "read", None);
    let old_kid = header["kid"].as_str().expect("kid").to_string();
    let new_kid = bed.rotate_keys(false);
    let rotated = agent_token(&bed, "read", Some(RESOURCE_JWT));
    assert_eq!(jwt_parts(&rotated).expect("a JWT").0["kid"], new_kid.as_str());
    let jwks = bed.jwks();
    let kids: Vec<&str> = jwks["keys"].as_array().expect("keys").iter().filter_map(|k| k["kid"].as_str()).collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
    assert!(signed_by_jwks(&rotated, &jwks) && signed_by_jwks(&token, &jwks));
    assert_eq!(bed.introspect(&opaque)["active"], true);
    bed.rotate_keys(true);
    assert!(!signed_by_jwks(&token, &bed.jwks()), "retired");
}

#[test]
fn expired_opaque_tokens_introspect_inactive() {
    let bed = AuthServer::start_with(&json!({ "ttl_s": 2 }));
    let token = agent_token(&bed, "read", None);
    let answer = bed.introspect(&token);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["exp"].as_i64().zip(answer["iat"].as_i64()).map(|(e, i)| e - i), Some(2));
    assert!(wait_until(Duration::from_secs(5), || bed.introspect(&token)["active"] == false));
}

#[test]
fn the_bed_signs_id_tokens_and_counts_calls() {
    let bed = AuthServer::start();
    // An ID token, signed by the server's own key: aud is the client, no at+jwt typ.
    let id_token = bed.id_token(AGENT.id, "end-user-1");
    let (header, claims) = jwt_parts(&id_token).expect("a JWT");
    assert_eq!(header["alg"], "RS256");
    assert!(header.get("typ").is_none(), "an ID token's header has no typ here");
    assert_eq!(claims["iss"], bed.issuer());
    assert_eq!(claims["aud"], AGENT.id);
    assert_eq!(claims["sub"], "end-user-1");
    assert!(claims["exp"].as_i64() > claims["iat"].as_i64());
    assert!(signed_by_jwks(&id_token, &bed.jwks()), "signed by a key of jwks_uri");

    // Calls under the issuer path are counted by method and path, the query left out.
    assert_eq!(bed.calls("POST", "/token/introspection"), 0);
    let token = agent_token(&bed, "read", None);
    bed.introspect(&token);
    bed.introspect(&token);
    assert_eq!(bed.calls("POST", "/token/introspection"), 2);
    assert_eq!(bed.calls("POST", "/token"), 1);
    assert_eq!(bed.calls("GET", "/jwks"), 1, "the JWKS fetched once, above");
}
