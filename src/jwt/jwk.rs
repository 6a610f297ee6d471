//! JSON Web Keys, parsed once (at configure or fetch time) into keys ready to verify.
//!
//! Entries that cannot be used are skipped, not fatal: a JWKS that also holds an encryption
//! key, a curve we do not support or a key with a typo must not take every other key down.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use super::Alg;
use crate::crypto::der;
use crate::crypto::rsa_fast::Modulus;
use crate::secret::Secret;

/// RSA moduli outside this range are refused: below is breakable, above is a CPU sink.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;
/// At most this many keys are kept from one document.
const MAX_KEYS: usize = 64;

pub enum PublicKey {
    Rsa(Box<RsaKey>),
    P256(Box<P256Key>),
    P384(Box<crate::crypto::p384::Key>),
    Ed25519(Box<crate::crypto::ed25519::Key>),
    /// HMAC secret (`kty: "oct"`).
    Oct(Secret),
}

pub struct RsaKey {
    /// The modulus and exponent with what the filter's own RSA code precomputes for them
    /// (RS256/384/512 and PS256/384/512 alike).
    pub modulus: Modulus,
    /// Its DER SubjectPublicKeyInfo, for the host's verifier (`foreign`).
    pub spki: Vec<u8>,
}

pub struct P256Key {
    /// The key's precomputed multiples for u1·G + u2·Q (the filter's own ES256).
    pub fast: crate::crypto::p256_fast::Key,
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
            let modulus = rsa_public_key(&n, &e)?;
            PublicKey::Rsa(Box::new(RsaKey { modulus, spki: der::rsa_spki(&n, &e) }))
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
            // Both check that the coordinates are below p and the point is on the curve.
            if crv == 256 {
                let fast = crate::crypto::p256_fast::Key::from_coordinates(&x, &y)?;
                PublicKey::P256(Box::new(P256Key { fast, spki: der::p256_spki(&x, &y) }))
            } else {
                PublicKey::P384(Box::new(crate::crypto::p384::Key::from_coordinates(&x, &y)?))
            }
        }
        "OKP" => {
            if v.get("crv")?.as_str()? != "Ed25519" {
                return None;
            }
            PublicKey::Ed25519(Box::new(crate::crypto::ed25519::Key::from_bytes(&b64(v, "x")?)?))
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

/// The big-endian integer without its leading zero octets.
fn strip(be: &[u8]) -> &[u8] {
    be.iter().position(|b| *b != 0).map_or(&[], |i| &be[i..])
}

/// The largest public exponent accepted, 2³³ - 1: the bound of the `rsa` crate (0.9) this
/// check replaces, so that the same keys are accepted as before.
const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

/// An RSA public key from a JWK's `n` and `e` (big-endian, leading zeros allowed), or `None`
/// when it is not one to verify with: a modulus outside RSA_MIN_BITS..=RSA_MAX_BITS or with
/// ROCA's fingerprint, then what `rsa::RsaPublicKey::new_with_max_size` (0.9) refused: an
/// exponent wider than 64 bits, not below n, even, below 2 or above 2³³ - 1, and an even
/// modulus.
fn rsa_public_key(n: &[u8], e: &[u8]) -> Option<Modulus> {
    let (n, e) = (strip(n), strip(e));
    let bits = n.first().map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) || roca_fingerprint(n) {
        return None;
    }
    if e.len() > 8 {
        return None;
    }
    let e_value = e.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
    // e < n, as integers (both without leading zeros: the longer is the larger).
    let e_below_n = e.len() < n.len() || (e.len() == n.len() && e < n);
    let n_odd = n.last().is_some_and(|b| b & 1 == 1);
    if !e_below_n || !n_odd || e_value & 1 == 0 || !(2..=RSA_MAX_EXPONENT).contains(&e_value) {
        return None;
    }
    Modulus::new(n, e)
}

/// Whether an RSA modulus (big-endian) has the structure of keys made by the Infineon library
/// broken by ROCA (CVE-2017-15361): for each small prime p, N mod p lies in the subgroup
/// generated by 65537. A random modulus passes all these primes with negligible probability.
fn roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109,
        113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, &b| (r * 256 + u32::from(b)) % p);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The old acceptance rule, from the `rsa` crate (a dev-dependency since): the size range
    /// and ROCA as before, then `RsaPublicKey::new_with_max_size`.
    fn accepted_by_the_rsa_crate(n: &[u8], e: &[u8]) -> bool {
        let n_int = rsa::BigUint::from_bytes_be(n);
        (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&n_int.bits())
            && !roca_fingerprint(&n_int.to_bytes_be())
            && rsa::RsaPublicKey::new_with_max_size(n_int, rsa::BigUint::from_bytes_be(e), RSA_MAX_BITS).is_ok()
    }

    /// Big-endian bytes of `bits` bits, top bit set, pseudo-random below, odd or even.
    fn number(bits: usize, odd: bool, seed: &mut u64) -> Vec<u8> {
        let mut n: Vec<u8> = (0..bits.div_ceil(8))
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect();
        let top = (bits - 1) % 8;
        n[0] = (n[0] & ((1u16 << (top + 1)) - 1) as u8) | (1 << top);
        if let Some(last) = n.last_mut() {
            *last = if odd { *last | 1 } else { *last & !1 };
        }
        n
    }

    #[test]
    fn rsa_keys_accepted_exactly_as_the_rsa_crate_did() {
        let mut seed = 0x0005_eed0_fa11_u64;
        let mut moduli = Vec::new();
        for bits in [2047usize, 2048, 2049, 3072, 4096, 8191, 8192, 8193, 16] {
            moduli.push(number(bits, true, &mut seed));
            moduli.push(number(bits, false, &mut seed));
        }
        let odd = number(2048, true, &mut seed);
        moduli.push([&[0u8, 0][..], &odd].concat());
        moduli.push([&[0u8][..], &number(8193, true, &mut seed)].concat());
        moduli.extend([vec![], vec![0], vec![0; 256], vec![0xff; 1024], vec![0xff; 1025]]);
        let max = (1u64 << 33) - 1;
        let mut exponents: Vec<Vec<u8>> = [0u64, 1, 2, 3, 4, 5, 17, 65535, 65537, 65538, max - 2, max - 1, max, max + 1, max + 2, u64::MAX, u64::MAX - 1, 1 << 63 | 1]
            .iter()
            .map(|e| {
                let b = e.to_be_bytes();
                b[b.iter().position(|x| *x != 0).unwrap_or(8)..].to_vec()
            })
            .collect();
        exponents.extend([vec![], vec![0, 0, 1, 0, 1], vec![0; 12], [vec![0; 4], max.to_be_bytes().to_vec()].concat(), vec![1, 0, 0, 0, 0, 0, 0, 0, 1], vec![0xff; 300]]);
        // An exponent as wide as the modulus (and so not below it, or just below).
        exponents.push(odd.clone());
        let mut below = odd.clone();
        if let Some(l) = below.last_mut() {
            *l -= 2;
        }
        exponents.push(below);
        let mut accepted = 0;
        for n in &moduli {
            for e in &exponents {
                let want = accepted_by_the_rsa_crate(n, e);
                let jwk = serde_json::json!({ "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e) });
                let got = parse_jwk(&jwk);
                assert_eq!(got.is_some(), want, "n of {} octets {:02x?}…, e {e:02x?}", n.len(), &n[..n.len().min(4)]);
                if let Some(Jwk { key: PublicKey::Rsa(k), .. }) = got {
                    assert_eq!(k.modulus.bits(), rsa::BigUint::from_bytes_be(n).bits());
                    accepted += 1;
                }
            }
        }
        assert!(accepted > 20, "only {accepted} keys accepted: the grid does not test much");
    }
}
