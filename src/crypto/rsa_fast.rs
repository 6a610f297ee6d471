//! RSA public-key operation for PKCS#1 v1.5 (RS256/384/512), tuned for wasm: Montgomery multiplication in
//! product-scanning form on limbs of 28 bits (26 for keys wider than 3,300 bits). A column's
//! products then add up in one u64 without a carry per product (2·74 products of 56 bits stay
//! below 2⁶⁴), so the inner loops are bare multiply-adds: with wasm SIMD (the workspace builds
//! wasm with `simd128`, see .cargo/config.toml), four 32×32→64 products per step
//! (`i64x2.extmul_*_i32x4_u`) on operands stored so that both run forward. Everything that
//! depends only on the key (limbs, -n⁻¹ mod 2^w, R² mod n) is computed once when the JWK is
//! parsed, and R > 4n keeps every intermediate value below 2n without a subtraction per
//! product (Walter's bound); one reduction at the end. Verification only: no secret is
//! involved, so no constant-time concern.
//! Checked against every Wycheproof PKCS#1 vector and, differentially, against the `rsa` crate.

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::Hash;

/// Column sums must stay below 2⁶⁴: (2k+1) products below 2^(2w) plus a carry. With w = 28
/// that allows k ≤ 127 limbs; this bound leaves room.
const MAX_LIMBS_28: usize = 120;

#[derive(Clone)]
pub struct Modulus {
    /// Bits per limb (28, or 26 for wide keys).
    w: u32,
    /// Little-endian limbs of n, each below 2^w.
    n: Vec<u32>,
    /// The same limbs, most significant first (the second operand of `dot`).
    nrev: Vec<u32>,
    /// -n⁻¹ mod 2^w.
    n0inv: u32,
    /// R² mod n, R = 2^(w·limbs), in limbs.
    rr: Vec<u32>,
    e: u64,
    /// Length of n in bytes (the signature length).
    len: usize,
}

/// Big-endian bytes to `limbs` little-endian limbs of `w` bits; the value must fit.
fn to_limbs(be: &[u8], w: u32, limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    let mask = (1u64 << w) - 1;
    let (mut acc, mut have, mut i) = (0u64, 0u32, 0usize);
    for b in be.iter().rev() {
        acc |= u64::from(*b) << have;
        have += 8;
        while have >= w {
            if let Some(l) = out.get_mut(i) {
                *l = (acc & mask) as u32;
            }
            i += 1;
            acc >>= w;
            have -= w;
        }
    }
    if let Some(l) = out.get_mut(i) {
        *l = acc as u32;
    }
    out
}

/// Limbs of `w` bits to `len` big-endian bytes (the value must fit).
fn from_limbs(limbs: &[u32], w: u32, len: usize) -> Vec<u8> {
    let mut le = Vec::with_capacity(len + 4);
    let (mut acc, mut have) = (0u64, 0u32);
    for l in limbs {
        acc |= u64::from(*l) << have;
        have += w;
        while have >= 8 {
            le.push(acc as u8);
            acc >>= 8;
            have -= 8;
        }
    }
    le.push(acc as u8);
    le.resize(len, 0);
    le.reverse();
    le
}

/// a >= b, both the same number of limbs.
fn geq(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

fn sub_in_place(a: &mut [u32], b: &[u32], w: u32) {
    let mut borrow = 0i64;
    for (x, y) in a.iter_mut().zip(b) {
        let mut d = i64::from(*x) - i64::from(*y) - borrow;
        borrow = i64::from(d < 0);
        d += borrow << w;
        *x = d as u32;
    }
}

/// Σ x[j]·y[j]: one product column, its second operand stored reversed so that both run
/// forward (and load as vectors). With wasm SIMD, four products per step (`extmul`).
#[inline(always)]
fn dot(x: &[u32], y: &[u32]) -> u64 {
    let len = x.len().min(y.len());
    let (x, y) = (&x[..len], &y[..len]);
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: u64 = xc.remainder().iter().zip(yc.remainder()).map(|(a, b)| u64::from(*a) * u64::from(*b)).sum();
    tail + lanes::dot4(xc, yc)
}

/// Sums of four-limb chunk products: wasm SIMD where the module is built with it, the same
/// arithmetic on scalars elsewhere (so that the host tests check the chunking and tails).
mod lanes {
    use std::slice::ChunksExact;

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline(always)]
    pub fn dot4(x: ChunksExact<'_, u32>, y: ChunksExact<'_, u32>) -> u64 {
        use core::arch::wasm32::*;
        let mut acc = u64x2_splat(0);
        for (a, b) in x.zip(y) {
            // SAFETY: chunks_exact(4) yields four u32, the 16 bytes an unaligned v128 load reads.
            let (va, vb) = unsafe { (a.as_ptr().cast::<v128>().read_unaligned(), b.as_ptr().cast::<v128>().read_unaligned()) };
            acc = i64x2_add(acc, u64x2_extmul_low_u32x4(va, vb));
            acc = i64x2_add(acc, u64x2_extmul_high_u32x4(va, vb));
        }
        u64x2_extract_lane::<0>(acc) + u64x2_extract_lane::<1>(acc)
    }

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    pub fn dot4(x: ChunksExact<'_, u32>, y: ChunksExact<'_, u32>) -> u64 {
        let mut acc = [0u64; 2];
        for (a, b) in x.zip(y) {
            acc[0] += u64::from(a[0]) * u64::from(b[0]) + u64::from(a[1]) * u64::from(b[1]);
            acc[1] += u64::from(a[2]) * u64::from(b[2]) + u64::from(a[3]) * u64::from(b[3]);
        }
        acc[0] + acc[1]
    }
}

/// Working space of one exponentiation: the reduction multiples and reversed operands.
struct Scratch {
    m: Vec<u32>,
    rev: Vec<u32>,
    twice: Vec<u32>,
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
        let bits = n_be.len() * 8 - n_be.first()?.leading_zeros() as usize;
        // R > 4n: two spare bits above n.
        let (w, limbs) = match (bits + 2).div_ceil(28) {
            k if k <= MAX_LIMBS_28 => (28u32, k),
            _ => (26u32, (bits + 2).div_ceil(26)),
        };
        let n = to_limbs(n_be, w, limbs);
        // Newton's iteration for n⁻¹ mod 2³² (n is odd), then -n⁻¹ mod 2^w.
        let n0 = n_be.iter().rev().take(4).enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (8 * i));
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let n0inv = inv.wrapping_neg() & ((1u32 << w) - 1);
        // R² mod n, once per key, with the general-purpose big integers.
        let big_n = rsa::BigUint::from_bytes_be(n_be);
        let rr_big = (rsa::BigUint::from(1u32) << (2 * w as usize * limbs)) % &big_n;
        let rr = to_limbs(&rr_big.to_bytes_be(), w, limbs);
        let nrev = n.iter().rev().copied().collect();
        Some(Modulus { w, n, nrev, n0inv, rr, e, len: n_be.len() })
    }

    /// out = a·b·R⁻¹ mod n, below 2n for a, b below 2n (finely integrated product scanning).
    fn mont_mul(&self, a: &[u32], b: &[u32], s: &mut Scratch, out: &mut [u32]) {
        let (nrev, w) = (&self.nrev[..], self.w);
        let k = nrev.len();
        let mask = (1u64 << w) - 1;
        s.rev.clear();
        s.rev.extend(b.iter().take(k).rev());
        let (a, brev, m, out) = (&a[..k], &s.rev[..k], &mut s.m[..k], &mut out[..k]);
        let (n0, b0) = (u64::from(nrev[k - 1]), u64::from(brev[k - 1]));
        let mut acc = 0u64;
        for i in 0..k {
            // Column i: a[j]·b[i-j] and m[j]·n[i-j], b[i-j] = brev[k-1-i+j].
            let r = k - 1 - i;
            acc += dot(&a[..i], &brev[r..]) + dot(&m[..i], &nrev[r..]) + u64::from(a[i]) * b0;
            let mi = (acc as u32).wrapping_mul(self.n0inv) & mask as u32;
            m[i] = mi;
            acc = (acc + u64::from(mi) * n0) >> w;
        }
        for i in k..2 * k - 1 {
            let lo = i + 1 - k;
            acc += dot(&a[lo..], brev) + dot(&m[lo..], nrev);
            out[i - k] = (acc & mask) as u32;
            acc >>= w;
        }
        out[k - 1] = acc as u32;
    }

    /// out = a²·R⁻¹ mod n: as `mont_mul`, each cross product once, against 2a.
    fn mont_sqr(&self, a: &[u32], s: &mut Scratch, out: &mut [u32]) {
        let (nrev, w) = (&self.nrev[..], self.w);
        let k = nrev.len();
        let mask = (1u64 << w) - 1;
        s.rev.clear();
        s.rev.extend(a.iter().take(k).rev());
        s.twice.clear();
        s.twice.extend(a.iter().take(k).map(|x| x << 1));
        let (a, arev, a2, m, out) = (&a[..k], &s.rev[..k], &s.twice[..k], &mut s.m[..k], &mut out[..k]);
        let square = |i: usize| if i % 2 == 0 { u64::from(a[i / 2]) * u64::from(a[i / 2]) } else { 0 };
        let n0 = u64::from(nrev[k - 1]);
        let mut acc = 0u64;
        for i in 0..k {
            // Pairs j < i - j, i.e. j below ⌈i/2⌉; a[i-j] = arev[k-1-i+j].
            let (r, half) = (k - 1 - i, i.div_ceil(2));
            acc += dot(&a2[..half], &arev[r..]) + square(i) + dot(&m[..i], &nrev[r..]);
            let mi = (acc as u32).wrapping_mul(self.n0inv) & mask as u32;
            m[i] = mi;
            acc = (acc + u64::from(mi) * n0) >> w;
        }
        for i in k..2 * k - 1 {
            let (lo, hi) = (i + 1 - k, i.div_ceil(2));
            acc += dot(&a2[lo..hi], arev) + square(i) + dot(&m[lo..], nrev);
            out[i - k] = (acc & mask) as u32;
            acc >>= w;
        }
        out[k - 1] = acc as u32;
    }

    /// s^e mod n, or `None` when s is not below n (RFC 8017 §5.2.2 step 1).
    pub fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.len {
            return None;
        }
        let k = self.n.len();
        let s = to_limbs(sig, self.w, k);
        if geq(&s, &self.n) {
            return None;
        }
        if self.e == 1 {
            return Some(from_limbs(&s, self.w, self.len));
        }
        let mut scratch = Scratch { m: vec![0; k], rev: Vec::with_capacity(k), twice: Vec::with_capacity(k) };
        let mut tmp = vec![0u32; k];
        // Left to right over the bits of e below the top one, in Montgomery form (x·R). For an
        // odd e (every real key) the last step is a multiplication: multiplying the Montgomery
        // form by the plain s leaves s^e itself and saves the conversion back. An even e ends
        // in a squaring and converts back below.
        let mut base = vec![0u32; k];
        self.mont_mul(&s, &self.rr, &mut scratch, &mut base);
        let mut acc = base.clone();
        let bits = 64 - self.e.leading_zeros();
        for i in (0..bits - 1).rev() {
            self.mont_sqr(&acc, &mut scratch, &mut tmp);
            std::mem::swap(&mut acc, &mut tmp);
            if self.e >> i & 1 == 1 {
                let factor = if i == 0 { &s } else { &base };
                self.mont_mul(&acc, factor, &mut scratch, &mut tmp);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        if self.e & 1 == 0 {
            let mut one = vec![0u32; k];
            one[0] = 1;
            self.mont_mul(&acc, &one, &mut scratch, &mut tmp);
            std::mem::swap(&mut acc, &mut tmp);
        }
        // Below 2n: one subtraction brings it below n.
        if geq(&acc, &self.n) {
            sub_in_place(&mut acc, &self.n, self.w);
        }
        Some(from_limbs(&acc, self.w, self.len))
    }

    /// RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2): the decoded block must equal the
    /// one encoding of the message's digest, byte for byte.
    pub fn verify_pkcs1(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        const SHA256: [u8; 19] = [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];
        const SHA384: [u8; 19] = [0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30];
        const SHA512: [u8; 19] = [0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40];
        let (prefix, digest): (&[u8], Vec<u8>) = match hash {
            Hash::Sha256 => (&SHA256, Sha256::digest(msg).to_vec()),
            Hash::Sha384 => (&SHA384, Sha384::digest(msg).to_vec()),
            Hash::Sha512 => (&SHA512, Sha512::digest(msg).to_vec()),
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
                assert_eq!(fast.verify_pkcs1(Hash::Sha256, input.as_bytes(), &sig), reference, "bits {bits} round {round}");
                assert_eq!(reference, round % 2 == 0);
            }
            // Random byte strings as signatures: both refuse.
            for _ in 0..4 {
                let sig: Vec<u8> = (0..bits / 8).map(|_| next() as u8).collect();
                assert!(!fast.verify_pkcs1(Hash::Sha256, b"m", &sig));
            }
        }
    }

    /// A pseudo-random odd modulus of `bits` bits with the top bit set.
    fn modulus_bytes(bits: usize, seed: &mut u64) -> Vec<u8> {
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
            *last |= 1;
        }
        n
    }

    #[test]
    fn squaring_matches_multiplication() {
        let mut seed = 0x2545_f491_4f6c_dd1d;
        for bits in [2048usize, 4096] {
            let m = Modulus::new(&modulus_bytes(bits, &mut seed), &[1, 0, 1]).unwrap();
            assert_eq!(m.w, if bits == 2048 { 28 } else { 26 });
            let k = m.n.len();
            let mut scratch = Scratch { m: vec![0; k], rev: Vec::new(), twice: Vec::new() };
            let (mut x, mut y) = (vec![0; k], vec![0; k]);
            let limb_max = (1u32 << m.w) - 1;
            for round in 0..100 {
                // Any value below 2n (what the exponentiation feeds in), all-ones limbs included.
                let mut a: Vec<u32> = (0..k).map(|_| (modulus_bytes(32, &mut seed)[0..4].iter().fold(0u32, |v, b| v << 8 | u32::from(*b))) & limb_max).collect();
                if round % 3 == 0 {
                    a.iter_mut().for_each(|l| *l = limb_max);
                }
                if let (Some(top), Some(ntop)) = (a.last_mut(), m.n.last()) {
                    *top %= ntop * 2;
                }
                m.mont_sqr(&a, &mut scratch, &mut x);
                m.mont_mul(&a, &a, &mut scratch, &mut y);
                assert_eq!(x, y, "bits {bits} round {round}");
            }
        }
    }

    /// s^e mod n against the general-purpose big integers, for key sizes on both limb widths,
    /// odd sizes, and exponents other than 65537 (even ones and 1 included).
    #[test]
    fn public_op_matches_big_integers() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for (bits, e) in [(2048usize, 65537u64), (2047, 3), (3072, 65537), (3359, 17), (3361, 65537), (4096, 65537), (8192, 65537), (1031, 0xffff_ffff_ffff_ffc5), (2048, 65536), (1500, 2), (1024, 1)] {
            let n_be = modulus_bytes(bits, &mut seed);
            let m = Modulus::new(&n_be, &e.to_be_bytes()).unwrap();
            let big_n = rsa::BigUint::from_bytes_be(&n_be);
            for round in 0..4 {
                let mut s = modulus_bytes(bits, &mut seed);
                s[0] = n_be[0] >> 1; // below n
                if round == 3 {
                    // n - 1: the largest valid input.
                    s = (&big_n - 1u32).to_bytes_be();
                    s.resize(n_be.len(), 0);
                    s.rotate_right(n_be.len() - (&big_n - 1u32).to_bytes_be().len());
                }
                let want = rsa::BigUint::from_bytes_be(&s).modpow(&rsa::BigUint::from(e), &big_n);
                let got = m.public_op(&s).unwrap();
                assert_eq!(rsa::BigUint::from_bytes_be(&got), want, "bits {bits} e {e} round {round}");
                assert_eq!(got.len(), n_be.len());
            }
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
            assert!(fast.verify_pkcs1(Hash::Sha256, input.as_bytes(), &sig));
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
