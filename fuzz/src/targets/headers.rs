//! Credential and signature headers: credentials::extract on arbitrary header lists, and
//! webhook::Webhook::verify on arbitrary signature headers and bodies.
//!
//! Input: `name: value` header lines (values are raw bytes, UTF-8 or not), an empty line, then
//! the body.
//!
//! Properties:
//! - extract succeeds exactly when every Authorization header is `Bearer <token>` (scheme in
//!   any case) with one token of visible ASCII, every key header holds visible ASCII, and there
//!   are at most four; it returns one credential per such header, Authorization first, each a
//!   slice of its header's value; a bearer token with a key prefix is a key, else a JWT;
//! - verify accepts a body only if one of the webhook's secrets computed the tag it carries
//!   (over `<timestamp>.<body>` when timestamped), and refuses bodies over max_body_bytes;
//! - a signature computed here with a right secret verifies (hex in any case, base64 with or
//!   without padding, with surrounding whitespace); with one body byte changed, another
//!   timestamp, or a clock beyond the tolerance, it does not.
use std::sync::OnceLock;

use api_auth_filter::config::Config;
use api_auth_filter::credentials::{extract, Credential, MAX_CREDENTIALS};
use api_auth_filter::deny::Reason;
use api_auth_filter::webhook::Webhook;
use crate::{fnv, header, hmac_sha256, lines};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use serde_json::json;

const SECRETS: [&[u8]; 2] = [b"whsec_FUZZ_SECRET", b"old_secret"];
const TS_BASE: i64 = 1_700_000_000;

struct Hooks {
    /// hex, `sha256=`, x-webhook-signature, two secrets, 1 MiB.
    hex: Webhook,
    /// base64, `v1=`, x-signature + x-signature-timestamp (300 s), secret from env, 4 KiB.
    stamped: Webhook,
    /// A 64-byte limit.
    tiny: Webhook,
}

fn hooks() -> &'static Hooks {
    static H: OnceLock<Hooks> = OnceLock::new();
    H.get_or_init(|| {
        let compile = |v: serde_json::Value| {
            let doc = json!({ "webhooks": { "w": v } }).to_string();
            let env = |name: &str| (name == "HOOK").then(|| "whsec_FUZZ_SECRET".to_string());
            let cfg = Config::from_json_with_env(doc.as_bytes(), &env).expect("compiles");
            cfg.webhooks.into_iter().next().expect("one webhook").1
        };
        Hooks {
            hex: compile(json!({ "secrets": [{ "value": "whsec_FUZZ_SECRET" }, { "value": "old_secret" }] })),
            stamped: compile(json!({ "header": "X-Signature", "prefix": "v1=", "encoding": "base64", "secrets": [{ "env": "HOOK" }],
                                     "timestamp": { "header": "x-signature-timestamp", "tolerance_s": 300 }, "max_body_bytes": 4096 })),
            tiny: compile(json!({ "secrets": [{ "value": "s" }], "max_body_bytes": 64 })),
        }
    })
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(start, |i| i + 1);
    &v[start..end]
}

fn visible(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(u8::is_ascii_graphic)
}

fn is_key(t: &[u8]) -> bool {
    t.starts_with(b"cm_")
}

fn check_extract(headers: &[(String, Vec<u8>)]) {
    let key_headers = vec!["x-api-key".to_string(), "x-key-2".to_string()];
    let view = api_auth_filter::credentials::view(headers);
    let got = extract(&view, &key_headers, is_key);

    // The rules, read independently of credentials.rs.
    let mut want: Vec<(bool, &[u8])> = Vec::new(); // (is a key, token)
    let mut ok = true;
    for (_, v) in headers.iter().filter(|(n, _)| n == "authorization") {
        let v = trim_ows(v);
        match v.iter().position(|b| *b == b' ') {
            Some(i) if v[..i].eq_ignore_ascii_case(b"bearer") && visible(trim_ows(&v[i..])) => {
                let t = trim_ows(&v[i..]);
                want.push((is_key(t), t));
            }
            _ => ok = false,
        }
    }
    for name in &key_headers {
        for (_, v) in headers.iter().filter(|(n, _)| n == name) {
            let t = trim_ows(v);
            ok &= visible(t);
            want.push((true, t));
        }
    }
    ok &= want.len() <= MAX_CREDENTIALS;
    match got {
        Ok(creds) => {
            assert!(ok, "accepted {headers:?}");
            assert_eq!(creds.len(), want.len());
            for (c, (key, t)) in creds.iter().zip(&want) {
                match c {
                    Credential::Jwt(j) => assert!(!key && j.as_bytes() == *t),
                    Credential::ApiKey(k) => assert!(*key && k == t),
                }
                let bytes: &[u8] = match c {
                    Credential::Jwt(j) => j.as_bytes(),
                    Credential::ApiKey(k) => k,
                };
                // A slice of its header, never a copy.
                assert!(headers.iter().any(|(_, v)| v.as_ptr_range().contains(&bytes.as_ptr())));
            }
        }
        Err(e) => {
            assert_eq!(e, Reason::CredentialsMalformed);
            assert!(!ok, "refused {headers:?}");
        }
    }
}

fn single<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h [u8]> {
    let mut it = headers.iter().filter(|(n, _)| n == name);
    let first = it.next()?;
    it.next().is_none().then_some(first.1.as_slice())
}

/// The tag a header carries, decoded independently of webhook.rs.
fn carried_tag(w: &Webhook, headers: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let v = single(headers, &w.header)?.trim_ascii();
    let p = w.prefix.as_bytes();
    if v.len() < p.len() || !v[..p.len()].eq_ignore_ascii_case(p) {
        return None;
    }
    let enc = std::str::from_utf8(&v[p.len()..]).ok()?;
    match w.encoding {
        api_auth_filter::webhook::Encoding::Hex => {
            if enc.len() % 2 != 0 || !enc.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            (0..enc.len()).step_by(2).map(|i| u8::from_str_radix(&enc[i..i + 2], 16).ok()).collect()
        }
        api_auth_filter::webhook::Encoding::Base64 => STANDARD.decode(enc).or_else(|_| STANDARD_NO_PAD.decode(enc)).ok(),
    }
}

/// Whatever verify accepts was signed by one of the secrets.
fn check_verify(w: &Webhook, secrets: &[&[u8]], headers: &[(String, Vec<u8>)], body: &[u8], now: i64) {
    let got = w.verify(&api_auth_filter::credentials::view(headers), body, now);
    if body.len() as u64 > w.max_body_bytes {
        assert_eq!(got, Err(Reason::BodyTooLarge));
        return;
    }
    match got {
        Ok(()) => {
            let tag = carried_tag(w, headers).expect("accepted without a readable signature header");
            let mut signed = Vec::new();
            if let Some(rule) = &w.timestamp {
                let ts = single(headers, &rule.header).expect("accepted without its timestamp").trim_ascii();
                let at: i64 = std::str::from_utf8(ts).unwrap().parse().expect("numeric timestamp");
                assert!(now.abs_diff(at) <= rule.tolerance_s, "timestamp {at} outside the tolerance at {now}");
                signed.extend_from_slice(ts);
                signed.push(b'.');
            }
            signed.extend_from_slice(body);
            assert!(secrets.iter().any(|s| hmac_sha256(s, &signed) == tag), "a tag no secret computed was accepted");
        }
        Err(e) => assert_eq!(e, Reason::SignatureInvalid),
    }
}

fn flip(body: &[u8], seed: u64) -> Vec<u8> {
    let mut b = body.to_vec();
    if b.is_empty() {
        b.push(seed as u8);
    } else {
        let i = (seed % b.len() as u64) as usize;
        b[i] ^= 1 << ((seed >> 40) % 8);
    }
    b
}

fn check_signed(h: &Hooks, headers: &[(String, Vec<u8>)], body: &[u8], seed: u64) {
    // Hex, either secret, either case, surrounding whitespace.
    let secret = SECRETS[(seed & 1) as usize];
    let hex: String = hmac_sha256(secret, body).iter().map(|b| format!("{b:02x}")).collect();
    let value = match (seed >> 1) % 3 {
        0 => format!("sha256={hex}"),
        1 => format!("SHA256={}", hex.to_uppercase()),
        _ => format!(" \t sha256={hex} "),
    };
    let mut hs: Vec<(String, Vec<u8>)> = headers.iter().filter(|(n, _)| n != "x-webhook-signature").cloned().collect();
    hs.push(("x-webhook-signature".into(), value.into_bytes()));
    assert_eq!(h.hex.verify(&api_auth_filter::credentials::view(&hs), body, 0), Ok(()), "a right signature failed");
    assert_eq!(h.hex.verify(&api_auth_filter::credentials::view(&hs), &flip(body, seed), 0), Err(Reason::SignatureInvalid), "a changed body verified");
    if body.len() > 64 {
        assert_eq!(h.tiny.verify(&api_auth_filter::credentials::view(&hs), body, 0), Err(Reason::BodyTooLarge));
    }

    // Timestamped base64: the timestamp sent (when it is one) or a default.
    let ts: Vec<u8> = match single(headers, "x-signature-timestamp").map(<[u8]>::trim_ascii) {
        Some(t) if !t.is_empty() && t.len() <= 12 && t.iter().all(u8::is_ascii_digit) => t.to_vec(),
        _ => TS_BASE.to_string().into_bytes(),
    };
    let at: i64 = std::str::from_utf8(&ts).unwrap().parse().unwrap();
    let now = at + (seed >> 8) as i64 % 601 - 300;
    let mut signed = ts.clone();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let tag = hmac_sha256(SECRETS[0], &signed);
    let b64 = if seed & 0x100 == 0 { STANDARD.encode(&tag) } else { STANDARD_NO_PAD.encode(&tag) };
    let mut hs: Vec<(String, Vec<u8>)> =
        headers.iter().filter(|(n, _)| n != "x-signature" && n != "x-signature-timestamp").cloned().collect();
    hs.push(("x-signature".into(), format!("v1={b64}").into_bytes()));
    hs.push(("x-signature-timestamp".into(), ts.clone()));
    let want = if body.len() > 4096 { Err(Reason::BodyTooLarge) } else { Ok(()) };
    assert_eq!(h.stamped.verify(&api_auth_filter::credentials::view(&hs), body, now), want, "a right timestamped signature");
    if body.len() <= 4096 {
        assert_eq!(h.stamped.verify(&api_auth_filter::credentials::view(&hs), &flip(body, seed), now), Err(Reason::SignatureInvalid));
        assert_eq!(h.stamped.verify(&api_auth_filter::credentials::view(&hs), body, at + 301), Err(Reason::SignatureInvalid), "beyond the tolerance");
        assert_eq!(h.stamped.verify(&api_auth_filter::credentials::view(&hs), body, at - 301), Err(Reason::SignatureInvalid), "beyond the tolerance");
        let last = hs.len() - 1;
        hs[last].1 = (at + 1).to_string().into_bytes();
        assert_eq!(h.stamped.verify(&api_auth_filter::credentials::view(&hs), body, now), Err(Reason::SignatureInvalid), "another timestamp");
    }
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &data[data.len()..]),
    };
    let headers: Vec<(String, Vec<u8>)> = if head.is_empty() { Vec::new() } else { lines(head).into_iter().map(header).collect() };
    check_extract(&headers);

    let h = hooks();
    let seed = fnv(data);
    check_verify(&h.hex, &SECRETS, &headers, body, 0);
    let now = TS_BASE + (seed % 601) as i64 - 300;
    check_verify(&h.stamped, &SECRETS[..1], &headers, body, now);
    check_verify(&h.tiny, &[b"s"], &headers, body, 0);
    check_signed(h, &headers, body, seed);
}
