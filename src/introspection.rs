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

use serde_json::Value;

use crate::config::Provider;
use crate::deny::Reason;
use crate::jwt::{self, TimeClaims};
use crate::principal::{Kind, Principal};

/// The body of an introspection call for `token` (RFC 7662 §2.1).
pub fn request_body(token: &str) -> Vec<u8> {
    format!("token={}&token_type_hint=access_token", crate::text::form_encode(token.as_bytes())).into_bytes()
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
        use crate::text::form_encode;
        assert_eq!(form_encode(b"aZ09-._~"), "aZ09-._~");
        assert_eq!(form_encode(b"a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(form_encode(b"a b&c"), "a%20b%26c");
        assert_eq!(request_body("x+y"), b"token=x%2By&token_type_hint=access_token");
    }

    #[test]
    fn jws_shape() {
        assert!(looks_like_jws("a.b.c"));
        assert!(!looks_like_jws("opaque-token_value"));
        assert!(!looks_like_jws("a.b.c.d.e"), "a JWE is not verified here either");
    }
}
