//! API keys: only SHA-256 digests are held; a presented key is hashed and looked up.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::KeyStatus;
use crate::deny::Reason;
use crate::principal::{Kind, Principal};

#[derive(Debug)]
pub struct ApiKeys {
    pub prefixes: Vec<String>,
    /// Lower-case names of the headers that carry a key (Authorization is always read too).
    pub headers: Vec<String>,
    pub by_digest: HashMap<[u8; 32], KeyEntry>,
    /// Digests not in the table are looked up in a key service.
    pub lookup: Option<Service>,
    /// Last use of each key is reported to a service.
    pub usage_report: Option<Service>,
}

/// A service the filter calls through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    /// Positive answers are cached this long (lookup); the report period (usage).
    /// How long a found answer is cached (for a usage report: the period), in milliseconds.
    pub ttl_ms: u64,
    pub negative_ttl_ms: u64,
}

/// What a key service said about a digest, as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(KeyEntry),
    NotFound,
}

pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub id: String,
    pub digest: [u8; 32],
    pub status: KeyStatus,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub permissions: Vec<String>,
    pub scopes: Vec<String>,
    pub organization: Option<String>,
    pub workspaces: Vec<String>,
    pub name: Option<String>,
}

// The digest identifies a key to anyone holding a leaked table; keep it out of logs.
impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl ApiKeys {
    /// Whether a bearer token is an API key rather than a JWT.
    pub fn is_key(&self, token: &[u8]) -> bool {
        self.prefixes.iter().any(|p| token.starts_with(p.as_bytes()))
    }

    /// Looks a presented key up in the static table.
    pub fn authenticate(&self, key: &[u8], now: i64) -> Result<Principal, Reason> {
        let entry = self.by_digest.get(&digest(key)).ok_or(Reason::KeyUnknown)?;
        entry.principal(now)
    }

    /// The key service's answer body for `digest`: the shape of a `keys` entry, whose
    /// `sha256` must be the digest asked about.
    pub fn parse_lookup(body: &[u8], digest: &[u8; 32]) -> Option<KeyEntry> {
        let raw: crate::config::raw::RawKey = serde_json::from_slice(body).ok()?;
        let entry = crate::config::compile_key("lookup", raw).ok()?;
        (entry.digest == *digest).then_some(entry)
    }
}

impl KeyEntry {
    /// The principal of a known key, or why the key may not be used now.
    pub fn principal(&self, now: i64) -> Result<Principal, Reason> {
        match self.status {
            KeyStatus::Active => {}
            KeyStatus::Revoked => return Err(Reason::KeyRevoked),
            KeyStatus::Expired => return Err(Reason::KeyExpired),
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            return Err(Reason::KeyExpired);
        }
        let mut p = Principal::new(Kind::ApiKey);
        p.key_id = Some(self.id.clone());
        p.name = self.name.clone();
        p.organization = self.organization.clone();
        p.workspaces = self.workspaces.clone();
        p.permissions = self.permissions.clone();
        p.scopes = self.scopes.clone();
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, key: &str, status: KeyStatus, expires_at: Option<i64>) -> KeyEntry {
        KeyEntry {
            id: id.into(),
            digest: digest(key.as_bytes()),
            status,
            expires_at,
            permissions: vec!["llm".into()],
            scopes: vec![],
            organization: Some("org_1".into()),
            workspaces: vec!["ws_1".into()],
            name: None,
        }
    }

    #[test]
    fn status_and_expiry() {
        let mut by_digest = HashMap::new();
        for e in [
            entry("ok", "cm_ok", KeyStatus::Active, None),
            entry("rev", "cm_rev", KeyStatus::Revoked, None),
            entry("exp", "cm_exp", KeyStatus::Expired, None),
            entry("old", "cm_old", KeyStatus::Active, Some(1000)),
        ] {
            by_digest.insert(e.digest, e);
        }
        let keys = ApiKeys { prefixes: vec!["cm_".into()], headers: vec!["x-api-key".into()], by_digest, lookup: None, usage_report: None };
        let p = keys.authenticate(b"cm_ok", 5000).unwrap();
        assert_eq!(p.key_id.as_deref(), Some("ok"));
        assert_eq!(p.organization.as_deref(), Some("org_1"));
        assert_eq!(keys.authenticate(b"cm_rev", 0), Err(Reason::KeyRevoked));
        assert_eq!(keys.authenticate(b"cm_exp", 0), Err(Reason::KeyExpired));
        assert!(keys.authenticate(b"cm_old", 999).is_ok());
        assert_eq!(keys.authenticate(b"cm_old", 1000), Err(Reason::KeyExpired));
        assert_eq!(keys.authenticate(b"cm_nope", 0), Err(Reason::KeyUnknown));
        assert!(keys.is_key(b"cm_x") && !keys.is_key(b"eyJ.a.b"));
        let dbg = format!("{:?}", keys.by_digest.values().next().unwrap());
        assert!(!dbg.contains("digest"), "{dbg}");
    }

    #[test]
    fn lookup_answers_must_name_the_digest_asked_about() {
        let d = digest(b"cm_live");
        let body = format!(r#"{{"id":"k9","sha256":"{}","status":"active","scopes":["a"]}}"#, hex(&d));
        assert_eq!(ApiKeys::parse_lookup(body.as_bytes(), &d).map(|e| e.id), Some("k9".to_string()));
        assert_eq!(ApiKeys::parse_lookup(body.as_bytes(), &digest(b"other")), None);
        assert_eq!(ApiKeys::parse_lookup(b"{\"id\":\"k\"}", &d), None);
        assert_eq!(ApiKeys::parse_lookup(b"<html>", &d), None);
    }

    #[test]
    fn digest_is_sha256() {
        let hex: String = digest(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
