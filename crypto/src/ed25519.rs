//! Ed25519 verification for EdDSA (RFC 8032 §5.1.7, RFC 8037): the field GF(2²⁵⁵ - 19) on ten
//! limbs of 26 and 25 bits (products in i64, what wasm32 multiplies natively), the scalars
//! mod L on `monty`; extended twisted Edwards coordinates, [S]B - [k]A interleaving width-5
//! NAFs over the odd multiples 1·, 3·, … 15· of B (once per process) and of -A (once per key).
//!
//! What is accepted is what the `ed25519-compact` crate (which the filter used before)
//! accepts: S below L; A and R canonical encodings (y below p) of curve points that do not
//! have small order; and the cofactored equation, [S]B - [k]A - R of small order.
//!
//! Verification only: nothing secret is involved, so variable time is fine. Checked against
//! every Wycheproof vector (tests/wycheproof.rs) and, differentially, against `ed25519-compact`
//! (below).

use sha2::{Digest, Sha512};

use super::monty::{from_le, is_zero, lt, sub_words, Monty, Words};

type W = Words<8>;

/// p = 2²⁵⁵ - 19, as words.
const P: W = [0xffffffed, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x7fffffff];
/// The order of the base point, L = 2²⁵² + 27742317777372353535851937790883648493.
static FL: Monty<8> = Monty::new(
    [0x5cf5d3ed, 0x5812631a, 0xa2f79cd6, 0x14def9de, 0x00000000, 0x00000000, 0x00000000, 0x10000000],
    [0x449c0f01, 0xa40611e3, 0x68859347, 0xd00e1ba7, 0x17f5be65, 0xceec73d2, 0x7c309a3d, 0x0399411b],
);
/// R³ mod L (R = 2²⁵⁶): the high half of a 512-bit hash in Montgomery form, in one product.
const L_R3: W = [0x7b83a2db, 0x2a9e4968, 0xaef7f3ec, 0x278324e6, 0x04ec5b65, 0x8065dc6c, 0x3599cec7, 0x0e530b77];
/// d = -121665/121666.
const D: W = [0x135978a3, 0x75eb4dca, 0x4141d8ab, 0x00700a4d, 0x7779e898, 0x8cc74079, 0x2b6ffe73, 0x52036cee];
/// √-1 = 2^((p-1)/4).
const SQRT_M1: W = [0x4a0ea0b0, 0xc4ee1b27, 0xad2fe478, 0x2f431806, 0x3dfbd7a7, 0x2b4d0099, 0x4fc1df0b, 0x2b832480];
/// The base point B: y = 4/5, x even.
const BX: W = [0x8f25d51a, 0xc9562d60, 0x9525a7b2, 0x692cc760, 0xfdd6dc5c, 0xc0a4e231, 0xcd6e53fe, 0x216936d3];
const BY: W = [0x66666658, 0x66666666, 0x66666666, 0x66666666, 0x66666666, 0x66666666, 0x66666666, 0x66666666];


/// An element of GF(p): limb i holds `BITS[i]` bits at bit `OFFSET[i]` (⌈25.5·i⌉), so that a
/// product of limbs i and j lands on limb i + j (twice over when both are odd), and 2²⁵⁵ ≡ 19
/// folds the top half back. After `carry` every limb is in [0, 2²⁶]: ten products of two such
/// limbs, times 2·19, stay below 2⁶¹.
type Fe = [i64; 10];

const BITS: [u32; 10] = [26, 25, 26, 25, 26, 25, 26, 25, 26, 25];
const OFFSET: [u32; 10] = [0, 26, 51, 77, 102, 128, 153, 179, 204, 230];
/// 2p, limb by limb: added before a subtraction so that every limb stays non-negative.
const TWO_P: Fe = [
    2 * ((1 << 26) - 19),
    2 * ((1 << 25) - 1),
    2 * ((1 << 26) - 1),
    2 * ((1 << 25) - 1),
    2 * ((1 << 26) - 1),
    2 * ((1 << 25) - 1),
    2 * ((1 << 26) - 1),
    2 * ((1 << 25) - 1),
    2 * ((1 << 26) - 1),
    2 * ((1 << 25) - 1),
];

fn carry(mut h: [i64; 10]) -> Fe {
    // Limb by limb, even limbs 26 bits, odd 25 (spelled out: constant shifts).
    for i in (0..10).step_by(2) {
        let c = h[i] >> 26;
        h[i] -= c << 26;
        h[i + 1] += c;
        let c = h[i + 1] >> 25;
        h[i + 1] -= c << 25;
        if i == 8 {
            h[0] += 19 * c;
        } else {
            h[i + 2] += c;
        }
    }
    let c = h[0] >> 26;
    h[0] -= c << 26;
    h[1] += c;
    h
}

fn fe_mul(f: &Fe, g: &Fe) -> Fe {
    // g's limbs twice over, the lower copy times 19: f[i]·g[j] lands on limb k = i + j mod 10,
    // read as row[k] = gg[10 - i + k], from the 19 copy where i + j wraps past 2²⁵⁵.
    let mut gg = [0i64; 20];
    for j in 0..10 {
        gg[j] = 19 * g[j];
        gg[j + 10] = g[j];
    }
    let mut h = [0i64; 10];
    for i in 0..10 {
        let row = &gg[10 - i..20 - i];
        // Doubled when i and j are both odd: then k is even.
        let fi2 = if i & 1 == 1 { 2 * f[i] } else { f[i] };
        for k in (0..10).step_by(2) {
            h[k] += fi2 * row[k];
            h[k + 1] += f[i] * row[k + 1];
        }
    }
    carry(h)
}

fn fe_sqr(f: &Fe) -> Fe {
    fe_mul(f, f)
}

fn fe_add(f: &Fe, g: &Fe) -> Fe {
    carry(std::array::from_fn(|i| f[i] + g[i]))
}

fn fe_sub(f: &Fe, g: &Fe) -> Fe {
    carry(std::array::from_fn(|i| f[i] + TWO_P[i] - g[i]))
}

fn fe_neg(f: &Fe) -> Fe {
    fe_sub(&[0; 10], f)
}

/// From an integer below 2²⁵⁵.
fn fe_from_words(w: &W) -> Fe {
    std::array::from_fn(|i| {
        let (word, shift) = ((OFFSET[i] / 32) as usize, OFFSET[i] % 32);
        let lo = u64::from(w[word]);
        let hi = w.get(word + 1).map_or(0, |&x| u64::from(x));
        (((hi << 32 | lo) >> shift) & ((1 << BITS[i]) - 1)) as i64
    })
}

/// The canonical residue, below p.
fn fe_to_words(f: &Fe) -> W {
    let mut h = carry(*f);
    // Every limb within its own bits, the value below 2²⁵⁵: 2²⁵⁵ folds back as 19.
    loop {
        let mut top = 0;
        for i in 0..10 {
            let c = h[i] >> BITS[i];
            h[i] -= c << BITS[i];
            if i == 9 {
                top = c;
            } else {
                h[i + 1] += c;
            }
        }
        if top == 0 {
            break;
        }
        h[0] += 19 * top;
    }
    let mut w = [0u32; 8];
    for i in 0..10 {
        let v = (h[i] as u64) << (OFFSET[i] % 32);
        let word = (OFFSET[i] / 32) as usize;
        w[word] |= v as u32;
        if word + 1 < 8 {
            w[word + 1] |= (v >> 32) as u32;
        }
    }
    if !lt(&w, &P) {
        sub_words(&mut w, &P);
    }
    w
}

fn fe_eq(f: &Fe, g: &Fe) -> bool {
    fe_to_words(f) == fe_to_words(g)
}

fn fe_is_zero(f: &Fe) -> bool {
    is_zero(&fe_to_words(f))
}

/// f^e, e an ordinary integer.
fn fe_pow(f: &Fe, e: &W) -> Fe {
    let mut r = fe_from_words(&[1, 0, 0, 0, 0, 0, 0, 0]);
    for i in (0..256).rev() {
        r = fe_sqr(&r);
        if e[i / 32] >> (i % 32) & 1 == 1 {
            r = fe_mul(&r, f);
        }
    }
    r
}

/// (x, y) = (X/Z, Y/Z), T = XY/Z.
#[derive(Clone, Copy)]
struct Point {
    x: Fe,
    y: Fe,
    z: Fe,
    t: Fe,
}

impl Point {
    fn identity() -> Point {
        let one = fe_from_words(&[1, 0, 0, 0, 0, 0, 0, 0]);
        Point { x: [0; 10], y: one, z: one, t: [0; 10] }
    }

    fn base() -> Point {
        let (x, y) = (fe_from_words(&BX), fe_from_words(&BY));
        Point { x, y, z: fe_from_words(&[1, 0, 0, 0, 0, 0, 0, 0]), t: fe_mul(&x, &y) }
    }

    fn neg(&self) -> Point {
        Point { x: fe_neg(&self.x), y: self.y, z: self.z, t: fe_neg(&self.t) }
    }

    fn is_identity(&self) -> bool {
        fe_is_zero(&self.x) && fe_eq(&self.y, &self.z)
    }

    /// [8]P is the identity: the order of P divides the cofactor.
    fn has_small_order(&self) -> bool {
        dbl(&dbl(&dbl(self))).is_identity()
    }

    /// RFC 8032 §5.1.3, with `ed25519-compact`'s reading: `None` for y at or above p or no
    /// x on the curve; a zero x with the sign bit set is taken as x = 0.
    fn decode(bytes: &[u8]) -> Option<Point> {
        let mut y_bytes: [u8; 32] = bytes.try_into().ok()?;
        let sign = y_bytes[31] >> 7;
        y_bytes[31] &= 0x7f;
        let y: W = from_le(&y_bytes)?;
        if !lt(&y, &P) {
            return None;
        }
        let one = fe_from_words(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let y = fe_from_words(&y);
        let y2 = fe_sqr(&y);
        let u = fe_sub(&y2, &one);
        let v = fe_add(&fe_mul(&y2, &fe_from_words(&D)), &one);
        // x = u·v³·(u·v⁷)^((p-5)/8)
        let v3 = fe_mul(&fe_sqr(&v), &v);
        let v7 = fe_mul(&fe_sqr(&v3), &v);
        let mut e = [0xffff_ffffu32; 8];
        e[0] = 0xffff_fffd;
        e[7] = 0x0fff_ffff; // (p - 5) / 8 = 2²⁵² - 3
        let mut x = fe_mul(&fe_mul(&u, &v3), &fe_pow(&fe_mul(&u, &v7), &e));
        let vxx = fe_mul(&v, &fe_sqr(&x));
        if !fe_eq(&vxx, &u) {
            if !fe_eq(&vxx, &fe_neg(&u)) {
                return None;
            }
            x = fe_mul(&x, &fe_from_words(&SQRT_M1));
        }
        if (fe_to_words(&x)[0] & 1) as u8 != sign {
            x = fe_neg(&x);
        }
        Some(Point { x, y, z: one, t: fe_mul(&x, &y) })
    }
}

/// add-2008-hwcd-3 (a = -1): complete on Ed25519, so it also doubles and takes the identity.
fn add(p: &Point, q: &Point) -> Point {
    let a = fe_mul(&fe_sub(&p.y, &p.x), &fe_sub(&q.y, &q.x));
    let b = fe_mul(&fe_add(&p.y, &p.x), &fe_add(&q.y, &q.x));
    let d = fe_from_words(&D);
    let c = fe_mul(&fe_mul(&p.t, &q.t), &fe_add(&d, &d));
    let zz = fe_mul(&p.z, &q.z);
    let dd = fe_add(&zz, &zz);
    let (e, f, g, h) = (fe_sub(&b, &a), fe_sub(&dd, &c), fe_add(&dd, &c), fe_add(&b, &a));
    Point { x: fe_mul(&e, &f), y: fe_mul(&g, &h), t: fe_mul(&e, &h), z: fe_mul(&f, &g) }
}

/// dbl-2008-hwcd (a = -1).
fn dbl(p: &Point) -> Point {
    let a = fe_sqr(&p.x);
    let b = fe_sqr(&p.y);
    let z2 = fe_sqr(&p.z);
    let c = fe_add(&z2, &z2);
    let d = fe_neg(&a);
    let e = fe_sub(&fe_sub(&fe_sqr(&fe_add(&p.x, &p.y)), &a), &b);
    let g = fe_add(&d, &b);
    let f = fe_sub(&g, &c);
    let h = fe_sub(&d, &b);
    Point { x: fe_mul(&e, &f), y: fe_mul(&g, &h), t: fe_mul(&e, &h), z: fe_mul(&f, &g) }
}

/// An Ed25519 public key: its 32 bytes, and the point they encode unless that is not a point
/// or has small order (then no signature verifies).
pub struct Key {
    bytes: [u8; 32],
    /// The odd multiples of -A.
    minus_a: Option<Box<[Point; 8]>>,
}

/// Width of the NAFs: digits odd in ±[1, 15], eight odd multiples a table.
const W_NAF: u32 = 5;

/// P, 3P, 5P, … 15P.
fn odd_multiples(p: &Point) -> [Point; 8] {
    let p2 = dbl(p);
    let mut t = [*p; 8];
    for i in 1..8 {
        t[i] = add(&t[i - 1], &p2);
    }
    t
}

fn base_table() -> &'static [Point; 8] {
    static TABLE: std::sync::OnceLock<[Point; 8]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| odd_multiples(&Point::base()))
}

/// The point of a NAF digit (odd, non-zero) from its table.
fn pick(table: &[Point; 8], d: i8) -> Point {
    let p = table[usize::from(d.unsigned_abs() >> 1)];
    if d < 0 {
        p.neg()
    } else {
        p
    }
}

fn naf(w: &W) -> [i8; 256] {
    let k: super::p256_fast::U256 = std::array::from_fn(|i| u64::from(w[2 * i]) | u64::from(w[2 * i + 1]) << 32);
    super::p256_fast::wnaf(&k, W_NAF)
}

impl Key {
    /// `None` only for a length other than 32 bytes: a key that is no usable point is kept
    /// (as `ed25519-compact` kept it) and verifies nothing.
    pub fn from_bytes(bytes: &[u8]) -> Option<Key> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        let minus_a = Point::decode(&bytes).filter(|a| !a.has_small_order()).map(|a| Box::new(odd_multiples(&a.neg())));
        Some(Key { bytes, minus_a })
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(minus_a) = &self.minus_a else { return false };
        if sig.len() != 64 {
            return false;
        }
        let (r_bytes, s_bytes) = sig.split_at(32);
        let Some(s) = from_le::<8>(s_bytes) else { return false };
        if !lt(&s, &FL.m) {
            return false;
        }
        let Some(r) = Point::decode(r_bytes) else { return false };
        if r.has_small_order() {
            return false;
        }
        // k = SHA-512(R || A || M) mod L, from its two 256-bit halves: lo·R + hi·R², out of
        // Montgomery form.
        let h: [u8; 64] = Sha512::new().chain_update(r_bytes).chain_update(self.bytes).chain_update(msg).finalize().into();
        let (Some(lo), Some(hi)) = (from_le::<8>(&h[..32]), from_le::<8>(&h[32..])) else { return false };
        let l = &FL;
        let k = l.plain(&l.add(&l.mont(&lo), &l.mul(&hi, &L_R3)));
        // [S]B + [k](-A) - R must have small order.
        let (ns, nk) = (naf(&s), naf(&k));
        let b = base_table();
        let mut acc = Point::identity();
        for i in (0..256).rev() {
            acc = dbl(&acc);
            if ns[i] != 0 {
                acc = add(&acc, &pick(b, ns[i]));
            }
            if nk[i] != 0 {
                acc = add(&acc, &pick(minus_a, nk[i]));
            }
        }
        add(&acc, &r.neg()).has_small_order()
    }
}

#[cfg(test)]
mod tests {
    use super::super::monty::tests::{big, check_modulus};
    use super::*;

    fn scalar_add(a: &W, b: &W) -> W {
        let mut r = *a;
        super::super::monty::add_words(&mut r, b);
        r
    }

    #[test]
    fn field_and_order_arithmetic() {
        check_modulus(&FL);
        let r = rsa::BigUint::from(1u32) << 256;
        assert_eq!(big(&L_R3), (&r * &r * &r) % big(&FL.m));
        assert_eq!(big(&scalar_add(&[1; 8], &[2; 8])), big(&[3u32; 8]));
    }

    /// GF(2²⁵⁵ - 19) against BigUint: products, sums, differences, powers, and the canonical
    /// form of results that land at or above p.
    #[test]
    fn field_arithmetic_matches_big_integers() {
        use rsa::BigUint;
        let p = big(&P);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            let mut w = [0u32; 8];
            for x in w.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *x = seed as u32;
            }
            w[7] &= 0x7fff_ffff;
            super::super::monty::tests::words::<8>(&(big(&w) % &p))
        };
        let p_minus = |k: u32| super::super::monty::tests::words::<8>(&(&p - k));
        let mut values = vec![[0u32; 8], [1, 0, 0, 0, 0, 0, 0, 0], p_minus(1), p_minus(2), p_minus(19), [0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0x3fff_ffff]];
        values.extend((0..60).map(|_| next()));
        let e: W = next();
        for a in &values {
            let fa = fe_from_words(a);
            assert_eq!(fe_to_words(&fa), *a);
            for b in values.iter().step_by(3) {
                let fb = fe_from_words(b);
                let (ba, bb) = (big(a), big(b));
                assert_eq!(big(&fe_to_words(&fe_mul(&fa, &fb))), (&ba * &bb) % &p);
                assert_eq!(big(&fe_to_words(&fe_add(&fa, &fb))), (&ba + &bb) % &p);
                assert_eq!(big(&fe_to_words(&fe_sub(&fa, &fb))), (&ba + &p - &bb) % &p);
                // A chain of operations without leaving the limb form.
                let chain = fe_mul(&fe_sub(&fe_add(&fa, &fb), &fe_mul(&fa, &fa)), &fe_neg(&fb));
                let want = ((&ba + &bb + &p * 2u32 - (&ba * &ba) % &p) % &p * ((&p - &bb) % &p)) % &p;
                assert_eq!(big(&fe_to_words(&chain)), want);
            }
            assert_eq!(big(&fe_to_words(&fe_pow(&fa, &e))), ba_pow(&big(a), &big(&e), &p));
        }
        fn ba_pow(a: &BigUint, e: &BigUint, p: &BigUint) -> BigUint {
            a.modpow(e, p)
        }
    }

    #[test]
    fn base_point_is_on_the_curve_and_decodes_from_its_encoding() {
        let mut enc = super::super::monty::to_le(&BY);
        enc[31] |= ((BX[0] & 1) as u8) << 7;
        let p = Point::decode(&enc).unwrap();
        assert_eq!(fe_to_words(&p.x), BX);
        assert!(!p.has_small_order());
    }

    fn reference(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        let Ok(pk) = ed25519_compact::PublicKey::from_slice(pk) else { return false };
        ed25519_compact::Signature::from_slice(sig).is_ok_and(|s| pk.verify(msg, &s).is_ok())
    }

    /// Agrees with `ed25519-compact` on signatures it makes, altered ones, non-canonical S,
    /// small-order keys and R, and encodings that are no point.
    #[test]
    fn agrees_with_ed25519_compact() {
        for round in 0..32u8 {
            let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([round.wrapping_mul(7).wrapping_add(1); 32]));
            let pk = kp.pk.to_vec();
            let key = Key::from_bytes(&pk).unwrap();
            let msg = vec![round; usize::from(round) * 3];
            let good = kp.sk.sign(&msg, None).to_vec();
            assert!(key.verify(&msg, &good));
            assert!(reference(&pk, &msg, &good));
            let mut variants = vec![];
            for i in [0usize, 17, 31, 32, 50, 63] {
                let mut bad = good.clone();
                bad[i] ^= 1 << (round % 8);
                variants.push(bad);
            }
            // S + L: the same point, a non-canonical scalar.
            let s: W = from_le(&good[32..]).unwrap();
            let s_plus_l = super::super::monty::to_le(&scalar_add(&s, &FL.m));
            variants.push([good[..32].to_vec(), s_plus_l].concat());
            // R replaced by encodings of small-order points and of no point.
            for r in small_order_encodings() {
                variants.push([r.clone(), good[32..].to_vec()].concat());
            }
            variants.push([vec![0xff; 32], good[32..].to_vec()].concat());
            for v in &variants {
                assert_eq!(key.verify(&msg, v), reference(&pk, &msg, v), "round {round}");
            }
            assert!(!key.verify(b"another message", &good));
        }
    }

    /// The encodings of points of order 1, 2, 4 and 8 (and the non-canonical ones, y ≥ p).
    fn small_order_encodings() -> Vec<Vec<u8>> {
        let hex = [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        hex.iter().map(|h| (0..64).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()).collect()
    }

    #[test]
    fn keys_of_small_order_or_off_the_curve_verify_nothing() {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([9; 32]));
        let sig = kp.sk.sign(b"m", None).to_vec();
        for enc in small_order_encodings() {
            assert!(Point::decode(&enc).is_none_or(|p| p.has_small_order()), "{enc:02x?}");
            let key = Key::from_bytes(&enc).unwrap();
            assert!(!key.verify(b"m", &sig));
            assert_eq!(key.verify(b"m", &sig), reference(&enc, b"m", &sig));
        }
        let key = Key::from_bytes(&kp.pk.to_vec()).unwrap();
        assert!(key.minus_a.is_some());
        assert!(Key::from_bytes(&[1; 31]).is_none());
    }

    /// Not a timed assertion: prints the cost of one verification beside `ed25519-compact`'s
    /// (`cargo test --release [--target wasm32-wasip1] -p api-auth-filter ed25519_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn ed25519_cost() {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([5; 32]));
        let key = Key::from_bytes(&kp.pk.to_vec()).unwrap();
        let sig = kp.sk.sign(b"message", None).to_vec();
        let n = 500;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(key.verify(b"message", &sig));
        }
        let ours = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(reference(&kp.pk.to_vec(), b"message", &sig));
        }
        eprintln!("EdDSA verify on this host: ours {ours:?}, ed25519-compact {:?}", t.elapsed() / n);
    }
}
