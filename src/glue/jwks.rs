//! Remote JWKS, fetched through Envoy once for the whole process: a compare-and-swap lease in
//! shared data picks the worker that fetches (`jwks_cache` decides when), the document is
//! stored in shared data with a version, and every worker adopts a newer version on its tick
//! and keeps its own parsed copy. A failed, slow, garbage or over-large fetch never changes
//! the keys in hand.
//!
//! With `jwks.discovery`, every fetch is two calls under the same lease: the issuer's metadata
//! document (`discovery` decides where and what of it is trusted), then the keys at its
//! `jwks_uri`. The document is re-read at each refresh and never stored: the keys stored are
//! always the ones the latest trusted document points to, and a document that is refused
//! (failed, garbage, another issuer, another host) is a failed fetch that changes nothing.

use std::rc::Rc;
use std::time::Duration;

use crate::config::RemoteJwks;
use crate::discovery::{self, WellKnown};
use crate::jwks_cache as cache;
use crate::records::{self, Lease};
use crate::jwt::KeySet;
use crate::stats::Counter;

use super::calls::Purpose;
use super::{Body, Call, Host, Worker};

/// A JWKS larger than this is refused as garbage.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One provider's keys in this worker.
pub struct ProviderKeys {
    pub keys: Option<Rc<KeySet>>,
    /// Changes whenever `keys` change (the shared version for remote keys).
    pub version: u64,
    /// When the keys in hand were fetched (ms); `None` before the first.
    pub fetched_at: Option<u64>,
    pub remote: Option<RemoteJwks>,
}

impl ProviderKeys {
    pub fn inline(keys: Rc<KeySet>) -> ProviderKeys {
        ProviderKeys { keys: Some(keys), version: 0, fetched_at: None, remote: None }
    }

    pub fn remote(r: RemoteJwks) -> ProviderKeys {
        ProviderKeys { keys: None, version: 0, fetched_at: None, remote: Some(r) }
    }
}

fn lease_key(r: &RemoteJwks) -> String {
    format!("{}/lease", r.cache_key)
}

impl<H: Host> Worker<H> {
    fn remote(&self, i: usize) -> Option<(RemoteJwks, u64, Option<u64>)> {
        let st = self.st.borrow();
        let slot = st.slots.get(i)?;
        Some((slot.remote.clone()?, slot.version, slot.fetched_at))
    }

    /// Adopts a newer JWKS that any worker stored in shared data.
    pub(crate) fn refresh_from_shared(&self, i: usize) {
        let Some((remote, local_version, _)) = self.remote(i) else { return };
        let key = &remote.cache_key;
        let shared = self.host.shared_get(&format!("{key}/ver")).ok().and_then(|(v, _)| v);
        if records::decode_version(shared.as_deref()) <= local_version {
            return;
        }
        let Ok((Some(bytes), _)) = self.host.shared_get(&format!("{key}/data")) else { return };
        let Some(doc) = records::decode_document(&bytes) else { return };
        // Only documents that parsed when stored are stored; should one not parse here, the
        // keys in hand are kept.
        match KeySet::fetched(doc.jwks, remote.allow_symmetric_keys) {
            Ok(set) if !set.is_empty() => self.adopt(i, set, doc.version, doc.fetched_at),
            _ => log::warn!("api-auth-filter: shared JWKS for {key} did not parse; keeping the keys in hand"),
        }
    }

    fn adopt(&self, i: usize, set: KeySet, version: u64, fetched_at: u64) {
        let mut st = self.st.borrow_mut();
        st.verified.clear();
        if let Some(slot) = st.slots.get_mut(i) {
            slot.keys = Some(Rc::new(set));
            slot.version = version;
            slot.fetched_at = Some(fetched_at);
        }
    }

    fn read_lease(&self, r: &RemoteJwks) -> (Lease, Option<u32>) {
        match self.host.shared_get(&lease_key(r)) {
            Ok((value, cas)) => (Lease::decode(value.as_deref()), cas),
            Err(_) => (Lease::default(), None),
        }
    }

    fn write_lease(&self, r: &RemoteJwks, lease: &Lease, cas: Option<u32>) -> bool {
        self.host.shared_set(&lease_key(r), &lease.encode(), cas).is_ok()
    }

    /// Asks whichever worker holds the lease next to refetch (an unknown `kid` arrived).
    pub(crate) fn want_refetch(&self, r: &RemoteJwks, now: u64) {
        // Best effort: on a CAS race another worker just wrote the lease, and the next unknown
        // kid will ask again.
        let (lease, cas) = self.read_lease(r);
        self.write_lease(r, &Lease { refetch_wanted: now, ..lease }, cas);
    }

    /// Takes the lease and fetches when a fetch is due and no other worker is at it.
    pub(crate) fn maybe_fetch(&self, i: usize, now: u64) {
        let Some((remote, _, fetched_at)) = self.remote(i) else { return };
        if self.st.borrow().calls.any_for_keys(i) {
            return;
        }
        let (lease, cas) = self.read_lease(&remote);
        if !cache::fetch_due(&remote.timing, fetched_at, &lease, now) {
            return;
        }
        if !self.write_lease(&remote, &cache::take(&lease, &remote.timing, now), cas) {
            return; // another worker won the lease
        }
        match &remote.discovery {
            Some(d) => self.start_fetch(&remote, d.path(WellKnown::OpenId), Purpose::Discovery(i, WellKnown::OpenId), now),
            None => self.start_fetch(&remote, &remote.path, Purpose::Jwks(i), now),
        }
    }

    /// Dispatches one GET of a fetch whose lease this worker holds.
    fn start_fetch(&self, remote: &RemoteJwks, path: &str, purpose: Purpose, now: u64) {
        let call = Call {
            cluster: &remote.cluster,
            method: "GET",
            path,
            authority: &remote.authority,
            content_type: None,
            authorization: None,
            body: None,
            timeout: Duration::from_millis(remote.timing.timeout),
        };
        match self.host.dispatch(&call) {
            Ok(token) => {
                self.st.borrow_mut().calls.insert(token, purpose);
            }
            Err(e) => {
                log::warn!("api-auth-filter: JWKS fetch from cluster {} could not start: {e:?}", remote.cluster);
                self.fetch_failed(remote, now);
            }
        }
    }

    /// A fetch failed: the keys in hand stay, the lease backs off.
    fn fetch_failed(&self, remote: &RemoteJwks, now: u64) {
        self.count(Counter::JwksFetchFailed);
        let (lease, cas) = self.read_lease(remote);
        self.write_lease(remote, &cache::after_failure(&lease, now, &remote.timing), cas);
    }

    /// The answer to a discovery call: on to the RFC 8414 document after a 404 of the OpenID
    /// one, on to the keys with a trusted document, else a failed fetch.
    pub(crate) fn on_discovery_response(&self, i: usize, which: WellKnown, body_size: usize) {
        let now = self.host.now_ms();
        let Some((remote, _, _)) = self.remote(i) else { return };
        let Some(d) = remote.discovery.as_ref() else { return };
        let status = self.host.call_response_header(":status").ok().flatten();
        let next = match status.as_deref() {
            Some(b"404") if which == WellKnown::OpenId => Ok((d.path(WellKnown::OAuth).to_string(), Purpose::Discovery(i, WellKnown::OAuth))),
            Some(b"200") => {
                let body = if body_size > 0 && body_size <= discovery::MAX_DOCUMENT_BYTES {
                    self.host.body(Body::CallResponse, body_size).ok().flatten()
                } else {
                    None
                };
                match body {
                    Some(b) => {
                        let next = d.jwks_path(&remote.authority, &b).map(|p| (p, Purpose::Jwks(i))).map_err(|e| e.to_string());
                        // A trusted document also names the provider's introspection endpoint,
                        // where the configuration leaves it to the document.
                        let config = self.config();
                        let wanted = config.providers.get(i).and_then(|p| p.introspection.as_ref()).filter(|e| e.discover);
                        if let (Ok(_), Some(e)) = (&next, wanted) {
                            self.set_introspection_path(i, &remote, d.introspection_path(&e.service.authority, &b));
                        }
                        next
                    }
                    None => Err("an empty, unreadable or over-large document".to_string()),
                }
            }
            other => Err(format!("status {}", other.map_or("none".into(), String::from_utf8_lossy))),
        };
        match next {
            Ok((path, purpose)) => {
                // The lease is held on for the next call of the same fetch.
                let (lease, cas) = self.read_lease(&remote);
                self.write_lease(&remote, &cache::take(&lease, &remote.timing, now), cas);
                self.start_fetch(&remote, &path, purpose, now);
            }
            Err(why) => {
                // The document's values are not quoted (`discovery::Refusal` names no more
                // than a well-formed host).
                log::warn!(
                    "api-auth-filter: discovery for issuer {} through cluster {} refused: {why}; keeping the keys in hand",
                    d.issuer,
                    remote.cluster
                );
                self.fetch_failed(&remote, now);
            }
        }
    }

    pub(crate) fn on_jwks_response(&self, i: usize, body_size: usize) {
        let now = self.host.now_ms();
        let Some((remote, local_version, _)) = self.remote(i) else { return };
        let status = self.host.call_response_header(":status").ok().flatten();
        let body = if body_size > 0 && body_size <= MAX_JWKS_BYTES {
            self.host.body(Body::CallResponse, body_size).ok().flatten()
        } else {
            None
        };
        let parsed = match (status.as_deref(), &body) {
            (Some(b"200"), Some(b)) => KeySet::fetched(b, remote.allow_symmetric_keys).ok().filter(|s| !s.is_empty()),
            _ => None,
        };
        let (lease, cas) = self.read_lease(&remote);
        match (parsed, body) {
            (Some(set), Some(b)) => {
                let (kept, skipped) = (set.len(), set.skipped);
                let ver_key = format!("{}/ver", remote.cache_key);
                let shared = self.host.shared_get(&ver_key).ok().and_then(|(v, _)| v);
                let version = records::decode_version(shared.as_deref()) + 1;
                let stored = self.host.shared_set(&format!("{}/data", remote.cache_key), &records::encode_document(version, now, &b), None).is_ok()
                    && self.host.shared_set(&ver_key, &version.to_be_bytes(), None).is_ok();
                self.write_lease(&remote, &cache::after_success(&lease, now, &remote.timing), cas);
                self.count(Counter::JwksFetchOk);
                self.adopt(i, set, if stored { version } else { local_version + 1 }, now);
                // Skipped entries are ones this filter cannot verify with (encryption keys, other
                // types, HMAC secrets beside public keys or without the provider's opt-in).
                log::info!("api-auth-filter: JWKS from cluster {} updated (version {version}: {kept} keys, {skipped} entries skipped)", remote.cluster);
            }
            _ => {
                // Keep the keys in hand: a failed fetch never changes what is accepted.
                self.fetch_failed(&remote, now);
                log::warn!(
                    "api-auth-filter: JWKS fetch from cluster {} failed (status {}); keeping the keys in hand",
                    remote.cluster,
                    status.as_deref().map_or("none".into(), String::from_utf8_lossy)
                );
            }
        }
    }
}
