//! The formats of what workers share in proxy-wasm shared data, in one place: every record is
//! bytes that another worker (another VM, maybe another build) reads, so each format is written
//! once and a damaged record reads as absent. All integers are big-endian.
//!
//! - JWKS (`<key>/ver`, `<key>/data`, `<key>/lease`): the version (u64); the version, the
//!   fetched-at ms (u64) and the document; the lease (held-until ms u64, not-before ms u64,
//!   consecutive failures u32, refetch-wanted-at ms u64: an unknown `kid` was seen).
//! - A remote verdict (a key-service answer): the digest asked about (32 bytes), the answer's
//!   time in ms (u64), then the answer's body (none for "unknown").
//! - A period's end (usage reports' `next`): ms (u64).

/// Everything in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    pub held_until: u64,
    pub not_before: u64,
    pub failures: u32,
    pub refetch_wanted: u64,
}

impl Lease {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28);
        out.extend_from_slice(&self.held_until.to_be_bytes());
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.failures.to_be_bytes());
        out.extend_from_slice(&self.refetch_wanted.to_be_bytes());
        out
    }

    /// A missing or damaged record reads as a free lease.
    pub fn decode(bytes: Option<&[u8]>) -> Lease {
        let Some(b) = bytes else { return Lease::default() };
        match (u64_at(b, 0), u64_at(b, 8), u32_at(b, 16), u64_at(b, 20)) {
            (Some(held_until), Some(not_before), Some(failures), Some(refetch_wanted)) => {
                Lease { held_until, not_before, failures, refetch_wanted }
            }
            _ => Lease::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    pub version: u64,
    pub fetched_at: u64,
    pub jwks: &'a [u8],
}

pub fn encode_document(version: u64, fetched_at: u64, jwks: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + jwks.len());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&fetched_at.to_be_bytes());
    out.extend_from_slice(jwks);
    out
}

pub fn decode_document(b: &[u8]) -> Option<Document<'_>> {
    Some(Document { version: u64_at(b, 0)?, fetched_at: u64_at(b, 8)?, jwks: b.get(16..)? })
}

pub fn decode_version(b: Option<&[u8]>) -> u64 {
    b.and_then(|b| u64_at(b, 0)).unwrap_or(0)
}

pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// A remote verdict's record: the digest it answers, when it was answered, and its body
/// (`None`: the service did not know the digest).
pub fn encode_verdict(digest: &[u8; 32], at: u64, body: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + body.map_or(0, <[u8]>::len));
    v.extend_from_slice(digest);
    v.extend_from_slice(&at.to_be_bytes());
    if let Some(body) = body {
        v.extend_from_slice(body);
    }
    v
}

/// The time and body of a verdict record, when it answers `digest` (a record of another digest
/// in the same slot answers nothing).
pub fn decode_verdict<'a>(bytes: &'a [u8], digest: &[u8; 32]) -> Option<(u64, &'a [u8])> {
    if bytes.get(..32)? != digest {
        return None;
    }
    Some((u64_at(bytes, 32)?, bytes.get(40..)?))
}

/// The calls for remote verdicts in flight in the whole process, for one service: (digest,
/// until when in ms) each, so that another worker waits for the answer instead of asking too.
/// At most `MAX_CLAIMS` entries; damage reads as empty.
pub const MAX_CLAIMS: usize = 64;

pub fn decode_claims(bytes: Option<&[u8]>) -> Vec<([u8; 32], u64)> {
    let Some(bytes) = bytes else { return Vec::new() };
    bytes
        .chunks_exact(40)
        .take(MAX_CLAIMS)
        .filter_map(|c| Some((c.get(..32)?.try_into().ok()?, u64_at(c, 32)?)))
        .collect()
}

pub fn encode_claims(claims: &[([u8; 32], u64)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(claims.len() * 40);
    for (d, until) in claims.iter().take(MAX_CLAIMS) {
        v.extend_from_slice(d);
        v.extend_from_slice(&until.to_be_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_reads_as_free() {
        let l = Lease { held_until: 1, not_before: 2, failures: 3, refetch_wanted: 4 };
        assert_eq!(Lease::decode(Some(&l.encode())), l);
        assert_eq!(Lease::decode(Some(&[1, 2, 3])), Lease::default());
        assert_eq!(Lease::decode(None), Lease::default());
        let d = encode_document(7, 99, b"{\"keys\":[]}");
        assert_eq!(decode_document(&d), Some(Document { version: 7, fetched_at: 99, jwks: b"{\"keys\":[]}" }));
        assert_eq!(decode_document(&[0; 10]), None);
        assert_eq!(decode_version(Some(&7u64.to_be_bytes())), 7);
        assert_eq!(decode_version(None), 0);
    }

    #[test]
    fn claims_round_trip_within_their_bound() {
        let claims: Vec<([u8; 32], u64)> = (0..70u8).map(|i| ([i; 32], u64::from(i) * 1000)).collect();
        let decoded = decode_claims(Some(&encode_claims(&claims)));
        assert_eq!(decoded.len(), MAX_CLAIMS);
        assert_eq!(decoded[..], claims[..MAX_CLAIMS]);
        assert!(decode_claims(Some(&[1, 2, 3])).is_empty());
        assert!(decode_claims(None).is_empty());
    }

    #[test]
    fn verdicts_answer_only_their_digest() {
        let d = [7u8; 32];
        let found = encode_verdict(&d, 42, Some(b"{}"));
        assert_eq!(decode_verdict(&found, &d), Some((42, b"{}".as_slice())));
        let unknown = encode_verdict(&d, 43, None);
        assert_eq!(unknown.len(), 40);
        assert_eq!(decode_verdict(&unknown, &d), Some((43, b"".as_slice())));
        assert_eq!(decode_verdict(&found, &[8u8; 32]), None);
        assert_eq!(decode_verdict(&found[..39], &d), None);
    }
}
