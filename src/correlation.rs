//! Correlation ids: the client's when it is sane, otherwise a generated UUID v4.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
    pub header: String,
    pub generate: bool,
}

impl Correlation {
    /// The id of a request: the one value the client sent when sane, else a generated one
    /// (when `generate`), else none.
    pub fn resolve(&self, headers: &crate::credentials::Headers<'_>, random: [u8; 16]) -> Option<String> {
        match crate::text::single_value(headers, &self.header) {
            Ok(Some(v)) if is_sane(v) => String::from_utf8(v.to_vec()).ok(),
            _ if self.generate => Some(uuid_v4(random)),
            _ => None,
        }
    }
}

/// 1 to 128 characters of `[A-Za-z0-9._:-]`: safe in a header, a log line and a JSON string.
pub fn is_sane(v: &[u8]) -> bool {
    (1..=128).contains(&v.len()) && v.iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
}

pub fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = crate::text::hex(&b);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_generates_otherwise() {
        let c = Correlation { header: "x-correlation-id".into(), generate: true };
        fn h(v: &[u8]) -> Vec<(&str, &[u8])> {
            vec![("x-correlation-id", v)]
        }
        let r = [0xffu8; 16];
        assert_eq!(c.resolve(&h(b"req-123:abc.def_9"), r).as_deref(), Some("req-123:abc.def_9"));
        assert_eq!(uuid_v4(r), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
        for bad in [&b""[..], b"has space", b"new\nline", b"\xff", &[b'a'; 129][..], b"quote\""] {
            assert_eq!(c.resolve(&h(bad), r).as_deref(), Some("ffffffff-ffff-4fff-bfff-ffffffffffff"), "{bad:?}");
        }
        let mut two = h(b"a");
        two.extend(h(b"b"));
        assert_eq!(c.resolve(&two, r).as_deref(), Some("ffffffff-ffff-4fff-bfff-ffffffffffff"));
        assert_eq!(c.resolve(&[], r).as_deref(), Some("ffffffff-ffff-4fff-bfff-ffffffffffff"));
        let keep_only = Correlation { generate: false, ..c };
        assert_eq!(keep_only.resolve(&[], r), None);
    }
}
