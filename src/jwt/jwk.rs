//! JSON Web Keys, parsed once (at configure or fetch time) into keys ready to verify.
//!
//! Entries that cannot be used are skipped, not fatal: a JWKS that also holds an encryption
//! key, a curve we do not support or a key with a typo must not take every other key down.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::Alg;
use crate::crypto::der;
use crate::secret::Secret;

/// RSA moduli outside this range are refused: below is breakable, above is a CPU sink.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;
/// At most this many keys are kept from one document.
const MAX_KEYS: usize = 64;

pub enum PublicKey {
    Rsa(Box<RsaKey>),
    P256(Box<P256Key>),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
    /// HMAC secret (`kty: "oct"`).
    Oct(Secret),
}

pub struct RsaKey {
    pub key: rsa::RsaPublicKey,
    /// The precomputed fast path for PKCS#1 v1.5 (RS256/384/512).
    pub fast: Option<crate::crypto::rsa_fast::Modulus>,
    /// Its DER SubjectPublicKeyInfo, for the host's verifier (`foreign`).
    pub spki: Vec<u8>,
}

pub struct P256Key {
    pub key: p256::ecdsa::VerifyingKey,
    /// The precomputed fast path for ES256 (the key's multiples for u1·G + u2·Q).
    pub fast: Option<crate::crypto::p256_fast::Key>,
    /// Its DER SubjectPublicKeyInfo, for the host's verifier (`foreign`).
    pub spki: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublicKey::Rsa(_) => "Rsa",
            PublicKey::P256(_) => "P256",
            PublicKey::P384(_) => "P384",
            PublicKey::Ed25519(_) => "Ed25519",
            PublicKey::Oct(_) => "Oct(<redacted>)",
        })
    }
}

impl PublicKey {
    /// Whether this key can verify `alg` (the defence against algorithm confusion).
    pub fn fits(&self, alg: Alg) -> bool {
        use Alg::*;
        matches!(
            (self, alg),
            (PublicKey::Rsa(_), RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (PublicKey::P256(_), ES256)
                | (PublicKey::P384(_), ES384)
                | (PublicKey::Ed25519(_), EdDSA)
                | (PublicKey::Oct(_), HS256 | HS384 | HS512)
        )
    }
}

#[derive(Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    pub alg: Option<Alg>,
    pub key: PublicKey,
}

#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    /// Entries that were skipped as unusable (for logs).
    pub skipped: usize,
    /// Kids that name more than one entry of the document (usable or not): which key the
    /// issuer meant is unknowable, so tokens naming them are refused.
    pub ambiguous_kids: Vec<String>,
}

impl KeySet {
    /// Parses a JWKS document. Errors only when it is not a JWKS at all.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|_| "not JSON".to_string())?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| "not a JWKS: no \"keys\" array".to_string())?;
        Ok(KeySet::from_values(entries))
    }

    pub fn from_values(entries: &[Value]) -> KeySet {
        let mut set = KeySet::default();
        let mut kids: Vec<&str> = Vec::new();
        for kid in entries.iter().filter_map(|e| e.get("kid").and_then(Value::as_str)) {
            if kids.contains(&kid) {
                if !set.ambiguous_kids.iter().any(|k| k == kid) {
                    set.ambiguous_kids.push(kid.to_string());
                }
            } else {
                kids.push(kid);
            }
        }
        for e in entries {
            match parse_jwk(e) {
                Some(k) if set.keys.len() < MAX_KEYS => set.keys.push(k),
                _ => set.skipped += 1,
            }
        }
        // A set that mixes HMAC secrets with public keys is ambiguous (a published secret is
        // no secret, and it invites algorithm confusion): its secrets are not used.
        let has_public = set.keys.iter().any(|k| !matches!(k.key, PublicKey::Oct(_)));
        if has_public {
            let before = set.keys.len();
            set.keys.retain(|k| !matches!(k.key, PublicKey::Oct(_)));
            set.skipped += before - set.keys.len();
        }
        set
    }

    /// The keys of a fetched JWKS document (remote, or named by discovery): HMAC secrets only
    /// where the provider opted in (`allow_symmetric_keys`).
    pub fn fetched(bytes: &[u8], allow_symmetric_keys: bool) -> Result<KeySet, String> {
        let set = KeySet::from_json(bytes)?;
        Ok(if allow_symmetric_keys { set } else { set.without_symmetric_keys() })
    }

    /// The set less its HMAC secrets (counted as skipped).
    pub fn without_symmetric_keys(mut self) -> KeySet {
        let before = self.keys.len();
        self.keys.retain(|k| !matches!(k.key, PublicKey::Oct(_)));
        self.skipped += before - self.keys.len();
        self
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn b64(v: &Value, field: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(v.get(field)?.as_str()?).ok()
}

/// One JWK, or `None` when it cannot be used to verify signatures.
pub fn parse_jwk(v: &Value) -> Option<Jwk> {
    if let Some(u) = v.get("use") {
        if u.as_str()? != "sig" {
            return None;
        }
    }
    if let Some(ops) = v.get("key_ops") {
        if !ops.as_array()?.iter().any(|o| o.as_str() == Some("verify")) {
            return None;
        }
    }
    let alg = match v.get("alg") {
        Some(a) => Some(Alg::parse(a.as_str()?)?),
        None => None,
    };
    let kid = match v.get("kid") {
        Some(k) => Some(k.as_str()?.to_string()),
        None => None,
    };
    let key = match v.get("kty")?.as_str()? {
        "RSA" => {
            let n = b64(v, "n")?;
            let e = b64(v, "e")?;
            let n_int = rsa::BigUint::from_bytes_be(&n);
            let bits = n_int.bits();
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return None;
            }
            if roca_fingerprint(&n_int) {
                return None;
            }
            let key = rsa::RsaPublicKey::new_with_max_size(n_int, rsa::BigUint::from_bytes_be(&e), RSA_MAX_BITS).ok()?;
            PublicKey::Rsa(Box::new(RsaKey { key, fast: crate::crypto::rsa_fast::Modulus::new(&n, &e), spki: der::rsa_spki(&n, &e) }))
        }
        "EC" => {
            let x = b64(v, "x")?;
            let y = b64(v, "y")?;
            let (size, crv) = match v.get("crv")?.as_str()? {
                "P-256" => (32, 256),
                "P-384" => (48, 384),
                _ => return None,
            };
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut sec1 = Vec::with_capacity(1 + 2 * size);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            // from_sec1_bytes checks that the point is on the curve.
            if crv == 256 {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()?;
                PublicKey::P256(Box::new(P256Key { key, fast: crate::crypto::p256_fast::Key::from_coordinates(&x, &y), spki: der::p256_spki(&x, &y) }))
            } else {
                PublicKey::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).ok()?)
            }
        }
        "OKP" => {
            if v.get("crv")?.as_str()? != "Ed25519" {
                return None;
            }
            PublicKey::Ed25519(ed25519_compact::PublicKey::from_slice(&b64(v, "x")?).ok()?)
        }
        "oct" => {
            let k = b64(v, "k")?;
            if k.is_empty() {
                return None;
            }
            PublicKey::Oct(Secret::from_bytes(k))
        }
        _ => return None,
    };
    if let Some(a) = alg {
        if !key.fits(a) {
            return None;
        }
    }
    Some(Jwk { kid, alg, key })
}

/// Whether an RSA modulus has the structure of keys made by the Infineon library broken by
/// ROCA (CVE-2017-15361): for each small prime p, N mod p lies in the subgroup generated by
/// 65537. A random modulus passes all these primes with negligible probability.
fn roca_fingerprint(n: &rsa::BigUint) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109,
        113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    let bytes = n.to_bytes_be();
    PRIMES.iter().all(|&p| {
        let residue = bytes.iter().fold(0u32, |r, &b| (r * 256 + u32::from(b)) % p);
        let g = 65537 % p;
        let mut x = 1u32;
        // The subgroup generated by g has at most p - 1 elements.
        for _ in 0..p {
            if x == residue {
                return true;
            }
            x = x * g % p;
        }
        false
    })
}
