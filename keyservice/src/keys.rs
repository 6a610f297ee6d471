//! Key material: generation with the OS CSPRNG, the checksum suffix secret scanners check, the
//! SHA-256 digest that is all the store keeps, and the few time conversions the entries need.
//!
//! A key is `<prefix><body><check>`: `body` is 40 base62 characters drawn uniformly from the OS
//! CSPRNG (about 238 bits), `check` is the CRC-32 (IEEE) of `<prefix><body>` written as 6
//! base62 digits, most significant first, zero-padded (`0`). The format of GitHub's tokens: a
//! scanner that knows the prefix can tell a real key from a look-alike without asking anyone.

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub const BODY_LEN: usize = 40;
pub const CHECK_LEN: usize = 6;

/// `n` base62 characters, each uniform: bytes of 248 and above are drawn again, so that
/// `byte % 62` has no bias.
pub fn random_base62(n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        OsRng.fill_bytes(&mut buf);
        for b in buf {
            if b < 248 && out.len() < n {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// The checksum suffix of `<prefix><body>`.
pub fn checksum(text: &str) -> String {
    let mut v = crc32fast::hash(text.as_bytes());
    let mut digits = [b'0'; CHECK_LEN];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(v % 62) as usize];
        v /= 62;
    }
    digits.iter().map(|b| *b as char).collect()
}

/// A new key with this prefix.
pub fn generate(prefix: &str) -> String {
    let head = format!("{prefix}{}", random_base62(BODY_LEN));
    let check = checksum(&head);
    head + &check
}

/// Whether `key` is well-formed for `prefix`: the body's length and alphabet, and the checksum
/// (what a secret scanner checks; the tests check it here).
#[cfg(test)]
pub fn well_formed(prefix: &str, key: &str) -> bool {
    let Some(rest) = key.strip_prefix(prefix) else { return false };
    if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (head, check) = key.split_at(key.len() - CHECK_LEN);
    checksum(head) == check
}

/// Lower-case hex SHA-256, as the filter sends it.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `s` is a digest as the filter sends it: 64 lower-case hex digits.
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 in UTC (`2026-01-31T12:00:00Z`), the form the filter reads `expires_at` in.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (RFC 3339; `t` and `z` in any case),
/// or of a plain integer of Unix seconds. `None` for anything else.
pub fn parse_time(s: &str) -> Option<i64> {
    if !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hh = num(i + 1..i + 3)?;
            let mm = num(i + 4..i + 6)?;
            let _ = (h1, h2, m1, m2);
            if hh > 23 || mm > 59 {
                return None;
            }
            let o = hh * 3600 + mm * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_prefix_and_a_checksum_scanners_can_verify() {
        let k = generate("cm_");
        assert!(k.starts_with("cm_") && k.len() == 3 + BODY_LEN + CHECK_LEN, "{k}");
        assert!(well_formed("cm_", &k));
        // One character changed in the body: the checksum no longer matches.
        let mut bytes = k.clone().into_bytes();
        bytes[5] = if bytes[5] == b'a' { b'b' } else { b'a' };
        assert!(!well_formed("cm_", &String::from_utf8(bytes).unwrap()));
        assert!(!well_formed("cf_ak_", &k));
        // Two keys never repeat (238 bits each).
        assert_ne!(generate("cm_"), generate("cm_"));
        // CRC-32 of "123456789" is 0xCBF43926 = 3421780262 = base62 "3j3Jx2"... computed here.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        let mut v = 0u64;
        for c in checksum("123456789").bytes() {
            v = v * 62 + BASE62.iter().position(|x| *x == c).unwrap() as u64;
        }
        assert_eq!(v, 0xCBF4_3926);
    }

    #[test]
    fn base62_is_uniform_enough() {
        let s = random_base62(62 * 200);
        let mut counts = [0u32; 62];
        for b in s.bytes() {
            counts[BASE62.iter().position(|x| *x == b).unwrap()] += 1;
        }
        assert!(counts.iter().all(|c| (100..=320).contains(c)), "{counts:?}");
    }

    #[test]
    fn times_round_trip_in_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
        for t in [0, 951_782_400, 1_798_761_599, 4_102_444_800, -86_400] {
            assert_eq!(parse_time(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_time("2026-12-31T23:59:59.5+01:00"), Some(1_798_761_599 - 3600));
        assert_eq!(parse_time("1798761599"), Some(1_798_761_599));
        for bad in ["", "2026-13-01T00:00:00Z", "2026-12-31 23:59:59Z", "2026-12-31T23:59:59", "2026-12-31T23:59:59+1:00", "x'; DROP TABLE api_keys;--"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn digests_are_lower_case_hex_only() {
        assert!(is_digest(&sha256_hex(b"k")));
        assert!(!is_digest(&sha256_hex(b"k").to_uppercase()));
        assert!(!is_digest("' OR 1=1 --"));
    }
}
