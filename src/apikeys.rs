//! API keys: only SHA-256 digests are held; a presented key is hashed and looked up.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::deny::Reason;
use crate::principal::{Kind, Names, Principal, Text};

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
    /// How long a found answer is cached (for a usage report: the period), in milliseconds.
    pub ttl_ms: u64,
    pub negative_ttl_ms: u64,
}

impl Service {
    /// A short name of what the service is (its cluster, authority and path; not its timings)
    /// for shared data: what it said is kept under this name, so that another configuration in
    /// the same VM, with another service, never reads it.
    pub fn tag(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.cluster, &self.authority, &self.path] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let d: [u8; 32] = h.finalize().into();
        crate::text::hex(&d[..8])
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    #[default]
    Active,
    Revoked,
    Expired,
}

/// What a key service said about a digest, as cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(KeyEntry),
    NotFound,
}

#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub id: Text,
    pub digest: [u8; 32],
    pub status: KeyStatus,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    // In the principal's shared forms: a request's principal is made of them by counting
    // references, without an allocation.
    pub permissions: Names,
    pub scopes: Names,
    pub organization: Option<Text>,
    pub workspaces: Names,
    pub name: Option<Text>,
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

}

impl KeyEntry {
    /// An estimate of the memory the entry holds, in bytes: its texts and lists, each list item
    /// with the 16 bytes an allocation and its handle take, plus the entry itself.
    pub fn approx_bytes(&self) -> usize {
        let list = |v: &Names| v.iter().map(|s| s.len() + 16).sum::<usize>() + 16;
        let text = |t: &Option<Text>| t.as_ref().map_or(0, |s| s.len() + 16);
        std::mem::size_of::<KeyEntry>()
            + self.id.len()
            + 16
            + list(&self.permissions)
            + list(&self.scopes)
            + list(&self.workspaces)
            + text(&self.organization)
            + text(&self.name)
    }

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
            permissions: Names::new(["llm"]),
            scopes: Names::default(),
            organization: Some("org_1".into()),
            workspaces: Names::new(["ws_1"]),
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
        let principal = |key: &str, now: i64| keys.by_digest.get(&digest(key.as_bytes())).map(|e| e.principal(now));
        let p = principal("cm_ok", 5000).unwrap().unwrap();
        assert_eq!(p.key_id.as_deref(), Some("ok"));
        assert_eq!(p.organization.as_deref(), Some("org_1"));
        assert_eq!(principal("cm_rev", 0), Some(Err(Reason::KeyRevoked)));
        assert_eq!(principal("cm_exp", 0), Some(Err(Reason::KeyExpired)));
        assert!(principal("cm_old", 999).unwrap().is_ok());
        assert_eq!(principal("cm_old", 1000), Some(Err(Reason::KeyExpired)));
        assert!(principal("cm_nope", 0).is_none());
        assert!(keys.is_key(b"cm_x") && !keys.is_key(b"eyJ.a.b"));
        let dbg = format!("{:?}", keys.by_digest.values().next().unwrap());
        assert!(!dbg.contains("digest"), "{dbg}");
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(crate::text::hex(&digest(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
