//! Where credentials are found: `Authorization: Bearer` and the configured key headers.

use crate::deny::Reason;
use crate::text::trim_ows as trim;

/// Upper bound on credentials in one request: each costs a hash or a signature check, and no
/// honest client sends more than a couple.
pub const MAX_CREDENTIALS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A bearer token that is not an API key: it must be a compact JWS.
    Jwt(&'a str),
    ApiKey(&'a [u8]),
}

/// Headers as the host presents them: lower-case names, raw value bytes, both borrowed from
/// the one buffer the host filled (no allocation per header).
pub type Headers<'a> = [(&'a str, &'a [u8])];

/// Borrowed views of owned headers (tests, the CLI, a request held for its body).
pub fn view(owned: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    owned.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect()
}

/// Collects the credentials of a request, Authorization first, then the key headers in order.
/// `is_key` tells an API key from a JWT by its prefix.
pub fn extract<'a>(
    headers: &'a Headers<'a>,
    key_headers: &[String],
    is_key: impl Fn(&[u8]) -> bool,
) -> Result<Vec<Credential<'a>>, Reason> {
    let mut found = Vec::new();
    for (_, value) in headers.iter().filter(|(n, _)| *n == "authorization") {
        let token = bearer_token(value)?;
        if is_key(token) {
            found.push(Credential::ApiKey(token));
        } else {
            // A JWS is base64url and dots, so it is ASCII.
            let text = std::str::from_utf8(token).map_err(|_| Reason::CredentialsMalformed)?;
            found.push(Credential::Jwt(text));
        }
    }
    for name in key_headers {
        for (_, value) in headers.iter().filter(|(n, _)| n == name) {
            let key = trim(value);
            if key.is_empty() || !key.iter().all(|b| b.is_ascii_graphic()) {
                return Err(Reason::CredentialsMalformed);
            }
            found.push(Credential::ApiKey(key));
        }
    }
    if found.len() > MAX_CREDENTIALS {
        return Err(Reason::CredentialsMalformed);
    }
    Ok(found)
}

/// The token of the first of `names` among the request's cookies (`Cookie: a=1; __session=...`):
/// (cookie name, token). The same cookie twice with different values is malformed: which one
/// the browser meant cannot be told.
pub fn cookie_token<'h>(headers: &'h Headers<'h>, names: &'h [String]) -> Result<Option<(&'h str, &'h str)>, Reason> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut found: Option<(&str, &[u8])> = None;
    for (_, value) in headers.iter().filter(|(n, _)| *n == "cookie") {
        for pair in value.split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else { continue };
            let (name, token) = (cookie_trim(&pair[..eq]), cookie_trim(&pair[eq + 1..]));
            let Some(name) = names.iter().find(|n| n.as_bytes() == name) else { continue };
            match found {
                Some((n, t)) if n != name.as_str() || t != token => return Err(Reason::CredentialsMalformed),
                Some(_) => {}
                None => found = Some((name.as_str(), token)),
            }
        }
    }
    let Some((name, token)) = found else { return Ok(None) };
    if token.is_empty() || !token.iter().all(u8::is_ascii_graphic) {
        return Err(Reason::CredentialsMalformed);
    }
    let token = std::str::from_utf8(token).map_err(|_| Reason::CredentialsMalformed)?;
    Ok(Some((name, token)))
}

/// The request's cookies less those in `names`, as one `Cookie` value with every other byte as
/// it came (a cookie is not text: re-encoding it would change what the upstream reads); `None`
/// when none of them is there (nothing to change).
pub fn without_cookies(headers: &Headers<'_>, names: &[String]) -> Option<Vec<u8>> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut dropped = false;
    for (_, value) in headers.iter().filter(|(n, _)| *n == "cookie") {
        for pair in value.split(|b| *b == b';').map(trim).filter(|p| !p.is_empty()) {
            let name = cookie_trim(pair.iter().position(|b| *b == b'=').map_or(pair, |eq| &pair[..eq]));
            if names.iter().any(|n| n.as_bytes() == name) {
                dropped = true;
            } else {
                kept.push(pair);
            }
        }
    }
    dropped.then(|| kept.join(&b"; "[..]))
}

/// A cookie name or value as the most lenient parser behind the filter reads it: RFC 6265
/// trims spaces and tabs, JavaScript's `trim` (Node's `cookie`) and Python's `str.strip` (on a
/// Latin-1 header, as Starlette reads it) also control characters, `0x85` and `0xA0`. A token
/// cookie must be recognised (read, and stripped) under every such spelling of its name, or
/// `__session<TAB>=<token>` would reach an upstream that trusts the cookie unverified.
fn cookie_trim(v: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b <= b' ' || matches!(*b, 0x7f | 0x85 | 0xa0);
    let start = v.iter().position(|b| !blank(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// `Bearer <token>` with the scheme in any case (RFC 7235 §2.1) and one token of visible ASCII.
fn bearer_token(value: &[u8]) -> Result<&[u8], Reason> {
    let value = trim(value);
    let split = value.iter().position(|b| *b == b' ').ok_or(Reason::CredentialsMalformed)?;
    let (scheme, rest) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Reason::CredentialsMalformed);
    }
    let token = trim(rest);
    if token.is_empty() || !token.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Reason::CredentialsMalformed);
    }
    Ok(token)
}


#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(pairs: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
        pairs.to_vec()
    }

    fn is_cm(t: &[u8]) -> bool {
        t.starts_with(b"cm_")
    }

    #[test]
    fn extraction_table() {
        let keys = vec!["x-api-key".to_string()];
        let jwt = "eyJhbGciOiJIUzI1NiJ9.e30.sig";
        type Case<'a> = (Vec<(&'a str, &'a [u8])>, Result<Vec<Credential<'a>>, Reason>);
        let cases: Vec<Case> = vec![
            (h(&[]), Ok(vec![])),
            (h(&[("authorization", b"Bearer cm_abc")]), Ok(vec![Credential::ApiKey(b"cm_abc")])),
            (h(&[("authorization", b"bearer   cm_abc  ")]), Ok(vec![Credential::ApiKey(b"cm_abc")])),
            (h(&[("authorization", b"BEARER eyJhbGciOiJIUzI1NiJ9.e30.sig")]), Ok(vec![Credential::Jwt(jwt)])),
            (h(&[("x-api-key", b"cm_abc")]), Ok(vec![Credential::ApiKey(b"cm_abc")])),
            (
                h(&[("x-api-key", b"cm_k"), ("authorization", b"Bearer cm_a")]),
                Ok(vec![Credential::ApiKey(b"cm_a"), Credential::ApiKey(b"cm_k")]),
            ),
            (h(&[("authorization", b"Basic dXNlcjpwYXNz")]), Err(Reason::CredentialsMalformed)),
            (h(&[("authorization", b"Bearer")]), Err(Reason::CredentialsMalformed)),
            (h(&[("authorization", b"Bearer ")]), Err(Reason::CredentialsMalformed)),
            (h(&[("authorization", b"Bearer a b")]), Err(Reason::CredentialsMalformed)),
            (h(&[("authorization", b"Bearer cm_\xff\xfe")]), Err(Reason::CredentialsMalformed)),
            (h(&[("x-api-key", b"cm_\xff")]), Err(Reason::CredentialsMalformed)),
            (h(&[("x-api-key", b"  ")]), Err(Reason::CredentialsMalformed)),
            (h(&[("x-other", b"cm_abc")]), Ok(vec![])),
        ];
        for (headers, want) in cases {
            assert_eq!(extract(&headers, &keys, is_cm), want, "{headers:?}");
        }
    }

    #[test]
    fn too_many_credentials_are_refused() {
        let many: Vec<(&str, &[u8])> = (0..=MAX_CREDENTIALS).map(|_| ("x-api-key", b"cm_a".as_slice())).collect();
        assert_eq!(extract(&many, &["x-api-key".to_string()], is_cm), Err(Reason::CredentialsMalformed));
    }

    #[test]
    fn a_token_cookie_is_known_by_every_spelling_a_lenient_parser_trims() {
        let names = vec!["__session".to_string()];
        for spelled in [&b"__session\t=tok"[..], b"\t__session =tok", b"__session\xa0= tok", b"__session\x0b=tok", b"\x85__session=tok\t"] {
            let mut cookie = b"a=1; ".to_vec();
            cookie.extend_from_slice(spelled);
            let headers = h(&[("cookie", &cookie)]);
            assert_eq!(cookie_token(&headers, &names), Ok(Some(("__session", "tok"))), "{}", String::from_utf8_lossy(spelled));
            assert_eq!(without_cookies(&headers, &names), Some(b"a=1".to_vec()), "{}", String::from_utf8_lossy(spelled));
        }
        // Another name that merely contains it is another cookie.
        let headers = h(&[("cookie", b"__session_x=tok; x__session=tok")]);
        assert_eq!(cookie_token(&headers, &names), Ok(None));
        assert_eq!(without_cookies(&headers, &names), None);
    }
}
