//! Signed webhooks: HMAC-SHA256 of the raw body (or of `<timestamp>.<body>`), several secrets
//! for rotation, compared in constant time.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::deny::Reason;
use crate::secret::Secret;
use crate::text::{decode_hex, single_value, trim_ows};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampRule {
    pub header: String,
    pub tolerance_s: u64,
}

#[derive(Debug)]
pub struct Webhook {
    pub header: String,
    pub prefix: String,
    pub encoding: Encoding,
    pub secrets: Vec<Secret>,
    pub timestamp: Option<TimestampRule>,
    pub max_body_bytes: u64,
}

impl Webhook {
    /// Whether `verify` reads the header `name` (lower-case): what a held request keeps.
    pub fn reads(&self, name: &str) -> bool {
        name == self.header || self.timestamp.as_ref().is_some_and(|t| t.header == name)
    }

    /// Checks the signature of a complete request body.
    pub fn verify(&self, headers: &crate::credentials::Headers<'_>, body: &[u8], now: i64) -> Result<(), Reason> {
        if body.len() as u64 > self.max_body_bytes {
            return Err(Reason::BodyTooLarge);
        }
        let raw_sig = single_value(headers, &self.header).ok().flatten().ok_or(Reason::SignatureInvalid)?;
        let sig_text = trim_ows(raw_sig);
        let prefix = self.prefix.as_bytes();
        if sig_text.len() < prefix.len() || !sig_text[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return Err(Reason::SignatureInvalid);
        }
        let encoded = &sig_text[prefix.len()..];
        let tag = match self.encoding {
            Encoding::Hex => decode_hex(encoded),
            Encoding::Base64 => STANDARD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded)).ok(),
        }
        .filter(|t| t.len() == 32)
        .ok_or(Reason::SignatureInvalid)?;

        let mut signed_prefix: Vec<u8> = Vec::new();
        if let Some(rule) = &self.timestamp {
            let ts = trim_ows(single_value(headers, &rule.header).ok().flatten().ok_or(Reason::SignatureInvalid)?);
            if ts.is_empty() || ts.len() > 12 || !ts.iter().all(u8::is_ascii_digit) {
                return Err(Reason::SignatureInvalid);
            }
            let at: i64 = std::str::from_utf8(ts).ok().and_then(|s| s.parse().ok()).ok_or(Reason::SignatureInvalid)?;
            if now.abs_diff(at) > rule.tolerance_s {
                return Err(Reason::SignatureInvalid);
            }
            signed_prefix.extend_from_slice(ts);
            signed_prefix.push(b'.');
        }
        // Every secret is tried (rotation); each comparison is constant time.
        let ok = self.secrets.iter().fold(false, |ok, s| mac_matches(s.expose(), &signed_prefix, body, &tag) | ok);
        if ok {
            Ok(())
        } else {
            Err(Reason::SignatureInvalid)
        }
    }
}

/// HMAC-SHA256 over `prefix || body`, compared to `tag` in constant time.
pub fn mac_matches(secret: &[u8], prefix: &[u8], body: &[u8], tag: &[u8]) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret) else { return false };
    mac.update(prefix);
    mac.update(body);
    mac.verify_slice(tag).is_ok()
}

/// Lower-case hex HMAC-SHA256, as senders compute it (tests and tools).
pub fn sign_hex(secret: &[u8], message: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret) else { return String::new() };
    mac.update(message);
    crate::text::hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};

    const BODY: &[u8] = br#"{"event":"incident.created","incidentId":"inc_01HX9VT"}"#;
    // printf %s "$BODY" | openssl dgst -sha256 -hmac whsec_your_webhook_secret (contract 001)
    const KNOWN: &str = "a5af0c939461c09e5354613bd7ecb7a2736d8c0db9a81cc943a57dac5f6a52c0";
    // the same over "1700000000.$BODY"
    const KNOWN_TS: &str = "a2289031d0180cbb4b637d8eb25a7305fcacc6a71f6043e6e16e5564e7945999";

    fn hook(doc: serde_json::Value) -> Result<Webhook, ConfigError> {
        let doc = serde_json::json!({ "webhooks": { "w": doc } });
        let env = |name: &str| (name == "HOOK_SECRET").then(|| "whsec_your_webhook_secret".to_string());
        let cfg = Config::from_json_with_env(doc.to_string().as_bytes(), &env)?;
        Ok(cfg.webhooks.into_iter().next().expect("one webhook").1)
    }

    fn h<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
        pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
    }

    #[test]
    fn contract_001_known_answer() {
        assert_eq!(sign_hex(b"whsec_your_webhook_secret", BODY), KNOWN);
        let w = hook(serde_json::json!({ "secrets": [{ "env": "HOOK_SECRET" }] })).unwrap();
        let sig = format!("sha256={KNOWN}");
        let upper = format!("SHA256={}", KNOWN.to_uppercase());
        let padded = format!("  {sig} ");
        let empty_sig = format!("sha256={}", sign_hex(b"whsec_your_webhook_secret", b""));
        type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a [u8], Result<(), Reason>);
        let cases: Vec<Case> = vec![
            (h(&[("x-webhook-signature", &sig)]), BODY, Ok(())),
            (h(&[("x-webhook-signature", &upper)]), BODY, Ok(())),
            (h(&[("x-webhook-signature", &padded)]), BODY, Ok(())),
            (h(&[("x-webhook-signature", KNOWN)]), BODY, Err(Reason::SignatureInvalid)),
            (h(&[("x-webhook-signature", &sig[..sig.len() - 2])]), BODY, Err(Reason::SignatureInvalid)),
            (h(&[("x-webhook-signature", &sig), ("x-webhook-signature", &sig)]), BODY, Err(Reason::SignatureInvalid)),
            (h(&[]), BODY, Err(Reason::SignatureInvalid)),
            (h(&[("x-webhook-signature", &sig)]), b"{}", Err(Reason::SignatureInvalid)),
            (h(&[("x-webhook-signature", &empty_sig)]), b"", Ok(())),
        ];
        for (headers, body, want) in cases {
            assert_eq!(w.verify(&headers, body, 0), want, "{headers:?}");
        }
    }

    #[test]
    fn rotation_base64_timestamps_and_limits() {
        let w = hook(serde_json::json!({ "secrets": [{ "value": "old_secret" }, { "env": "HOOK_SECRET" }], "max_body_bytes": 100 })).unwrap();
        assert_eq!(w.verify(&h(&[("x-webhook-signature", &format!("sha256={KNOWN}"))]), BODY, 0), Ok(()));
        assert_eq!(w.verify(&h(&[("x-webhook-signature", "sha256=00")]), &[b'a'; 101], 0), Err(Reason::BodyTooLarge));

        let b64 = hook(serde_json::json!({ "secrets": [{ "env": "HOOK_SECRET" }], "encoding": "base64", "prefix": "v1=" })).unwrap();
        let tag = STANDARD.encode(decode_hex(KNOWN.as_bytes()).unwrap());
        assert_eq!(b64.verify(&h(&[("x-webhook-signature", &format!("v1={tag}"))]), BODY, 0), Ok(()));
        assert_eq!(b64.verify(&h(&[("x-webhook-signature", &format!("v1={}", tag.trim_end_matches('=')))]), BODY, 0), Ok(()));

        let ts = hook(serde_json::json!({ "header": "X-Signature", "secrets": [{ "env": "HOOK_SECRET" }],
                                          "timestamp": { "header": "x-signature-timestamp", "tolerance_s": 300 } })).unwrap();
        let (sig_ts, sig_body) = (format!("sha256={KNOWN_TS}"), format!("sha256={KNOWN}"));
        let good = h(&[("x-signature", &sig_ts), ("x-signature-timestamp", "1700000000")]);
        assert_eq!(ts.verify(&good, BODY, 1_700_000_000 + 300), Ok(()));
        assert_eq!(ts.verify(&good, BODY, 1_700_000_000 - 300), Ok(()));
        assert_eq!(ts.verify(&good, BODY, 1_700_000_000 + 301), Err(Reason::SignatureInvalid));
        assert_eq!(ts.verify(&good, BODY, 1_700_000_000 - 301), Err(Reason::SignatureInvalid));
        let body_only = h(&[("x-signature", &sig_body), ("x-signature-timestamp", "1700000000")]);
        assert_eq!(ts.verify(&body_only, BODY, 1_700_000_000), Err(Reason::SignatureInvalid), "the MAC covers the timestamp");
        let no_ts = h(&[("x-signature", &sig_ts)]);
        assert_eq!(ts.verify(&no_ts, BODY, 1_700_000_000), Err(Reason::SignatureInvalid));
    }

    #[test]
    fn compile_errors_name_the_field_never_the_secret() {
        let e = hook(serde_json::json!({ "secrets": [{ "env": "MISSING" }] })).unwrap_err();
        assert_eq!(e.to_string(), "webhooks.w.secrets[0].env: environment variable MISSING is not set in the wasm VM");
        let e = hook(serde_json::json!({ "secrets": [{ "env": "HOOK_SECRET", "value": "x" }] })).unwrap_err();
        assert_eq!(e.path, "webhooks.w.secrets[0]");
        assert_eq!(hook(serde_json::json!({ "secrets": [] })).unwrap_err().path, "webhooks.w.secrets");
        assert_eq!(hook(serde_json::json!({ "secrets": [{ "value": "s" }], "encoding": "b32" })).unwrap_err().path, "webhooks.w.encoding");
        let w = hook(serde_json::json!({ "secrets": [{ "value": "whsec_do_not_print" }] })).unwrap();
        assert!(!format!("{w:?}").contains("whsec_do_not_print"));
    }
}
