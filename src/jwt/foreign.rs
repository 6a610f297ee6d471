//! Signatures checked by the host: Envoy's `verify_signature` foreign function (BoringSSL's
//! `EVP_DigestVerify`, Envoy 1.36 to 1.40), for the algorithms where that is faster than our
//! own code inside the VM. Pure: the host call is a function the glue passes in.
//!
//! What goes to the host is built here: the key's DER SubjectPublicKeyInfo (made once, when
//! the JWK is parsed) and the JOSE ECDSA signature re-encoded as DER (`crypto::der`), in the protobuf
//! `VerifySignatureArguments` { string hash_function = 1; bytes public_key = 2; bytes
//! signature = 3; bytes text = 4 }. The answer is a `VerifySignatureResult` { bool result = 1;
//! string error = 2 }.
//!
//! Only RSASSA-PKCS1-v1_5 (RS256/384/512) and ES256 are delegated: the host has no PSS padding
//! parameter (an RSA key verifies PKCS#1 v1.5 only), and EdDSA, HMAC and ES384 stay ours.
//!
//! Safety: the host can only make a signature valid when it says so in a well-formed answer
//! (`result: true` and no error). A refusal is a refusal. Any other answer (a status that is
//! not Ok, bytes that do not parse, `result: false` with an error that is not the verification
//! failure) is an error of the host, and that one signature is checked by our own code
//! instead: a host error never allows, and never denies what our code would accept.

use super::jwk::PublicKey;
use super::{verify_with, Alg};
use crate::crypto::der::es256_signature_der;

/// The name of Envoy's foreign function.
pub const FUNCTION: &str = "verify_signature";

/// How Envoy's `verify_signature` words a signature that does not verify (`EVP_DigestVerify`
/// returned 0): any other error is the host's, not the signature's.
const REFUSED: &str = "Failed to verify digest";

/// Which signature algorithms the host verifies; the rest are always ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delegation {
    /// RS256, RS384, RS512.
    pub rsa: bool,
    pub es256: bool,
}

impl Delegation {
    pub const NONE: Delegation = Delegation { rsa: false, es256: false };

    pub fn covers(self, alg: Alg) -> bool {
        match alg {
            Alg::RS256 | Alg::RS384 | Alg::RS512 => self.rsa,
            Alg::ES256 => self.es256,
            _ => false,
        }
    }
}

/// What the host said of one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostVerdict {
    Valid,
    Invalid,
    /// Anything else: the host could not tell.
    Error,
}

/// Who settled one signature, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The host answered.
    Host(bool),
    /// The host failed; our own code answered.
    Fallback(bool),
    /// Refused before the host was asked (a length or range our own code refuses too).
    Refused,
    /// Not delegated: our own code answered.
    Own(bool),
}

impl Verdict {
    pub fn accepted(self) -> bool {
        matches!(self, Verdict::Host(true) | Verdict::Fallback(true) | Verdict::Own(true))
    }
}

/// Checks one signature through the host where `delegation` says so. `call` sends the
/// serialized arguments to the host and returns its answer's bytes, or `None` on any status
/// other than Ok.
pub fn verify(call: &dyn Fn(&[u8]) -> Option<Vec<u8>>, delegation: Delegation, key: &PublicKey, alg: Alg, msg: &[u8], sig: &[u8]) -> Verdict {
    if !delegation.covers(alg) {
        return Verdict::Own(verify_with(key, alg, msg, sig));
    }
    let args = match arguments_for(key, alg, msg, sig) {
        Prepared::Ask(args) => args,
        Prepared::Refuse => return Verdict::Refused,
    };
    match call(&args).map_or(HostVerdict::Error, |bytes| decode_result(&bytes)) {
        HostVerdict::Valid => Verdict::Host(true),
        HostVerdict::Invalid => Verdict::Host(false),
        HostVerdict::Error => Verdict::Fallback(verify_with(key, alg, msg, sig)),
    }
}

enum Prepared {
    Ask(Vec<u8>),
    Refuse,
}

fn arguments_for(key: &PublicKey, alg: Alg, msg: &[u8], sig: &[u8]) -> Prepared {
    match (key, alg) {
        (PublicKey::Rsa(k), Alg::RS256 | Alg::RS384 | Alg::RS512) => {
            // RFC 8017 §8.2.2 step 1: the signature is exactly as long as the modulus.
            if sig.len() != k.modulus.size() {
                return Prepared::Refuse;
            }
            let Some(hash) = alg.pkcs1_hash() else { return Prepared::Refuse };
            Prepared::Ask(encode_arguments(hash.name(), &k.spki, sig, msg))
        }
        (PublicKey::P256(k), Alg::ES256) => {
            match es256_signature_der(sig) {
                Some(der) => Prepared::Ask(encode_arguments("sha256", &k.spki, &der, msg)),
                None => Prepared::Refuse,
            }
        }
        // A key of another type never verifies this algorithm.
        _ => Prepared::Refuse,
    }
}

// --- protobuf -----------------------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (wire type 2).
fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `VerifySignatureArguments`, every field present (empty ones too, which any decoder reads
/// as the default).
pub fn encode_arguments(hash: &str, public_key_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + hash.len() + public_key_der.len() + signature.len() + text.len());
    put_bytes(&mut out, 1, hash.as_bytes());
    put_bytes(&mut out, 2, public_key_der);
    put_bytes(&mut out, 3, signature);
    put_bytes(&mut out, 4, text);
    out
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Reads a `VerifySignatureResult`. Unknown fields are skipped; bytes that are not a message
/// are an `Error`.
pub fn decode_result(bytes: &[u8]) -> HostVerdict {
    let parsed = (|| {
        let (mut result, mut error) = (false, Vec::new());
        let mut at = 0;
        while at < bytes.len() {
            let tag = get_varint(bytes, &mut at)?;
            let (field, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => {
                    let v = get_varint(bytes, &mut at)?;
                    if field == 1 {
                        result = v != 0;
                    }
                }
                1 | 5 => at = at.checked_add(if wire == 1 { 8 } else { 4 }).filter(|&end| end <= bytes.len())?,
                2 => {
                    let len = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
                    let end = at.checked_add(len).filter(|&end| end <= bytes.len())?;
                    if field == 2 {
                        error = bytes[at..end].to_vec();
                    }
                    at = end;
                }
                _ => return None,
            }
            if field == 0 {
                return None;
            }
        }
        Some((result, error))
    })();
    match parsed {
        Some((true, error)) if error.is_empty() => HostVerdict::Valid,
        Some((false, error)) if error.starts_with(REFUSED.as_bytes()) => HostVerdict::Invalid,
        _ => HostVerdict::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_the_protobuf_message() {
        let got = encode_arguments("sha256", &[0xaa; 3], &[0xbb; 200], b"");
        let mut want = vec![0x0a, 6];
        want.extend_from_slice(b"sha256");
        want.extend_from_slice(&[0x12, 3, 0xaa, 0xaa, 0xaa]);
        // 200 = 0xc8: the varint 0xc8 0x01.
        want.extend_from_slice(&[0x1a, 0xc8, 0x01]);
        want.extend_from_slice(&[0xbb; 200]);
        want.extend_from_slice(&[0x22, 0]);
        assert_eq!(got, want);
        let mut v = Vec::new();
        put_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut at = 0;
        assert_eq!(get_varint(&v, &mut at), Some(300));
    }

    #[test]
    fn results_are_read_strictly() {
        // result: true, no error: Envoy's answer for a valid signature.
        assert_eq!(decode_result(&[0x08, 0x01]), HostVerdict::Valid);
        let refused = b"Failed to verify digest. Error code: 0";
        let mut invalid = vec![0x12, refused.len() as u8];
        invalid.extend_from_slice(refused);
        assert_eq!(decode_result(&invalid), HostVerdict::Invalid);
        // The same with an explicit `result: false` and an unknown field before it.
        let mut with_unknown = vec![0x28, 0x05, 0x08, 0x00];
        with_unknown.extend_from_slice(&invalid);
        assert_eq!(decode_result(&with_unknown), HostVerdict::Invalid);
        // Other failures are the host's: not a verdict on the signature.
        let mut other = vec![0x12, 17];
        other.extend_from_slice(b"sha3 is not suppo");
        assert_eq!(decode_result(&other), HostVerdict::Error);
        assert_eq!(decode_result(&[]), HostVerdict::Error, "an empty message says result: false, no error");
        // result: true with an error is contradictory; damaged bytes are no answer.
        let mut both = vec![0x08, 0x01];
        both.extend_from_slice(&invalid);
        assert_eq!(decode_result(&both), HostVerdict::Error);
        assert_eq!(decode_result(&[0x08]), HostVerdict::Error);
        assert_eq!(decode_result(&[0x08, 0x81]), HostVerdict::Error);
        assert_eq!(decode_result(&invalid[..invalid.len() - 1]), HostVerdict::Error);
        assert_eq!(decode_result(&[0x0b, 0x01]), HostVerdict::Error, "wire type 3");
        assert_eq!(decode_result(&[0x00, 0x01]), HostVerdict::Error, "field 0");
        assert_eq!(decode_result(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), HostVerdict::Error);
    }
}
