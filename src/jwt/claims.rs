//! Claim rules (issuer, time, audience, authorised party, Clerk session status) and where
//! principal fields come from.

use serde_json::Value;

use crate::deny::Reason;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub authorized_parties: Vec<String>,
    pub clock_skew_s: u64,
    pub require_exp: bool,
    pub max_lifetime_s: Option<u64>,
    pub reject_pending_sessions: bool,
    /// The header `typ` required, in its compared form (`media_type`); `None`: any or none.
    pub typ: Option<String>,
}

/// A `typ` as compared (RFC 7515 §4.1.9, RFC 9068 §2.1): case-insensitive, and
/// `application/at+jwt` is `at+jwt`.
pub fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

/// Whether a token's header `typ` is the one a provider requires.
pub fn typ_accepted(required: Option<&str>, typ: Option<&str>) -> bool {
    match required {
        None => true,
        Some(want) => typ.is_some_and(|t| media_type(t) == want),
    }
}

/// A NumericDate claim: absent, or a finite number (integer or not). Anything else makes the
/// token invalid. f64 keeps huge or negative values from overflowing.
fn numeric(claims: &Value, name: &str) -> Result<Option<f64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(Reason::TokenInvalid),
    }
}

/// The time claims of a token (`exp`, `nbf`, `iat`), kept with a cached verification so
/// that they are checked again on every request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeClaims {
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
}

impl TimeClaims {
    pub fn read(claims: &Value) -> Result<TimeClaims, Reason> {
        Ok(TimeClaims { exp: numeric(claims, "exp")?, nbf: numeric(claims, "nbf")?, iat: numeric(claims, "iat")? })
    }

    /// Expiry and not-before (`nbf`, `iat`) at `now`, with the provider's clock skew.
    pub fn check(&self, rules: &ClaimRules, now: i64) -> Result<(), Reason> {
        let now = now as f64;
        let skew = rules.clock_skew_s as f64;
        match self.exp {
            Some(exp) if now >= exp + skew => return Err(Reason::TokenExpired),
            None if rules.require_exp => return Err(Reason::TokenInvalid),
            _ => {}
        }
        if self.nbf.is_some_and(|nbf| now + skew < nbf) || self.iat.is_some_and(|iat| now + skew < iat) {
            return Err(Reason::TokenNotYetValid);
        }
        Ok(())
    }
}

/// jwt_authn's order: issuer, then time, then audience. Returns the time claims, which are
/// the only ones whose verdict changes with the clock.
pub fn validate_claims(claims: &Value, rules: &ClaimRules, now: i64) -> Result<TimeClaims, Reason> {
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str()) {
        return Err(Reason::IssuerUnknown);
    }
    let times = TimeClaims::read(claims)?;
    times.check(rules, now)?;
    untimed_rules(claims, rules, &times)?;
    Ok(times)
}

/// Every rule but the clock's, for claims whose time is checked on each use (an introspection
/// answer, cached): issuer, lifetime, audience, party, session. Returns the time claims.
pub fn validate_static_claims(claims: &Value, rules: &ClaimRules) -> Result<TimeClaims, Reason> {
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str()) {
        return Err(Reason::IssuerUnknown);
    }
    let times = TimeClaims::read(claims)?;
    untimed_rules(claims, rules, &times)?;
    Ok(times)
}

/// The claim rules that do not depend on the clock, after issuer and time.
fn untimed_rules(claims: &Value, rules: &ClaimRules, times: &TimeClaims) -> Result<(), Reason> {
    if let Some(max) = rules.max_lifetime_s {
        match (times.exp, times.iat) {
            (Some(exp), Some(iat)) if exp - iat <= max as f64 => {}
            _ => return Err(Reason::TokenInvalid),
        }
    }
    if !rules.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => rules.audiences.contains(a),
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str().is_some_and(|a| rules.audiences.iter().any(|r| r == a))),
            _ => false,
        };
        if !ok {
            return Err(Reason::AudienceMismatch);
        }
    }
    if !rules.authorized_parties.is_empty() {
        match claims.get("azp") {
            None => {}
            Some(Value::String(p)) if rules.authorized_parties.contains(p) => {}
            Some(_) => return Err(Reason::PartyNotAuthorized),
        }
    }
    if rules.reject_pending_sessions && claims.get("sts").and_then(Value::as_str) == Some("pending") {
        return Err(Reason::SessionPending);
    }
    Ok(())
}

/// Dotted claim paths, tried in order, for each principal field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPaths {
    pub subject: Vec<Vec<String>>,
    pub email: Vec<Vec<String>>,
    pub name: Vec<Vec<String>>,
    pub organization: Vec<Vec<String>>,
    /// Organisations the principal may act in beside its own; none by default.
    pub organizations: Vec<Vec<String>>,
    pub workspaces: Vec<Vec<String>>,
    pub roles: Vec<Vec<String>>,
    pub permissions: Vec<Vec<String>>,
    pub scopes: Vec<Vec<String>>,
}

fn paths(list: &[&str]) -> Vec<Vec<String>> {
    list.iter().map(|p| p.split('.').map(str::to_string).collect()).collect()
}

impl Default for ClaimPaths {
    /// Covers Clerk session tokens v1 (`org_id`, `org_role`, `org_permissions`) and v2
    /// (`o.id`, `o.rol`, `o.per`).
    fn default() -> Self {
        ClaimPaths {
            subject: paths(&["sub"]),
            email: paths(&["email"]),
            name: paths(&["name"]),
            organization: paths(&["o.id", "org_id", "tenant_id"]),
            organizations: Vec::new(),
            workspaces: paths(&["workspace_ids", "workspace_id"]),
            roles: paths(&["roles", "o.rol", "org_role"]),
            permissions: paths(&["permissions", "o.per", "org_permissions"]),
            scopes: paths(&["scope", "scp"]),
        }
    }
}

fn lookup<'v>(claims: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(claims, |v, part| v.get(part))
}

/// The first non-empty string found along the paths.
pub fn first_string(claims: &Value, paths: &[Vec<String>]) -> Option<String> {
    paths.iter().find_map(|p| lookup(claims, p).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string))
}

/// How a string claim becomes a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// One value (`org_role: "org:admin"`).
    None,
    /// Comma-separated (Clerk v2 `o.per`).
    Comma,
    /// Space-separated (OAuth `scope`).
    Whitespace,
}

/// The first path that holds a string or an array of strings, as a list.
pub fn first_list(claims: &Value, paths: &[Vec<String>], split: Split) -> Vec<String> {
    for p in paths {
        match lookup(claims, p) {
            Some(Value::Array(items)) => {
                return items.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string).collect();
            }
            Some(Value::String(s)) => {
                let parts: Vec<String> = match split {
                    Split::None => vec![s.clone()],
                    Split::Comma => s.split(',').map(str::trim).map(str::to_string).collect(),
                    Split::Whitespace => s.split_whitespace().map(str::to_string).collect(),
                };
                return parts.into_iter().filter(|s| !s.is_empty()).collect();
            }
            _ => {}
        }
    }
    Vec::new()
}
