//! `webhooks`: the signature rules of each webhook, its secrets read from the VM's environment.

use super::raw::{RawSecretSource, RawWebhook};
use super::{header_name, ConfigError};
use crate::secret::Secret;
use crate::webhook::{Encoding, TimestampRule, Webhook};

/// The largest replay window of a timestamped webhook.
pub const MAX_WEBHOOK_TOLERANCE_S: u64 = 3600;

/// `env` reads the wasm VM's environment (`vm_config.environment_variables`).
#[inline(never)] // one function for V8's compiler: see `config::compile`
pub fn webhook(path: &str, raw: &RawWebhook, env: &dyn Fn(&str) -> Option<String>) -> Result<Webhook, ConfigError> {
    let header = header_name(&format!("{path}.header"), raw.header.as_deref().unwrap_or("x-webhook-signature"))?;
    let encoding = match raw.encoding.as_deref().unwrap_or("hex") {
        "hex" => Encoding::Hex,
        "base64" => Encoding::Base64,
        _ => return Err(ConfigError::new(format!("{path}.encoding"), "must be \"hex\" or \"base64\"")),
    };
    if raw.secrets.is_empty() {
        return Err(ConfigError::new(format!("{path}.secrets"), "at least one secret is required"));
    }
    let mut secrets = Vec::with_capacity(raw.secrets.len());
    for (i, s) in raw.secrets.iter().enumerate() {
        let spath = format!("{path}.secrets[{i}]");
        secrets.push(secret(&spath, s, env)?);
    }
    let timestamp = match &raw.timestamp {
        Some(t) => {
            let tolerance_s = t.tolerance_s.unwrap_or(300);
            if tolerance_s > MAX_WEBHOOK_TOLERANCE_S {
                return Err(ConfigError::new(format!("{path}.timestamp.tolerance_s"), format!("must be at most {MAX_WEBHOOK_TOLERANCE_S}")));
            }
            Some(TimestampRule { header: header_name(&format!("{path}.timestamp.header"), &t.header)?, tolerance_s })
        }
        None => None,
    };
    let max_body_bytes = raw.max_body_bytes.unwrap_or(1 << 20);
    if max_body_bytes == 0 {
        return Err(ConfigError::new(format!("{path}.max_body_bytes"), "must be positive"));
    }
    Ok(Webhook { header, prefix: raw.prefix.clone().unwrap_or_else(|| "sha256=".into()), encoding, secrets, timestamp, max_body_bytes })
}

/// A secret from the VM's environment (`env`) or written in the document (`value`); `path`
/// names it in errors, which never show its value.
pub(super) fn secret(path: &str, s: &RawSecretSource, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, ConfigError> {
    Ok(match (&s.env, &s.value) {
        (Some(var), None) => match env(var) {
            Some(v) if !v.is_empty() => Secret::new(v),
            _ => return Err(ConfigError::new(format!("{path}.env"), format!("environment variable {var} is not set in the wasm VM"))),
        },
        (None, Some(v)) if !v.is_empty() => v.clone(),
        (None, Some(_)) => return Err(ConfigError::new(format!("{path}.value"), "must not be empty")),
        _ => return Err(ConfigError::new(path, "exactly one of env or value is required")),
    })
}
