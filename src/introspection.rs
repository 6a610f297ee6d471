//! Opaque access tokens, verified by OAuth 2.0 token introspection (RFC 7662): what the filter
//! asks a provider's introspection endpoint, and what it makes of the answer. The calls, their
//! cache and the waiting requests are `glue::introspection`'s (a remote verdict like a key
//! lookup).
//!
//! A token is accepted only when the answer is `active: true`, its `iss` (when present) is the
//! provider's issuer, and its `exp`/`nbf`/`iat`, `aud`, `azp` pass the provider's claim rules as a
//! JWT's claims would. The principal comes from the answer through the provider's `claims`
//! paths (`scope` split on spaces); an answer without `sub` (client-credentials tokens) takes
//! its `client_id` as the subject.

use std::rc::Rc;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Provider;
use crate::deny::Reason;
use crate::jwt::{self, TimeClaims};
use crate::principal::{Kind, Principal};
use crate::secret::Secret;

/// `providers.<p>.introspection`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introspection {
    /// Where the calls go, their timeout and the cache TTLs.
    pub service: crate::apikeys::Service,
    pub client_id: String,
    /// The `Authorization` header of every call (client_secret_basic): holds the secret.
    pub authorization: Secret,
    /// The shared-data name of this endpoint's answers to this client: a hash of the cluster,
    /// authority, path and the client's credentials (another client may be told another
    /// answer about the same token).
    pub tag: String,
}

impl Introspection {
    pub fn new(service: crate::apikeys::Service, client_id: String, client_secret: &Secret) -> Introspection {
        let basic = {
            let mut raw = form_encode(client_id.as_bytes()).into_bytes();
            raw.push(b':');
            raw.extend_from_slice(form_encode(client_secret.expose()).as_bytes());
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
        };
        let mut h = Sha256::new();
        for part in [service.cluster.as_bytes(), service.authority.as_bytes(), service.path.as_bytes(), client_id.as_bytes(), client_secret.expose()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let d: [u8; 32] = h.finalize().into();
        Introspection { service, client_id, authorization: Secret::new(basic), tag: crate::text::hex(&d[..8]) }
    }
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
            out.push_str(&crate::text::hex(&[b]).to_ascii_uppercase());
        }
    }
    out
}

/// The body of an introspection call for `token` (RFC 7662 §2.1).
pub fn request_body(token: &str) -> Vec<u8> {
    format!("token={}&token_type_hint=access_token", form_encode(token.as_bytes())).into_bytes()
}

/// Whether a bearer token is shaped as a compact JWS (three base64url parts): anything else
/// is an opaque token where a provider introspects them.
pub fn looks_like_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// What an introspection answer says of a token, for one provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspected {
    /// `active: false`: revoked, expired, unknown, or not this client's to know.
    Inactive,
    /// Active, but not for this provider's rules (issuer, audience, party, lifetime).
    Refused(Reason),
    /// Active: its time claims (checked on every use) and the principal.
    Active { times: TimeClaims, principal: Rc<Principal> },
}

impl Introspected {
    /// The verdict on a request now: the principal, or why not.
    pub fn principal(&self, provider: &Provider, now: i64) -> Result<Principal, Reason> {
        match self {
            Introspected::Inactive => Err(Reason::TokenInvalid),
            Introspected::Refused(r) => Err(*r),
            Introspected::Active { times, principal } => {
                times.check(&provider.rules, now)?;
                Ok((**principal).clone())
            }
        }
    }

    /// Its estimated memory, for the per-worker cache's bound.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Introspected::Active { principal, .. } => std::mem::size_of::<Principal>() + principal.approx_bytes(),
            _ => 0,
        }
    }
}

/// Reads an introspection answer (a JSON object) for `provider` (`forwarded`: the `claim:`
/// paths the configuration forwards). `None`: not an answer
/// (not JSON, not an object, no boolean `active`).
pub fn read_answer(body: &[u8], provider: &Provider, forwarded: &[Vec<String>]) -> Option<Introspected> {
    let mut answer: Value = serde_json::from_slice(body).ok()?;
    let object = answer.as_object_mut()?;
    match object.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Some(Introspected::Inactive),
        _ => return None,
    }
    let rules = &provider.rules;
    // RFC 7662 §2.2: `iss` is optional; when given, it must be the provider's.
    match object.get("iss") {
        None => {
            object.insert("iss".into(), Value::String(rules.issuer.clone()));
        }
        Some(Value::String(iss)) if *iss == rules.issuer => {}
        Some(_) => return Some(Introspected::Refused(Reason::IssuerUnknown)),
    }
    if !object.contains_key("sub") {
        if let Some(client) = object.get("client_id").filter(|c| c.is_string()).cloned() {
            object.insert("sub".into(), client);
        }
    }
    let times = match jwt::validate_static_claims(&answer, rules) {
        Ok(t) => t,
        Err(r) => return Some(Introspected::Refused(r)),
    };
    let mut principal = Principal::from_claims(&answer, provider.shared_name.clone(), &provider.claims, provider.full_access, forwarded);
    principal.kind = Kind::Opaque;
    Some(Introspected::Active { times, principal: Rc::new(principal) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_what_a_form_decoder_would_change() {
        assert_eq!(form_encode(b"aZ09-._~"), "aZ09-._~");
        assert_eq!(form_encode(b"a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(form_encode(b"a b&c"), "a%20b%26c");
        assert_eq!(request_body("x+y"), b"token=x%2By&token_type_hint=access_token");
    }

    #[test]
    fn client_secret_basic_encodes_both_parts_first() {
        let service = crate::apikeys::Service { cluster: "idp".into(), authority: "idp".into(), path: "/i".into(), timeout_ms: 1, ttl_ms: 1, negative_ttl_ms: 1 };
        let i = Introspection::new(service.clone(), "my client".into(), &Secret::new("s:e+cret"));
        // base64("my%20client:s%3Ae%2Bcret")
        let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("my%20client:s%3Ae%2Bcret"));
        assert_eq!(i.authorization.expose(), want.as_bytes());
        assert!(!format!("{i:?}").contains("cret"), "Debug never shows the secret");
        let other = Introspection::new(service.clone(), "my client".into(), &Secret::new("another"));
        assert_ne!(i.tag, other.tag, "another client secret, other shared records");
        let other = Introspection::new(service, "other".into(), &Secret::new("s:e+cret"));
        assert_ne!(i.tag, other.tag, "another client, other shared records");
    }

    #[test]
    fn jws_shape() {
        assert!(looks_like_jws("a.b.c"));
        assert!(!looks_like_jws("opaque-token_value"));
        assert!(!looks_like_jws("a.b.c.d.e"), "a JWE is not verified here either");
    }
}
