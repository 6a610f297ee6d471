//! The filter's own RSA code (crypto/src/rsa_fast.rs, reached through the JWK parser and
//! `jwt::verify_with`) against the `rsa` crate it replaced, a dev-dependency only: random keys
//! of 2048 to 4096 bits with several odd exponents, RS256/384/512 and PS256/384/512, valid and
//! tampered signatures. Then PSS encodings built by hand, one rule of RFC 8017 §9.1.2 broken
//! each, so that every check of EMSA-PSS-VERIFY is shown to matter.

use api_auth_filter::jwt::{self, jwk, Alg, PublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The JWK of a public key, parsed by the filter.
fn filter_key(pk: &RsaPublicKey) -> PublicKey {
    let jwk = serde_json::json!({
        "kty": "RSA",
        "n": URL_SAFE_NO_PAD.encode(pk.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(pk.e().to_bytes_be()),
    });
    jwk::parse_jwk(&jwk).expect("the filter parses the key").key
}

fn hashed(alg: Alg, msg: &[u8]) -> Vec<u8> {
    match alg {
        Alg::RS256 | Alg::PS256 => Sha256::digest(msg).to_vec(),
        Alg::RS384 | Alg::PS384 => Sha384::digest(msg).to_vec(),
        _ => Sha512::digest(msg).to_vec(),
    }
}

fn sign(key: &RsaPrivateKey, alg: Alg, msg: &[u8], rng: &mut ChaCha20Rng) -> Vec<u8> {
    let h = hashed(alg, msg);
    match alg {
        Alg::RS256 => key.sign(Pkcs1v15Sign::new::<Sha256>(), &h),
        Alg::RS384 => key.sign(Pkcs1v15Sign::new::<Sha384>(), &h),
        Alg::RS512 => key.sign(Pkcs1v15Sign::new::<Sha512>(), &h),
        Alg::PS256 => key.sign_with_rng(rng, Pss::new_with_salt::<Sha256>(32), &h),
        Alg::PS384 => key.sign_with_rng(rng, Pss::new_with_salt::<Sha384>(48), &h),
        Alg::PS512 => key.sign_with_rng(rng, Pss::new_with_salt::<Sha512>(64), &h),
        _ => unreachable!(),
    }
    .unwrap()
}

/// The `rsa` crate's verdict, with the salt length JWS fixes (RFC 7518 §3.5).
fn reference(pk: &RsaPublicKey, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
    let h = hashed(alg, msg);
    match alg {
        Alg::RS256 => pk.verify(Pkcs1v15Sign::new::<Sha256>(), &h, sig),
        Alg::RS384 => pk.verify(Pkcs1v15Sign::new::<Sha384>(), &h, sig),
        Alg::RS512 => pk.verify(Pkcs1v15Sign::new::<Sha512>(), &h, sig),
        Alg::PS256 => pk.verify(Pss::new_with_salt::<Sha256>(32), &h, sig),
        Alg::PS384 => pk.verify(Pss::new_with_salt::<Sha384>(48), &h, sig),
        Alg::PS512 => pk.verify(Pss::new_with_salt::<Sha512>(64), &h, sig),
        _ => unreachable!(),
    }
    .is_ok()
}

const RSA_ALGS: [Alg; 6] = [Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512];

fn differential(bits: usize, e: u64, seed: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let key = RsaPrivateKey::new_with_exp(&mut rng, bits, &BigUint::from(e)).unwrap();
    let pk = key.to_public_key();
    assert_eq!(pk.n().bits(), bits);
    let ours = filter_key(&pk);
    for alg in RSA_ALGS {
        for round in 0..4 {
            let mut msg = vec![0u8; 20 + round * 37];
            rng.fill_bytes(&mut msg);
            let sig = sign(&key, alg, &msg, &mut rng);
            let mut cases = vec![(sig.clone(), msg.clone(), alg, true)];
            // One bit of the signature, one of the message.
            let mut bad = sig.clone();
            let at = rng.next_u32() as usize % bad.len();
            bad[at] ^= 1 << (rng.next_u32() % 8);
            cases.push((bad, msg.clone(), alg, false));
            let mut other = msg.clone();
            other[round] ^= 0x40;
            cases.push((sig.clone(), other, alg, false));
            // The signature under every other RSA algorithm (another hash, the other padding).
            for wrong in RSA_ALGS.into_iter().filter(|a| *a != alg) {
                cases.push((sig.clone(), msg.clone(), wrong, false));
            }
            // Random bytes, and lengths one off.
            let mut random = vec![0u8; sig.len()];
            rng.fill_bytes(&mut random);
            cases.push((random, msg.clone(), alg, false));
            cases.push((sig[1..].to_vec(), msg.clone(), alg, false));
            cases.push(([&[0u8][..], &sig].concat(), msg.clone(), alg, false));
            for (n, (s, m, a, want)) in cases.iter().enumerate() {
                let r = reference(&pk, *a, m, s);
                let got = jwt::verify_with(&ours, *a, m, s);
                assert_eq!(got, r, "{bits} bits, e {e}, {alg:?} signature as {a:?}, round {round}, case {n}");
                assert_eq!(got, *want, "{bits} bits, e {e}, {alg:?} as {a:?}, round {round}, case {n}");
            }
        }
    }
}

#[test]
fn differential_2048() {
    differential(2048, 65537, 1);
    differential(2048, 3, 2);
    // The largest exponent the parser accepts (as the rsa crate did), 2³³ - 1.
    differential(2048, (1 << 33) - 1, 3);
}

#[test]
fn differential_odd_sizes() {
    // 8·m + 1 bits: PSS's encoded message is one octet shorter than the modulus.
    differential(2049, 65537, 4);
    differential(2055, 17, 5);
}

#[test]
fn differential_3072() {
    differential(3072, 65537, 6);
}

#[test]
fn differential_4096() {
    differential(4096, 65537, 7);
    differential(4096, 5, 8);
}

// --- PSS encodings built by hand ----------------------------------------------------------

/// What to break in an encoding.
#[derive(Clone, Copy, Default, Debug)]
struct Break {
    /// The trailer instead of 0xbc.
    trailer: Option<u8>,
    /// The separator after PS instead of 0x01.
    separator: Option<u8>,
    /// A non-zero octet in PS.
    ps_junk: bool,
    /// The bits of maskedDB's first octet above emBits set.
    top_bits: bool,
    /// The octet in front of EM (moduli of 8·m + 1 bits) 0x01 instead of zero.
    front: bool,
}

fn mgf1(hash: fn(&[u8]) -> Vec<u8>, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut counter = 0u32;
    while out.len() < len {
        out.extend(hash(&[seed, &counter.to_be_bytes()[..]].concat()));
        counter += 1;
    }
    out.truncate(len);
    out
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with `salt`, broken as `b` says, signed with the private
/// exponent; `None` when the integer it makes is not below n (try another salt).
fn forge(key: &RsaPrivateKey, hash: fn(&[u8]) -> Vec<u8>, msg: &[u8], salt: &[u8], b: Break) -> Option<Vec<u8>> {
    let mod_bits = key.n().bits();
    let k = mod_bits.div_ceil(8);
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    let m_hash = hash(msg);
    let h_len = m_hash.len();
    let h = hash(&[&[0u8; 8][..], &m_hash, salt].concat());
    let mut db = vec![0u8; em_len - salt.len() - h_len - 2];
    if b.ps_junk {
        let at = db.len() / 2;
        db[at] = 0x20;
    }
    db.push(b.separator.unwrap_or(0x01));
    db.extend_from_slice(salt);
    let mask = mgf1(hash, &h, db.len());
    let mut masked: Vec<u8> = db.iter().zip(&mask).map(|(d, m)| d ^ m).collect();
    let unused = 8 * em_len - em_bits;
    let top = (0xffu16 << (8 - unused)) as u8;
    masked[0] &= !top;
    if b.top_bits {
        assert_ne!(top, 0, "no unused bits at this size");
        masked[0] |= top;
    }
    let mut em = Vec::with_capacity(k);
    if k > em_len {
        em.push(u8::from(b.front));
    } else {
        assert!(!b.front, "no front octet at this size");
    }
    em.extend(masked);
    em.extend(h);
    em.push(b.trailer.unwrap_or(0xbc));
    assert_eq!(em.len(), k);
    let m = BigUint::from_bytes_be(&em);
    if &m >= key.n() {
        return None;
    }
    let s = m.modpow(key.d(), key.n()).to_bytes_be();
    Some([vec![0u8; k - s.len()], s].concat())
}

/// A signature for `b`, trying salts until the integer fits below n.
fn forged(key: &RsaPrivateKey, hash: fn(&[u8]) -> Vec<u8>, msg: &[u8], salt_len: usize, b: Break, rng: &mut ChaCha20Rng) -> Vec<u8> {
    (0..64)
        .find_map(|_| {
            let mut salt = vec![0u8; salt_len];
            rng.fill_bytes(&mut salt);
            forge(key, hash, msg, &salt, b)
        })
        .unwrap()
}

fn sha256(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn sha512(b: &[u8]) -> Vec<u8> {
    Sha512::digest(b).to_vec()
}

/// Each rule of EMSA-PSS-VERIFY broken alone: the filter refuses. Where the `rsa` crate
/// agrees the assertion says so; where it accepted, the difference is asserted too. Fails if
/// any check of `Modulus::verify_pss` is removed (each was, in turn, while writing it).
#[test]
fn pss_each_rule_matters() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    for bits in [2048usize, 2049] {
        let key = RsaPrivateKey::new(&mut rng, bits).unwrap();
        let pk = key.to_public_key();
        let ours = filter_key(&pk);
        let msg = b"eyJhbGciOiJQUzI1NiJ9.eyJzdWIiOiJwc3MifQ";
        let verify = |alg: Alg, sig: &[u8]| jwt::verify_with(&ours, alg, msg, sig);

        // The honest encoding, made here: both accept (this encoder is right).
        for (alg, hash, h_len) in [(Alg::PS256, sha256 as fn(&[u8]) -> Vec<u8>, 32), (Alg::PS512, sha512, 64)] {
            let sig = forged(&key, hash, msg, h_len, Break::default(), &mut rng);
            assert!(verify(alg, &sig), "{bits}: honest {alg:?}");
            assert!(reference(&pk, alg, msg, &sig), "{bits}: honest {alg:?} (rsa crate)");
        }

        // s + n, where it still fits in k octets (some honest signature's s is small enough):
        // the same s mod n. RFC 8017 §5.2.2 step 1 refuses it; the rsa crate's PSS reduced it
        // and accepted.
        let s_plus_n = (0..256)
            .map(|_| forged(&key, sha256, msg, 32, Break::default(), &mut rng))
            .map(|sig| BigUint::from_bytes_be(&sig) + pk.n())
            .find(|s| s.bits() <= 8 * pk.size())
            .expect("an s below 2^(8k) - n");
        let big = s_plus_n.to_bytes_be();
        let big = [vec![0u8; pk.size() - big.len()], big].concat();
        assert!(!verify(Alg::PS256, &big), "{bits}: s + n accepted");
        assert!(reference(&pk, Alg::PS256, msg, &big), "{bits}: the rsa crate now refuses s + n: update this note");

        // Salt lengths other than the hash's: valid PSS signatures, but not PS256.
        for salt_len in [0usize, 20, 31, 33, 64] {
            let sig = forged(&key, sha256, msg, salt_len, Break::default(), &mut rng);
            assert!(!verify(Alg::PS256, &sig), "{bits}: salt of {salt_len} octets accepted");
            assert!(!reference(&pk, Alg::PS256, msg, &sig));
            let h = Sha256::digest(msg);
            assert!(pk.verify(Pss::new_with_salt::<Sha256>(salt_len), &h, &sig).is_ok(), "{bits}: salt {salt_len} encoding wrong");
        }

        let broken = [
            ("trailer 0xbd", Break { trailer: Some(0xbd), ..Break::default() }),
            ("trailer 0x00", Break { trailer: Some(0x00), ..Break::default() }),
            ("separator 0x02", Break { separator: Some(0x02), ..Break::default() }),
            ("separator 0x00", Break { separator: Some(0x00), ..Break::default() }),
            ("non-zero PS", Break { ps_junk: true, ..Break::default() }),
        ];
        for (what, b) in broken {
            let sig = forged(&key, sha256, msg, 32, b, &mut rng);
            assert!(!verify(Alg::PS256, &sig), "{bits}: {what} accepted");
            assert!(!reference(&pk, Alg::PS256, msg, &sig), "{bits}: {what} (rsa crate)");
        }
        if bits % 8 == 0 {
            // emBits = 2047: the top bit of EM must be zero (step 6).
            let sig = forged(&key, sha256, msg, 32, Break { top_bits: true, ..Break::default() }, &mut rng);
            assert!(!verify(Alg::PS256, &sig), "{bits}: top bit accepted");
            assert!(!reference(&pk, Alg::PS256, msg, &sig));
        } else {
            // emLen = k - 1: m must fit in emLen octets (§8.1.2 step 2c). The rsa crate
            // dropped the octet unread.
            let sig = forged(&key, sha256, msg, 32, Break { front: true, ..Break::default() }, &mut rng);
            assert!(!verify(Alg::PS256, &sig), "{bits}: front octet accepted");
            assert!(reference(&pk, Alg::PS256, msg, &sig), "{bits}: the rsa crate now refuses the front octet: update this note");
        }
    }
}
