//! The key service (`api_keys.lookup`): a digest not in the static table is looked up once,
//! whatever the number of requests waiting for it, and the answer is cached for every worker
//! in shared data (bounded slots) and, parsed, in each worker (so that a cached key costs no
//! JSON parse per request).
//!
//! The SDK delivers a call's answer to the context that dispatched it, and drops it when that
//! request has ended (its callout map points at a context that is gone; Envoy itself keeps the
//! call, on the root context). So when the dispatching request ends (a client reset) while
//! others still wait for the same digest, the lookup is handed on: the root context dispatches
//! it again on its next tick, the waiters' deadlines are extended for it, and they get its
//! answer. The first call's answer, should it come, is ignored (its token is forgotten).

use std::collections::HashMap;

use crate::apikeys::{Lookup, Service};
use crate::config::key_service_answer;
use crate::records;
use crate::stats::Counter;

use super::stream::Stream;
use super::{Action, Body, Call, Host, Worker};

/// Key-service answers are cached for every worker in shared data, in a fixed number of slots
/// (bounded memory): slot = digest prefix. Found keys and unknown ones have slots of their
/// own, so a flood of unknown keys can only evict unknown keys, never a key in use. Record:
/// digest, when it was fetched (ms), then (found) the service's JSON entry. A slot stores the
/// full digest: a collision costs a lookup, never a wrong answer.
pub const KEY_CACHE_SLOTS: u32 = 4096;
/// Parsed answers kept per worker: at most this many found keys,
pub const PARSED_ENTRIES: usize = 1024;
/// and at most this many bytes of them (by `parsed_bytes`, an estimate). An answer alone larger
/// than this is not kept parsed: it is parsed again from the shared record when used.
pub const PARSED_BYTES: usize = 256 * 1024;
/// Unknown keys each worker remembers, apart from the found ones (they cannot evict them).
pub const PARSED_UNKNOWN: usize = 1024;
/// A key-service answer larger than this is garbage.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Default)]
pub struct Lookups {
    /// Where this configuration's answers live in shared data: named by the key service that
    /// gave them (`service_prefix`), so another configuration's service never answers here.
    prefix: String,
    /// This configuration's TTLs (ms): a cached answer is read with the reader's own.
    ttl_ms: u64,
    negative_ttl_ms: u64,
    /// Calls in flight: token to digest.
    by_token: HashMap<u32, [u8; 32]>,
    /// Digest to its call: the token, the request that dispatched it (`None`: the root), and
    /// when (ms).
    in_flight: HashMap<[u8; 32], (u32, Option<u32>, u64)>,
    /// The digests each request dispatched, so that its end does not scan every call.
    by_owner: HashMap<u32, Vec<[u8; 32]>>,
    /// The requests waiting for each digest, so that an answer does not scan every stream.
    waiters: HashMap<[u8; 32], Vec<u32>>,
    /// Lookups whose dispatching request ended while others wait.
    orphans: Vec<[u8; 32]>,
    /// Found keys this worker parsed: digest to (fetched at, ms; answer).
    parsed: HashMap<[u8; 32], (u64, Lookup)>,
    /// The estimated size of `parsed` (`parsed_bytes` of each answer).
    parsed_total: usize,
    /// Unknown keys this worker was told of: digest to when (ms).
    unknown: HashMap<[u8; 32], u64>,
}

/// The estimated memory of one parsed answer, its digest and map slot included.
pub fn parsed_bytes(answer: &Lookup) -> usize {
    let entry = match answer {
        Lookup::Found(e) => e.approx_bytes(),
        Lookup::NotFound => 0,
    };
    std::mem::size_of::<([u8; 32], (u64, Lookup))>() + 8 + entry
}

/// The shared-data prefix of a key service's answers: a short hash of its cluster, authority
/// and path (the same service shares its answers between configurations; another never does).
pub fn service_prefix(service: &Service) -> String {
    format!("api-auth/keys/{}", service.tag())
}

/// Whether an answer fetched at `at` is still good at `now` for `ttl`.
fn fresh(at: u64, ttl: u64, now: u64) -> bool {
    now.saturating_sub(at) < ttl
}

impl Lookups {
    /// The lookups of a configuration with this key service.
    pub fn new(service: &Service) -> Lookups {
        Lookups { prefix: service_prefix(service), ttl_ms: service.ttl_ms, negative_ttl_ms: service.negative_ttl_ms, ..Lookups::default() }
    }

    /// Whether a request's end may have lookups to hand on (or their index to clear).
    pub(crate) fn any_in_flight(&self) -> bool {
        !self.in_flight.is_empty() || !self.by_owner.is_empty()
    }

    /// Parsed found keys kept, and their estimated bytes.
    pub fn parsed_usage(&self) -> (usize, usize) {
        (self.parsed.len(), self.parsed_total)
    }

    /// This worker's answer for a digest, if fresh by this configuration's TTLs.
    fn parsed_answer(&self, d: &[u8; 32], now: u64) -> Option<Lookup> {
        if let Some((at, answer)) = self.parsed.get(d) {
            return fresh(*at, self.ttl_ms, now).then(|| answer.clone());
        }
        let at = self.unknown.get(d)?;
        fresh(*at, self.negative_ttl_ms, now).then_some(Lookup::NotFound)
    }

    /// Keeps a parsed answer (fetched at `at`), replacing what this worker knew of the digest.
    /// Found keys stay within `PARSED_ENTRIES` and `PARSED_BYTES`, unknown ones within
    /// `PARSED_UNKNOWN`, each making room among their own kind (expired first): an unknown key
    /// never evicts a found one. A found answer larger than the whole bound is not kept.
    fn keep(&mut self, d: &[u8; 32], at: u64, answer: Lookup, now: u64) {
        self.forget(d);
        self.unknown.remove(d);
        if answer == Lookup::NotFound {
            if self.unknown.len() >= PARSED_UNKNOWN {
                let ttl = self.negative_ttl_ms;
                self.unknown.retain(|_, t| fresh(*t, ttl, now));
            }
            while self.unknown.len() >= PARSED_UNKNOWN {
                let Some(k) = self.unknown.keys().next().copied() else { break };
                self.unknown.remove(&k);
            }
            self.unknown.insert(*d, at);
            return;
        }
        let size = parsed_bytes(&answer);
        if size > PARSED_BYTES {
            return;
        }
        if self.parsed.len() >= PARSED_ENTRIES || self.parsed_total + size > PARSED_BYTES {
            let ttl = self.ttl_ms;
            let expired: Vec<[u8; 32]> = self.parsed.iter().filter(|(_, (t, _))| !fresh(*t, ttl, now)).map(|(k, _)| *k).collect();
            for k in expired {
                self.forget(&k);
            }
        }
        while self.parsed.len() >= PARSED_ENTRIES || self.parsed_total + size > PARSED_BYTES {
            let Some(k) = self.parsed.keys().next().copied() else { break };
            self.forget(&k);
        }
        self.parsed_total += size;
        self.parsed.insert(*d, (at, answer));
    }

    fn forget(&mut self, d: &[u8; 32]) {
        if let Some((_, old)) = self.parsed.remove(d) {
            self.parsed_total = self.parsed_total.saturating_sub(parsed_bytes(&old));
        }
    }

    /// Request `ctx` waits for `d`.
    pub(crate) fn add_waiter(&mut self, d: [u8; 32], ctx: u32) {
        self.waiters.entry(d).or_default().push(ctx);
    }

    /// Request `ctx` no longer waits for `d` (resumed, or ended).
    pub(crate) fn remove_waiter(&mut self, d: &[u8; 32], ctx: u32) {
        if let Some(ids) = self.waiters.get_mut(d) {
            ids.retain(|id| *id != ctx);
            if ids.is_empty() {
                self.waiters.remove(d);
            }
        }
    }

    /// The requests indexed as waiting for `d` (some may have moved on since).
    pub(crate) fn waiters_of(&self, d: &[u8; 32]) -> &[u32] {
        self.waiters.get(d).map_or(&[], Vec::as_slice)
    }

    fn slot_key(&self, d: &[u8; 32], found: bool) -> String {
        let slot = (u32::from(d[0]) << 8 | u32::from(d[1])) % KEY_CACHE_SLOTS;
        format!("{}/{}/{slot}", self.prefix, if found { "found" } else { "unknown" })
    }
}

impl<H: Host> Worker<H> {
    /// The key service's answer for a digest, if cached and fresh by this configuration's
    /// TTLs: this worker's parsed copy, else the shared records (then parsed once and kept).
    pub(crate) fn cached_lookup(&self, d: &[u8; 32], now: u64) -> Option<Lookup> {
        if let Some(answer) = self.st.borrow().lookups.parsed_answer(d, now) {
            return Some(answer);
        }
        let (at, answer) = self.read_shared_answer(d, now)?;
        self.st.borrow_mut().lookups.keep(d, at, answer.clone(), now);
        Some(answer)
    }

    /// The newer of the two shared records of a digest (found, unknown), when fresh.
    fn read_shared_answer(&self, d: &[u8; 32], now: u64) -> Option<(u64, Lookup)> {
        let (found_key, unknown_key, ttl, negative_ttl) = {
            let st = self.st.borrow();
            let l = &st.lookups;
            (l.slot_key(d, true), l.slot_key(d, false), l.ttl_ms, l.negative_ttl_ms)
        };
        let record = |key: &str| -> Option<(u64, Vec<u8>)> {
            let (Some(v), _) = self.host.shared_get(key).ok()? else { return None };
            let (at, _) = records::decode_verdict(&v, d)?;
            Some((at, v))
        };
        let found = record(&found_key);
        let unknown = record(&unknown_key);
        match (found, unknown) {
            (Some((at, v)), u) if u.as_ref().is_none_or(|(u_at, _)| *u_at <= at) => {
                if !fresh(at, ttl, now) {
                    return None;
                }
                Some((at, Lookup::Found(key_service_answer(records::decode_verdict(&v, d)?.1, d)?)))
            }
            (_, Some((at, _))) => fresh(at, negative_ttl, now).then_some((at, Lookup::NotFound)),
            _ => None,
        }
    }

    fn write_shared_answer(&self, d: &[u8; 32], at: u64, found: Option<&[u8]>) {
        let key = self.st.borrow().lookups.slot_key(d, found.is_some());
        let _ = self.host.shared_set(&key, &records::encode_verdict(d, at, found), None);
    }

    /// A request needs the key service's answer: it waits, and the digest is looked up unless
    /// a lookup for it is in flight already.
    pub(crate) fn wait_for_lookup(&self, ctx: u32, digest: [u8; 32], now: u64, ended: bool) -> Action {
        let config = self.config();
        let Some(service) = config.api_keys.as_ref().and_then(|k| k.lookup.as_ref()) else { return self.fail_closed(None, None) };
        let in_flight = self.st.borrow().lookups.in_flight.contains_key(&digest);
        if !in_flight && !self.dispatch_lookup(&digest, Some(ctx)) {
            // The answer can only be keys_unavailable now; decided at once, not after a wait.
            return self.decide_without_waiting(ctx, ended);
        }
        let deadline = now.saturating_add(service.timeout_ms).saturating_add(500);
        let mut st = self.st.borrow_mut();
        st.streams.insert(ctx, Stream::WaitingForLookup { digest, deadline, body_done: ended });
        st.lookups.add_waiter(digest, ctx);
        Action::Pause
    }

    /// Starts a lookup on behalf of `owner` (`None`: the root context). False when it could
    /// not start.
    fn dispatch_lookup(&self, digest: &[u8; 32], owner: Option<u32>) -> bool {
        let config = self.config();
        let Some(service) = config.api_keys.as_ref().and_then(|k| k.lookup.as_ref()) else { return false };
        let body = format!("{{\"sha256\":\"{}\"}}", crate::text::hex(digest));
        match self.host.dispatch(&Call::post_json(service, body.as_bytes())) {
            Ok(token) => {
                self.count(Counter::KeyLookup);
                let mut st = self.st.borrow_mut();
                st.lookups.by_token.insert(token, *digest);
                let now = self.host.now_ms();
                st.lookups.in_flight.insert(*digest, (token, owner, now));
                if let Some(ctx) = owner {
                    st.lookups.by_owner.entry(ctx).or_default().push(*digest);
                }
                true
            }
            Err(e) => {
                self.count(Counter::KeyLookupFailed);
                log::warn!("api-auth-filter: key lookup on cluster {} could not start: {e:?}", service.cluster);
                false
            }
        }
    }

    /// The request `ctx` ended: the lookups it dispatched die with it (Envoy cancels them);
    /// those others still wait for are handed to the root context.
    pub(crate) fn orphan_lookups_of(&self, ctx: u32) {
        let owned: Vec<([u8; 32], u32)> = {
            let mut st = self.st.borrow_mut();
            let lookups = &mut st.lookups;
            let dispatched = lookups.by_owner.remove(&ctx).unwrap_or_default();
            dispatched
                .iter()
                .filter_map(|d| lookups.in_flight.get(d).filter(|(_, owner, _)| *owner == Some(ctx)).map(|(t, _, _)| (*d, *t)))
                .collect()
        };
        for (digest, token) in owned {
            let waited = !self.lookup_waiters(&digest).is_empty();
            let mut st = self.st.borrow_mut();
            st.lookups.in_flight.remove(&digest);
            st.lookups.by_token.remove(&token);
            if waited {
                st.lookups.orphans.push(digest);
            }
        }
    }

    /// The root context's tick: forgets calls that outlived their timeout (their answer is
    /// not coming), and dispatches the orphaned lookups someone still waits for, extending
    /// those waiters' deadlines to the new call's.
    pub(crate) fn redispatch_orphans(&self) {
        let now = self.host.now_ms();
        let config = self.config();
        let Some(service) = config.api_keys.as_ref().and_then(|k| k.lookup.as_ref()) else { return };
        let patience = service.timeout_ms.saturating_add(500);
        {
            let mut st = self.st.borrow_mut();
            let lookups = &mut st.lookups;
            let stale: Vec<([u8; 32], u32)> = lookups
                .in_flight
                .iter()
                .filter(|(_, (_, _, at))| now.saturating_sub(*at) > patience.saturating_mul(2))
                .map(|(d, (t, _, _))| (*d, *t))
                .collect();
            for (digest, token) in stale {
                lookups.in_flight.remove(&digest);
                lookups.by_token.remove(&token);
            }
        }
        let orphans = std::mem::take(&mut self.st.borrow_mut().lookups.orphans);
        for digest in orphans {
            let in_flight = self.st.borrow().lookups.in_flight.contains_key(&digest);
            let waiters = self.lookup_waiters(&digest);
            if in_flight || waiters.is_empty() {
                continue;
            }
            if !self.dispatch_lookup(&digest, None) {
                // Nothing will answer: the waiters are decided now (keys_unavailable).
                for id in waiters {
                    self.resume(id);
                }
                continue;
            }
            let until = now.saturating_add(patience);
            let mut st = self.st.borrow_mut();
            for id in waiters {
                if let Some(Stream::WaitingForLookup { deadline, .. }) = st.streams.get_mut(&id) {
                    *deadline = (*deadline).max(until);
                }
            }
        }
    }

    pub(crate) fn on_lookup_response(&self, token: u32, body_size: usize) {
        let Some(digest) = self.st.borrow_mut().lookups.by_token.remove(&token) else { return };
        self.st.borrow_mut().lookups.in_flight.remove(&digest);
        let config = self.config();
        let Some(service) = config.api_keys.as_ref().and_then(|k| k.lookup.as_ref()) else { return };
        let now = self.host.now_ms();
        let keep = |answer: Lookup| self.st.borrow_mut().lookups.keep(&digest, now, answer, now);
        let status = self.host.call_response_header(":status").ok().flatten();
        match status.as_deref() {
            Some(b"200") => {
                let body = if body_size > 0 && body_size <= MAX_ANSWER_BYTES {
                    self.host.body(Body::CallResponse, body_size).ok().flatten()
                } else {
                    None
                };
                match body.and_then(|b| key_service_answer(&b, &digest).map(|entry| (b, entry))) {
                    Some((b, entry)) => {
                        self.write_shared_answer(&digest, now, Some(&b));
                        keep(Lookup::Found(entry));
                    }
                    None => {
                        self.count(Counter::KeyLookupFailed);
                        log::warn!("api-auth-filter: key service on cluster {} answered garbage", service.cluster);
                    }
                }
            }
            Some(b"404") => {
                self.write_shared_answer(&digest, now, None);
                keep(Lookup::NotFound);
            }
            other => {
                self.count(Counter::KeyLookupFailed);
                log::warn!(
                    "api-auth-filter: key service on cluster {} failed (status {})",
                    service.cluster,
                    other.map_or("none".into(), String::from_utf8_lossy)
                );
            }
        }
        // Waiters decide again: with an answer cached they get it, without one keys_unavailable.
        for id in self.lookup_waiters(&digest) {
            self.resume(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikeys::{KeyEntry, KeyStatus};
    use crate::principal::Names;

    fn found(id: &str, permissions: usize, width: usize) -> Lookup {
        Lookup::Found(KeyEntry {
            id: id.into(),
            digest: [0; 32],
            status: KeyStatus::Active,
            expires_at: None,
            permissions: Names::new((0..permissions).map(|i| format!("{i:0width$}"))),
            scopes: Names::default(),
            organization: None,
            workspaces: Names::default(),
            name: None,
        })
    }

    fn digest(i: usize) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&(i as u64).to_le_bytes());
        d
    }

    fn lasting() -> Lookups {
        Lookups { ttl_ms: u64::MAX, negative_ttl_ms: u64::MAX, ..Lookups::default() }
    }

    #[test]
    fn parsed_answers_stay_within_their_bytes_and_entries() {
        let mut l = lasting();
        // About 4 KiB each: the byte bound, not the count, limits them (to about 64).
        let size = parsed_bytes(&found("k", 100, 24));
        assert!((4000..6000).contains(&size), "{size}");
        for i in 0..1000 {
            l.keep(&digest(i), 0, found("k", 100, 24), 0);
            let (n, bytes) = l.parsed_usage();
            assert!(bytes <= PARSED_BYTES, "{bytes}");
            assert_eq!(bytes, l.parsed.values().map(|(_, a)| parsed_bytes(a)).sum::<usize>(), "the running total is right");
            assert!(n <= PARSED_BYTES / size);
        }
        assert_eq!(l.parsed_usage().0, PARSED_BYTES / size, "full to the byte bound");
        assert!(l.parsed.contains_key(&digest(999)), "the newest answer is kept");
        // Small answers: within the count too.
        let mut l = lasting();
        for i in 0..3000 {
            l.keep(&digest(i), 0, found("k", 0, 0), 0);
        }
        assert!(l.parsed_usage().0 <= PARSED_ENTRIES && l.parsed_usage().1 <= PARSED_BYTES);
        // Replacing an answer does not count it twice.
        let before = l.parsed_usage();
        l.keep(&digest(2999), 0, found("k", 0, 0), 0);
        assert_eq!(l.parsed_usage(), before);
        // One answer larger than the whole bound is not kept parsed.
        let huge = found("k", 12_000, 8);
        assert!(parsed_bytes(&huge) > PARSED_BYTES);
        l.keep(&digest(5000), 0, huge, 0);
        assert!(!l.parsed.contains_key(&digest(5000)));
        assert!(l.parsed_usage().1 <= PARSED_BYTES);
    }

    #[test]
    fn expired_answers_make_room_first() {
        let mut l = Lookups { ttl_ms: 10, ..lasting() };
        let full = (PARSED_BYTES / parsed_bytes(&found("k", 0, 0))).min(PARSED_ENTRIES);
        for i in 0..full {
            // The even ones were fetched at 0 and expire at 10; the odd ones at 15.
            l.keep(&digest(i), if i % 2 == 0 { 0 } else { 15 }, found("k", 0, 0), 0);
        }
        assert_eq!(l.parsed_usage().0, full);
        l.keep(&digest(full), 20, found("k", 0, 0), 20);
        assert_eq!(l.parsed_usage().0, full / 2 + 1);
        assert!((0..full).filter(|i| i % 2 == 1).all(|i| l.parsed.contains_key(&digest(i))), "the fresh ones all stay");
    }

    #[test]
    fn unknown_keys_never_evict_found_ones() {
        let mut l = lasting();
        for i in 0..100 {
            l.keep(&digest(i), 0, found("k", 1, 8), 0);
        }
        for i in 1000..6000 {
            l.keep(&digest(i), 0, Lookup::NotFound, 0);
        }
        assert!((0..100).all(|i| l.parsed_answer(&digest(i), 1).is_some_and(|a| a != Lookup::NotFound)), "a found key was evicted");
        assert_eq!(l.unknown.len(), PARSED_UNKNOWN, "unknown keys are bounded among themselves");
        assert_eq!(l.parsed_answer(&digest(5999), 1), Some(Lookup::NotFound));
        // A newer answer for the same digest replaces the other kind.
        l.keep(&digest(5999), 2, found("k", 1, 8), 2);
        assert!(matches!(l.parsed_answer(&digest(5999), 3), Some(Lookup::Found(_))));
        l.keep(&digest(0), 3, Lookup::NotFound, 3);
        assert_eq!(l.parsed_answer(&digest(0), 4), Some(Lookup::NotFound));
    }

    #[test]
    fn the_reader_applies_its_own_ttls() {
        let mut l = Lookups { ttl_ms: 1000, negative_ttl_ms: 100, ..lasting() };
        l.keep(&digest(1), 0, found("k", 1, 8), 0);
        l.keep(&digest(2), 0, Lookup::NotFound, 0);
        assert!(l.parsed_answer(&digest(1), 999).is_some() && l.parsed_answer(&digest(1), 1000).is_none());
        assert!(l.parsed_answer(&digest(2), 99).is_some() && l.parsed_answer(&digest(2), 100).is_none());
    }

    #[test]
    fn each_key_service_has_its_own_shared_records() {
        let service = |cluster: &str, authority: &str, path: &str| Service {
            cluster: cluster.into(),
            authority: authority.into(),
            path: path.into(),
            timeout_ms: 500,
            ttl_ms: 1,
            negative_ttl_ms: 1,
        };
        let a = service_prefix(&service("keys", "keys", "/lookup"));
        assert_eq!(a, service_prefix(&Service { ttl_ms: 99, ..service("keys", "keys", "/lookup") }), "TTLs are the reader's");
        for other in [service("keys2", "keys", "/lookup"), service("keys", "other", "/lookup"), service("keys", "keys", "/lookup2"), service("key", "skeys", "/lookup")] {
            assert_ne!(a, service_prefix(&other), "{other:?}");
        }
        assert!(a.starts_with("api-auth/keys/") && a.len() == "api-auth/keys/".len() + 16, "{a}");
    }
}
