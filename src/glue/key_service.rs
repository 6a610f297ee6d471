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

use crate::apikeys::Lookup;
use crate::config::key_service_answer;
use crate::stats::Counter;

use super::stream::Stream;
use super::{Action, Body, Call, Host, Worker};

/// Key-service answers are cached for every worker in shared data, in a fixed number of slots
/// (bounded memory): slot = digest prefix. Record: digest, expiry (ms), found (1/0), then the
/// service's JSON entry. A slot stores the full digest: a collision costs a lookup, never a
/// wrong answer.
pub const KEY_CACHE_SLOTS: u32 = 4096;
/// Parsed answers kept per worker: at most this many,
pub const PARSED_ENTRIES: usize = 1024;
/// and at most this many bytes of them (by `parsed_bytes`, an estimate). An answer alone larger
/// than this is not kept parsed: it is parsed again from the shared record when used.
pub const PARSED_BYTES: usize = 256 * 1024;
/// A key-service answer larger than this is garbage.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[derive(Default)]
pub struct Lookups {
    /// Calls in flight: token to digest.
    by_token: HashMap<u32, [u8; 32]>,
    /// Digest to its call: the token, the request that dispatched it (`None`: the root), and
    /// when (ms).
    in_flight: HashMap<[u8; 32], (u32, Option<u32>, u64)>,
    /// Lookups whose dispatching request ended while others wait.
    orphans: Vec<[u8; 32]>,
    /// Answers this worker parsed: digest to (expiry in ms, answer).
    parsed: HashMap<[u8; 32], (u64, Lookup)>,
    /// The estimated size of `parsed` (`parsed_bytes` of each answer).
    parsed_total: usize,
}

/// The estimated memory of one parsed answer, its digest and map slot included.
pub fn parsed_bytes(answer: &Lookup) -> usize {
    let entry = match answer {
        Lookup::Found(e) => e.approx_bytes(),
        Lookup::NotFound => 0,
    };
    std::mem::size_of::<([u8; 32], (u64, Lookup))>() + 8 + entry
}

impl Lookups {
    pub(crate) fn any_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Parsed answers kept, and their estimated bytes.
    pub fn parsed_usage(&self) -> (usize, usize) {
        (self.parsed.len(), self.parsed_total)
    }

    /// Keeps a parsed answer within `PARSED_ENTRIES` and `PARSED_BYTES`: older answers (any,
    /// expired first) make room; one larger than the whole bound is not kept.
    fn keep(&mut self, d: &[u8; 32], expires: u64, answer: Lookup, now: u64) {
        if let Some((_, old)) = self.parsed.remove(d) {
            self.parsed_total = self.parsed_total.saturating_sub(parsed_bytes(&old));
        }
        let size = parsed_bytes(&answer);
        if size > PARSED_BYTES {
            return;
        }
        if self.parsed.len() >= PARSED_ENTRIES || self.parsed_total + size > PARSED_BYTES {
            let expired: Vec<[u8; 32]> = self.parsed.iter().filter(|(_, (exp, _))| now >= *exp).map(|(k, _)| *k).collect();
            for k in expired {
                self.forget(&k);
            }
        }
        while self.parsed.len() >= PARSED_ENTRIES || self.parsed_total + size > PARSED_BYTES {
            let Some(k) = self.parsed.keys().next().copied() else { break };
            self.forget(&k);
        }
        self.parsed_total += size;
        self.parsed.insert(*d, (expires, answer));
    }

    fn forget(&mut self, d: &[u8; 32]) {
        if let Some((_, old)) = self.parsed.remove(d) {
            self.parsed_total = self.parsed_total.saturating_sub(parsed_bytes(&old));
        }
    }
}

fn slot_key(d: &[u8; 32]) -> String {
    format!("api-auth/keys/{}", (u32::from(d[0]) << 8 | u32::from(d[1])) % KEY_CACHE_SLOTS)
}

impl<H: Host> Worker<H> {
    /// The key service's answer for a digest, if cached and fresh: this worker's parsed copy,
    /// else the shared record (then parsed once and kept).
    pub(crate) fn cached_lookup(&self, d: &[u8; 32], now: u64) -> Option<Lookup> {
        if let Some((expires, answer)) = self.st.borrow().lookups.parsed.get(d) {
            if now < *expires {
                return Some(answer.clone());
            }
        }
        let (expires, answer) = self.read_shared_answer(d, now)?;
        self.keep_parsed(d, expires, answer.clone());
        Some(answer)
    }

    fn keep_parsed(&self, d: &[u8; 32], expires: u64, answer: Lookup) {
        let now = self.host.now_ms();
        self.st.borrow_mut().lookups.keep(d, expires, answer, now);
    }

    fn read_shared_answer(&self, d: &[u8; 32], now: u64) -> Option<(u64, Lookup)> {
        let (Some(v), _) = self.host.shared_get(&slot_key(d)).ok()? else { return None };
        let expires = u64::from_be_bytes(v.get(32..40)?.try_into().ok()?);
        if v.get(..32)? != d || now >= expires {
            return None;
        }
        let answer = match v.get(40)? {
            1 => Lookup::Found(key_service_answer(v.get(41..)?, d)?),
            _ => Lookup::NotFound,
        };
        Some((expires, answer))
    }

    fn write_shared_answer(&self, d: &[u8; 32], expires: u64, found: Option<&[u8]>) {
        let mut v = Vec::with_capacity(41 + found.map_or(0, <[u8]>::len));
        v.extend_from_slice(d);
        v.extend_from_slice(&expires.to_be_bytes());
        match found {
            Some(body) => {
                v.push(1);
                v.extend_from_slice(body);
            }
            None => v.push(0),
        }
        let _ = self.host.shared_set(&slot_key(d), &v, None);
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
        self.st.borrow_mut().streams.insert(ctx, Stream::WaitingForLookup { digest, deadline, body_done: ended });
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
            let st = self.st.borrow();
            st.lookups.in_flight.iter().filter(|(_, (_, owner, _))| *owner == Some(ctx)).map(|(d, (t, _, _))| (*d, *t)).collect()
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
                        let expires = now.saturating_add(service.ttl_ms);
                        self.write_shared_answer(&digest, expires, Some(&b));
                        self.keep_parsed(&digest, expires, Lookup::Found(entry));
                    }
                    None => {
                        self.count(Counter::KeyLookupFailed);
                        log::warn!("api-auth-filter: key service on cluster {} answered garbage", service.cluster);
                    }
                }
            }
            Some(b"404") => {
                let expires = now.saturating_add(service.negative_ttl_ms);
                self.write_shared_answer(&digest, expires, None);
                self.keep_parsed(&digest, expires, Lookup::NotFound);
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

    #[test]
    fn parsed_answers_stay_within_their_bytes_and_entries() {
        let mut l = Lookups::default();
        // About 4 KiB each: the byte bound, not the count, limits them (to about 64).
        let size = parsed_bytes(&found("k", 100, 24));
        assert!((4000..6000).contains(&size), "{size}");
        for i in 0..1000 {
            l.keep(&digest(i), u64::MAX, found("k", 100, 24), 0);
            let (n, bytes) = l.parsed_usage();
            assert!(bytes <= PARSED_BYTES, "{bytes}");
            assert_eq!(bytes, l.parsed.values().map(|(_, a)| parsed_bytes(a)).sum::<usize>(), "the running total is right");
            assert!(n <= PARSED_BYTES / size);
        }
        assert_eq!(l.parsed_usage().0, PARSED_BYTES / size, "full to the byte bound");
        assert!(l.parsed.contains_key(&digest(999)), "the newest answer is kept");
        // Small answers: the count bounds them.
        let mut l = Lookups::default();
        for i in 0..3000 {
            l.keep(&digest(i), u64::MAX, Lookup::NotFound, 0);
        }
        assert_eq!(l.parsed_usage().0, PARSED_ENTRIES);
        // Replacing an answer does not count it twice.
        let before = l.parsed_usage();
        l.keep(&digest(2999), u64::MAX, Lookup::NotFound, 0);
        assert_eq!(l.parsed_usage(), before);
        // One answer larger than the whole bound is not kept parsed.
        let huge = found("k", 12_000, 8);
        assert!(parsed_bytes(&huge) > PARSED_BYTES);
        l.keep(&digest(5000), u64::MAX, huge, 0);
        assert!(!l.parsed.contains_key(&digest(5000)));
        assert!(l.parsed_usage().1 <= PARSED_BYTES);
    }

    #[test]
    fn expired_answers_make_room_first() {
        let mut l = Lookups::default();
        for i in 0..PARSED_ENTRIES {
            // The even ones expired at 10.
            let expires = if i % 2 == 0 { 10 } else { u64::MAX };
            l.keep(&digest(i), expires, Lookup::NotFound, 0);
        }
        l.keep(&digest(PARSED_ENTRIES), u64::MAX, Lookup::NotFound, 20);
        assert_eq!(l.parsed_usage().0, PARSED_ENTRIES / 2 + 1);
        assert!((0..PARSED_ENTRIES).filter(|i| i % 2 == 1).all(|i| l.parsed.contains_key(&digest(i))), "the fresh ones all stay");
    }
}
