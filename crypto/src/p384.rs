//! ECDSA P-384 verification for ES384 (RFC 7518 §3.4: r || s of 48 bytes each, SHA-384;
//! FIPS 186-5 §6.4.2), on `monty`'s arithmetic: Jacobian coordinates, u1·G + u2·Q by
//! Shamir's trick over one table {G, Q, G + Q}, one field inversion for x(R).
//!
//! Verification only: nothing secret is involved, so variable time is fine. Checked against
//! every Wycheproof P1363 vector (tests/wycheproof.rs) and, differentially, against the `p384`
//! crate (below).

use sha2::{Digest, Sha384};

use super::monty::{from_be, is_zero, lt, sub_words, Monty, Words};

type W = Words<12>;

/// The field: p = 2³⁸⁴ - 2¹²⁸ - 2⁹⁶ + 2³² - 1.
static FP: Monty<12> = Monty::new(
    [0xffffffff, 0x00000000, 0x00000000, 0xffffffff, 0xfffffffe, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0x00000001, 0xfffffffe, 0x00000000, 0x00000002, 0x00000000, 0xfffffffe, 0x00000000, 0x00000002, 0x00000001, 0x00000000, 0x00000000, 0x00000000],
);
/// The group order n.
static FN: Monty<12> = Monty::new(
    [0xccc52973, 0xecec196a, 0x48b0a77a, 0x581a0db2, 0xf4372ddf, 0xc7634d81, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    [0x19b409a9, 0x2d319b24, 0xdf1aa419, 0xff3d81e5, 0xfcb82947, 0xbc3e483a, 0x4aab1cc5, 0xd40d4917, 0x28266895, 0x3fb05b7a, 0x2b39bf21, 0x0c84ee01],
);
/// y² = x³ - 3x + b.
const B: W = [0xd3ec2aef, 0x2a85c8ed, 0x8a2ed19d, 0xc656398d, 0x5013875a, 0x0314088f, 0xfe814112, 0x181d9c6e, 0xe3f82d19, 0x988e056b, 0xe23ee7e4, 0xb3312fa7];
const GX: W = [0x72760ab7, 0x3a545e38, 0xbf55296c, 0x5502f25d, 0x82542a38, 0x59f741e0, 0x8ba79b98, 0x6e1d3b62, 0xf320ad74, 0x8eb1c71e, 0xbe8b0537, 0xaa87ca22];
const GY: W = [0x90ea0e5f, 0x7a431d7c, 0x1d7e819d, 0x0a60b1ce, 0xb5f0b8c0, 0xe9da3113, 0x289a147c, 0xf8f41dbd, 0x9292dc29, 0x5d9e98bf, 0x96262c6f, 0x3617de4a];

/// A point in Jacobian coordinates (x = X/Z², y = Y/Z³), in Montgomery form; Z = 0 is the
/// point at infinity.
#[derive(Clone, Copy)]
struct Jac {
    x: W,
    y: W,
    z: W,
}

impl Jac {
    fn infinity() -> Jac {
        Jac { x: FP.one(), y: FP.one(), z: [0; 12] }
    }

    fn is_infinity(&self) -> bool {
        is_zero(&self.z)
    }
}

fn dbl(p: &Jac) -> Jac {
    let f = &FP;
    if p.is_infinity() || is_zero(&p.y) {
        return Jac::infinity();
    }
    // dbl-2001-b (a = -3).
    let delta = f.sqr(&p.z);
    let gamma = f.sqr(&p.y);
    let beta = f.mul(&p.x, &gamma);
    let t = f.mul(&f.sub(&p.x, &delta), &f.add(&p.x, &delta));
    let alpha = f.add(&f.add(&t, &t), &t);
    let beta4 = f.add(&beta, &beta);
    let beta4 = f.add(&beta4, &beta4);
    let beta8 = f.add(&beta4, &beta4);
    let x = f.sub(&f.sqr(&alpha), &beta8);
    let yz = f.add(&p.y, &p.z);
    let z = f.sub(&f.sub(&f.sqr(&yz), &gamma), &delta);
    let g2 = f.sqr(&gamma);
    let g2_2 = f.add(&g2, &g2);
    let g2_4 = f.add(&g2_2, &g2_2);
    let g2_8 = f.add(&g2_4, &g2_4);
    let y = f.sub(&f.mul(&alpha, &f.sub(&beta4, &x)), &g2_8);
    Jac { x, y, z }
}

fn add(p: &Jac, q: &Jac) -> Jac {
    let f = &FP;
    if p.is_infinity() {
        return *q;
    }
    if q.is_infinity() {
        return *p;
    }
    let z1z1 = f.sqr(&p.z);
    let z2z2 = f.sqr(&q.z);
    let u1 = f.mul(&p.x, &z2z2);
    let u2 = f.mul(&q.x, &z1z1);
    let s1 = f.mul(&p.y, &f.mul(&q.z, &z2z2));
    let s2 = f.mul(&q.y, &f.mul(&p.z, &z1z1));
    let h = f.sub(&u2, &u1);
    let r = f.sub(&s2, &s1);
    if is_zero(&h) {
        return if is_zero(&r) { dbl(p) } else { Jac::infinity() };
    }
    // add-1998-cmo-2.
    let h2 = f.sqr(&h);
    let h3 = f.mul(&h2, &h);
    let v = f.mul(&u1, &h2);
    let x = f.sub(&f.sub(&f.sqr(&r), &h3), &f.add(&v, &v));
    let y = f.sub(&f.mul(&r, &f.sub(&v, &x)), &f.mul(&s1, &h3));
    let z = f.mul(&f.mul(&p.z, &q.z), &h);
    Jac { x, y, z }
}

/// A P-384 public key, checked to be on the curve.
pub struct Key {
    q: Jac,
}

impl Key {
    /// From the big-endian affine coordinates: `None` unless both are 48 bytes below p and
    /// the point is on the curve (which also excludes the point at infinity).
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Key> {
        let (x, y): (W, W) = (from_be(x)?, from_be(y)?);
        if !lt(&x, &FP.m) || !lt(&y, &FP.m) {
            return None;
        }
        let f = &FP;
        let (x, y) = (f.mont(&x), f.mont(&y));
        let x3 = f.mul(&f.sqr(&x), &x);
        let x3a = f.add(&f.add(&x, &x), &x);
        let rhs = f.add(&f.sub(&x3, &x3a), &f.mont(&B));
        if f.sqr(&y) != rhs {
            return None;
        }
        Some(Key { q: Jac { x, y, z: f.one() } })
    }

    /// ES384: `sig` is r || s (48 bytes each), the message is hashed with SHA-384.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let digest: [u8; 48] = Sha384::digest(msg).into();
        self.verify_prehash(&digest, sig)
    }

    fn verify_prehash(&self, digest: &[u8; 48], sig: &[u8]) -> bool {
        if sig.len() != 96 {
            return false;
        }
        let (Some(r), Some(s)) = (from_be::<12>(&sig[..48]), from_be::<12>(&sig[48..])) else { return false };
        if is_zero(&r) || is_zero(&s) || !lt(&r, &FN.m) || !lt(&s, &FN.m) {
            return false;
        }
        let n = &FN;
        // e: the whole 384-bit digest (n has 384 bits), below 2³⁸⁴ < 2n.
        let Some(mut e) = from_be::<12>(digest) else { return false };
        if !lt(&e, &n.m) {
            sub_words(&mut e, &n.m);
        }
        let w = n.inv(&n.mont(&s));
        let u1 = n.plain(&n.mul(&n.mont(&e), &w));
        let u2 = n.plain(&n.mul(&n.mont(&r), &w));
        let f = &FP;
        let g = Jac { x: f.mont(&GX), y: f.mont(&GY), z: f.one() };
        let table = [g, self.q, add(&g, &self.q)];
        let mut acc = Jac::infinity();
        for i in (0..384).rev() {
            acc = dbl(&acc);
            let bit = |k: &W| (k[i / 32] >> (i % 32)) & 1;
            match (bit(&u1), bit(&u2)) {
                (1, 0) => acc = add(&acc, &table[0]),
                (0, 1) => acc = add(&acc, &table[1]),
                (1, 1) => acc = add(&acc, &table[2]),
                _ => {}
            }
        }
        if acc.is_infinity() {
            return false;
        }
        // x(R) = X / Z², then mod n (x < p < 2n).
        let mut x = f.plain(&f.mul(&acc.x, &f.inv(&f.sqr(&acc.z))));
        if !lt(&x, &n.m) {
            sub_words(&mut x, &n.m);
        }
        x == r
    }
}

#[cfg(test)]
mod tests {
    use super::super::monty::tests::check_modulus;
    use super::*;
    use p384::ecdsa::signature::hazmat::PrehashSigner;
    use p384::ecdsa::signature::Verifier;

    #[test]
    fn field_and_order_arithmetic() {
        check_modulus(&FP);
        check_modulus(&FN);
    }

    fn key_of(sk: &p384::ecdsa::SigningKey) -> (p384::ecdsa::VerifyingKey, Key) {
        let vk = *sk.verifying_key();
        let point = vk.to_sec1_point(false);
        let bytes = point.as_bytes();
        (vk, Key::from_coordinates(&bytes[1..49], &bytes[49..97]).unwrap())
    }

    /// Agrees with the `p384` crate on signatures it makes, altered ones, and r, s at the
    /// edges of their range.
    #[test]
    fn agrees_with_the_p384_crate() {
        let mut seed = [1u8; 48];
        for round in 0..24u8 {
            seed[0] = round.wrapping_add(1);
            seed[47] = round.wrapping_mul(37);
            let sk = p384::ecdsa::SigningKey::from_slice(&seed).unwrap();
            let (vk, key) = key_of(&sk);
            let msg = [round; 50];
            let digest: [u8; 48] = Sha384::digest(msg).into();
            let sig: p384::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
            let good = sig.to_bytes().to_vec();
            let reference = |m: &[u8], s: &[u8]| p384::ecdsa::Signature::from_slice(s).is_ok_and(|s| vk.verify(m, &s).is_ok());
            assert!(key.verify(&msg, &good));
            assert!(reference(&msg, &good));
            let mut variants = vec![];
            for i in [0usize, 20, 47, 48, 70, 95] {
                let mut bad = good.clone();
                bad[i] ^= 1 << (round % 8);
                variants.push(bad);
            }
            let mut n_be = vec![];
            for w in FN.m.iter().rev() {
                n_be.extend_from_slice(&w.to_be_bytes());
            }
            variants.push([n_be.clone(), good[48..].to_vec()].concat());
            variants.push([good[..48].to_vec(), n_be.clone()].concat());
            variants.push([vec![0; 48], good[48..].to_vec()].concat());
            variants.push([good[..48].to_vec(), vec![0; 48]].concat());
            variants.push(good[..95].to_vec());
            for v in &variants {
                assert_eq!(key.verify(&msg, v), reference(&msg, v), "round {round}");
            }
            assert!(!key.verify(b"another message", &good));
        }
    }

    #[test]
    fn refuses_points_off_the_curve_or_out_of_range() {
        let sk = p384::ecdsa::SigningKey::from_slice(&[3; 48]).unwrap();
        let point = sk.verifying_key().to_sec1_point(false);
        let b = point.as_bytes();
        let (x, y) = (b[1..49].to_vec(), b[49..97].to_vec());
        assert!(Key::from_coordinates(&x, &y).is_some());
        let mut y2 = y.clone();
        y2[47] ^= 1;
        assert!(Key::from_coordinates(&x, &y2).is_none());
        assert!(Key::from_coordinates(&[0xff; 48], &y).is_none());
        assert!(Key::from_coordinates(&x[..47], &y).is_none());
        assert!(Key::from_coordinates(&[0; 48], &[0; 48]).is_none());
    }

    /// Not a timed assertion: prints the cost of one verification beside the `p384` crate's
    /// (`cargo test --release [--target wasm32-wasip1] -p api-auth-filter p384_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn p384_cost() {
        let sk = p384::ecdsa::SigningKey::from_slice(&[5; 48]).unwrap();
        let (vk, key) = key_of(&sk);
        let sig: p384::ecdsa::Signature = sk.sign_prehash(&Sha384::digest(b"message")).unwrap();
        let sig = sig.to_bytes().to_vec();
        let n = 200;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(key.verify(b"message", &sig));
        }
        let ours = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(p384::ecdsa::Signature::from_slice(&sig).is_ok_and(|s| vk.verify(b"message", &s).is_ok()));
        }
        eprintln!("ES384 verify on this host: ours {ours:?}, p384 crate {:?}", t.elapsed() / n);
    }
}
