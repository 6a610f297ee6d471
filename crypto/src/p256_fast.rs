//! ECDSA P-256 verification for ES256 (RFC 7518 §3.4: r || s, SHA-256), tuned for wasm.
//!
//! Field arithmetic mod p = 2²⁵⁶ - 2²²⁴ + 2¹⁹² + 2⁹⁶ - 1 on ten signed limbs of 26 bits in i64:
//! a product column is a bare sum of multiplies (no carry per product), additions and
//! subtractions are limb by limb without carries, and Montgomery reduction (R = 2²⁶⁰) needs no
//! multiplication at all: -p⁻¹ ≡ 1 mod 2²⁶, and p's terms fall on shifts of the limbs.
//!
//! u1·G + u2·Q by Straus' interleaving on width-w NAFs, each scalar split in eight pieces of
//! 32 bits so that there are only 32 doublings: the tables hold the odd multiples of 2^(32j)·G
//! and of 2^(32j)·Q, in affine coordinates (mixed additions). G's table is computed once per
//! process, Q's when the key is parsed. A scalar above n/2 is replaced by n - u and its point
//! negated, so that its NAF stays within 256 digits. x(R) is compared projectively
//! (r·Z² = X), so no field inversion happens per signature; s⁻¹ mod n is a binary extended
//! Euclid on 64-bit words.
//!
//! Tables, 160 bytes a point: 8·64 points for G (80 KB, built on first use), 8·16 for each
//! P-256 key (20 KB).
//!
//! Verification only: nothing secret is involved, so variable time is fine. Checked against
//! every Wycheproof P1363 vector (tests/wycheproof.rs) and, differentially, against the `p256`
//! crate (below).

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

const MASK: i64 = (1 << 26) - 1;

/// 256-bit integers as four little-endian 64-bit words.
pub(super) type U256 = [u64; 4];

const P: U256 = [0xffff_ffff_ffff_ffff, 0x0000_0000_ffff_ffff, 0, 0xffff_ffff_0000_0001];
const N: U256 = [0xf3b9_cac2_fc63_2551, 0xbce6_faad_a717_9e84, 0xffff_ffff_ffff_ffff, 0xffff_ffff_0000_0000];
/// (n - 1) / 2: scalars above it are negated.
const N_HALF: U256 = [0x79dc_e561_7e31_92a8, 0xde73_7d56_d38b_cf42, 0x7fff_ffff_ffff_ffff, 0x7fff_ffff_8000_0000];
/// p - n: x(R) may be r + n when r is below it.
const P_MINUS_N: U256 = [0x0c46_353d_039c_daae, 0x4319_0553_58e8_617b, 0, 0];
const P_MINUS_2: U256 = [0xffff_ffff_ffff_fffd, 0x0000_0000_ffff_ffff, 0, 0xffff_ffff_0000_0001];
const B: U256 = [0x3bce_3c3e_27d2_604b, 0x651d_06b0_cc53_b0f6, 0xb3eb_bd55_7698_86bc, 0x5ac6_35d8_aa3a_93e7];
const GX: U256 = [0xf4a1_3945_d898_c296, 0x7703_7d81_2deb_33a0, 0xf8bc_e6e5_63a4_40f2, 0x6b17_d1f2_e12c_4247];
const GY: U256 = [0xcbb6_4068_37bf_51f5, 0x2bce_3357_6b31_5ece, 0x8ee7_eb4a_7c0f_9e16, 0x4fe3_42e2_fe1a_7f9b];
/// R² mod p and R² mod n, R = 2²⁶⁰.
const RR_P: U256 = [0x0000_0000_0000_0300, 0xffff_fbff_ffff_ff00, 0xffff_ffff_ffff_feff, 0x0000_04ff_ffff_fdff];
const RR_N: U256 = [0x0845_cc0d_ea6d_c3ba, 0x5571_bb19_2a06_7d8a, 0x45b2_392b_6bec_5961, 0xe12d_9559_d956_1fc2];
/// -n⁻¹ mod 2²⁶.
const N0INV: i64 = 0x200_bc4f;

/// Window widths of the NAFs: G's table (once per process) can be wider than each key's.
const W_G: u32 = 8;
const W_Q: u32 = 6;
const G_ENTRIES: usize = 1 << (W_G - 2);
/// Each scalar is split in this many pieces of `SPAN` bits: `SPAN` doublings per verification.
const PIECES: usize = 8;
const SPAN: usize = 256 / PIECES;
const Q_ENTRIES: usize = 1 << (W_Q - 2);

const fn limbs(w: U256) -> [i64; 10] {
    let mut out = [0i64; 10];
    let mut i = 0;
    while i < 10 {
        let (word, off) = (26 * i / 64, 26 * i % 64);
        let mut v = w[word] >> off;
        if off > 38 && word < 3 {
            v |= w[word + 1] << (64 - off);
        }
        out[i] = (v & MASK as u64) as i64;
        i += 1;
    }
    out
}

const P_LIMBS: [i64; 10] = limbs(P);
const N_LIMBS: [i64; 10] = limbs(N);

/// Limbs with 0..8 in [0, 2²⁶) and the rest in limb 9 (normalized, value unchanged) to words;
/// the value must be below 2²⁵⁶.
fn words(l: &[i64; 10]) -> U256 {
    let mut out = [0u64; 4];
    for (i, &v) in l.iter().enumerate() {
        let (word, off) = (26 * i / 64, 26 * i % 64);
        let v = v as u64;
        out[word] |= v << off;
        if off > 38 && word < 3 {
            out[word + 1] |= v >> (64 - off);
        }
    }
    out
}

fn u256_from_be(b: &[u8; 32]) -> U256 {
    let mut out = [0u64; 4];
    for (i, chunk) in b.rchunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        out[i] = u64::from_be_bytes(w);
    }
    out
}

fn lt(a: &U256, b: &U256) -> bool {
    for i in (0..4).rev() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

fn is_zero_u256(a: &U256) -> bool {
    a.iter().all(|w| *w == 0)
}

/// a + b, and the carry out.
fn add_u256(a: &U256, b: &U256) -> (U256, bool) {
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (s1, c1) = a[i].overflowing_add(b[i]);
        let (s2, c2) = s1.overflowing_add(u64::from(carry));
        out[i] = s2;
        carry = c1 || c2;
    }
    (out, carry)
}

/// a - b, and the borrow out.
fn sub_u256(a: &U256, b: &U256) -> (U256, bool) {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (d1, b1) = a[i].overflowing_sub(b[i]);
        let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
        out[i] = d2;
        borrow = b1 || b2;
    }
    (out, borrow)
}

/// An element of GF(p) in Montgomery form (a·R mod p), as ten signed limbs of 26 bits whose
/// value is congruent to it (not necessarily below p, possibly negative). A "reduced" element
/// (the output of `mul`, `sqr`, `reduce`) has limbs of magnitude below 2²⁶·¹ and a value of
/// magnitude below 2²⁵⁶·⁰¹; `mul` takes limbs below 3·2²⁸, i.e. small linear combinations of
/// reduced elements.
#[derive(Clone, Copy, Debug)]
struct Fe([i64; 10]);

/// Bound on the limbs `mul` and `sqr` accept: ten products of two of them (or five doubled
/// ones and a square) stay below 2⁶³ with room for the reduction.
#[cfg(debug_assertions)]
const MUL_LIMIT: i64 = 3 << 28;

impl Fe {
    const ZERO: Fe = Fe([0; 10]);

    #[inline(always)]
    fn add(&self, b: &Fe) -> Fe {
        let mut r = self.0;
        for (x, y) in r.iter_mut().zip(b.0) {
            *x += y;
        }
        Fe(r)
    }

    #[inline(always)]
    fn sub(&self, b: &Fe) -> Fe {
        let mut r = self.0;
        for (x, y) in r.iter_mut().zip(b.0) {
            *x -= y;
        }
        Fe(r)
    }

    #[inline(always)]
    fn scale(&self, k: i64) -> Fe {
        let mut r = self.0;
        for x in r.iter_mut() {
            *x *= k;
        }
        Fe(r)
    }

    #[inline(always)]
    fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    #[cfg(debug_assertions)]
    fn check_mul_input(&self) {
        debug_assert!(self.0.iter().all(|l| l.abs() < MUL_LIMIT), "limbs too wide for mul: {:?}", self.0);
    }

    /// self·b·R⁻¹ mod p, reduced.
    #[inline(never)]
    fn mul(&self, b: &Fe) -> Fe {
        #[cfg(debug_assertions)]
        {
            self.check_mul_input();
            b.check_mul_input();
        }
        let (a, b) = (&self.0, &b.0);
        let mut t = [0i64; 19];
        for i in 0..10 {
            for j in 0..10 {
                t[i + j] += a[i] * b[j];
            }
        }
        redc(t)
    }

    /// self²·R⁻¹ mod p, reduced: each cross product once, doubled.
    #[inline(never)]
    fn sqr(&self) -> Fe {
        #[cfg(debug_assertions)]
        self.check_mul_input();
        let a = &self.0;
        let mut a2 = [0i64; 10];
        for i in 0..10 {
            a2[i] = a[i] << 1;
        }
        let mut t = [0i64; 19];
        for i in 0..10 {
            t[2 * i] += a[i] * a[i];
            for j in i + 1..10 {
                t[i + j] += a2[i] * a[j];
            }
        }
        redc(t)
    }

    /// Carries the limbs and folds what lies above 2²⁵⁶ back in: a reduced element.
    #[inline(always)]
    fn reduce(&self) -> Fe {
        let mut r = self.0;
        for k in 0..9 {
            let c = r[k] >> 26;
            r[k] &= MASK;
            r[k + 1] += c;
        }
        fold(r)
    }

    /// The value mod p, in [0, p), as normalized limbs (each in [0, 2²⁶)).
    fn canonical(&self) -> [i64; 10] {
        let mut r = self.reduce().reduce().0;
        carry(&mut r);
        // A reduced value lies in (-2²⁵⁶, 2²⁵⁷): at most a few corrections.
        while r[9] < 0 {
            for (x, y) in r.iter_mut().zip(P_LIMBS) {
                *x += y;
            }
            carry(&mut r);
        }
        while geq(&r, &P_LIMBS) {
            for (x, y) in r.iter_mut().zip(P_LIMBS) {
                *x -= y;
            }
            carry(&mut r);
        }
        r
    }

    fn is_zero(&self) -> bool {
        self.canonical() == [0; 10]
    }

    /// From an integer below p: its Montgomery form.
    fn from_u256(a: &U256) -> Fe {
        Fe(limbs(*a)).mul(&Fe(limbs(RR_P)))
    }

    /// Out of Montgomery form: the integer, normalized, below p.
    #[cfg(test)]
    fn to_u256(self) -> U256 {
        words(&self.mul(&Fe(limbs([1, 0, 0, 0]))).canonical())
    }

    fn one() -> Fe {
        Fe::from_u256(&[1, 0, 0, 0])
    }

    /// self^(p-2) = self⁻¹ (0 for 0). Only for building tables.
    fn invert(&self) -> Fe {
        let mut acc = Fe::one();
        for i in (0..256).rev() {
            acc = acc.sqr();
            if P_MINUS_2[i / 64] >> (i % 64) & 1 == 1 {
                acc = acc.mul(self);
            }
        }
        acc
    }
}

/// Limbs 0..8 into [0, 2²⁶), the rest in limb 9 (signed); the value is unchanged.
fn carry(r: &mut [i64; 10]) {
    for k in 0..9 {
        let c = r[k] >> 26;
        r[k] &= MASK;
        r[k + 1] += c;
    }
}

/// a >= b for normalized limbs (limb 9 of `a` may exceed 2²⁶).
fn geq(a: &[i64; 10], b: &[i64; 10]) -> bool {
    for k in (0..10).rev() {
        if a[k] != b[k] {
            return a[k] > b[k];
        }
    }
    true
}

/// Limbs 0..8 normalized, limb 9 anything: folds the part above 2²⁵⁶ with
/// 2²⁵⁶ ≡ 2²²⁴ - 2¹⁹² - 2⁹⁶ + 1 (mod p).
#[inline(always)]
fn fold(mut r: [i64; 10]) -> Fe {
    let hi = r[9] >> 22;
    r[9] &= (1 << 22) - 1;
    r[0] += hi;
    r[3] -= hi << 18;
    r[7] -= hi << 10;
    r[8] += hi << 16;
    Fe(r)
}

/// Montgomery reduction of a product's columns: t·2⁻²⁶⁰ mod p, reduced. With -p⁻¹ ≡ 1
/// (mod 2²⁶) the multiple of p to add at limb i is m = t[i] mod 2²⁶ itself, and m·p is
/// -m + m·2⁹⁶ + m·2¹⁹² - m·2²²⁴ + m·2²⁵⁶: shifts at limbs i+3, i+7, i+8, i+9.
#[inline(always)]
fn redc(mut t: [i64; 19]) -> Fe {
    for i in 0..10 {
        let m = t[i] & MASK;
        t[i + 1] += t[i] >> 26;
        t[i + 3] += m << 18;
        t[i + 7] += m << 10;
        t[i + 8] -= m << 16;
        t[i + 9] += m << 22;
    }
    let mut r = [0i64; 10];
    let mut c = 0i64;
    for k in 0..9 {
        let v = t[10 + k] + c;
        r[k] = v & MASK;
        c = v >> 26;
    }
    r[9] = c;
    fold(r)
}

#[derive(Clone, Copy, Debug)]
struct Affine {
    x: Fe,
    y: Fe,
}

/// Jacobian coordinates (X/Z², Y/Z³); never the point at infinity (that is `None` where it
/// can occur), so Z is never 0.
#[derive(Clone, Copy, Debug)]
struct Jac {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Affine {
    fn to_jac(self) -> Jac {
        Jac { x: self.x, y: self.y, z: Fe::one() }
    }

    fn neg(&self) -> Affine {
        Affine { x: self.x, y: self.y.neg() }
    }
}

/// 2P for a = -3 (dbl-2001-b): 3M + 5S. P-256 has no point of order 2, so 2P is finite.
fn double(p: &Jac) -> Jac {
    let delta = p.z.sqr();
    let gamma = p.y.sqr();
    let beta = p.x.mul(&gamma);
    let alpha = p.x.sub(&delta).scale(3).mul(&p.x.add(&delta));
    let x3 = alpha.sqr().sub(&beta.scale(8)).reduce();
    let z3 = p.y.add(&p.y).mul(&p.z);
    let y3 = alpha.mul(&beta.scale(4).sub(&x3)).sub(&gamma.sqr().scale(8)).reduce();
    Jac { x: x3, y: y3, z: z3 }
}

/// P + Q, Q affine: 8M + 3S. P = Q falls back to doubling, P = -Q gives infinity.
fn add_mixed(p: &Jac, q: &Affine) -> Option<Jac> {
    let z1z1 = p.z.sqr();
    let u2 = q.x.mul(&z1z1);
    let s2 = q.y.mul(&p.z.mul(&z1z1));
    let h = u2.sub(&p.x);
    let r = s2.sub(&p.y);
    if h.is_zero() {
        return if r.is_zero() { Some(double(p)) } else { None };
    }
    let hh = h.sqr();
    let hhh = h.mul(&hh);
    let v = p.x.mul(&hh);
    let x3 = r.sqr().sub(&hhh).sub(&v.add(&v)).reduce();
    let y3 = r.mul(&v.sub(&x3)).sub(&p.y.mul(&hhh)).reduce();
    let z3 = p.z.mul(&h);
    Some(Jac { x: x3, y: y3, z: z3 })
}

/// P + Q, both Jacobian (table building only).
fn add_jac(p: &Jac, q: &Jac) -> Option<Jac> {
    let z1z1 = p.z.sqr();
    let z2z2 = q.z.sqr();
    let u1 = p.x.mul(&z2z2);
    let u2 = q.x.mul(&z1z1);
    let s1 = p.y.mul(&q.z.mul(&z2z2));
    let s2 = q.y.mul(&p.z.mul(&z1z1));
    let h = u2.sub(&u1);
    let r = s2.sub(&s1);
    if h.is_zero() {
        return if r.is_zero() { Some(double(p)) } else { None };
    }
    let hh = h.sqr();
    let hhh = h.mul(&hh);
    let v = u1.mul(&hh);
    let x3 = r.sqr().sub(&hhh).sub(&v.add(&v)).reduce();
    let y3 = r.mul(&v.sub(&x3)).sub(&s1.mul(&hhh)).reduce();
    let z3 = p.z.mul(&q.z).mul(&h);
    Some(Jac { x: x3, y: y3, z: z3 })
}

/// The odd multiples 1, 3, …, 2^(w-1) - 1 of 2^(SPAN·j)·P for each piece j, in affine
/// coordinates (one inversion for all): `entries` per piece, piece after piece.
fn build_table(p: &Affine, entries: usize) -> Option<Vec<Affine>> {
    let mut jac = Vec::with_capacity(PIECES * entries);
    let mut base = p.to_jac();
    for j in 0..PIECES {
        if j > 0 {
            for _ in 0..SPAN {
                base = double(&base);
            }
        }
        let twice = double(&base);
        let mut cur = base;
        jac.push(cur);
        for _ in 1..entries {
            cur = add_jac(&cur, &twice)?;
            jac.push(cur);
        }
    }
    // Montgomery's trick: prefix products of the Z, one inversion, then back.
    let mut prefix = Vec::with_capacity(jac.len());
    let mut acc = Fe::one();
    for q in &jac {
        prefix.push(acc);
        acc = acc.mul(&q.z);
    }
    if acc.is_zero() {
        return None;
    }
    let mut inv = acc.invert();
    let mut out = vec![Affine { x: Fe::ZERO, y: Fe::ZERO }; jac.len()];
    for ((q, pre), slot) in jac.iter().zip(&prefix).zip(out.iter_mut()).rev() {
        let zinv = inv.mul(pre);
        inv = inv.mul(&q.z);
        let zinv2 = zinv.sqr();
        *slot = Affine { x: q.x.mul(&zinv2), y: q.y.mul(&zinv2.mul(&zinv)) };
    }
    Some(out)
}

fn g_table() -> Option<&'static [Affine]> {
    static TABLE: OnceLock<Option<Vec<Affine>>> = OnceLock::new();
    TABLE
        .get_or_init(|| build_table(&Affine { x: Fe::from_u256(&GX), y: Fe::from_u256(&GY) }, G_ENTRIES))
        .as_deref()
}

/// Width-w NAF of k < 2²⁵⁵: 256 digits, each 0 or odd in ±[1, 2^(w-1)). Also Ed25519's.
pub(super) fn wnaf(k: &U256, w: u32) -> [i8; 256] {
    let bits = |pos: usize, count: u32| -> u64 {
        let (word, off) = (pos / 64, pos % 64);
        let mut v = k[word] >> off;
        if off + count as usize > 64 && word < 3 {
            v |= k[word + 1] << (64 - off);
        }
        v & ((1u64 << count) - 1)
    };
    let mut naf = [0i8; 256];
    let mut carry = 0u64;
    let mut pos = 0usize;
    while pos < 256 {
        if bits(pos, 1) == carry {
            pos += 1;
            continue;
        }
        let now = w.min((256 - pos) as u32);
        let mut word = bits(pos, now) as i64 + carry as i64;
        carry = (word >> (w - 1)) as u64 & 1;
        word -= (carry as i64) << w;
        naf[pos] = word as i8;
        pos += now as usize;
    }
    naf
}

/// The scalar's NAF digits, with the sign to apply to its point: n - u (negated) when u > n/2.
fn recode(u: &U256, w: u32) -> ([i8; 256], bool) {
    if lt(&N_HALF, u) {
        (wnaf(&sub_u256(&N, u).0, w), true)
    } else {
        (wnaf(u, w), false)
    }
}

/// a·b·R⁻¹ mod n (Montgomery with the generic reduction), normalized below n, for
/// a < 2²⁵⁶ and b < n, in limbs of 26 bits.
fn mont_n(a: &[i64; 10], b: &[i64; 10]) -> [i64; 10] {
    let mut t = [0i64; 20];
    for i in 0..10 {
        for j in 0..10 {
            t[i + j] += a[i] * b[j];
        }
    }
    for i in 0..10 {
        let m = t[i].wrapping_mul(N0INV) & MASK;
        for j in 0..10 {
            t[i + j] += m * N_LIMBS[j];
        }
        t[i + 1] += t[i] >> 26;
    }
    let mut r = [0i64; 10];
    r.copy_from_slice(&t[10..20]);
    carry(&mut r);
    // Below a·b/R + n < 2n for a < 2²⁵⁶, b < n.
    if geq(&r, &N_LIMBS) {
        for (x, y) in r.iter_mut().zip(N_LIMBS) {
            *x -= y;
        }
        carry(&mut r);
    }
    r
}

/// a·b mod n for a < 2²⁵⁶, b < n.
fn mul_mod_n(a: &U256, b_mont: &[i64; 10]) -> U256 {
    words(&mont_n(&limbs(*a), b_mont))
}

/// x / 2 mod n for x < n.
fn half_mod_n(x: &U256) -> U256 {
    let (v, top) = if x[0] & 1 == 1 { add_u256(x, &N) } else { (*x, false) };
    [
        v[0] >> 1 | v[1] << 63,
        v[1] >> 1 | v[2] << 63,
        v[2] >> 1 | v[3] << 63,
        v[3] >> 1 | u64::from(top) << 63,
    ]
}

fn sub_mod_n(a: &U256, b: &U256) -> U256 {
    let (d, borrow) = sub_u256(a, b);
    if borrow {
        add_u256(&d, &N).0
    } else {
        d
    }
}

/// s⁻¹ mod n for 0 < s < n (binary extended Euclid; n is prime).
fn invert_mod_n(s: &U256) -> Option<U256> {
    const ONE: U256 = [1, 0, 0, 0];
    let (mut u, mut v) = (*s, N);
    let (mut x1, mut x2) = (ONE, [0u64; 4]);
    // Invariants: x1·s ≡ u and x2·s ≡ v (mod n).
    while u != ONE && v != ONE {
        if is_zero_u256(&u) || is_zero_u256(&v) {
            return None;
        }
        while u[0] & 1 == 0 {
            u = [u[0] >> 1 | u[1] << 63, u[1] >> 1 | u[2] << 63, u[2] >> 1 | u[3] << 63, u[3] >> 1];
            x1 = half_mod_n(&x1);
        }
        while v[0] & 1 == 0 {
            v = [v[0] >> 1 | v[1] << 63, v[1] >> 1 | v[2] << 63, v[2] >> 1 | v[3] << 63, v[3] >> 1];
            x2 = half_mod_n(&x2);
        }
        if lt(&u, &v) {
            v = sub_u256(&v, &u).0;
            x2 = sub_mod_n(&x2, &x1);
        } else {
            u = sub_u256(&u, &v).0;
            x1 = sub_mod_n(&x1, &x2);
        }
    }
    Some(if u == ONE { x1 } else { x2 })
}

/// A P-256 public key ready to verify: its multiples for the Straus table.
#[derive(Clone)]
pub struct Key {
    table: Vec<Affine>,
}

impl Key {
    /// From the big-endian affine coordinates: `None` unless both are below p and the point
    /// is on the curve (which also excludes the point at infinity, not representable here).
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Key> {
        let x: &[u8; 32] = x.try_into().ok()?;
        let y: &[u8; 32] = y.try_into().ok()?;
        let (x, y) = (u256_from_be(x), u256_from_be(y));
        if !lt(&x, &P) || !lt(&y, &P) {
            return None;
        }
        let (x, y) = (Fe::from_u256(&x), Fe::from_u256(&y));
        // y² = x³ - 3x + b
        let rhs = x.sqr().mul(&x).sub(&x.scale(3)).add(&Fe::from_u256(&B));
        if !y.sqr().sub(&rhs).is_zero() {
            return None;
        }
        Some(Key { table: build_table(&Affine { x, y }, Q_ENTRIES)? })
    }

    /// ES256: `sig` is r || s (32 bytes each), the message is hashed with SHA-256.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_prehash(&Sha256::digest(msg).into(), sig)
    }

    fn verify_prehash(&self, digest: &[u8; 32], sig: &[u8]) -> bool {
        let Ok(sig) = <&[u8; 64]>::try_from(sig) else { return false };
        let (r_be, s_be) = sig.split_at(32);
        let (Ok(r_be), Ok(s_be)) = (<&[u8; 32]>::try_from(r_be), <&[u8; 32]>::try_from(s_be)) else { return false };
        let (r, s) = (u256_from_be(r_be), u256_from_be(s_be));
        if is_zero_u256(&r) || is_zero_u256(&s) || !lt(&r, &N) || !lt(&s, &N) {
            return false;
        }
        let Some(w) = invert_mod_n(&s) else { return false };
        // w·R mod n, then e·w and r·w with one Montgomery product each (e need not be below n).
        let w_mont = mont_n(&limbs(w), &limbs(RR_N));
        let u1 = mul_mod_n(&u256_from_be(digest), &w_mont);
        let u2 = mul_mod_n(&r, &w_mont);
        let Some(g) = g_table() else { return false };
        let Some(acc) = straus(g, &u1, &self.table, &u2) else { return false };
        // x(R) = X/Z² must be r or r + n (x < p < 2n): r·Z² = X, projectively.
        let z2 = acc.z.sqr();
        let x = acc.x.mul(&Fe(limbs([1, 0, 0, 0]))).canonical();
        if z2.mul(&Fe(limbs(r))).canonical() == x {
            return true;
        }
        lt(&r, &P_MINUS_N) && z2.mul(&Fe(limbs(add_u256(&r, &N).0))).canonical() == x
    }
}

/// u1·G + u2·Q (`None` for the point at infinity), tables from `build_table`.
fn straus(g: &[Affine], u1: &U256, q: &[Affine], u2: &U256) -> Option<Jac> {
    let (naf1, neg1) = recode(u1, W_G);
    let (naf2, neg2) = recode(u2, W_Q);
    let mut acc: Option<Jac> = None;
    let add = |acc: Option<Jac>, table: &[Affine], entries: usize, piece: usize, d: i8, neg: bool| -> Option<Jac> {
        let Some(t) = table.get(piece * entries + usize::from(d.unsigned_abs() >> 1)) else { return acc };
        let t = if (d < 0) != neg { t.neg() } else { *t };
        match acc {
            None => Some(t.to_jac()),
            Some(a) => add_mixed(&a, &t),
        }
    };
    for pos in (0..SPAN).rev() {
        if let Some(a) = &acc {
            acc = Some(double(a));
        }
        for piece in 0..PIECES {
            let d = naf1[SPAN * piece + pos];
            if d != 0 {
                acc = add(acc, g, G_ENTRIES, piece, d, neg1);
            }
            let d = naf2[SPAN * piece + pos];
            if d != 0 {
                acc = add(acc, q, Q_ENTRIES, piece, d, neg2);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::BigUint;

    fn big(w: &U256) -> BigUint {
        w.iter().rev().fold(BigUint::from(0u32), |acc, x| (acc << 64) + BigUint::from(*x))
    }

    fn u256(b: &BigUint) -> U256 {
        let mut bytes = b.to_bytes_be();
        assert!(bytes.len() <= 32);
        while bytes.len() < 32 {
            bytes.insert(0, 0);
        }
        u256_from_be(bytes.as_slice().try_into().unwrap())
    }

    fn p() -> BigUint {
        big(&P)
    }

    fn n() -> BigUint {
        big(&N)
    }

    fn r() -> BigUint {
        BigUint::from(1u32) << 260
    }

    /// The value of signed limbs, mod m.
    fn value_mod(l: &[i64; 10], m: &BigUint) -> BigUint {
        let mut acc = BigUint::from(0u32);
        for (i, &x) in l.iter().enumerate() {
            let term = (BigUint::from(x.unsigned_abs()) << (26 * i)) % m;
            acc = if x < 0 { acc + m - term } else { acc + term };
        }
        acc % m
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn u256(&mut self) -> U256 {
            [self.next(), self.next(), self.next(), self.next()]
        }
        /// Random, or one of the edge values.
        fn interesting(&mut self, m: &BigUint) -> BigUint {
            match self.next() % 6 {
                0 => BigUint::from(self.next() % 3),
                1 => m - 1u32 - BigUint::from(self.next() % 3),
                2 => (BigUint::from(1u32) << (self.next() % 256) as usize) % m,
                _ => big(&self.u256()) % m,
            }
        }
        /// Limbs of a loose element: a reduced one, or a small combination of them.
        fn loose(&mut self) -> Fe {
            let mut l = [0i64; 10];
            for (i, x) in l.iter_mut().enumerate() {
                // A reduced element's top limb is below 2²²; the formulas combine at most
                // eight of them.
                let v = (self.next() % (1 << if i == 9 { 22 } else { 26 })) as i64;
                *x = match self.next() % 4 {
                    0 => v,
                    1 => -v,
                    2 => v * 5,
                    _ => -(v * 8),
                };
            }
            Fe(l)
        }
    }

    #[test]
    fn constants() {
        assert_eq!(big(&RR_P), (r() * r()) % p());
        assert_eq!(big(&RR_N), (r() * r()) % n());
        assert_eq!((BigUint::from(N0INV as u64) * n() + 1u32) % (BigUint::from(1u32) << 26), BigUint::from(0u32));
        assert_eq!(big(&N_HALF), (n() - 1u32) >> 1);
        assert_eq!(big(&P_MINUS_N), p() - n());
        assert_eq!(big(&P_MINUS_2), p() - 2u32);
        assert_eq!(words(&P_LIMBS), P);
        assert_eq!(words(&N_LIMBS), N);
        // G is on the curve.
        let (gx, gy, b) = (big(&GX), big(&GY), big(&B));
        let pp = p();
        assert_eq!((&gy * &gy) % &pp, (&gx * &gx * &gx + &b + &pp * 3u32 - &gx * 3u32) % &pp);
    }

    #[test]
    fn field_arithmetic_matches_big_integers() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (pp, rinv) = (p(), r().modpow(&(p() - 2u32), &p()));
        for round in 0..2000 {
            let (a, b) = if round % 2 == 0 {
                let (x, y) = (rng.interesting(&pp), rng.interesting(&pp));
                (Fe(limbs(u256(&x))), Fe(limbs(u256(&y))))
            } else {
                (rng.loose(), rng.loose())
            };
            let (va, vb) = (value_mod(&a.0, &pp), value_mod(&b.0, &pp));
            let want = (&va * &vb * &rinv) % &pp;
            let prod = a.mul(&b);
            assert_eq!(value_mod(&prod.0, &pp), want, "mul round {round}");
            assert!(prod.0.iter().all(|l| l.abs() < 1 << 27), "mul output not reduced: {:?}", prod.0);
            assert_eq!(value_mod(&a.sqr().0, &pp), (&va * &va * &rinv) % &pp, "sqr round {round}");
            // canonical: the value mod p, normalized.
            let c = a.canonical();
            assert!(c.iter().all(|l| (0..1 << 26).contains(l)));
            assert_eq!(big(&words(&c)), va, "canonical round {round}");
            assert_eq!(a.is_zero(), va == BigUint::from(0u32));
            let red = a.reduce();
            assert_eq!(value_mod(&red.0, &pp), va);
            assert!(red.0.iter().all(|l| l.abs() < 1 << 27));
        }
        // Zero in its several forms.
        assert!(Fe(P_LIMBS).is_zero());
        assert!(Fe(P_LIMBS).neg().is_zero());
        assert!(Fe(P_LIMBS).scale(3).is_zero());
        assert!(!Fe(limbs([1, 0, 0, 0])).is_zero());
        // Montgomery conversions and inversion.
        for _ in 0..20 {
            let x = rng.interesting(&pp);
            let fx = Fe::from_u256(&u256(&x));
            assert_eq!(big(&fx.to_u256()), x);
            if x != BigUint::from(0u32) {
                assert_eq!(big(&fx.invert().mul(&fx).to_u256()), BigUint::from(1u32));
            }
        }
    }

    #[test]
    fn scalar_arithmetic_matches_big_integers() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let nn = n();
        let w_r = |w: &U256| mont_n(&limbs(*w), &limbs(RR_N));
        for round in 0..500 {
            let s = rng.interesting(&nn);
            if s == BigUint::from(0u32) {
                assert_eq!(invert_mod_n(&[0; 4]), None);
                continue;
            }
            let inv = invert_mod_n(&u256(&s)).unwrap();
            assert_eq!(big(&inv), s.modpow(&(&nn - 2u32), &nn), "round {round}");
            // Any 256-bit e (a digest) times w, mod n.
            let e = rng.u256();
            let w = u256(&rng.interesting(&nn));
            assert_eq!(big(&mul_mod_n(&e, &w_r(&w))), (big(&e) * big(&w)) % &nn, "round {round}");
            let e = [u64::MAX; 4];
            assert_eq!(big(&mul_mod_n(&e, &w_r(&w))), (big(&e) * big(&w)) % &nn);
        }
    }

    #[test]
    fn naf_recodes_the_scalar() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let nn = n();
        for round in 0..500 {
            let u = rng.interesting(&nn);
            for w in [W_G, W_Q, 2, 5] {
                let (naf, neg) = recode(&u256(&u), w);
                let (mut pos, mut negs) = (BigUint::from(0u32), BigUint::from(0u32));
                for (i, d) in naf.iter().enumerate() {
                    assert!(*d == 0 || (d % 2 != 0 && i32::from(d.unsigned_abs()) < 1 << (w - 1)), "digit {d}");
                    if *d > 0 {
                        pos += BigUint::from(*d as u32) << i;
                    } else if *d < 0 {
                        negs += BigUint::from(d.unsigned_abs()) << i;
                    }
                }
                // Σ digits = u, or n - u when negated.
                let want = if neg { &nn - &u } else { u.clone() };
                assert_eq!(pos, want + negs, "round {round} w {w}");
            }
        }
    }

    /// The table entries are the multiples the p256 crate computes (k·G as a public key).
    #[test]
    fn generator_table_matches_p256() {
        let g = g_table().unwrap();
        assert_eq!(g.len(), PIECES * G_ENTRIES);
        for (piece, k) in [(0usize, 1usize), (0, 3), (0, G_ENTRIES * 2 - 1), (1, 1), (2, 61), (PIECES - 1, G_ENTRIES * 2 - 1), (PIECES - 1, 1)] {
            let scalar = (BigUint::from(k) << (SPAN * piece)) % n();
            let mut bytes = scalar.to_bytes_be();
            while bytes.len() < 32 {
                bytes.insert(0, 0);
            }
            let sk = p256::ecdsa::SigningKey::from_slice(&bytes).unwrap();
            let point = sk.verifying_key().to_sec1_point(false);
            let entry = &g[piece * G_ENTRIES + (k - 1) / 2];
            assert_eq!(big(&entry.x.to_u256()), BigUint::from_bytes_be(&point.as_bytes()[1..33]), "{piece} {k}");
            assert_eq!(big(&entry.y.to_u256()), BigUint::from_bytes_be(&point.as_bytes()[33..]), "{piece} {k}");
        }
    }

    fn affine_of(p: &Jac) -> (U256, U256) {
        let zinv = p.z.invert();
        let zinv2 = zinv.sqr();
        (p.x.mul(&zinv2).to_u256(), p.y.mul(&zinv2.mul(&zinv)).to_u256())
    }

    /// The exceptional cases of the addition: P + P doubles, P + (-P) is infinity, and a
    /// Jacobian point with Z ≠ 1 meets its own affine form.
    #[test]
    fn addition_exceptions() {
        let g = g_table().unwrap();
        let (p, q) = (g[0], g[3]);
        let pj = p.to_jac();
        let twice = double(&pj);
        assert_eq!(affine_of(&add_mixed(&pj, &p).unwrap()), affine_of(&twice));
        assert!(add_mixed(&pj, &p.neg()).is_none());
        assert!(add_jac(&pj, &p.neg().to_jac()).is_none());
        // 7P = 3P + 4P; its affine form against itself (Z ≠ 1).
        let seven = add_mixed(&double(&twice), &g[1]).unwrap();
        assert_eq!(affine_of(&seven), (q.x.to_u256(), q.y.to_u256()));
        assert_eq!(affine_of(&add_mixed(&seven, &q).unwrap()), affine_of(&double(&seven)));
        assert!(add_mixed(&seven, &q.neg()).is_none());
        assert_eq!(affine_of(&add_jac(&seven, &q.to_jac()).unwrap()), affine_of(&double(&seven)));
    }

    /// u1·G + u2·Q against the p256 crate's (u1 + u2·d)·G, for scalars at the edges too
    /// (0, 1, n - 1, n/2, u1 = u2, u2 = -u1·d⁻¹ giving infinity).
    #[test]
    fn straus_matches_p256() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let nn = n();
        let d = BigUint::from(0x1234_5678_9abc_def0u64) * BigUint::from(0xfedc_ba98_7654_3210u64) + 12345u32;
        let mut d_be = d.to_bytes_be();
        while d_be.len() < 32 {
            d_be.insert(0, 0);
        }
        let sk = p256::ecdsa::SigningKey::from_slice(&d_be).unwrap();
        let key = fast_key(sk.verifying_key());
        let d_inv = d.modpow(&(&nn - 2u32), &nn);
        for round in 0..60 {
            let u1 = rng.interesting(&nn);
            let u2 = match round % 4 {
                0 => u1.clone(),
                1 => (&nn - (&u1 * &d_inv) % &nn) % &nn,
                _ => rng.interesting(&nn),
            };
            let k = (&u1 + &u2 * &d) % &nn;
            let got = straus(g_table().unwrap(), &u256(&u1), &key.table, &u256(&u2));
            if k == BigUint::from(0u32) {
                assert!(got.is_none(), "round {round}");
                continue;
            }
            let mut k_be = k.to_bytes_be();
            while k_be.len() < 32 {
                k_be.insert(0, 0);
            }
            let point = p256::ecdsa::SigningKey::from_slice(&k_be).unwrap().verifying_key().to_sec1_point(false);
            let (x, y) = affine_of(&got.unwrap());
            assert_eq!(big(&x), BigUint::from_bytes_be(&point.as_bytes()[1..33]), "round {round}");
            assert_eq!(big(&y), BigUint::from_bytes_be(&point.as_bytes()[33..]), "round {round}");
        }
    }

    fn sign(sk: &p256::ecdsa::SigningKey, msg: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = sk.sign(msg);
        sig.to_bytes().to_vec()
    }

    fn reference(vk: &p256::ecdsa::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        p256::ecdsa::Signature::from_slice(sig).is_ok_and(|s| vk.verify(msg, &s).is_ok())
    }

    fn fast_key(vk: &p256::ecdsa::VerifyingKey) -> Key {
        let point = vk.to_sec1_point(false);
        let b = point.as_bytes();
        Key::from_coordinates(&b[1..33], &b[33..65]).unwrap()
    }

    /// The fast path and the p256 crate agree on random keys and messages: valid signatures,
    /// flipped bits, swapped halves, r or s zero or n (or n - 1, n + 1), garbage.
    #[test]
    fn differential_against_the_p256_crate() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let n_be = big(&N).to_bytes_be();
        let (mut accepted, mut total) = (0, 0);
        for key_round in 0..12 {
            let mut secret = [0u8; 32];
            secret.iter_mut().for_each(|b| *b = rng.next() as u8);
            if key_round == 0 {
                // Q = G: u1·G + u2·Q adds equal points.
                secret = [0; 32];
                secret[31] = 1;
            }
            let sk = p256::ecdsa::SigningKey::from_slice(&secret).unwrap();
            let vk = *sk.verifying_key();
            let key = fast_key(&vk);
            for round in 0..24 {
                let msg: Vec<u8> = (0..(rng.next() % 200)).map(|_| rng.next() as u8).collect();
                let mut sig = sign(&sk, &msg);
                match round % 12 {
                    0 | 1 => {}
                    2 => {
                        let i = (rng.next() % 512) as usize;
                        sig[i / 8] ^= 1 << (i % 8);
                    }
                    3 => sig.rotate_left(32),
                    4 => sig[..32].fill(0),
                    5 => sig[32..].fill(0),
                    6 => sig[..32].copy_from_slice(&n_be),
                    7 => sig[32..].copy_from_slice(&n_be),
                    8 => {
                        // s → n - s: the other valid signature.
                        let s = BigUint::from_bytes_be(&sig[32..]);
                        let t = (big(&N) - s).to_bytes_be();
                        sig[32..].fill(0);
                        sig[64 - t.len()..].copy_from_slice(&t);
                    }
                    9 => sig.iter_mut().for_each(|b| *b = rng.next() as u8),
                    10 => {
                        sig.pop();
                    }
                    _ => {
                        let i = (rng.next() % msg.len().max(1) as u64) as usize;
                        if let Some(b) = sig.get_mut(i % 64) {
                            *b = b.wrapping_add(1);
                        }
                    }
                }
                let want = reference(&vk, &msg, &sig);
                assert_eq!(key.verify(&msg, &sig), want, "key {key_round} round {round}");
                if round % 12 < 2 || round % 12 == 8 {
                    assert!(want, "key {key_round} round {round}");
                }
                accepted += usize::from(want);
                total += 1;
            }
        }
        assert!(accepted > total / 5);
    }

    /// Scalars at the edges: digests that make u1 = 0, u1 = u2 (the same point added twice when
    /// Q = G), and digests whose e is at or above n.
    #[test]
    fn edge_scalars_against_the_p256_crate() {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let mut rng = Rng(0x0bad_5eed_0bad_5eed);
        let n_be = big(&N).to_bytes_be();
        let mut one = [0u8; 32];
        one[31] = 1;
        let keys = [p256::ecdsa::SigningKey::from_slice(&one).unwrap(), p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap()];
        for sk in &keys {
            let vk = *sk.verifying_key();
            let key = fast_key(&vk);
            for round in 0..40 {
                let mut digest = [0u8; 32];
                let mut sig = [0u8; 64];
                sig.iter_mut().for_each(|b| *b = rng.next() as u8);
                sig[0] &= 0x7f;
                sig[32] &= 0x7f;
                match round % 5 {
                    0 => {} // e = 0: u1 = 0
                    1 => digest.copy_from_slice(&n_be), // e = n: u1 = 0
                    2 => digest.copy_from_slice(&sig[..32]), // e = r: u1 = u2
                    3 => digest = [0xff; 32],
                    _ => digest.iter_mut().for_each(|b| *b = rng.next() as u8),
                }
                let want = p256::ecdsa::Signature::from_slice(&sig).is_ok_and(|s| vk.verify_prehash(&digest, &s).is_ok());
                assert_eq!(key.verify_prehash(&digest, &sig), want, "round {round}");
            }
            // Valid signatures for e = 0, e = n (u1 = 0) and e = 2²⁵⁶ - 1 (e above n), made by
            // the p256 crate.
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            for digest in [[0u8; 32], { let mut d = [0u8; 32]; d.copy_from_slice(&n_be); d }, [0xff; 32]] {
                let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
                let sig = sig.to_bytes();
                assert!(vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap()).is_ok());
                assert!(key.verify_prehash(&digest, &sig));
            }
        }
    }

    #[test]
    fn keys_are_validated() {
        let sk = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
        let point = sk.verifying_key().to_sec1_point(false);
        let b = point.as_bytes();
        assert!(Key::from_coordinates(&b[1..33], &b[33..]).is_some());
        // Off the curve.
        let mut y = b[33..].to_vec();
        y[31] ^= 1;
        assert!(Key::from_coordinates(&b[1..33], &y).is_none());
        // Coordinates at or above p, wrong lengths, (0, 0).
        let p_be = big(&P).to_bytes_be();
        assert!(Key::from_coordinates(&p_be, &b[33..]).is_none());
        assert!(Key::from_coordinates(&b[1..33], &p_be).is_none());
        assert!(Key::from_coordinates(&b[1..32], &b[33..]).is_none());
        assert!(Key::from_coordinates(&[0; 32], &[0; 32]).is_none());
        // x + p would be the same field element: refused, as the p256 crate does.
        let x_plus_p = big(&u256_from_be(b[1..33].try_into().unwrap())) + p();
        if x_plus_p.bits() <= 256 {
            assert!(Key::from_coordinates(&x_plus_p.to_bytes_be(), &b[33..]).is_none());
        }
    }

    /// Not a timed assertion: prints the cost of one verification on this host
    /// (`cargo test --release -p api-auth-filter p256_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn p256_cost() {
        let sk = p256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap();
        let vk = *sk.verifying_key();
        let key = fast_key(&vk);
        let sig = sign(&sk, b"message");
        let n = 2000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(key.verify(b"message", &sig));
        }
        let ours = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(reference(&vk, b"message", &sig));
        }
        eprintln!("ES256 verify on this host: fast path {ours:?}, p256 crate {:?}", t.elapsed() / n);
    }
}
