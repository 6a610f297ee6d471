//! Signed webhooks: HMAC-SHA256 of the raw body (or of `<timestamp>.<body>`), several secrets
//! for rotation, compared in constant time.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::raw::RawWebhook;
use crate::deny::Reason;
use crate::secret::Secret;

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

/// (field path, message): the config module turns it into its error type.
pub type CompileError = (String, String);

fn token_name(path: &str, name: &str) -> Result<String, CompileError> {
    if crate::config::is_header_token(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err((path.to_string(), "not a valid header name".into()))
    }
}

impl Webhook {
    /// `env` reads the wasm VM's environment (`vm_config.environment_variables`).
    pub fn compile(path: &str, raw: &RawWebhook, env: &dyn Fn(&str) -> Option<String>) -> Result<Webhook, CompileError> {
        let header = token_name(&format!("{path}.header"), raw.header.as_deref().unwrap_or("x-webhook-signature"))?;
        let encoding = match raw.encoding.as_deref().unwrap_or("hex") {
            "hex" => Encoding::Hex,
            "base64" => Encoding::Base64,
            _ => return Err((format!("{path}.encoding"), "must be \"hex\" or \"base64\"".into())),
        };
        if raw.secrets.is_empty() {
            return Err((format!("{path}.secrets"), "at least one secret is required".into()));
        }
        let mut secrets = Vec::with_capacity(raw.secrets.len());
        for (i, s) in raw.secrets.iter().enumerate() {
            let spath = format!("{path}.secrets[{i}]");
            let secret = match (&s.env, &s.value) {
                (Some(var), None) => match env(var) {
                    Some(v) if !v.is_empty() => Secret::new(v),
                    _ => return Err((format!("{spath}.env"), format!("environment variable {var} is not set in the wasm VM"))),
                },
                (None, Some(v)) if !v.is_empty() => v.clone(),
                (None, Some(_)) => return Err((format!("{spath}.value"), "must not be empty".into())),
                _ => return Err((spath, "exactly one of env or value is required".into())),
            };
            secrets.push(secret);
        }
        let timestamp = match &raw.timestamp {
            Some(t) => Some(TimestampRule {
                header: token_name(&format!("{path}.timestamp.header"), &t.header)?,
                tolerance_s: match t.tolerance_s.unwrap_or(300) {
                    s if s > crate::config::MAX_WEBHOOK_TOLERANCE_S => {
                        return Err((
                            format!("{path}.timestamp.tolerance_s"),
                            format!("must be at most {}", crate::config::MAX_WEBHOOK_TOLERANCE_S),
                        ))
                    }
                    s => s,
                },
            }),
            None => None,
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(1 << 20);
        if max_body_bytes == 0 {
            return Err((format!("{path}.max_body_bytes"), "must be positive".into()));
        }
        Ok(Webhook { header, prefix: raw.prefix.clone().unwrap_or_else(|| "sha256=".into()), encoding, secrets, timestamp, max_body_bytes })
    }

    /// Checks the signature of a complete request body.
    pub fn verify(&self, headers: &[(String, Vec<u8>)], body: &[u8], now: i64) -> Result<(), Reason> {
        if body.len() as u64 > self.max_body_bytes {
            return Err(Reason::BodyTooLarge);
        }
        let raw_sig = single(headers, &self.header).ok_or(Reason::SignatureInvalid)?;
        let sig_text = trim(raw_sig);
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
            let ts = trim(single(headers, &rule.header).ok_or(Reason::SignatureInvalid)?);
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

fn single<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Option<&'h [u8]> {
    let mut it = headers.iter().filter(|(n, _)| n == name);
    let first = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some(&first.1)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &v[start..end]
}

fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| Some(((p[0] as char).to_digit(16)? * 16 + (p[1] as char).to_digit(16)?) as u8))
        .collect()
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
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawWebhook;

    const BODY: &[u8] = br#"{"event":"incident.created","incidentId":"inc_01HX9VT"}"#;
    // printf %s "$BODY" | openssl dgst -sha256 -hmac whsec_your_webhook_secret (contract 001)
    const KNOWN: &str = "a5af0c939461c09e5354613bd7ecb7a2736d8c0db9a81cc943a57dac5f6a52c0";
    // the same over "1700000000.$BODY"
    const KNOWN_TS: &str = "a2289031d0180cbb4b637d8eb25a7305fcacc6a71f6043e6e16e5564e7945999";

    fn hook(doc: serde_json::Value) -> Result<Webhook, CompileError> {
        let raw: RawWebhook = serde_json::from_value(doc).unwrap();
        Webhook::compile("webhooks.w", &raw, &|name| (name == "HOOK_SECRET").then(|| "whsec_your_webhook_secret".to_string()))
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn contract_001_known_answer() {
        assert_eq!(sign_hex(b"whsec_your_webhook_secret", BODY), KNOWN);
        let w = hook(serde_json::json!({ "secrets": [{ "env": "HOOK_SECRET" }] })).unwrap();
        let sig = format!("sha256={KNOWN}");
        let upper = format!("SHA256={}", KNOWN.to_uppercase());
        type Case<'a> = (Vec<(String, Vec<u8>)>, &'a [u8], Result<(), Reason>);
        let cases: Vec<Case> = vec![
            (h(&[("x-webhook-signature", &sig)]), BODY, Ok(())),
            (h(&[("x-webhook-signature", &upper)]), BODY, Ok(())),
            (h(&[("x-webhook-signature", &format!("  {sig} "))]), BODY, Ok(())),
            (h(&[("x-webhook-signature", KNOWN)]), BODY, Err(Reason::SignatureInvalid)),
            (h(&[("x-webhook-signature", &sig[..sig.len() - 2])]), BODY, Err(Reason::SignatureInvalid)),
            (h(&[("x-webhook-signature", &sig), ("x-webhook-signature", &sig)]), BODY, Err(Reason::SignatureInvalid)),
            (h(&[]), BODY, Err(Reason::SignatureInvalid)),
            (h(&[("x-webhook-signature", &sig)]), b"{}", Err(Reason::SignatureInvalid)),
            (h(&[("x-webhook-signature", &format!("sha256={}", sign_hex(b"whsec_your_webhook_secret", b"")))]), b"", Ok(())),
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
        let good = h(&[("x-signature", &format!("sha256={KNOWN_TS}")), ("x-signature-timestamp", "1700000000")]);
        assert_eq!(ts.verify(&good, BODY, 1_700_000_000 + 300), Ok(()));
        assert_eq!(ts.verify(&good, BODY, 1_700_000_000 - 300), Ok(()));
        assert_eq!(ts.verify(&good, BODY, 1_700_000_000 + 301), Err(Reason::SignatureInvalid));
        assert_eq!(ts.verify(&good, BODY, 1_700_000_000 - 301), Err(Reason::SignatureInvalid));
        let body_only = h(&[("x-signature", &format!("sha256={KNOWN}")), ("x-signature-timestamp", "1700000000")]);
        assert_eq!(ts.verify(&body_only, BODY, 1_700_000_000), Err(Reason::SignatureInvalid), "the MAC covers the timestamp");
        let no_ts = h(&[("x-signature", &format!("sha256={KNOWN_TS}"))]);
        assert_eq!(ts.verify(&no_ts, BODY, 1_700_000_000), Err(Reason::SignatureInvalid));
    }

    #[test]
    fn compile_errors_name_the_field_never_the_secret() {
        let e = hook(serde_json::json!({ "secrets": [{ "env": "MISSING" }] })).unwrap_err();
        assert_eq!(e, ("webhooks.w.secrets[0].env".to_string(), "environment variable MISSING is not set in the wasm VM".to_string()));
        let e = hook(serde_json::json!({ "secrets": [{ "env": "HOOK_SECRET", "value": "x" }] })).unwrap_err();
        assert_eq!(e.0, "webhooks.w.secrets[0]");
        assert_eq!(hook(serde_json::json!({ "secrets": [] })).unwrap_err().0, "webhooks.w.secrets");
        assert_eq!(hook(serde_json::json!({ "secrets": [{ "value": "s" }], "encoding": "b32" })).unwrap_err().0, "webhooks.w.encoding");
        let w = hook(serde_json::json!({ "secrets": [{ "value": "whsec_do_not_print" }] })).unwrap();
        assert!(!format!("{w:?}").contains("whsec_do_not_print"));
    }
}
