//! EdDSA through the filter's own Ed25519 code (crypto::ed25519, used by jwt::verify_with),
//! against the ed25519-compact crate it replaced, which stays the reference.
//!
//! Input: the message (any bytes); its last 64 bytes also serve as a signature, and its last 32
//! as a public key.
//!
//! Properties:
//! - a signature made here (with one of two fixed keys or, for a quarter of the inputs, a key
//!   seeded from the input) verifies;
//! - for that signature's variants: S + L (the same point, a non-canonical scalar), R replaced
//!   by small-order points (identity, order 2, order 4) and by encodings of no point or with
//!   y ≥ p, R and S swapped, one bit flipped, 63 bytes, the message changed; and for the input's
//!   own 64 bytes as a signature: verify_with answers exactly what ed25519-compact answers;
//! - a JWK `x` from the input is a key exactly when it is 32 bytes (as ed25519-compact took
//!   it), and verifies exactly what ed25519-compact verifies with it: nothing for a small-order
//!   or non-canonical key.
use std::sync::OnceLock;

use api_auth_filter::jwt::{self, jwk, Alg, PublicKey};
use crate::{b64, changed_message, fnv, hex};
use ed25519_compact::{KeyPair, PublicKey as Pk, Seed, Signature};
use sha2::Digest;

/// L, the order of the base point, little-endian: 2²⁵² + 27742317777372353535851937790883648493
/// (checked against ed25519-compact in `fixed`: S = L - 1 is canonical, S = L is not).
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0x10,
];

/// Encodings that are no usable R or A: the identity (y = 1), a point of order 2 (y = -1),
/// the points of order 4 (y = 0, either sign), y = p and y = p + 1 (non-canonical), all ones.
fn not_usable() -> Vec<[u8; 32]> {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    let zero = [0u8; 32];
    let mut zero_neg = [0u8; 32];
    zero_neg[31] = 0x80;
    let mut p = minus_one;
    p[0] = 0xed;
    let mut p1 = minus_one;
    p1[0] = 0xee;
    vec![identity, minus_one, zero, zero_neg, p, p1, [0xff; 32]]
}

struct Pair {
    kp: KeyPair,
    jwk: jwk::Jwk,
}

fn pair(kp: KeyPair) -> Pair {
    let doc = serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(kp.pk.as_ref()) });
    let jwk = jwk::parse_jwk(&doc).expect("a real key parses");
    assert!(matches!(&jwk.key, PublicKey::Ed25519(_)), "a real key is an Ed25519 key");
    Pair { kp, jwk }
}

fn fixed() -> &'static [Pair; 2] {
    static K: OnceLock<[Pair; 2]> = OnceLock::new();
    K.get_or_init(|| {
        let kp = |n: u8| KeyPair::from_seed(Seed::new([n; 32]));
        let pairs = [pair(kp(0x5a)), pair(kp(0xa5))];
        // L is the group's order: a signature whose S is L is refused, L - 1 is read.
        let sig = pairs[0].kp.sk.sign(b"L", None);
        let mut l_minus_one = L;
        l_minus_one[0] -= 1;
        for (s, canonical) in [(L, false), (l_minus_one, true)] {
            let v = [&sig[..32], &s[..]].concat();
            let answer = Signature::from_slice(&v).map(|v| pairs[0].kp.pk.verify(b"L", &v));
            let refused_as_noncanonical = matches!(answer, Ok(Err(ed25519_compact::Error::NonCanonical)));
            assert_eq!(refused_as_noncanonical, !canonical, "S = L{}", if canonical { " - 1" } else { "" });
        }
        pairs
    })
}

fn reference(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(pk) = Pk::from_slice(pk) else { return false };
    Signature::from_slice(sig).is_ok_and(|s| pk.verify(msg, &s).is_ok())
}

/// `key` (ours) and `pk` (its 32 bytes) are the same key.
fn same(key: &jwk::Jwk, pk: &[u8], msg: &[u8], sig: &[u8], what: &str) -> bool {
    let ours = jwt::verify_with(&key.key, Alg::EdDSA, msg, sig);
    let theirs = reference(pk, msg, sig);
    assert_eq!(ours, theirs, "{what}: own Ed25519 says {ours}, ed25519-compact says {theirs}; key {} sig {}", hex(pk), hex(sig));
    ours
}

/// S + L on 32-byte little-endian numbers (below 2²⁵⁶ for any S < L).
fn plus_l(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

fn check(key: &Pair, msg: &[u8], seed: u64) {
    let pk = key.kp.pk.as_ref();
    let sig = key.kp.sk.sign(msg, None).to_vec();
    assert!(same(&key.jwk, pk, msg, &sig, "a signature made with the key"), "a right signature failed");
    let (r, s) = sig.split_at(32);
    let mut variants: Vec<(&str, Vec<u8>)> = vec![
        ("S + L", [r, &plus_l(s)[..]].concat()),
        ("R and S swapped", [s, r].concat()),
        ("63 bytes", sig[..63].to_vec()),
    ];
    for bad in not_usable() {
        variants.push(("R of small order or no point", [&bad[..], s].concat()));
    }
    let mut flipped = sig.clone();
    flipped[(seed % 64) as usize] ^= 1 << ((seed >> 8) % 8);
    variants.push(("one bit flipped", flipped));
    for (what, v) in &variants {
        same(&key.jwk, pk, msg, v, what);
    }
    let other = changed_message(msg, seed);
    assert!(!same(&key.jwk, pk, &other, &sig, "the message changed"), "a changed message verified");
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    let seed = fnv(data);
    let keys = fixed();
    let key = &keys[(seed & 1) as usize];
    check(key, data, seed);

    if data.len() >= 64 {
        let tail = &data[data.len() - 64..];
        same(&key.jwk, key.kp.pk.as_ref(), data, tail, "the input's bytes as a signature");
        same(&key.jwk, key.kp.pk.as_ref(), &data[..data.len() - 64], tail, "the input's bytes as a signature");
    }
    if data.len() >= 32 {
        // A key from the input (or a key no point has, on every eighth input): any 32 bytes are
        // a key, which verifies exactly what ed25519-compact verifies with them.
        let mut x = [0u8; 32];
        x.copy_from_slice(&data[data.len() - 32..]);
        if seed & 0b111_000 == 0 {
            x = not_usable()[(seed >> 6) as usize % 7];
        }
        let doc = serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(x) });
        let k = jwk::parse_jwk(&doc).expect("32 bytes are a key");
        let sig = key.kp.sk.sign(data, None);
        same(&k, &x, data, &sig[..], "another key's signature");
        let body = &data[..data.len() - 32];
        if body.len() >= 64 {
            same(&k, &x, body, &body[body.len() - 64..], "the input's bytes as a signature, with its key");
        }
    }
    let short = jwk::parse_jwk(&serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(&data[..data.len().min(31)]) }));
    assert!(short.is_none(), "a key of fewer than 32 bytes");
    if seed & 0b110 == 0 {
        // A key of the input's own.
        let mut s = [0u8; 32];
        s.copy_from_slice(&sha2::Sha256::digest(data)[..]);
        check(&pair(KeyPair::from_seed(Seed::new(s))), data, seed.rotate_left(29));
    }
}
