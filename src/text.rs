//! Small byte and text rules that several modules share: hex, optional whitespace, the single
//! value of a header, header names.

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// Hex in either case; `None` for an odd length or a non-hex digit.
pub fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    s.chunks_exact(2).map(|p| Some((digit(p[0])? * 16 + digit(p[1])?) as u8)).collect()
}

/// Exactly 32 bytes of hex (a SHA-256 digest).
pub fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    decode_hex(s.as_bytes())?.try_into().ok()
}

/// Without leading and trailing optional whitespace (RFC 9110 §5.6.3: spaces and tabs).
pub fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(start, |i| i + 1);
    &v[start..end]
}

/// The value of a header a request may send once: `Ok(None)` when absent, `Err(())` when sent
/// more than once (which of two values counts is not for the filter to guess).
#[allow(clippy::result_unit_err)]
pub fn single_value<'h>(headers: &'h [(&'h str, &'h [u8])], name: &str) -> Result<Option<&'h [u8]>, ()> {
    let mut values = headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v);
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        _ => Err(()),
    }
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), as header names must be.
pub fn is_header_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `name` reads as `guarded` (lower-case) once `_` is read as `-`, in any case.
pub fn is_underscore_twin(name: &str, guarded: &str) -> bool {
    name.len() == guarded.len()
        && name.bytes().zip(guarded.bytes()).all(|(n, g)| {
            let n = if n == b'_' { b'-' } else { n.to_ascii_lowercase() };
            n == g
        })
}

/// `application/x-www-form-urlencoded` of bytes: every byte but the unreserved ones escaped
/// (a bearer token may hold `+`, `/` and `=`, which a form decoder would change).
pub fn form_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push_str(&hex(&[b]).to_ascii_uppercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(decode_hex(b"000FA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(decode_hex(b"abc"), None);
        assert_eq!(decode_hex(b"zz"), None);
        assert_eq!(decode_hex32(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(decode_hex32(&"ab".repeat(31)), None);
    }

    #[test]
    fn whitespace_single_values_and_names() {
        assert_eq!(trim_ows(b" \tv a\t "), b"v a");
        assert_eq!(trim_ows(b"  "), b"");
        fn h<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
            pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
        }
        assert_eq!(single_value(&h(&[("a", "1"), ("b", "2")]), "a"), Ok(Some(&b"1"[..])));
        assert_eq!(single_value(&h(&[("b", "2")]), "a"), Ok(None));
        assert_eq!(single_value(&h(&[("a", "1"), ("a", "1")]), "a"), Err(()));
        assert!(is_header_token("x-api_key.1"));
        assert!(!is_header_token("x key") && !is_header_token("") && !is_header_token("é"));
    }
}
