//! ES384 through the filter's own P-384 code (crypto::p384, used by jwt::verify_with), against
//! the p384 crate it replaced, which stays the reference.
//!
//! Input: the message (any bytes); its last 96 bytes also serve as a raw signature and as a
//! raw public point (x || y).
//!
//! Properties:
//! - a signature made here (RFC 6979, with one of two fixed keys or, for a quarter of the inputs,
//!   a key derived from the input) verifies;
//! - for that signature's variants: (r, n - s), r + n, s + n, r or s zero or n, r and s swapped,
//!   one bit flipped, 95 bytes, the message changed; and for the input's own 96 bytes as a
//!   signature: verify_with answers exactly what the p384 crate answers;
//! - a JWK point is accepted exactly when the p384 crate accepts it (on the curve, below p), and
//!   then verifies what the p384 crate verifies with it.
use std::sync::OnceLock;

use api_auth_filter::jwt::{self, jwk, Alg, PublicKey};
use crate::{b64, be_sub, changed_message, ecdsa_variants, fnv, hex};
use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha384};

/// The order of P-384, big-endian (checked against the p384 crate in `fixed`).
const N: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf, 0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec,
    0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

struct Pair {
    sk: SigningKey,
    vk: VerifyingKey,
    jwk: jwk::Jwk,
}

fn pair(sk: SigningKey) -> Pair {
    let point = sk.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    let doc = serde_json::json!({ "kty": "EC", "crv": "P-384", "x": b64(&bytes[1..49]), "y": b64(&bytes[49..97]) });
    let jwk = jwk::parse_jwk(&doc).expect("a real point parses");
    assert!(matches!(&jwk.key, PublicKey::P384(_)), "a real point is a P-384 key");
    let vk = *sk.verifying_key();
    Pair { sk, vk, jwk }
}

fn fixed() -> &'static [Pair; 2] {
    static K: OnceLock<[Pair; 2]> = OnceLock::new();
    K.get_or_init(|| {
        // N is the group's order: n - 1 is a scalar, n is not.
        assert!(SigningKey::from_slice(&be_sub(&N, &one()).expect("n - 1")).is_ok(), "n - 1 is a scalar");
        assert!(SigningKey::from_slice(&N).is_err(), "n is no scalar");
        let key = |label: &str| pair(SigningKey::from_slice(&Sha384::digest(label.as_bytes())).expect("scalar"));
        [key("api-auth-filter fuzz es384 0"), key("api-auth-filter fuzz es384 1")]
    })
}

fn one() -> [u8; 48] {
    let mut v = [0u8; 48];
    v[47] = 1;
    v
}

fn reference(vk: &VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
    Signature::from_slice(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok())
}

/// `key` (ours) and `vk` (the p384 crate's) are the same point.
fn same(key: &jwk::Jwk, vk: &VerifyingKey, msg: &[u8], sig: &[u8], what: &str) -> bool {
    let ours = jwt::verify_with(&key.key, Alg::ES384, msg, sig);
    let theirs = reference(vk, msg, sig);
    assert_eq!(ours, theirs, "{what}: own P-384 says {ours}, p384 says {theirs}; sig {}", hex(sig));
    ours
}

fn check(key: &Pair, msg: &[u8], seed: u64) {
    let sig: Signature = key.sk.sign(msg);
    let sig = sig.to_bytes().to_vec();
    assert!(same(&key.jwk, &key.vk, msg, &sig, "a signature made with the key"), "a right signature failed");
    for (what, v) in &ecdsa_variants(&sig, &N, seed) {
        same(&key.jwk, &key.vk, msg, v, what);
    }
    let other = changed_message(msg, seed);
    assert!(!same(&key.jwk, &key.vk, &other, &sig, "the message changed"), "a changed message verified");
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    let seed = fnv(data);
    let keys = fixed();
    let key = &keys[(seed & 1) as usize];
    check(key, data, seed);

    if data.len() >= 96 {
        let tail = &data[data.len() - 96..];
        same(&key.jwk, &key.vk, data, tail, "the input's bytes as a signature");
        same(&key.jwk, &key.vk, &data[..data.len() - 96], tail, "the input's bytes as a signature");
        // A point from the input: accepted exactly when the reference accepts it.
        let doc = serde_json::json!({ "kty": "EC", "crv": "P-384", "x": b64(&tail[..48]), "y": b64(&tail[48..]) });
        let ours = jwk::parse_jwk(&doc);
        let theirs = VerifyingKey::from_sec1_bytes(&[&[4u8][..], tail].concat()).ok();
        assert_eq!(ours.is_some(), theirs.is_some(), "point {}", hex(tail));
        if let (Some(k), Some(vk)) = (ours, theirs) {
            assert!(matches!(&k.key, PublicKey::P384(_)));
            let sig: Signature = key.sk.sign(data);
            same(&k, &vk, data, &sig.to_bytes(), "another key's signature");
        }
    }
    if seed & 0b110 == 0 {
        // A key of the input's own.
        if let Ok(sk) = SigningKey::from_slice(&Sha384::digest(data)) {
            check(&pair(sk), data, seed.rotate_left(29));
        }
    }
}
