//! Signatures checked by the host: Envoy's `verify_signature` foreign function (BoringSSL's
//! `EVP_DigestVerify`, Envoy 1.36 to 1.40), for the algorithms where that is faster than our
//! own code inside the VM. Pure: the host call is a function the glue passes in.
//!
//! What goes to the host is built here: the key's DER SubjectPublicKeyInfo (made once, when
//! the JWK is parsed), the JOSE ECDSA signature re-encoded as DER, and the protobuf
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
            if sig.len() != rsa::traits::PublicKeyParts::size(&k.key) {
                return Prepared::Refuse;
            }
            let hash = match alg {
                Alg::RS256 => "sha256",
                Alg::RS384 => "sha384",
                _ => "sha512",
            };
            Prepared::Ask(encode_arguments(hash, &k.spki, sig, msg))
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

// --- DER ----------------------------------------------------------------------------------

/// The P-256 group order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
    0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn put_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (be.len() - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
}

fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    put_len(out, content.len());
    out.extend_from_slice(content);
}

/// A non-negative big-endian integer as a DER INTEGER: no leading zero bytes, one 0x00 when
/// the first bit is set (it would read as negative), zero as the single byte 0x00.
fn put_unsigned(out: &mut Vec<u8>, be: &[u8]) {
    let skip = be.iter().take_while(|&&b| b == 0).count();
    let digits = &be[skip..];
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    tlv(out, 0x02, &content);
}

/// A JOSE ES256 signature (r || s, 32 bytes each, RFC 7518 §3.4) as the DER `ECDSA-Sig-Value`
/// BoringSSL reads. `None` when it is not 64 bytes or r or s is not in [1, n-1]: our own
/// verifier refuses exactly these before any arithmetic.
pub fn es256_signature_der(sig: &[u8]) -> Option<Vec<u8>> {
    if sig.len() != 64 {
        return None;
    }
    let (r, s) = sig.split_at(32);
    let in_range = |v: &[u8]| v.iter().any(|&b| b != 0) && v < &P256_N[..];
    if !in_range(r) || !in_range(s) {
        return None;
    }
    let mut ints = Vec::with_capacity(70);
    put_unsigned(&mut ints, r);
    put_unsigned(&mut ints, s);
    let mut out = Vec::with_capacity(72);
    tlv(&mut out, 0x30, &ints);
    Some(out)
}

/// rsaEncryption (1.2.840.113549.1.1.1), its AlgorithmIdentifier with NULL parameters.
const RSA_ALGORITHM: [u8; 15] = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
/// id-ecPublicKey (1.2.840.10045.2.1) with the named curve prime256v1 (1.2.840.10045.3.1.7).
const P256_ALGORITHM: [u8; 21] =
    [0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    // The BIT STRING: no unused bits, then the key.
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    let mut body = algorithm.to_vec();
    tlv(&mut body, 0x03, &bits);
    let mut out = Vec::with_capacity(body.len() + 4);
    tlv(&mut out, 0x30, &body);
    out
}

/// The SubjectPublicKeyInfo of an RSA key (RFC 8017 A.1.1 `RSAPublicKey` in RFC 5280's
/// wrapping), from the JWK's big-endian `n` and `e`.
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut ints = Vec::with_capacity(n.len() + e.len() + 12);
    put_unsigned(&mut ints, n);
    put_unsigned(&mut ints, e);
    let mut key = Vec::with_capacity(ints.len() + 4);
    tlv(&mut key, 0x30, &ints);
    spki(&RSA_ALGORITHM, &key)
}

/// The SubjectPublicKeyInfo of a P-256 key (RFC 5480), uncompressed point, from the JWK's
/// 32-byte `x` and `y`.
pub fn p256_spki(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    spki(&P256_ALGORITHM, &point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

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

    #[test]
    fn es256_signatures_become_minimal_der() {
        let mut sig = [0u8; 64];
        sig[31] = 1;
        sig[32] = 0x80;
        // r = 1: one byte; s has its top bit set: a 0x00 before it.
        let der = es256_signature_der(&sig).unwrap();
        let mut want = vec![0x30, 3 + 2 + 33, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80];
        want.extend_from_slice(&[0; 31]);
        assert_eq!(der, want);
        // Leading zeros are dropped, but a byte below 0x80 needs no pad.
        let mut sig = [0x11u8; 64];
        sig[0] = 0;
        sig[1] = 0x7f;
        let der = es256_signature_der(&sig).unwrap();
        assert_eq!(&der[..4], &[0x30, 2 + 31 + 2 + 32, 0x02, 31]);
        assert_eq!(der[4], 0x7f);
        assert_eq!(&der[4 + 31..4 + 33], &[0x02, 32]);
        // n - 1 is the largest value in range, n is out.
        let mut n_minus_1 = P256_N;
        n_minus_1[31] -= 1;
        let ok: Vec<u8> = [n_minus_1, n_minus_1].concat();
        let der = es256_signature_der(&ok).unwrap();
        assert_eq!(&der[..5], &[0x30, 70, 0x02, 33, 0x00]);
        assert!(es256_signature_der(&[P256_N, n_minus_1].concat()).is_none(), "r = n");
        assert!(es256_signature_der(&[n_minus_1, P256_N].concat()).is_none(), "s = n");
        assert!(es256_signature_der(&[[0xff; 32], n_minus_1].concat()).is_none(), "r > n");
        assert!(es256_signature_der(&[[0; 32], n_minus_1].concat()).is_none(), "r = 0");
        assert!(es256_signature_der(&[n_minus_1, [0; 32]].concat()).is_none(), "s = 0");
        assert!(es256_signature_der(&ok[..63]).is_none());
        assert!(es256_signature_der(&[ok.clone(), vec![0]].concat()).is_none());
        assert!(es256_signature_der(&[]).is_none());
    }

    #[test]
    fn public_keys_are_subject_public_key_infos() {
        // Wycheproof's ecdsa_secp256r1_sha256_p1363 first key, `publicKeyDer`.
        let der = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200042927b10512bae3eddcfe467828128bad2903269919f7086069c8c4df6c732838c7787964eaac00e5921fb1498a60f4606766b3d9685001558d1a974e7341513e");
        assert_eq!(p256_spki(&der[27..59], &der[59..91]), der);
        // A 2048-bit modulus with its top bit set: INTEGER 0x00 || n, lengths in long form.
        let n = [0xc5u8; 256];
        let got = rsa_spki(&n, &[0x01, 0x00, 0x01]);
        let mut want = hex("30820122300d06092a864886f70d01010105000382010f003082010a0282010100");
        want.extend_from_slice(&n);
        want.extend_from_slice(&hex("0203010001"));
        assert_eq!(got, want);
        // Leading zeros of n are dropped (a JWK may carry them).
        assert_eq!(rsa_spki(&[[0u8].as_slice(), &n].concat(), &[0x01, 0x00, 0x01]), want);
    }
}
