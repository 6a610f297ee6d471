//! JWS compact tokens: decoding, key selection, signature verification and claim rules.
//! Pure: no host calls, the clock is passed in.

pub mod claims;
pub mod foreign;
pub mod jwk;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};

pub use claims::{first_list, first_string, media_type, typ_accepted, validate_claims, validate_static_claims, ClaimPaths, ClaimRules, Split, TimeClaims};
pub use jwk::{KeySet, PublicKey};

use crate::crypto::Hash;
use crate::deny::Reason;

/// Longer tokens are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Without a `kid`, at most this many keys are tried.
const MAX_KEYS_TRIED: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

impl Alg {
    /// HS256/384/512: verified with a shared secret (`kty: "oct"`), not a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// The digest of RS256/384/512 (RSASSA-PKCS1-v1_5); `None` for every other algorithm.
    pub fn pkcs1_hash(self) -> Option<Hash> {
        match self {
            Alg::RS256 => Some(Hash::Sha256),
            Alg::RS384 => Some(Hash::Sha384),
            Alg::RS512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// `none` never parses.
    pub fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            _ => return None,
        })
    }
}

/// A compact JWS, split and decoded, not yet verified.
#[derive(Debug)]
pub struct Decoded<'t> {
    pub alg: Alg,
    pub kid: Option<String>,
    /// The header's `typ`, when it is a string.
    pub typ: Option<String>,
    /// `header.payload` exactly as sent: what the signature covers.
    pub signing_input: &'t str,
    pub signature: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Decoded<'_> {
    /// The payload as a JSON object of claims.
    pub fn claims(&self) -> Result<Value, Reason> {
        match serde_json::from_slice::<Value>(&self.payload) {
            Ok(v) if v.is_object() => Ok(v),
            _ => Err(Reason::TokenInvalid),
        }
    }
}

fn b64(part: &str) -> Result<Vec<u8>, Reason> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| Reason::TokenInvalid)
}

/// Splits and decodes a compact JWS. Anything that is not one is `TokenInvalid`.
pub fn decode(token: &str) -> Result<Decoded<'_>, Reason> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Reason::TokenInvalid);
    }
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Reason::TokenInvalid);
    };
    let header: Value = serde_json::from_slice(&b64(h)?).map_err(|_| Reason::TokenInvalid)?;
    let header = header.as_object().ok_or(Reason::TokenInvalid)?;
    let alg = header.get("alg").and_then(Value::as_str).and_then(Alg::parse).ok_or(Reason::TokenInvalid)?;
    // We implement no JWS extension, so any critical one is refused (RFC 7515 §4.1.11);
    // `b64` changes what is signed (RFC 7797) and is refused with or without `crit`.
    if header.contains_key("crit") || header.contains_key("b64") {
        return Err(Reason::TokenInvalid);
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Reason::TokenInvalid),
        None => None,
    };
    let typ = header.get("typ").and_then(Value::as_str).map(str::to_string);
    let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(Reason::TokenInvalid)?;
    Ok(Decoded { alg, kid, typ, signing_input, signature: b64(s)?, payload: b64(p)? })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// The token names a `kid` the set does not have: the keys may have rotated.
    UnknownKid,
    /// No key of the set can verify this algorithm.
    NoUsableKey,
    /// The algorithm is not allowed for this provider.
    AlgorithmNotAllowed,
    BadSignature,
}

/// Who checks a signature primitive: our own code (`OwnCode`), or the glue's host-backed
/// verifier (`foreign`). Must answer exactly what `verify_with` answers.
pub trait Signatures {
    fn verify(&self, key: &PublicKey, alg: Alg, msg: &[u8], sig: &[u8]) -> bool;
}

/// The filter's own code for every algorithm (`verify_with`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnCode;

impl Signatures for OwnCode {
    fn verify(&self, key: &PublicKey, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        verify_with(key, alg, msg, sig)
    }
}

/// Verifies the signature of a decoded token with a key of the set, with our own code.
pub fn verify_signature(token: &Decoded<'_>, keys: &KeySet, allowed: &[Alg]) -> Result<(), VerifyError> {
    verify_signature_by(token, keys, allowed, &OwnCode)
}

/// `verify_signature` with the signature primitive of `signatures`.
pub fn verify_signature_by(token: &Decoded<'_>, keys: &KeySet, allowed: &[Alg], signatures: &dyn Signatures) -> Result<(), VerifyError> {
    if !allowed.contains(&token.alg) {
        return Err(VerifyError::AlgorithmNotAllowed);
    }
    // A JWK's `alg` is the one algorithm the key may be used with (RFC 7517 §4.4).
    let usable = |k: &&jwk::Jwk| k.key.fits(token.alg) && k.alg.is_none_or(|a| a == token.alg);
    let candidates: Vec<&jwk::Jwk> = match &token.kid {
        Some(kid) if keys.ambiguous_kids.iter().any(|k| k == kid) => return Err(VerifyError::NoUsableKey),
        Some(kid) => {
            let named: Vec<&jwk::Jwk> = keys.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect();
            match named.len() {
                0 => return Err(VerifyError::UnknownKid),
                1 => named.into_iter().filter(usable).collect(),
                // Two keys under one kid: which one the issuer meant is unknowable.
                _ => return Err(VerifyError::NoUsableKey),
            }
        }
        None => keys.keys.iter().filter(usable).take(MAX_KEYS_TRIED).collect(),
    };
    if candidates.is_empty() {
        return Err(VerifyError::NoUsableKey);
    }
    let msg = token.signing_input.as_bytes();
    if candidates.iter().any(|k| signatures.verify(&k.key, token.alg, msg, &token.signature)) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The signature primitive for one key and algorithm. Also used by the Wycheproof tests.
pub fn verify_with(key: &PublicKey, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
    match (key, alg) {
        (PublicKey::Rsa(k), Alg::RS256) => k.modulus.verify_pkcs1(Hash::Sha256, msg, sig),
        (PublicKey::Rsa(k), Alg::RS384) => k.modulus.verify_pkcs1(Hash::Sha384, msg, sig),
        (PublicKey::Rsa(k), Alg::RS512) => k.modulus.verify_pkcs1(Hash::Sha512, msg, sig),
        // RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
        (PublicKey::Rsa(k), Alg::PS256) => k.modulus.verify_pss(Hash::Sha256, msg, sig),
        (PublicKey::Rsa(k), Alg::PS384) => k.modulus.verify_pss(Hash::Sha384, msg, sig),
        (PublicKey::Rsa(k), Alg::PS512) => k.modulus.verify_pss(Hash::Sha512, msg, sig),
        // JOSE ECDSA signatures are r || s of fixed width (RFC 7518 §3.4), not DER.
        (PublicKey::P256(k), Alg::ES256) => k.fast.verify(msg, sig),
        (PublicKey::P384(k), Alg::ES384) => k.verify(msg, sig),
        (PublicKey::Ed25519(k), Alg::EdDSA) => k.verify(msg, sig),
        // RFC 7518 §3.2: the key must be at least as long as the hash.
        (PublicKey::Oct(secret), Alg::HS256) => secret.expose().len() >= 32 && hmac_verify::<Hmac<Sha256>>(secret.expose(), msg, sig),
        (PublicKey::Oct(secret), Alg::HS384) => secret.expose().len() >= 48 && hmac_verify::<Hmac<Sha384>>(secret.expose(), msg, sig),
        (PublicKey::Oct(secret), Alg::HS512) => secret.expose().len() >= 64 && hmac_verify::<Hmac<Sha512>>(secret.expose(), msg, sig),
        _ => false,
    }
}

/// A full-length HMAC tag, compared in constant time.
pub fn hmac_verify<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else { return false };
    mac.update(msg);
    mac.verify_slice(tag).is_ok()
}


#[cfg(test)]
mod tests;
