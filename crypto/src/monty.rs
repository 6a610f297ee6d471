//! Arithmetic modulo an odd number of `N` 32-bit words, in Montgomery form (R = 2^(32·N)):
//! P-384's field and group order (`p384`) and Ed25519's scalars mod L (`ed25519`), one generic
//! body instantiated twice. Words are little-endian `u32`, products `u64`: what wasm32 multiplies
//! natively.
//!
//! Verification only: nothing secret goes through here, so every operation may take time that
//! depends on its operands.

/// An integer of `N` little-endian 32-bit words.
pub type Words<const N: usize> = [u32; N];

/// A modulus m (odd, below R) with what Montgomery multiplication needs.
pub struct Monty<const N: usize> {
    pub m: Words<N>,
    /// -m⁻¹ mod 2³².
    m0: u32,
    /// R² mod m.
    r2: Words<N>,
}

impl<const N: usize> Monty<N> {
    /// `m` odd, `r2` = R² mod m (checked by the tests of each user).
    pub const fn new(m: Words<N>, r2: Words<N>) -> Monty<N> {
        // Newton's iteration: each step doubles the correct low bits of m⁻¹ mod 2³².
        let mut inv: u32 = 1;
        let mut i = 0;
        while i < 5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(m[0].wrapping_mul(inv)));
            i += 1;
        }
        Monty { m, m0: inv.wrapping_neg(), r2 }
    }

    /// a·b·R⁻¹ mod m, below m, for any a below R and b below m (CIOS).
    pub fn mul(&self, a: &Words<N>, b: &Words<N>) -> Words<N> {
        // t holds N + 2 words: below 2m < 2R before each shift.
        let mut t = [0u32; 34];
        debug_assert!(N + 2 <= t.len());
        for &ai in a.iter() {
            let mut carry = 0u64;
            for j in 0..N {
                let s = u64::from(t[j]) + u64::from(ai) * u64::from(b[j]) + carry;
                t[j] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[N]) + carry;
            t[N] = s as u32;
            t[N + 1] = (s >> 32) as u32;
            let q = t[0].wrapping_mul(self.m0);
            let s = u64::from(t[0]) + u64::from(q) * u64::from(self.m[0]);
            let mut carry = s >> 32;
            for j in 1..N {
                let s = u64::from(t[j]) + u64::from(q) * u64::from(self.m[j]) + carry;
                t[j - 1] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[N]) + carry;
            t[N - 1] = s as u32;
            t[N] = t[N + 1] + (s >> 32) as u32;
        }
        let mut r = [0u32; N];
        r.copy_from_slice(&t[..N]);
        if t[N] != 0 || !lt(&r, &self.m) {
            sub_words(&mut r, &self.m);
        }
        r
    }

    pub fn sqr(&self, a: &Words<N>) -> Words<N> {
        self.mul(a, a)
    }

    /// a + b mod m, for a and b below m.
    pub fn add(&self, a: &Words<N>, b: &Words<N>) -> Words<N> {
        let mut r = *a;
        let carry = add_words(&mut r, b);
        if carry || !lt(&r, &self.m) {
            sub_words(&mut r, &self.m);
        }
        r
    }

    /// a - b mod m, for a and b below m.
    pub fn sub(&self, a: &Words<N>, b: &Words<N>) -> Words<N> {
        let mut r = *a;
        if sub_words(&mut r, b) {
            add_words(&mut r, &self.m);
        }
        r
    }

    /// Into Montgomery form: a·R mod m, for any a below R.
    pub fn mont(&self, a: &Words<N>) -> Words<N> {
        self.mul(a, &self.r2)
    }

    /// Out of Montgomery form: the canonical residue, below m.
    pub fn plain(&self, a: &Words<N>) -> Words<N> {
        let mut one = [0u32; N];
        one[0] = 1;
        self.mul(a, &one)
    }

    /// R mod m: 1 in Montgomery form.
    pub fn one(&self) -> Words<N> {
        let mut one = [0u32; N];
        one[0] = 1;
        self.mont(&one)
    }

    /// a^e, a in Montgomery form, e an ordinary integer.
    pub fn pow(&self, a: &Words<N>, e: &Words<N>) -> Words<N> {
        let mut r = self.one();
        for i in (0..32 * N).rev() {
            r = self.sqr(&r);
            if e[i / 32] >> (i % 32) & 1 == 1 {
                r = self.mul(&r, a);
            }
        }
        r
    }

    /// a⁻¹ for a prime modulus (Fermat: a^(m-2)); 0 for 0.
    pub fn inv(&self, a: &Words<N>) -> Words<N> {
        let mut e = self.m;
        sub_words(&mut e, &{
            let mut two = [0u32; N];
            two[0] = 2;
            two
        });
        self.pow(a, &e)
    }
}

/// a < b.
pub fn lt<const N: usize>(a: &Words<N>, b: &Words<N>) -> bool {
    for i in (0..N).rev() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

pub fn is_zero<const N: usize>(a: &Words<N>) -> bool {
    a.iter().all(|&w| w == 0)
}

/// a += b, returning the carry out.
pub fn add_words<const N: usize>(a: &mut Words<N>, b: &Words<N>) -> bool {
    let mut carry = 0u64;
    for i in 0..N {
        let s = u64::from(a[i]) + u64::from(b[i]) + carry;
        a[i] = s as u32;
        carry = s >> 32;
    }
    carry != 0
}

/// a -= b, returning the borrow out.
pub fn sub_words<const N: usize>(a: &mut Words<N>, b: &Words<N>) -> bool {
    let mut borrow = 0u64;
    for i in 0..N {
        let d = u64::from(a[i]).wrapping_sub(u64::from(b[i])).wrapping_sub(borrow);
        a[i] = d as u32;
        borrow = (d >> 63) & 1;
    }
    borrow != 0
}

/// From big-endian bytes, exactly 4·N of them.
pub fn from_be<const N: usize>(bytes: &[u8]) -> Option<Words<N>> {
    if bytes.len() != 4 * N {
        return None;
    }
    let mut w = [0u32; N];
    for (i, chunk) in bytes.rchunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Some(w)
}

/// From little-endian bytes, exactly 4·N of them.
pub fn from_le<const N: usize>(bytes: &[u8]) -> Option<Words<N>> {
    if bytes.len() != 4 * N {
        return None;
    }
    let mut w = [0u32; N];
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        w[i] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Some(w)
}

#[cfg(test)]
pub fn to_le<const N: usize>(w: &Words<N>) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::BigUint;

    pub fn big<const N: usize>(w: &Words<N>) -> BigUint {
        BigUint::from_bytes_le(&to_le(w))
    }

    pub fn words<const N: usize>(b: &BigUint) -> Words<N> {
        let mut bytes = b.to_bytes_le();
        assert!(bytes.len() <= 4 * N);
        bytes.resize(4 * N, 0);
        from_le(&bytes).unwrap()
    }

    /// Checks a modulus's R² and its arithmetic against BigUint on pseudo-random operands.
    pub fn check_modulus<const N: usize>(md: &Monty<N>) {
        let m = big(&md.m);
        let r = BigUint::from(1u32) << (32 * N);
        assert_eq!(big(&md.r2), (&r * &r) % &m, "R² mod m");
        let r_inv = r.modpow(&(&m - 2u32), &m);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            let mut w = [0u32; N];
            for x in w.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *x = seed as u32;
            }
            w
        };
        let below_m = |w: Words<N>| words::<N>(&(big(&w) % &m));
        let mut cases: Vec<(Words<N>, Words<N>)> = (0..200).map(|_| (next(), below_m(next()))).collect();
        let mut m_minus_1 = md.m;
        sub_words(&mut m_minus_1, &{
            let mut one = [0u32; N];
            one[0] = 1;
            one
        });
        cases.push(([u32::MAX; N], m_minus_1));
        cases.push((m_minus_1, m_minus_1));
        cases.push(([0; N], m_minus_1));
        for (a, b) in cases {
            let (ba, bb) = (big(&a), big(&b));
            assert_eq!(big(&md.mul(&a, &b)), (&ba * &bb * &r_inv) % &m);
            let a = below_m(a);
            let ba = big(&a);
            assert_eq!(big(&md.add(&a, &b)), (&ba + &bb) % &m);
            assert_eq!(big(&md.sub(&a, &b)), (&ba + &m - &bb) % &m);
            assert_eq!(big(&md.plain(&md.mont(&a))), ba);
            if !is_zero(&a) {
                let inv = md.plain(&md.inv(&md.mont(&a)));
                assert_eq!((big(&inv) * &ba) % &m, BigUint::from(1u32), "inverse");
            }
        }
    }
}
