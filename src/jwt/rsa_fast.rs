//! RSA public-key operation for RS256/384/512, tuned for wasm: Montgomery multiplication
//! (CIOS) on 32-bit limbs, whose 64-bit products are native `i64.mul` in wasm, with everything
//! that depends only on the key (limbs, -n⁻¹ mod 2³², R² mod n) computed once when the JWK is
//! parsed. Verification only: no secret is involved, so no constant-time concern.
//! Checked against every Wycheproof PKCS#1 vector and, differentially, against the `rsa` crate.

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::Alg;

#[derive(Clone)]
pub struct Modulus {
    /// Little-endian 32-bit limbs of n.
    n: Vec<u32>,
    /// -n⁻¹ mod 2³².
    n0inv: u32,
    /// R² mod n, R = 2^(32·limbs), in limbs.
    rr: Vec<u32>,
    e: u64,
    /// Length of n in bytes (the signature length).
    len: usize,
}

fn to_limbs(be: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, b) in be.iter().rev().enumerate() {
        if let Some(l) = out.get_mut(i / 4) {
            *l |= u32::from(*b) << (8 * (i % 4));
        }
    }
    out
}

fn from_limbs(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, o) in out.iter_mut().rev().enumerate() {
        *o = limbs.get(i / 4).map_or(0, |l| (l >> (8 * (i % 4))) as u8);
    }
    out
}

/// a >= b, both `limbs` long.
fn geq(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0i64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = i64::from(*x) - i64::from(*y) - borrow;
        *x = d as u32;
        borrow = i64::from(d < 0);
    }
}

impl Modulus {
    /// From the big-endian modulus and exponent of a key (already range-checked by the JWK
    /// parser). `None` for an even modulus or an exponent wider than 64 bits.
    pub fn new(n_be: &[u8], e_be: &[u8]) -> Option<Modulus> {
        let n_be = &n_be[n_be.iter().position(|b| *b != 0)?..];
        let e_be = &e_be[e_be.iter().position(|b| *b != 0)?..];
        if e_be.len() > 8 || n_be.last().is_none_or(|b| b & 1 == 0) {
            return None;
        }
        let e = e_be.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
        let limbs = n_be.len().div_ceil(4);
        let n = to_limbs(n_be, limbs);
        // Newton's iteration for n[0]⁻¹ mod 2³² (n[0] is odd), then negate.
        let n0 = *n.first()?;
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let n0inv = inv.wrapping_neg();
        // R² mod n, once per key, with the general-purpose big integers.
        let big_n = rsa::BigUint::from_bytes_be(n_be);
        let rr_big = (rsa::BigUint::from(1u32) << (64 * limbs)) % &big_n;
        let rr = to_limbs(&rr_big.to_bytes_be(), limbs);
        Some(Modulus { n, n0inv, rr, e, len: n_be.len() })
    }

    /// a·b·R⁻¹ mod n (coarsely interleaved Montgomery, CIOS).
    fn mont_mul(&self, a: &[u32], b: &[u32], t: &mut Vec<u32>) -> Vec<u32> {
        let k = self.n.len();
        t.clear();
        t.resize(k + 2, 0);
        for &bi in b.iter().take(k) {
            let mut c: u64 = 0;
            for (tj, &aj) in t.iter_mut().zip(a.iter()).take(k) {
                let s = u64::from(*tj) + u64::from(aj) * u64::from(bi) + c;
                *tj = s as u32;
                c = s >> 32;
            }
            let s = u64::from(t[k]) + c;
            t[k] = s as u32;
            t[k + 1] = (s >> 32) as u32;

            let m = t[0].wrapping_mul(self.n0inv);
            let s = u64::from(t[0]) + u64::from(m) * u64::from(self.n[0]);
            let mut c = s >> 32;
            for j in 1..k {
                let s = u64::from(t[j]) + u64::from(m) * u64::from(self.n[j]) + c;
                t[j - 1] = s as u32;
                c = s >> 32;
            }
            let s = u64::from(t[k]) + c;
            t[k - 1] = s as u32;
            t[k] = t[k + 1].wrapping_add((s >> 32) as u32);
            t[k + 1] = 0;
        }
        let mut out: Vec<u32> = t[..k].to_vec();
        if t[k] != 0 || geq(&out, &self.n) {
            sub_in_place(&mut out, &self.n);
        }
        out
    }

    /// a²·R⁻¹ mod n: the square computed once per limb pair (cross products doubled), then
    /// reduced (separated operand scanning). About a quarter fewer products than `mont_mul`,
    /// and squarings are 16 of the 17 products of e = 65537.
    fn mont_sqr(&self, a: &[u32], t: &mut Vec<u32>) -> Vec<u32> {
        let k = self.n.len();
        t.clear();
        t.resize(2 * k + 1, 0);
        for i in 0..k {
            let ai = u64::from(a[i]);
            let mut c: u64 = 0;
            for j in i + 1..k {
                let s = u64::from(t[i + j]) + ai * u64::from(a[j]) + c;
                t[i + j] = s as u32;
                c = s >> 32;
            }
            t[i + k] = c as u32;
        }
        let mut carry = 0u64;
        for x in t.iter_mut().take(2 * k) {
            let v = (u64::from(*x) << 1) | carry;
            *x = v as u32;
            carry = v >> 32;
        }
        t[2 * k] = carry as u32;
        let mut c = 0u64;
        for i in 0..k {
            let sq = u64::from(a[i]) * u64::from(a[i]);
            let s = u64::from(t[2 * i]) + (sq & 0xffff_ffff) + c;
            t[2 * i] = s as u32;
            let s = u64::from(t[2 * i + 1]) + (sq >> 32) + (s >> 32);
            t[2 * i + 1] = s as u32;
            c = s >> 32;
        }
        t[2 * k] = t[2 * k].wrapping_add(c as u32);
        for i in 0..k {
            let m = u64::from(t[i].wrapping_mul(self.n0inv));
            let mut c: u64 = 0;
            for j in 0..k {
                let s = u64::from(t[i + j]) + m * u64::from(self.n[j]) + c;
                t[i + j] = s as u32;
                c = s >> 32;
            }
            let mut idx = i + k;
            while c != 0 && idx <= 2 * k {
                let s = u64::from(t[idx]) + c;
                t[idx] = s as u32;
                c = s >> 32;
                idx += 1;
            }
        }
        let mut out: Vec<u32> = t[k..2 * k].to_vec();
        if t[2 * k] != 0 || geq(&out, &self.n) {
            sub_in_place(&mut out, &self.n);
        }
        out
    }

    /// s^e mod n, or `None` when s is not below n (RFC 8017 §5.2.2 step 1).
    pub fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.len {
            return None;
        }
        let k = self.n.len();
        let s = to_limbs(sig, k);
        if geq(&s, &self.n) {
            return None;
        }
        let mut scratch = Vec::with_capacity(k + 2);
        let base = self.mont_mul(&s, &self.rr, &mut scratch);
        let mut acc = base.clone();
        let bits = 64 - self.e.leading_zeros();
        for i in (0..bits.saturating_sub(1)).rev() {
            acc = self.mont_sqr(&acc, &mut scratch);
            if self.e >> i & 1 == 1 {
                acc = self.mont_mul(&acc, &base, &mut scratch);
            }
        }
        let mut one = vec![0u32; k];
        one[0] = 1;
        let out = self.mont_mul(&acc, &one, &mut scratch);
        Some(from_limbs(&out, self.len))
    }

    /// RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2): the decoded block must equal the
    /// one encoding of the message's digest, byte for byte.
    pub fn verify_pkcs1(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        const SHA256: [u8; 19] = [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];
        const SHA384: [u8; 19] = [0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30];
        const SHA512: [u8; 19] = [0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40];
        let (prefix, digest): (&[u8], Vec<u8>) = match alg {
            Alg::RS256 => (&SHA256, Sha256::digest(msg).to_vec()),
            Alg::RS384 => (&SHA384, Sha384::digest(msg).to_vec()),
            Alg::RS512 => (&SHA512, Sha512::digest(msg).to_vec()),
            _ => return false,
        };
        let t_len = prefix.len() + digest.len();
        if self.len < t_len + 11 {
            return false;
        }
        let Some(em) = self.public_op(sig) else { return false };
        let ps = self.len - t_len - 3;
        let mut expected = Vec::with_capacity(self.len);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + ps, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&digest);
        em == expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;

    /// The fast path and the `rsa` crate agree on random keys, valid signatures, and
    /// corrupted ones.
    #[test]
    fn differential_against_the_rsa_crate() {
        use jwt_simple::prelude::*;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for bits in [2048usize, 3072] {
            let kp = RS256KeyPair::generate(bits).unwrap();
            let der = kp.public_key().to_der().unwrap();
            let pk = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der).unwrap();
            let fast = Modulus::new(&pk.n().to_bytes_be(), &pk.e().to_bytes_be()).unwrap();
            for round in 0..6 {
                let claims = Claims::create(Duration::from_secs(60)).with_subject(format!("u{}", next()));
                let token = kp.sign(claims).unwrap();
                let (input, sig_b64) = token.rsplit_once('.').unwrap();
                let mut sig = {
                    use base64::Engine;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig_b64).unwrap()
                };
                if round % 2 == 1 {
                    let i = (next() as usize) % sig.len();
                    sig[i] ^= 1 << (next() % 8);
                }
                let reference =
                    pk.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input.as_bytes()), &sig).is_ok();
                assert_eq!(fast.verify_pkcs1(Alg::RS256, input.as_bytes(), &sig), reference, "bits {bits} round {round}");
                assert_eq!(reference, round % 2 == 0);
            }
            // Random byte strings as signatures: both refuse.
            for _ in 0..4 {
                let sig: Vec<u8> = (0..bits / 8).map(|_| next() as u8).collect();
                assert!(!fast.verify_pkcs1(Alg::RS256, b"m", &sig));
            }
        }
    }

    #[test]
    fn squaring_matches_multiplication() {
        let n: Vec<u8> = (0..256).map(|i| if i == 255 { 0xe5 } else { (i * 37 + 11) as u8 | if i == 0 { 0x80 } else { 0 } }).collect();
        let m = Modulus::new(&n, &[1, 0, 1]).unwrap();
        let mut seed = 7u32;
        let mut scratch = Vec::new();
        for round in 0..200 {
            let mut a: Vec<u32> = (0..m.n.len())
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    seed
                })
                .collect();
            if round % 3 == 0 {
                a.iter_mut().for_each(|x| *x = u32::MAX);
            }
            // Keep a below n, as in the exponentiation.
            if let Some(top) = a.last_mut() {
                *top %= m.n[m.n.len() - 1];
            }
            assert_eq!(m.mont_sqr(&a, &mut scratch), m.mont_mul(&a, &a, &mut scratch), "round {round}");
        }
    }

    /// Not a timed assertion: prints the cost of one verification on this host
    /// (`cargo test --release -p api-auth-filter rsa_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn rsa_cost() {
        use jwt_simple::prelude::*;
        let kp = RS256KeyPair::generate(2048).unwrap();
        let der = kp.public_key().to_der().unwrap();
        let pk = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der).unwrap();
        let fast = Modulus::new(&pk.n().to_bytes_be(), &pk.e().to_bytes_be()).unwrap();
        let token = kp.sign(Claims::create(Duration::from_secs(60))).unwrap();
        let (input, sig_b64) = token.rsplit_once('.').unwrap();
        let sig = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig_b64).unwrap()
        };
        let n = 2000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(fast.verify_pkcs1(Alg::RS256, input.as_bytes(), &sig));
        }
        let ours = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(pk.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input.as_bytes()), &sig).is_ok());
        }
        eprintln!("RS256 2048 verify on this host: fast path {ours:?}, rsa crate {:?}", t.elapsed() / n);
    }

    #[test]
    fn edge_cases() {
        // Even modulus, zero exponent, too wide an exponent: no fast path.
        assert!(Modulus::new(&[0x10; 256], &[1, 0, 1]).is_none());
        assert!(Modulus::new(&[0x11; 256], &[0]).is_none());
        assert!(Modulus::new(&[0x11; 256], &[1; 9]).is_none());
        let m = Modulus::new(&[0xff; 256], &[1, 0, 1]).unwrap();
        // s >= n, and wrong lengths, are refused before any arithmetic.
        assert!(m.public_op(&[0xff; 256]).is_none());
        assert!(m.public_op(&[0x01; 255]).is_none());
        // 0^e = 0 and 1^e = 1.
        assert_eq!(m.public_op(&[0; 256]).unwrap(), vec![0; 256]);
        let mut one = vec![0u8; 256];
        one[255] = 1;
        assert_eq!(m.public_op(&one).unwrap(), one);
    }
}
