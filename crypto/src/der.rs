//! DER encoders for what the host's verifier reads: a key's SubjectPublicKeyInfo (made once,
//! when the JWK is parsed) and a JOSE ECDSA signature as an `ECDSA-Sig-Value`.

/// The P-256 group order n, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
    0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn put_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (be.len() - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
}

fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    put_len(out, content.len());
    out.extend_from_slice(content);
}

/// A non-negative big-endian integer as a DER INTEGER: no leading zero bytes, one 0x00 when
/// the first bit is set (it would read as negative), zero as the single byte 0x00.
fn put_unsigned(out: &mut Vec<u8>, be: &[u8]) {
    let skip = be.iter().take_while(|&&b| b == 0).count();
    let digits = &be[skip..];
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    tlv(out, 0x02, &content);
}

/// A JOSE ES256 signature (r || s, 32 bytes each, RFC 7518 §3.4) as the DER `ECDSA-Sig-Value`
/// BoringSSL reads. `None` when it is not 64 bytes or r or s is not in [1, n-1]: our own
/// verifier refuses exactly these before any arithmetic.
pub fn es256_signature_der(sig: &[u8]) -> Option<Vec<u8>> {
    if sig.len() != 64 {
        return None;
    }
    let (r, s) = sig.split_at(32);
    let in_range = |v: &[u8]| v.iter().any(|&b| b != 0) && v < &P256_N[..];
    if !in_range(r) || !in_range(s) {
        return None;
    }
    let mut ints = Vec::with_capacity(70);
    put_unsigned(&mut ints, r);
    put_unsigned(&mut ints, s);
    let mut out = Vec::with_capacity(72);
    tlv(&mut out, 0x30, &ints);
    Some(out)
}

/// rsaEncryption (1.2.840.113549.1.1.1), its AlgorithmIdentifier with NULL parameters.
const RSA_ALGORITHM: [u8; 15] = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
/// id-ecPublicKey (1.2.840.10045.2.1) with the named curve prime256v1 (1.2.840.10045.3.1.7).
const P256_ALGORITHM: [u8; 21] =
    [0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    // The BIT STRING: no unused bits, then the key.
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    let mut body = algorithm.to_vec();
    tlv(&mut body, 0x03, &bits);
    let mut out = Vec::with_capacity(body.len() + 4);
    tlv(&mut out, 0x30, &body);
    out
}

/// The SubjectPublicKeyInfo of an RSA key (RFC 8017 A.1.1 `RSAPublicKey` in RFC 5280's
/// wrapping), from the JWK's big-endian `n` and `e`.
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut ints = Vec::with_capacity(n.len() + e.len() + 12);
    put_unsigned(&mut ints, n);
    put_unsigned(&mut ints, e);
    let mut key = Vec::with_capacity(ints.len() + 4);
    tlv(&mut key, 0x30, &ints);
    spki(&RSA_ALGORITHM, &key)
}

/// The SubjectPublicKeyInfo of a P-256 key (RFC 5480), uncompressed point, from the JWK's
/// 32-byte `x` and `y`.
pub fn p256_spki(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(65);
    point.push(0x04);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    spki(&P256_ALGORITHM, &point)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn es256_signatures_become_minimal_der() {
        let mut sig = [0u8; 64];
        sig[31] = 1;
        sig[32] = 0x80;
        // r = 1: one byte; s has its top bit set: a 0x00 before it.
        let der = es256_signature_der(&sig).unwrap();
        let mut want = vec![0x30, 3 + 2 + 33, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80];
        want.extend_from_slice(&[0; 31]);
        assert_eq!(der, want);
        // Leading zeros are dropped, but a byte below 0x80 needs no pad.
        let mut sig = [0x11u8; 64];
        sig[0] = 0;
        sig[1] = 0x7f;
        let der = es256_signature_der(&sig).unwrap();
        assert_eq!(&der[..4], &[0x30, 2 + 31 + 2 + 32, 0x02, 31]);
        assert_eq!(der[4], 0x7f);
        assert_eq!(&der[4 + 31..4 + 33], &[0x02, 32]);
        // n - 1 is the largest value in range, n is out.
        let mut n_minus_1 = P256_N;
        n_minus_1[31] -= 1;
        let ok: Vec<u8> = [n_minus_1, n_minus_1].concat();
        let der = es256_signature_der(&ok).unwrap();
        assert_eq!(&der[..5], &[0x30, 70, 0x02, 33, 0x00]);
        assert!(es256_signature_der(&[P256_N, n_minus_1].concat()).is_none(), "r = n");
        assert!(es256_signature_der(&[n_minus_1, P256_N].concat()).is_none(), "s = n");
        assert!(es256_signature_der(&[[0xff; 32], n_minus_1].concat()).is_none(), "r > n");
        assert!(es256_signature_der(&[[0; 32], n_minus_1].concat()).is_none(), "r = 0");
        assert!(es256_signature_der(&[n_minus_1, [0; 32]].concat()).is_none(), "s = 0");
        assert!(es256_signature_der(&ok[..63]).is_none());
        assert!(es256_signature_der(&[ok.clone(), vec![0]].concat()).is_none());
        assert!(es256_signature_der(&[]).is_none());
    }

    #[test]
    fn public_keys_are_subject_public_key_infos() {
        // Wycheproof's ecdsa_secp256r1_sha256_p1363 first key, `publicKeyDer`.
        let der = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200042927b10512bae3eddcfe467828128bad2903269919f7086069c8c4df6c732838c7787964eaac00e5921fb1498a60f4606766b3d9685001558d1a974e7341513e");
        assert_eq!(p256_spki(&der[27..59], &der[59..91]), der);
        // A 2048-bit modulus with its top bit set: INTEGER 0x00 || n, lengths in long form.
        let n = [0xc5u8; 256];
        let got = rsa_spki(&n, &[0x01, 0x00, 0x01]);
        let mut want = hex("30820122300d06092a864886f70d01010105000382010f003082010a0282010100");
        want.extend_from_slice(&n);
        want.extend_from_slice(&hex("0203010001"));
        assert_eq!(got, want);
        // Leading zeros of n are dropped (a JWK may carry them).
        assert_eq!(rsa_spki(&[[0u8].as_slice(), &n].concat(), &[0x01, 0x00, 0x01]), want);
    }
}
