//! RS256/384/512 and PS256/384/512 through the filter's own RSA code (crypto::rsa_fast: the
//! verifier of PSS, which Envoy's host does not verify, and of PKCS#1 v1.5 where the host
//! verifies nothing), against the rsa crate it replaced, which stays the reference.
//!
//! Input: its first byte picks an exponent, the next bytes (up to 520) a modulus and a number
//! below it; the whole input is also the message, and its last 256 bytes a signature.
//!
//! Properties:
//! - s^e mod n of the input's modulus (odd, any length, leading zeros stripped) and exponent
//!   (1, 2, 3, 17, 65537 or the input's own odd 64-bit one) is exactly the big-integer answer;
//!   s ≥ n, and s of another length than n's octets, are refused;
//! - a signature made here with one of two fixed 2048-bit keys (fuzz/fixtures/rsa.json) (PKCS#1
//!   v1.5 or PSS with a salt as long as the hash, with a hash the input picks) verifies, and
//!   through the JWK path too;
//! - for that signature's variants (one bit flipped, s + n, s = 0, 1, n - 1, a byte less, a
//!   byte more, another hash, the message changed) and for the input's last 256 bytes as a
//!   signature: PKCS#1 v1.5 answers exactly as the rsa crate; PSS accepts only what the rsa
//!   crate accepts, and refuses beyond it only a signature at or above n (which the crate
//!   reduces mod n).
use std::sync::OnceLock;

use api_auth_filter::crypto::rsa_fast::Modulus;
use api_auth_filter::crypto::Hash;
use api_auth_filter::jwt::{self, jwk, Alg};
use crate::{b64, be_add, changed_message, fnv, hex};
use rand_chacha::rand_core::SeedableRng;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

struct Key {
    private: RsaPrivateKey,
    public: RsaPublicKey,
    ours: Modulus,
    jwk: jwk::Jwk,
    n: Vec<u8>,
}

fn fixed() -> &'static [Key; 2] {
    static K: OnceLock<[Key; 2]> = OnceLock::new();
    K.get_or_init(|| {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../../fixtures/rsa.json")).expect("fixtures/rsa.json");
        let key = |i: usize| {
            let k = &doc["keys"][i];
            let big = |name: &str| BigUint::parse_bytes(k[name].as_str().expect("a prime").as_bytes(), 16).expect("hex");
            let e = BigUint::from(k["e"].as_u64().expect("e"));
            let private = RsaPrivateKey::from_p_q(big("p"), big("q"), e).expect("a key");
            assert_eq!(private.size(), 256, "a 2048-bit key");
            let public = private.to_public_key();
            let (n, e) = (public.n().to_bytes_be(), public.e().to_bytes_be());
            let ours = Modulus::new(&n, &e).expect("a real key is a modulus");
            let jwk = jwk::parse_jwk(&serde_json::json!({ "kty": "RSA", "n": b64(&n), "e": b64(&e) })).expect("a real key parses");
            Key { private, public, ours, jwk, n }
        };
        [key(0), key(1)]
    })
}

const HASHES: [(Hash, Alg, Alg); 3] = [(Hash::Sha256, Alg::RS256, Alg::PS256), (Hash::Sha384, Alg::RS384, Alg::PS384), (Hash::Sha512, Alg::RS512, Alg::PS512)];

fn digest(hash: Hash, msg: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha256 => Sha256::digest(msg).to_vec(),
        Hash::Sha384 => Sha384::digest(msg).to_vec(),
        Hash::Sha512 => Sha512::digest(msg).to_vec(),
    }
}

fn pkcs1(hash: Hash) -> Pkcs1v15Sign {
    match hash {
        Hash::Sha256 => Pkcs1v15Sign::new::<Sha256>(),
        Hash::Sha384 => Pkcs1v15Sign::new::<Sha384>(),
        Hash::Sha512 => Pkcs1v15Sign::new::<Sha512>(),
    }
}

fn pss(hash: Hash) -> Pss {
    match hash {
        Hash::Sha256 => Pss::new::<Sha256>(),
        Hash::Sha384 => Pss::new::<Sha384>(),
        Hash::Sha512 => Pss::new::<Sha512>(),
    }
}

/// Whether `sig`, as a number, is at or above n (of the same length).
fn at_or_above(sig: &[u8], n: &[u8]) -> bool {
    sig.len() == n.len() && sig >= n
}

/// Ours against the rsa crate, for one scheme and hash; ours through `verify_with` (the JWK
/// path) must answer as the modulus itself.
fn same(key: &Key, hash: Hash, is_pss: bool, msg: &[u8], sig: &[u8], what: &str) -> bool {
    let (_, rs, ps) = HASHES.iter().find(|h| h.0 == hash).copied().expect("a hash");
    let ours = if is_pss { key.ours.verify_pss(hash, msg, sig) } else { key.ours.verify_pkcs1(hash, msg, sig) };
    let via_jwk = jwt::verify_with(&key.jwk.key, if is_pss { ps } else { rs }, msg, sig);
    assert_eq!(ours, via_jwk, "{what}: the modulus and the JWK path differ");
    let d = digest(hash, msg);
    let theirs = if is_pss { key.public.verify(pss(hash), &d, sig).is_ok() } else { key.public.verify(pkcs1(hash), &d, sig).is_ok() };
    let scheme = if is_pss { "PSS" } else { "PKCS#1 v1.5" };
    if is_pss && theirs && !ours {
        assert!(at_or_above(sig, &key.n), "{what}: {scheme} refused what the rsa crate accepts below n; sig {}", hex(sig));
    } else {
        assert_eq!(ours, theirs, "{what}: {scheme} {hash:?}: own RSA says {ours}, rsa says {theirs}; sig {}", hex(sig));
    }
    ours
}

/// One signature per input (a private-key operation is what the target spends its time on):
/// the scheme and the hash picked by the input.
fn signatures(key: &Key, msg: &[u8], seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let i = (seed >> 1) as usize % 3;
    let hash = &HASHES[i].0;
    let d = digest(*hash, msg);
    let is_pss = (seed >> 3) & 1 == 1;
    let sig = if is_pss { key.private.sign_with_rng(&mut rng, pss(*hash), &d) } else { key.private.sign(pkcs1(*hash), &d) }.expect("a signature");
    assert!(same(key, *hash, is_pss, msg, &sig, "a signature made with the key"), "a right signature failed");
    let k = sig.len();
    let mut n_minus_one = key.n.clone();
    n_minus_one[k - 1] -= 1; // n is odd
    let mut one = vec![0u8; k];
    one[k - 1] = 1;
    let mut flipped = sig.clone();
    flipped[(seed >> (8 * i)) as usize % k] ^= 1 << ((seed >> 40) % 8);
    let mut variants: Vec<(&str, Vec<u8>)> = vec![
        ("one bit flipped", flipped),
        ("s = 0", vec![0; k]),
        ("s = 1", one),
        ("s = n - 1", n_minus_one),
        ("a byte less", sig[1..].to_vec()),
        ("a byte more", [&[0u8][..], &sig].concat()),
    ];
    if let Some(plus_n) = be_add(&sig, &key.n) {
        variants.push(("s + n", plus_n));
    }
    for (what, v) in &variants {
        assert!(!same(key, *hash, is_pss, msg, v, what) || v == &sig, "{what} verified");
    }
    // Another hash, the other scheme, the message changed.
    let other = HASHES[(i + 1) % 3].0;
    assert!(!same(key, other, is_pss, msg, &sig, "another hash"));
    assert!(!same(key, *hash, !is_pss, msg, &sig, "the other scheme"));
    let changed = changed_message(msg, seed);
    assert!(!same(key, *hash, is_pss, &changed, &sig, "the message changed"), "a changed message verified");
}

/// s^e mod n for a modulus and a number from the input, against the big integers.
fn arithmetic(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let e: u64 = match first % 8 {
        0 => 1,
        1 => 2,
        2 => 3,
        3 => 17,
        4 | 5 => 65537,
        _ => fnv(data) | 1,
    };
    let len = rest.len().min(520) / 2;
    if len == 0 {
        return;
    }
    let mut n = rest[..len].to_vec();
    n[len - 1] |= 1;
    // A modulus is its octets without leading zeros (as the JWK path strips them), and a
    // signature is exactly as long: anything else is refused before any arithmetic.
    let n: Vec<u8> = n[n.iter().position(|b| *b != 0).unwrap_or(len - 1)..].to_vec();
    let s = &rest[2 * len - n.len()..2 * len];
    let Some(m) = Modulus::new(&n, &e.to_be_bytes()) else {
        panic!("an odd modulus {} with e = {e} refused", hex(&n));
    };
    assert!(m.public_op(&[&[0u8][..], s].concat()).is_none(), "a signature longer than the modulus taken");
    assert!(m.public_op(&s[1..]).is_none(), "a signature shorter than the modulus taken");
    let big_n = BigUint::from_bytes_be(&n);
    let big_s = BigUint::from_bytes_be(s);
    match m.public_op(s) {
        Some(got) => {
            assert!(big_s < big_n, "s ≥ n taken: n {} s {}", hex(&n), hex(s));
            let want = big_s.modpow(&BigUint::from(e), &big_n);
            assert_eq!(got.len(), n.len());
            assert_eq!(BigUint::from_bytes_be(&got), want, "s^{e} mod n: n {} s {}", hex(&n), hex(s));
        }
        None => assert!(big_s >= big_n, "s < n refused: n {} s {}", hex(&n), hex(s)),
    }
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    arithmetic(data);
    let seed = fnv(data);
    let key = &fixed()[(seed & 1) as usize];
    signatures(key, data, seed);
    if data.len() >= 256 {
        let tail = &data[data.len() - 256..];
        for (hash, _, _) in HASHES {
            for is_pss in [false, true] {
                same(key, hash, is_pss, data, tail, "the input's bytes as a signature");
            }
        }
    }
}
