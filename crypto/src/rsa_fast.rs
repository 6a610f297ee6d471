//! RSA public-key operation for PKCS#1 v1.5 (RS256/384/512) and PSS (PS256/384/512), tuned
//! for wasm: Montgomery multiplication in
//! product-scanning form on limbs of 28 bits (26 for keys wider than 3,300 bits). A column's
//! products then add up in one u64 without a carry per product (2·74 products of 56 bits stay
//! below 2⁶⁴), so the inner loops are bare multiply-adds: with wasm SIMD (the workspace builds
//! wasm with `simd128`, see .cargo/config.toml), four 32×32→64 products per step
//! (`i64x2.extmul_*_i32x4_u`) on operands stored so that both run forward. Everything that
//! depends only on the key (limbs, -n⁻¹ mod 2^w, R² mod n) is computed once when the JWK is
//! parsed, and R > 4n keeps every intermediate value below 2n without a subtraction per
//! product (Walter's bound); one reduction at the end. Verification only: no secret is
//! involved, so no constant-time concern. No general-purpose big integers: R² mod n comes from
//! the same Montgomery arithmetic (see `Modulus::new`).
//! Checked against every Wycheproof PKCS#1 and PSS vector and, differentially, against the
//! `rsa` crate (tests only: tests/rsa_differential.rs).

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
    /// Length of n in bits.
    bits: usize,
    /// Length of n in bytes (the signature length).
    len: usize,
}

/// Big-endian bytes to `limbs` little-endian limbs of `w` bits, or `None` when the value
/// does not fit in them: a signature's octets can hold a few bits more than the modulus's
/// limbs, and a value cut to its low bits could compare below n.
fn to_limbs(be: &[u8], w: u32, limbs: usize) -> Option<Vec<u32>> {
    let mut out = vec![0u32; limbs];
    let mask = (1u64 << w) - 1;
    let (mut acc, mut have, mut i) = (0u64, 0u32, 0usize);
    let mut lost = 0u64;
    for b in be.iter().rev() {
        acc |= u64::from(*b) << have;
        have += 8;
        while have >= w {
            match out.get_mut(i) {
                Some(l) => *l = (acc & mask) as u32,
                None => lost |= acc & mask,
            }
            i += 1;
            acc >>= w;
            have -= w;
        }
    }
    match out.get_mut(i) {
        Some(l) => *l = acc as u32,
        None => lost |= acc,
    }
    (lost == 0).then_some(out)
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
    /// parser, src/jwt/jwk.rs). `None` for a zero or even modulus, or a zero exponent or one
    /// wider than 64 bits.
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
        let n = to_limbs(n_be, w, limbs)?;
        // Newton's iteration for n⁻¹ mod 2³² (n is odd), then -n⁻¹ mod 2^w.
        let n0 = n_be.iter().rev().take(4).enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (8 * i));
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let n0inv = inv.wrapping_neg() & ((1u32 << w) - 1);
        let nrev = n.iter().rev().copied().collect();
        let mut m = Modulus { w, n, nrev, n0inv, rr: Vec::new(), e, bits, len: n_be.len() };
        m.rr = m.r_squared();
        Some(m)
    }

    /// R² mod n (fully reduced), for the conversion into Montgomery form. In Montgomery form
    /// x is held as x·R mod n: R mod n holds 1, a doubling (mod n) doubles the value held and
    /// a Montgomery squaring squares it. From R mod n, the bits of E = w·limbs, most
    /// significant first (square, and double where the bit is set), reach the form of 2^E = R,
    /// that is R·R mod n. A dozen or so squarings: less than one verification costs.
    fn r_squared(&self) -> Vec<u32> {
        let k = self.n.len();
        // R mod n: 2^(bits-1) is below n (n is odd, so not a power of two, or 1: reduced
        // below), then one doubling per bit up to w·k.
        let mut x = vec![0u32; k];
        let top = self.bits.saturating_sub(1);
        if let Some(l) = x.get_mut(top / self.w as usize) {
            *l = 1 << (top % self.w as usize);
        }
        self.reduce_once(&mut x);
        let e_bits = self.w as usize * k;
        for _ in top..e_bits {
            self.double_mod(&mut x);
        }
        let mut scratch = Scratch { m: vec![0; k], rev: Vec::with_capacity(k), twice: Vec::with_capacity(k) };
        let mut tmp = vec![0u32; k];
        let len = usize::BITS - e_bits.leading_zeros();
        for i in (0..len).rev() {
            // mont_mul, not mont_sqr: a second caller keeps LLVM from inlining mont_sqr into
            // public_op's loop, which cost RS256 verifications 2 to 3% in V8 (bench/core).
            self.mont_mul(&x, &x, &mut scratch, &mut tmp);
            std::mem::swap(&mut x, &mut tmp);
            // Below 2n from the product: below n again.
            self.reduce_once(&mut x);
            if e_bits >> i & 1 == 1 {
                self.double_mod(&mut x);
            }
        }
        x
    }

    /// x - n when x ≥ n: below n for any x below 2n.
    fn reduce_once(&self, x: &mut [u32]) {
        if geq(x, &self.n) {
            sub_in_place(x, &self.n, self.w);
        }
    }

    /// x = 2x mod n for x below n: the doubled value stays below 2^(w·k) (R > 4n), one
    /// subtraction at most.
    fn double_mod(&self, x: &mut [u32]) {
        let (w, mask) = (self.w, (1u32 << self.w) - 1);
        let mut carry = 0u32;
        for l in x.iter_mut() {
            let v = *l << 1 | carry;
            carry = v >> w;
            *l = v & mask;
        }
        self.reduce_once(x);
    }

    /// The modulus's length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The modulus's length in bytes: every signature's length (RFC 8017 §8.1.2, §8.2.2).
    pub fn size(&self) -> usize {
        self.len
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
        let s = to_limbs(sig, self.w, k)?;
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

    /// RSASSA-PSS verification (RFC 8017 §8.1.2, EMSA-PSS-VERIFY of §9.1.2) with MGF1 over
    /// the same hash and a salt exactly as long as the hash, as JWS fixes them (RFC 7518
    /// §3.5). Stricter than the `rsa` crate was on two points no signer ever produces: a
    /// signature representative s ≥ n is refused (§5.2.2 step 1; the crate reduced it mod n),
    /// and so is an encoded message that does not fit in emLen octets (§8.1.2 step 2c, for
    /// moduli of 8·m + 1 bits; the crate dropped that octet unread).
    pub fn verify_pss(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let Some(m) = self.public_op(sig) else { return false };
        // emBits = modBits - 1; EM = I2OSP(m, emLen), one octet less than k when modBits is
        // 8·m + 1, and then the octet in front must be zero.
        let em_bits = self.bits.saturating_sub(1);
        let em_len = em_bits.div_ceil(8);
        let Some((front, em)) = m.split_at_checked(m.len().saturating_sub(em_len)) else { return false };
        if front.iter().any(|b| *b != 0) {
            return false;
        }
        let m_hash = digest(hash, &[msg]);
        let (h_len, s_len) = (m_hash.len(), m_hash.len());
        // Step 3.
        if em_len < h_len + s_len + 2 {
            return false;
        }
        // Step 4: the trailer.
        let Some((&0xbc, rest)) = em.split_last() else { return false };
        // Step 5: maskedDB, then H.
        let (masked_db, h) = rest.split_at(em_len - h_len - 1);
        // Step 6: the bits above emBits are zero.
        let unused = 8 * em_len - em_bits;
        let top_mask = (0xffu16 << (8 - unused)) as u8;
        if masked_db.first().is_none_or(|b| b & top_mask != 0) {
            return false;
        }
        // Steps 7 to 9: DB = maskedDB ⊕ MGF1(H), its unused top bits cleared.
        let mut db = masked_db.to_vec();
        mgf1_xor(hash, h, &mut db);
        if let Some(b) = db.first_mut() {
            *b &= !top_mask;
        }
        // Step 10: PS (zeros), then 0x01, then the salt: the 0x01 at its one place fixes the
        // salt's length (no search for it, which would let other lengths through).
        let (ps, rest) = db.split_at(em_len - h_len - s_len - 2);
        let Some((&0x01, salt)) = rest.split_first() else { return false };
        if ps.iter().any(|b| *b != 0) {
            return false;
        }
        // Steps 11 to 14: H = Hash(0x00 × 8 ‖ mHash ‖ salt).
        digest(hash, &[&[0u8; 8], &m_hash, salt]) == h
    }
}

/// The digest of the concatenation of `parts`.
fn digest(hash: Hash, parts: &[&[u8]]) -> Vec<u8> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    match hash {
        Hash::Sha256 => run::<Sha256>(parts),
        Hash::Sha384 => run::<Sha384>(parts),
        Hash::Sha512 => run::<Sha512>(parts),
    }
}

/// out ⊕= MGF1(seed, out.len()) (RFC 8017 B.2.1): Hash(seed ‖ counter) for counter = 0, 1, …
/// as four big-endian octets, concatenated. `out` is shorter than a key, so the counter
/// never comes near 2³².
fn mgf1_xor(hash: Hash, seed: &[u8], out: &mut [u8]) {
    let mut counter = 0u32;
    let mut rest = out;
    while !rest.is_empty() {
        let block = digest(hash, &[seed, &counter.to_be_bytes()]);
        let n = block.len().min(rest.len());
        let (now, later) = rest.split_at_mut(n);
        now.iter_mut().zip(&block).for_each(|(o, b)| *o ^= b);
        rest = later;
        counter = counter.wrapping_add(1);
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

    /// R² mod n from the limb arithmetic alone, against the general-purpose big integers: both
    /// limb widths, sizes on either side of a limb boundary, and moduli of a few bits.
    #[test]
    fn r_squared_matches_big_integers() {
        let mut seed = 0x0123_4567_89ab_cdef;
        let mut moduli: Vec<Vec<u8>> = [2048usize, 2049, 2055, 2070, 2071, 3072, 3358, 3359, 4096, 8192, 8191, 1031, 64, 9]
            .iter()
            .map(|bits| modulus_bytes(*bits, &mut seed))
            .collect();
        moduli.extend([vec![1], vec![3], vec![5], vec![0xff], vec![0xff; 256], vec![0x80, 0, 0, 1]]);
        for n_be in moduli {
            let m = Modulus::new(&n_be, &[3]).unwrap();
            let big_n = rsa::BigUint::from_bytes_be(&n_be);
            let want = (rsa::BigUint::from(1u32) << (2 * m.w as usize * m.n.len())) % &big_n;
            let got = rsa::BigUint::from_bytes_be(&from_limbs(&m.rr, m.w, m.len));
            assert_eq!(got, want, "n = {big_n:x}");
            assert_eq!((m.bits(), m.size()), (big_n.bits(), n_be.len()));
        }
        // Moduli of a few bits still exponentiate right.
        let m = Modulus::new(&[0x0b], &[3]).unwrap();
        assert_eq!(m.public_op(&[7]), Some(vec![2])); // 7³ = 343 = 31·11 + 2
        let m = Modulus::new(&[1], &[3]).unwrap();
        assert_eq!(m.public_op(&[0]), Some(vec![0]));
    }

    /// Not a timed assertion: what the per-key set-up costs (R² mod n among it) for 4096 and
    /// 8192 bits on this host (`cargo test --release -p api-auth-filter key_setup_cost --
    /// --ignored --nocapture`; in wasm by `make test-wasm`'s runner).
    #[test]
    #[ignore]
    fn key_setup_cost() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for bits in [2048usize, 4096, 8192] {
            let n_be = modulus_bytes(bits, &mut seed);
            let n = 200;
            let t = std::time::Instant::now();
            for _ in 0..n {
                assert!(Modulus::new(&n_be, &[1, 0, 1]).is_some());
            }
            eprintln!("Modulus::new, {bits} bits: {:?}", t.elapsed() / n);
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

    /// A signature as long as the modulus but above it is refused for every modulus length,
    /// also where its octets hold more bits than the limbs (bit lengths just below a multiple
    /// of eight whose limbs round up by less than that): the fuzz target `rsa` found one
    /// of 81 bits taken for s^e mod n of its low 84 bits.
    #[test]
    fn a_signature_above_the_modulus_is_refused_at_every_length() {
        for bits in (9usize..=140).chain(2040..=2112).chain(4090..=4100) {
            // n = 2^(bits-1) + 1: odd, `bits` long, its top octet as small as it gets.
            let len = bits.div_ceil(8);
            let mut n = vec![0u8; len];
            n[0] = 1 << ((bits - 1) % 8);
            n[len - 1] |= 1;
            let m = Modulus::new(&n, &[1, 0, 1]).unwrap();
            assert!(m.public_op(&vec![0xff; len]).is_none(), "{bits} bits: all ones taken");
            // n - 1 is the largest signature: taken.
            let mut below = n.clone();
            below[len - 1] &= !1;
            assert!(m.public_op(&below).is_some(), "{bits} bits: n - 1 refused");
            // n - 1 with the octets' top bit set (when n leaves it clear): above n, and
            // n - 1 again in the bits below.
            if n[0] < 0x80 {
                let mut above = below.clone();
                above[0] |= 0x80;
                assert!(m.public_op(&above).is_none(), "{bits} bits: n - 1 + 2^{} taken", 8 * len - 1);
            }
        }
    }
}
