//! jwt::decode, claims, validate_claims and verify_signature on arbitrary tokens.
//!
//! Input: the whole input is the token (lossy UTF-8).
//!
//! Properties:
//! - decode only accepts `h.p.s` of at most MAX_TOKEN_BYTES, and what it returns is exactly
//!   what the token holds (signing input, decoded signature and payload);
//! - claims() is always an object; validate_claims' strict rules imply its lax rules, and the
//!   issuer is checked first;
//! - a signature verifies against the fixed public JWKS (RSA, EC P-256, Ed25519, and an HMAC
//!   key that must be dropped from a mixed set) only if the key that verifies really signed it:
//!   Ed25519 (deterministic) the exact signature we compute, RSA/EC a known-good Wycheproof
//!   token's signing input (and, for RSA, its exact signature);
//! - against the HMAC set, only our own HMAC tag of the signing input verifies;
//! - the token re-signed here with the HMAC key (and, for EdDSA, the Ed25519 key) verifies
//!   exactly when its header allows that key; one byte changed anywhere then fails unless the
//!   signing input and signature are unchanged;
//! - an algorithm that is not allowed is always AlgorithmNotAllowed.
use std::collections::HashMap;
use std::sync::OnceLock;

use api_auth_filter::deny::Reason;
use api_auth_filter::jwt::{self, Alg, ClaimPaths, ClaimRules, KeySet, PublicKey, Split, VerifyError};
use crate::{b64, hmac_sha256, keys, unb64, NOW};
use serde_json::Value;

const ALL: [Alg; 12] = [
    Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512,
    Alg::ES256, Alg::ES384, Alg::EdDSA, Alg::HS256, Alg::HS384, Alg::HS512,
];

struct Fixed {
    public: KeySet,
    hmac: KeySet,
    hmac_key: Vec<u8>,
    hmac_kid: String,
    ed: ed25519_compact::KeyPair,
    ed_kid: String,
    /// signing input -> exact signatures of the known-good public-key tokens.
    known: HashMap<String, Vec<Vec<u8>>>,
    strict: ClaimRules,
    lax: ClaimRules,
    paths: ClaimPaths,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let k = keys();
        let public = KeySet::from_json(k["jwks"].to_string().as_bytes()).expect("jwks");
        // The mixed set keeps its five public keys and drops the HMAC secret.
        assert_eq!((public.len(), public.skipped), (5, 1), "{public:?}");
        assert!(!public.keys.iter().any(|j| matches!(j.key, PublicKey::Oct(_))));
        let hmac = KeySet::from_json(k["hmac_jwks"].to_string().as_bytes()).expect("hmac jwks");
        assert_eq!(hmac.len(), 1);
        let seed = unb64(k["ed25519_seed"].as_str().unwrap());
        let ed = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::from_slice(&seed).unwrap());
        let mut known: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for t in k["known_public_tokens"].as_array().unwrap() {
            let t = t.as_str().unwrap();
            let d = jwt::decode(t).expect("known token decodes");
            assert_eq!(jwt::verify_signature(&d, &public, &ALL), Ok(()), "known token verifies: {t}");
            known.entry(d.signing_input.to_string()).or_default().push(d.signature.clone());
        }
        let strict = ClaimRules {
            issuer: "https://fuzz.example".into(),
            audiences: vec!["api".into()],
            authorized_parties: vec!["https://app.example".into()],
            clock_skew_s: 60,
            require_exp: true,
            max_lifetime_s: Some(3600),
            reject_pending_sessions: true,
            typ: None,
        };
        let lax = ClaimRules {
            audiences: vec![],
            authorized_parties: vec![],
            require_exp: false,
            max_lifetime_s: None,
            reject_pending_sessions: false,
            ..strict.clone()
        };
        Fixed {
            public,
            hmac,
            hmac_key: unb64(k["hmac_k"].as_str().unwrap()),
            hmac_kid: "kid-aes-sign".into(),
            ed,
            ed_kid: "ed-rfc8037".into(),
            known,
            strict,
            lax,
            paths: ClaimPaths::default(),
        }
    })
}

fn ed_sign(f: &Fixed, msg: &[u8]) -> Vec<u8> {
    f.ed.sk.sign(msg, None).to_vec()
}

/// Which keys of `set` verify this decoded token (mirrors key use, not selection).
fn verifying<'s>(set: &'s KeySet, d: &jwt::Decoded<'_>) -> Vec<&'s jwt::jwk::Jwk> {
    set.keys
        .iter()
        .filter(|k| k.key.fits(d.alg) && k.alg.is_none_or(|a| a == d.alg))
        .filter(|k| d.kid.is_none() || k.kid == d.kid)
        .filter(|k| jwt::verify_with(&k.key, d.alg, d.signing_input.as_bytes(), &d.signature))
        .collect()
}

fn check_public_ok(f: &Fixed, d: &jwt::Decoded<'_>, token: &str) {
    let hits = verifying(&f.public, d);
    assert!(!hits.is_empty(), "verify_signature accepted but no key verifies: {token}");
    for k in hits {
        match &k.key {
            PublicKey::Ed25519(_) => {
                assert_eq!(d.signature, ed_sign(f, d.signing_input.as_bytes()), "forged Ed25519 signature accepted: {token}")
            }
            PublicKey::P256(_) | PublicKey::P384(_) => {
                // ECDSA signatures are malleable ((r, s) and (r, n - s)): only the signed input counts.
                assert!(f.known.contains_key(d.signing_input), "ECDSA signature over an unsigned input accepted: {token}")
            }
            PublicKey::Rsa(_) => assert!(
                f.known.get(d.signing_input).is_some_and(|sigs| sigs.contains(&d.signature)),
                "RSA signature not produced by the key holder accepted: {token}"
            ),
            PublicKey::Oct(_) => panic!("an HMAC secret survived in a mixed set"),
        }
    }
}

fn check_claims(f: &Fixed, claims: &Value) {
    assert!(claims.is_object());
    let strict = jwt::validate_claims(claims, &f.strict, NOW).map(|_| ());
    let lax = jwt::validate_claims(claims, &f.lax, NOW).map(|_| ());
    if claims.get("iss").and_then(Value::as_str) != Some("https://fuzz.example") {
        assert_eq!(strict, Err(Reason::IssuerUnknown));
        assert_eq!(lax, Err(Reason::IssuerUnknown));
    }
    if strict.is_ok() {
        assert_eq!(lax, Ok(()), "strict rules passed, lax rules failed: {claims}");
        let exp = claims["exp"].as_f64().expect("strict rules require a numeric exp");
        assert!((NOW as f64) < exp + 60.0, "expired token accepted: {claims}");
        let iat = claims["iat"].as_f64().expect("max_lifetime_s requires iat");
        assert!(exp - iat <= 3600.0);
        assert_ne!(claims.get("sts").and_then(Value::as_str), Some("pending"));
    }
    for r in [strict, lax] {
        if let Err(e) = r {
            assert!(matches!(
                e,
                Reason::IssuerUnknown
                    | Reason::TokenExpired
                    | Reason::TokenInvalid
                    | Reason::TokenNotYetValid
                    | Reason::AudienceMismatch
                    | Reason::PartyNotAuthorized
                    | Reason::SessionPending
            ));
        }
    }
    let p = &f.paths;
    for list in [p.subject.as_slice(), &p.email, &p.name, &p.organization] {
        if let Some(s) = jwt::first_string(claims, list) {
            assert!(!s.is_empty());
        }
    }
    for v in jwt::first_list(claims, &p.scopes, Split::Whitespace) {
        assert!(!v.is_empty() && !v.chars().any(char::is_whitespace), "{v:?}");
    }
    for v in jwt::first_list(claims, &p.permissions, Split::Comma) {
        assert!(!v.is_empty());
    }
    for v in jwt::first_list(claims, &p.roles, Split::None) {
        assert!(!v.is_empty());
    }
}

/// Re-signs the token's signing input with a key we hold; checks it verifies exactly when the
/// header allows that key, then that one changed byte breaks it.
fn check_resigned(f: &Fixed, d: &jwt::Decoded<'_>, seed: u64) {
    let hmac_ok = d.alg == Alg::HS256 && d.kid.as_deref().is_none_or(|k| k == f.hmac_kid);
    let token = format!("{}.{}", d.signing_input, b64(hmac_sha256(&f.hmac_key, d.signing_input.as_bytes())));
    let d2 = jwt::decode(&token).expect("a re-signed token decodes");
    let got = jwt::verify_signature(&d2, &f.hmac, &ALL);
    assert_eq!(got.is_ok(), hmac_ok, "HMAC re-signed token: {got:?} for {token}");
    mutate_and_check(f, &token, &d2, &f.hmac, seed);

    if d.alg == Alg::EdDSA {
        let ed_ok = d.kid.as_deref().is_none_or(|k| k == f.ed_kid);
        let token = format!("{}.{}", d.signing_input, b64(ed_sign(f, d.signing_input.as_bytes())));
        let d2 = jwt::decode(&token).expect("a re-signed token decodes");
        let got = jwt::verify_signature(&d2, &f.public, &ALL);
        assert_eq!(got.is_ok(), ed_ok, "Ed25519 re-signed token: {got:?} for {token}");
        mutate_and_check(f, &token, &d2, &f.public, seed.rotate_left(17));
    }
}

fn mutate_and_check(_f: &Fixed, token: &str, good: &jwt::Decoded<'_>, set: &KeySet, seed: u64) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
    let mut bytes = token.as_bytes().to_vec();
    let pos = (seed % bytes.len() as u64) as usize;
    let mut b = ALPHABET[((seed >> 32) % ALPHABET.len() as u64) as usize];
    if b == bytes[pos] {
        b = if b == b'A' { b'B' } else { b'A' };
    }
    bytes[pos] = b;
    let mutated = String::from_utf8(bytes).expect("ASCII");
    if let Ok(d) = jwt::decode(&mutated) {
        if jwt::verify_signature(&d, set, &ALL).is_ok() {
            assert!(
                d.signing_input == good.signing_input && d.signature == good.signature,
                "a changed token still verifies: {mutated} (from {token})"
            );
        }
    }
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    let f = fixed();
    let owned;
    let token = match std::str::from_utf8(data) {
        Ok(t) => t,
        Err(_) => {
            owned = String::from_utf8_lossy(data).into_owned();
            &owned
        }
    };
    let d = match jwt::decode(token) {
        Ok(d) => d,
        Err(e) => {
            assert_eq!(e, Reason::TokenInvalid);
            return;
        }
    };
    // What decode returns is exactly what the token holds.
    assert!(token.len() <= jwt::MAX_TOKEN_BYTES);
    assert_eq!(token.matches('.').count(), 2, "{token}");
    let last = token.rfind('.').unwrap();
    assert_eq!(d.signing_input, &token[..last]);
    assert_eq!(b64(&d.signature), token[last + 1..], "the signature part is canonical base64url");
    let first = token.find('.').unwrap();
    assert_eq!(b64(&d.payload), token[first + 1..last]);

    if let Ok(claims) = d.claims() {
        check_claims(f, &claims);
    }

    // Algorithms that are not allowed are refused before any key is looked at.
    assert_eq!(jwt::verify_signature(&d, &f.public, &[]), Err(VerifyError::AlgorithmNotAllowed));
    let others: Vec<Alg> = ALL.iter().copied().filter(|a| *a != d.alg).collect();
    assert_eq!(jwt::verify_signature(&d, &f.hmac, &others), Err(VerifyError::AlgorithmNotAllowed));

    match jwt::verify_signature(&d, &f.public, &ALL) {
        Ok(()) => check_public_ok(f, &d, token),
        Err(e) => {
            if matches!(d.alg, Alg::HS256 | Alg::HS384 | Alg::HS512) {
                // No HMAC key is left in the mixed set.
                assert!(matches!(e, VerifyError::NoUsableKey | VerifyError::UnknownKid), "{e:?}");
            }
        }
    }
    if jwt::verify_signature(&d, &f.hmac, &ALL).is_ok() {
        assert_eq!(
            d.signature,
            hmac_sha256(&f.hmac_key, d.signing_input.as_bytes()),
            "HMAC tag not computed with the key accepted: {token}"
        );
    }
    check_resigned(f, &d, crate::fnv(data));
}
