//! Table tests of decoding, key selection and claim rules. Tokens are built here with HMAC
//! (instant) and jwt-simple's ES256 keys; each carries its claims in the code that makes it.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn b64(v: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn hs256(header: &Value, claims: &Value, key: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(mac.finalize().into_bytes()))
}

fn oct_set(kid: &str, key: &[u8]) -> KeySet {
    KeySet::from_values(&[json!({ "kty": "oct", "kid": kid, "k": b64(key) })])
}

fn verify(token: &str, keys: &KeySet, allowed: &[Alg]) -> Result<(), String> {
    let d = decode(token).map_err(|r| r.as_str().to_string())?;
    verify_signature(&d, keys, allowed).map_err(|e| format!("{e:?}"))
}

#[test]
fn decode_refuses_what_is_not_a_plain_jws() {
    let claims = json!({ "sub": "u" });
    let ok = hs256(&json!({ "alg": "HS256", "kid": "k" }), &claims, SECRET);
    assert!(decode(&ok).is_ok());
    let bad = [
        hs256(&json!({ "alg": "none" }), &claims, SECRET),
        hs256(&json!({ "alg": "HS256", "crit": ["exp"] }), &claims, SECRET),
        hs256(&json!({ "alg": "HS256", "b64": false }), &claims, SECRET),
        hs256(&json!({ "alg": "HS256", "kid": 7 }), &claims, SECRET),
        hs256(&json!({ "typ": "JWT" }), &claims, SECRET),
        hs256(&json!(["alg", "HS256"]), &claims, SECRET),
        "a.b".to_string(),
        "a.b.c.d".to_string(),
        format!("{}.", ok),
        format!("{ok}=="),
        format!("{}.{}.{}", b64("{\"alg\":\"HS256\"}"), "x".repeat(MAX_TOKEN_BYTES), "sig"),
    ];
    for t in &bad {
        assert_eq!(decode(t).err(), Some(Reason::TokenInvalid), "{}", &t[..t.len().min(80)]);
    }
    // The payload must be a JSON object to be claims.
    let not_claims = hs256(&json!({ "alg": "HS256" }), &json!("text"), SECRET);
    assert_eq!(decode(&not_claims).unwrap().claims().err(), Some(Reason::TokenInvalid));
}

#[test]
fn key_selection_and_algorithm_confusion() {
    let claims = json!({ "sub": "u" });
    let set = oct_set("k1", SECRET);
    let hs = [Alg::HS256];
    assert_eq!(verify(&hs256(&json!({ "alg": "HS256", "kid": "k1" }), &claims, SECRET), &set, &hs), Ok(()));
    // No kid: the usable keys are tried.
    assert_eq!(verify(&hs256(&json!({ "alg": "HS256" }), &claims, SECRET), &set, &hs), Ok(()));
    assert_eq!(verify(&hs256(&json!({ "alg": "HS256", "kid": "k2" }), &claims, SECRET), &set, &hs), Err("UnknownKid".into()));
    assert_eq!(verify(&hs256(&json!({ "alg": "HS256", "kid": "k1" }), &claims, b"another-secret-another-secret-xx"), &set, &hs), Err("BadSignature".into()));
    assert_eq!(verify(&hs256(&json!({ "alg": "HS256", "kid": "k1" }), &claims, SECRET), &set, &[Alg::RS256]), Err("AlgorithmNotAllowed".into()));
    // A key shorter than the hash is refused (RFC 7518 §3.2).
    let short = oct_set("s", b"short");
    assert_eq!(verify(&hs256(&json!({ "alg": "HS256", "kid": "s" }), &claims, b"short"), &short, &hs), Err("BadSignature".into()));

    // Algorithm confusion: an HS256 token "signed" with the bytes of a public EC key must not
    // verify against that key.
    let kp = jwt_simple::algorithms::ES256KeyPair::generate();
    let pk = kp.public_key();
    let raw = pk.public_key().to_bytes_uncompressed();
    let ec = KeySet::from_values(&[json!({ "kty": "EC", "crv": "P-256", "kid": "ec", "x": b64(&raw[1..33]), "y": b64(&raw[33..]) })]);
    assert_eq!(ec.len(), 1);
    let confused = hs256(&json!({ "alg": "HS256", "kid": "ec" }), &claims, &raw);
    assert_eq!(verify(&confused, &ec, &[Alg::HS256, Alg::ES256]), Err("NoUsableKey".into()));
    // And the real ES256 token verifies.
    use jwt_simple::prelude::*;
    let token = kp.with_key_id("ec").sign(Claims::create(jwt_simple::prelude::Duration::from_mins(5))).unwrap();
    assert_eq!(verify(&token, &ec, &[Alg::ES256]), Ok(()));
    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert_eq!(verify(&tampered, &ec, &[Alg::ES256]), Err("BadSignature".into()));
}

#[test]
fn unusable_jwks_entries_are_skipped_not_fatal() {
    let set = KeySet::from_json(
        json!({ "keys": [
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB" },
            { "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" },
            { "kty": "EC", "kid": "off-curve", "crv": "P-256", "x": b64([1u8; 32]), "y": b64([2u8; 32]) },
            { "kty": "RSA", "kid": "small", "n": b64([0xffu8; 128]), "e": "AQAB" },
            { "kty": "oct", "kid": "ops", "key_ops": ["sign"], "k": b64(SECRET) },
            { "kty": "weird" },
            { "kty": "oct", "kid": "good", "k": b64(SECRET) }
        ] })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!((set.len(), set.skipped), (1, 6));
    assert_eq!(set.keys.iter().map(|k| k.kid.as_deref()).collect::<Vec<_>>(), vec![Some("good")]);
    assert!(KeySet::from_json(b"{\"keys\": 1}").is_err());
    assert!(KeySet::from_json(b"<html>").is_err());
    assert!(format!("{set:?}").contains("<redacted>"));
}

fn rules() -> ClaimRules {
    ClaimRules {
        issuer: "https://iss".into(),
        audiences: vec!["api".into()],
        authorized_parties: vec!["https://app".into()],
        clock_skew_s: 60,
        require_exp: true,
        max_lifetime_s: Some(3600),
        reject_pending_sessions: true,
        typ: None,
    }
}

#[test]
fn claim_rules_table() {
    const NOW: i64 = 1_800_000_000;
    let base = json!({ "iss": "https://iss", "aud": "api", "exp": NOW + 600, "iat": NOW - 10 });
    let with = |patch: Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let cases: Vec<(&str, Value, Result<(), Reason>)> = vec![
        ("valid", with(json!({})), Ok(())),
        ("other issuer", with(json!({ "iss": "https://evil" })), Err(Reason::IssuerUnknown)),
        ("no issuer", with(json!({ "iss": null })), Err(Reason::IssuerUnknown)),
        ("expired inside skew", with(json!({ "exp": NOW - 59 })), Ok(())),
        ("expired at skew", with(json!({ "exp": NOW - 60 })), Err(Reason::TokenExpired)),
        ("exp as float", with(json!({ "exp": (NOW + 600) as f64 + 0.5 })), Ok(())),
        ("exp as string", with(json!({ "exp": "soon" })), Err(Reason::TokenInvalid)),
        ("huge exp", with(json!({ "exp": 1e300, "iat": null })), Err(Reason::TokenInvalid)),
        ("negative exp", with(json!({ "exp": -5 })), Err(Reason::TokenExpired)),
        ("missing exp", with(json!({ "exp": null })), Err(Reason::TokenInvalid)),
        ("nbf inside skew", with(json!({ "nbf": NOW + 60 })), Ok(())),
        ("nbf beyond skew", with(json!({ "nbf": NOW + 61 })), Err(Reason::TokenNotYetValid)),
        ("iat in the future", with(json!({ "iat": NOW + 120 })), Err(Reason::TokenNotYetValid)),
        ("lifetime too long", with(json!({ "iat": NOW - 10, "exp": NOW + 3600 })), Err(Reason::TokenInvalid)),
        ("lifetime without iat", with(json!({ "iat": null })), Err(Reason::TokenInvalid)),
        ("aud list", with(json!({ "aud": ["x", "api"] })), Ok(())),
        ("aud mismatch", with(json!({ "aud": ["x"] })), Err(Reason::AudienceMismatch)),
        ("aud missing", with(json!({ "aud": null })), Err(Reason::AudienceMismatch)),
        ("azp allowed", with(json!({ "azp": "https://app" })), Ok(())),
        ("azp other", with(json!({ "azp": "https://other" })), Err(Reason::PartyNotAuthorized)),
        ("pending session", with(json!({ "sts": "pending" })), Err(Reason::SessionPending)),
        ("active session", with(json!({ "sts": "active" })), Ok(())),
    ];
    for (name, claims, want) in cases {
        assert_eq!(validate_claims(&claims, &rules(), NOW).map(|_| ()), want, "{name}");
    }
    let lax = ClaimRules { require_exp: false, max_lifetime_s: None, audiences: vec![], ..rules() };
    assert!(validate_claims(&json!({ "iss": "https://iss" }), &lax, NOW).is_ok());
}

#[test]
fn principal_fields_from_clerk_v1_and_v2() {
    let p = ClaimPaths::default();
    let v1 = json!({ "sub": "user_1", "org_id": "org_1", "org_role": "org:admin", "org_permissions": ["org:a:read", "org:b:write"] });
    let v2 = json!({ "sub": "user_2", "o": { "id": "org_2", "rol": "admin", "per": "a:read, b:write" }, "scope": "read  write" });
    assert_eq!(first_string(&v1, &p.organization).as_deref(), Some("org_1"));
    assert_eq!(first_string(&v2, &p.organization).as_deref(), Some("org_2"));
    assert_eq!(first_list(&v1, &p.roles, Split::None), vec!["org:admin"]);
    assert_eq!(first_list(&v2, &p.roles, Split::None), vec!["admin"]);
    assert_eq!(first_list(&v1, &p.permissions, Split::Comma), vec!["org:a:read", "org:b:write"]);
    assert_eq!(first_list(&v2, &p.permissions, Split::Comma), vec!["a:read", "b:write"]);
    assert_eq!(first_list(&v2, &p.scopes, Split::Whitespace), vec!["read", "write"]);
    assert_eq!(first_list(&json!({ "workspace_id": "ws_1" }), &p.workspaces, Split::None), vec!["ws_1"]);
    assert!(first_list(&json!({ "roles": 5 }), &p.roles, Split::None).is_empty());
    assert_eq!(first_string(&json!({ "sub": "" }), &p.subject), None);
}
