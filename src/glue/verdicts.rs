//! Remote verdicts: an answer about a credential that a service gives (a key service's
//! lookup, an introspection answer), asked once per digest whatever the number of requests waiting,
//! cached for every worker in shared data and, parsed, in each worker.
//!
//! What a kind of verdict brings is its `Remote`: where to ask, how to read the answer and the
//! record it stored. Everything else is here, once:
//! - one call per digest; the requests waiting are indexed by digest;
//! - the hand-off: the SDK delivers an answer to the context that dispatched the call, and
//!   drops it when that request has ended (Envoy keeps the call, on the root context). So when
//!   the dispatching request ends while others still wait, the root context dispatches the
//!   call again on its next tick, the waiters' deadlines are extended to it, and they get its
//!   answer; the first call's answer, should it come, is ignored (its token is forgotten);
//! - shared data: a fixed number of slots per kind of answer (found, unknown), named by the
//!   service that answered (`Remote::prefix`), so that one configuration's service never
//!   answers for another's, and a flood of unknown credentials can only evict unknown ones.
//!   A record is read with the reader's TTLs (`records::encode_verdict`);
//! - each worker's parsed copies, bounded in entries and bytes, unknown ones apart.

use std::collections::HashMap;

use crate::config::Config;
use crate::records;
use crate::stats::Counter;

pub use super::calls::Source;
use super::calls::{Pending, Purpose};
use super::stream::Stream;
use super::{Action, Body, Call, Host, State, Worker};

/// A parsed answer as a worker keeps it.
pub trait Answer: Clone {
    /// The answer "the service does not know this credential".
    fn unknown() -> Self;
    fn is_unknown(&self) -> bool;
    /// Its estimated memory, digest and map slot excluded.
    fn approx_bytes(&self) -> usize;
}

/// What a response said.
pub enum Outcome<A> {
    /// An answer, and the body to store for the other workers (`Remote::parse` reads it).
    Found(A, Vec<u8>),
    /// The service does not know the credential.
    Unknown,
    /// No answer (a failure, garbage): nothing is cached, the waiters decide without one.
    Failed(String),
}

/// A kind of remote verdict: what differs between them.
pub(crate) trait Remote {
    type Answer: Answer;
    fn source(&self) -> Source;
    /// This kind's cache in the worker's state, when the configuration has the service.
    fn cache<'s>(&self, st: &'s mut State) -> Option<&'s mut Verdicts<Self::Answer>>;
    /// The call that asks for `body`, to this configuration's service.
    fn call<'c>(&'c self, config: &'c Config, body: &'c [u8]) -> Option<Call<'c>>;
    /// The answer a stored record's body holds.
    fn parse(&self, config: &Config, body: &[u8], digest: &[u8; 32]) -> Option<Self::Answer>;
    /// What a response (`:status`, body if small enough) says.
    fn read(&self, config: &Config, status: Option<&[u8]>, body: Option<Vec<u8>>, digest: &[u8; 32]) -> Outcome<Self::Answer>;
    /// Counted when a call starts, and when one fails or cannot start.
    fn counters(&self) -> (Counter, Counter);
}

/// The bounds of a kind's caches.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Shared-data slots per kind of answer (found, unknown).
    pub slots: u32,
    /// Found answers parsed per worker, at most this many
    pub entries: usize,
    /// and this many bytes (by `parsed_bytes`); an answer alone larger is parsed when used.
    pub bytes: usize,
    /// Unknown credentials each worker remembers, apart from the found ones.
    pub unknown: usize,
    /// A response larger than this is garbage.
    pub answer_bytes: usize,
}

/// One kind's verdicts in one worker.
pub struct Verdicts<A> {
    /// Where the answers live in shared data: named by the service that gave them.
    prefix: String,
    /// This configuration's TTLs (ms): a cached answer is read with the reader's own.
    ttl_ms: u64,
    negative_ttl_ms: u64,
    bounds: Bounds,
    pub(crate) pending: Pending,
    /// Found answers this worker parsed: digest to (answered at, ms; answer).
    parsed: HashMap<[u8; 32], (u64, A)>,
    /// The estimated size of `parsed`.
    parsed_total: usize,
    /// Unknown credentials this worker was told of: digest to when (ms).
    unknown: HashMap<[u8; 32], u64>,
}

/// The estimated memory of one parsed answer, its digest and map slot included.
pub fn parsed_bytes<A: Answer>(answer: &A) -> usize {
    std::mem::size_of::<([u8; 32], (u64, A))>() + 8 + answer.approx_bytes()
}

/// Whether an answer given at `at` is still good at `now` for `ttl`.
fn fresh(at: u64, ttl: u64, now: u64) -> bool {
    now.saturating_sub(at) < ttl
}

impl<A: Answer> Verdicts<A> {
    /// `prefix`: the shared-data name of the service; TTLs and the call's timeout in ms.
    pub fn new(prefix: String, ttl_ms: u64, negative_ttl_ms: u64, timeout_ms: u64, bounds: Bounds) -> Verdicts<A> {
        Verdicts {
            prefix,
            ttl_ms,
            negative_ttl_ms,
            bounds,
            pending: Pending::new(timeout_ms),
            parsed: HashMap::new(),
            parsed_total: 0,
            unknown: HashMap::new(),
        }
    }

    /// Parsed found answers kept, and their estimated bytes.
    pub fn parsed_usage(&self) -> (usize, usize) {
        (self.parsed.len(), self.parsed_total)
    }

    /// This worker's answer for a digest, if fresh by this configuration's TTLs.
    pub(crate) fn parsed_answer(&self, d: &[u8; 32], now: u64) -> Option<A> {
        if let Some((at, answer)) = self.parsed.get(d) {
            return fresh(*at, self.ttl_ms, now).then(|| answer.clone());
        }
        let at = self.unknown.get(d)?;
        fresh(*at, self.negative_ttl_ms, now).then(A::unknown)
    }

    /// Keeps a parsed answer (given at `at`), replacing what this worker knew of the digest.
    /// Found answers stay within `bounds.entries` and `bounds.bytes`, unknown ones within
    /// `bounds.unknown`, each making room among their own kind (expired first): an unknown
    /// credential never evicts a found one. A found answer larger than the whole bound is not
    /// kept.
    pub(crate) fn keep(&mut self, d: &[u8; 32], at: u64, answer: A, now: u64) {
        self.forget(d);
        self.unknown.remove(d);
        if answer.is_unknown() {
            if self.unknown.len() >= self.bounds.unknown {
                let ttl = self.negative_ttl_ms;
                self.unknown.retain(|_, t| fresh(*t, ttl, now));
            }
            while self.unknown.len() >= self.bounds.unknown.max(1) {
                let Some(k) = self.unknown.keys().next().copied() else { break };
                self.unknown.remove(&k);
            }
            self.unknown.insert(*d, at);
            return;
        }
        let size = parsed_bytes(&answer);
        let (entries, bytes) = (self.bounds.entries, self.bounds.bytes);
        if size > bytes {
            return;
        }
        if self.parsed.len() >= entries || self.parsed_total + size > bytes {
            let ttl = self.ttl_ms;
            let expired: Vec<[u8; 32]> = self.parsed.iter().filter(|(_, (t, _))| !fresh(*t, ttl, now)).map(|(k, _)| *k).collect();
            for k in expired {
                self.forget(&k);
            }
        }
        while self.parsed.len() >= entries.max(1) || self.parsed_total + size > bytes {
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

    /// Where the calls in flight for this service, in the whole process, are claimed.
    fn claims_key(&self) -> String {
        format!("{}/calls", self.prefix)
    }

    fn slot_key(&self, d: &[u8; 32], found: bool) -> String {
        let slot = (u32::from(d[0]) << 8 | u32::from(d[1])) % self.bounds.slots.max(1);
        format!("{}/{}/{slot}", self.prefix, if found { "found" } else { "unknown" })
    }
}

/// Whether this worker asks, or waits for another worker's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Mine,
    Theirs,
}

impl State {
    /// The calls and waiters of a kind of verdict, when the configuration has its service.
    pub(crate) fn pending(&mut self, source: Source) -> Option<&mut Pending> {
        match source {
            Source::KeyService => self.lookups.as_mut().map(|v| &mut v.pending),
            Source::Introspection(i) => self.introspections.get_mut(i)?.as_mut().map(|v| &mut v.pending),
        }
    }
}

impl<H: Host> Worker<H> {
    /// A kind's answer for a digest, if cached and fresh by this configuration's TTLs: this
    /// worker's parsed copy, else the shared records (then parsed once and kept).
    pub(crate) fn cached_verdict<R: Remote>(&self, r: &R, d: &[u8; 32], now: u64) -> Option<R::Answer> {
        let (found_key, unknown_key, ttl, negative_ttl) = {
            let mut st = self.st.borrow_mut();
            let v = r.cache(&mut st)?;
            if let Some(answer) = v.parsed_answer(d, now) {
                return Some(answer);
            }
            (v.slot_key(d, true), v.slot_key(d, false), v.ttl_ms, v.negative_ttl_ms)
        };
        let record = |key: &str| -> Option<(u64, Vec<u8>)> {
            let (Some(v), _) = self.host.shared_get(key).ok()? else { return None };
            let (at, _) = records::decode_verdict(&v, d)?;
            Some((at, v))
        };
        // The newer of the two records, when fresh.
        let (at, answer) = match (record(&found_key), record(&unknown_key)) {
            (Some((at, v)), u) if u.as_ref().is_none_or(|(u_at, _)| *u_at <= at) => {
                if !fresh(at, ttl, now) {
                    return None;
                }
                (at, r.parse(&self.config(), records::decode_verdict(&v, d)?.1, d)?)
            }
            (_, Some((at, _))) if fresh(at, negative_ttl, now) => (at, R::Answer::unknown()),
            _ => return None,
        };
        if let Some(v) = r.cache(&mut self.st.borrow_mut()) {
            v.keep(d, at, answer.clone(), now);
        }
        Some(answer)
    }

    /// Creates the record where calls are claimed, when it does not exist yet: a claim is then
    /// always a compare-and-swap write (the host's CAS cannot create a key only if absent).
    pub(crate) fn prepare_claims<R: Remote>(&self, r: &R) {
        let Some(key) = r.cache(&mut self.st.borrow_mut()).map(|v| v.claims_key()) else { return };
        if let Ok((None, _)) = self.host.shared_get(&key) {
            let _ = self.host.shared_set(&key, &[], None);
        }
    }

    /// Claims the call on `d` for this worker until `until` (ms), unless another worker's
    /// claim on it is fresh: then this worker waits for that call's answer in shared data. A
    /// full table (a flood of distinct credentials) or a host error: this worker asks, without
    /// a claim (a second call, never a wrong answer).
    fn claim<R: Remote>(&self, r: &R, d: &[u8; 32], now: u64, until: u64) -> Claim {
        let Some(key) = r.cache(&mut self.st.borrow_mut()).map(|v| v.claims_key()) else { return Claim::Mine };
        for _ in 0..4 {
            let Ok((value, cas)) = self.host.shared_get(&key) else { return Claim::Mine };
            let mut claims = records::decode_claims(value.as_deref());
            claims.retain(|(_, u)| *u > now);
            if claims.iter().any(|(c, _)| c == d) {
                return Claim::Theirs;
            }
            if claims.len() >= records::MAX_CLAIMS {
                return Claim::Mine;
            }
            claims.push((*d, until));
            match self.host.shared_set(&key, &records::encode_claims(&claims), cas) {
                Ok(()) => return Claim::Mine,
                // Another worker wrote meanwhile: read again.
                Err(_) => continue,
            }
        }
        Claim::Mine
    }

    /// This worker's call on `d` is over (answered, failed, given up): its claim goes.
    fn release<R: Remote>(&self, r: &R, d: &[u8; 32]) {
        let Some(key) = r.cache(&mut self.st.borrow_mut()).map(|v| v.claims_key()) else { return };
        for _ in 0..4 {
            let Ok((value, cas)) = self.host.shared_get(&key) else { return };
            let mut claims = records::decode_claims(value.as_deref());
            let before = claims.len();
            claims.retain(|(c, _)| c != d);
            if claims.len() == before || self.host.shared_set(&key, &records::encode_claims(&claims), cas).is_ok() {
                return;
            }
        }
    }

    fn write_shared_verdict<R: Remote>(&self, r: &R, d: &[u8; 32], at: u64, found: Option<&[u8]>) {
        let Some(key) = r.cache(&mut self.st.borrow_mut()).map(|v| v.slot_key(d, found.is_some())) else { return };
        let _ = self.host.shared_set(&key, &records::encode_verdict(d, at, found), None);
    }

    /// A request needs a remote verdict on `digest` (asking with `body`): it waits, and the
    /// call starts unless one for the digest is in flight already.
    ///
    /// One call per digest for the whole process: a worker claims the call in shared data
    /// before it asks; another worker whose requests need the same digest meanwhile waits for
    /// the answer to appear there (looked for on each tick), and asks itself only if the claim
    /// lapses without one.
    pub(crate) fn wait_for_verdict<R: Remote>(&self, r: &R, ctx: u32, digest: [u8; 32], body: Vec<u8>, now: u64, ended: bool) -> Action {
        let source = r.source();
        let Some((in_flight, watched, patience)) =
            self.st.borrow_mut().pending(source).map(|p| (p.is_in_flight(&digest), p.is_watching(&digest), p.patience_ms()))
        else {
            return self.fail_closed(None, None);
        };
        if !in_flight && !watched {
            match self.claim(r, &digest, now, now.saturating_add(patience)) {
                Claim::Theirs => {
                    if let Some(p) = self.st.borrow_mut().pending(source) {
                        p.watch(digest, body);
                    }
                }
                Claim::Mine => {
                    if !self.dispatch_verdict(r, &digest, body, Some(ctx)) {
                        self.release(r, &digest);
                        // The answer can only be "unavailable" now: decided at once, not after a wait.
                        return self.decide_without_waiting(ctx, ended);
                    }
                }
            }
        }
        let mut st = self.st.borrow_mut();
        st.streams.insert(ctx, Stream::WaitingForVerdict { source, digest, deadline: now.saturating_add(patience), body_done: ended });
        if let Some(p) = st.pending(source) {
            p.add_waiter(digest, ctx);
        }
        Action::Pause
    }

    /// Starts a call on behalf of `owner` (`None`: the root context). False when it could not
    /// start.
    fn dispatch_verdict<R: Remote>(&self, r: &R, digest: &[u8; 32], body: Vec<u8>, owner: Option<u32>) -> bool {
        let config = self.config();
        let Some(call) = r.call(&config, &body) else { return false };
        let (started, failed) = r.counters();
        match self.host.dispatch(&call) {
            Ok(token) => {
                self.count(started);
                let now = self.host.now_ms();
                let mut st = self.st.borrow_mut();
                st.calls.insert(token, Purpose::Verdict(r.source(), *digest));
                if let Some(p) = st.pending(r.source()) {
                    p.started(*digest, token, owner, now, body);
                }
                true
            }
            Err(e) => {
                self.count(failed);
                log::warn!("api-auth-filter: {} call on cluster {} could not start: {e:?}", r.source().name(), call.cluster);
                false
            }
        }
    }

    /// The request `ctx` ended: the calls it dispatched die with it (Envoy cancels them);
    /// those others still wait for are handed to the root context, the others given up with
    /// their claims.
    pub(crate) fn orphan_verdicts_of<R: Remote>(&self, r: &R, ctx: u32) {
        let source = r.source();
        let gone = match self.st.borrow_mut().pending(source) {
            Some(p) if p.any_in_flight() => p.drop_owner(ctx),
            _ => return,
        };
        for (digest, token, body) in gone {
            let waited = !self.verdict_waiters(source, &digest).is_empty();
            {
                let mut st = self.st.borrow_mut();
                st.calls.take(token);
                if let (true, Some(p)) = (waited, st.pending(source)) {
                    p.orphan(digest, body);
                }
            }
            if !waited {
                self.release(r, &digest);
            }
        }
    }

    /// The root context's tick: forgets calls that outlived their timeout, and dispatches the
    /// orphaned calls someone still waits for, extending those waiters' deadlines to the new
    /// call's.
    pub(crate) fn redispatch_orphans<R: Remote>(&self, r: &R) {
        let now = self.host.now_ms();
        let source = r.source();
        let (orphans, patience) = {
            let mut st = self.st.borrow_mut();
            let Some(p) = st.pending(source) else { return };
            let stale = p.drop_stale(now);
            let orphans = p.take_orphans();
            let patience = p.patience_ms();
            for token in stale {
                st.calls.take(token);
            }
            (orphans, patience)
        };
        for (digest, body) in orphans {
            let in_flight = self.st.borrow_mut().pending(source).is_some_and(|p| p.is_in_flight(&digest));
            let waiters = self.verdict_waiters(source, &digest);
            if in_flight || waiters.is_empty() {
                continue;
            }
            if !self.dispatch_verdict(r, &digest, body, None) {
                // Nothing will answer: the waiters are decided now.
                for id in waiters {
                    self.resume(id);
                }
                continue;
            }
            self.extend_deadlines(&waiters, now.saturating_add(patience));
        }
        self.follow_claims(r, now, patience);
    }

    fn extend_deadlines(&self, waiters: &[u32], until: u64) {
        let mut st = self.st.borrow_mut();
        for id in waiters {
            if let Some(Stream::WaitingForVerdict { deadline, .. }) = st.streams.get_mut(id) {
                *deadline = (*deadline).max(until);
            }
        }
    }

    /// The tick's look at the digests this worker waits for on another worker's call: an
    /// answer in shared data wakes their requests; a claim that lapsed without one (that call
    /// failed, or its worker went) makes this worker ask.
    fn follow_claims<R: Remote>(&self, r: &R, now: u64, patience: u64) {
        let source = r.source();
        let watched = match self.st.borrow_mut().pending(source) {
            Some(p) => p.take_watching(),
            None => return,
        };
        for (digest, body) in watched {
            let waiters = self.verdict_waiters(source, &digest);
            if waiters.is_empty() {
                continue;
            }
            if self.cached_verdict(r, &digest, now).is_some() {
                for id in waiters {
                    self.resume(id);
                }
                continue;
            }
            match self.claim(r, &digest, now, now.saturating_add(patience)) {
                Claim::Theirs => {
                    if let Some(p) = self.st.borrow_mut().pending(source) {
                        p.watch(digest, body);
                    }
                }
                Claim::Mine if self.dispatch_verdict(r, &digest, body, None) => {
                    self.extend_deadlines(&waiters, now.saturating_add(patience));
                }
                Claim::Mine => {
                    self.release(r, &digest);
                    for id in waiters {
                        self.resume(id);
                    }
                }
            }
        }
    }

    /// The answer to a call for `digest` (its token already taken from the table of calls).
    pub(crate) fn on_verdict_response<R: Remote>(&self, r: &R, digest: [u8; 32], body_size: usize) {
        let config = self.config();
        let max = {
            let mut st = self.st.borrow_mut();
            let Some(v) = r.cache(&mut st) else { return };
            v.pending.finished(&digest);
            v.bounds.answer_bytes
        };
        let now = self.host.now_ms();
        let status = self.host.call_response_header(":status").ok().flatten();
        let body = if body_size > 0 && body_size <= max { self.host.body(Body::CallResponse, body_size).ok().flatten() } else { None };
        let answer = match r.read(&config, status.as_deref(), body, &digest) {
            Outcome::Found(answer, record) => {
                self.write_shared_verdict(r, &digest, now, Some(&record));
                Some(answer)
            }
            Outcome::Unknown => {
                self.write_shared_verdict(r, &digest, now, None);
                Some(R::Answer::unknown())
            }
            Outcome::Failed(why) => {
                self.count(r.counters().1);
                log::warn!("api-auth-filter: {} call failed: {why}", r.source().name());
                None
            }
        };
        if let (Some(answer), Some(v)) = (answer, r.cache(&mut self.st.borrow_mut())) {
            v.keep(&digest, now, answer, now);
        }
        // The answer is in shared data (or there is none): other workers no longer wait on
        // this call.
        self.release(r, &digest);
        // Waiters decide again: with an answer cached they get it, without one "unavailable".
        for id in self.verdict_waiters(r.source(), &digest) {
            self.resume(id);
        }
    }

    /// The context ids waiting for one digest: found by the digest, not by a scan of every
    /// stream (many distinct credentials waiting at once would cost a scan per answer).
    pub(crate) fn verdict_waiters(&self, source: Source, digest: &[u8; 32]) -> Vec<u32> {
        let st = &mut *self.st.borrow_mut();
        let ids: Vec<u32> = st.pending(source).map(|p| p.waiters_of(digest).to_vec()).unwrap_or_default();
        ids.into_iter()
            .filter(|id| matches!(st.streams.get(id), Some(Stream::WaitingForVerdict { source: s, digest: d, .. }) if *s == source && d == digest))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikeys::Lookup;
    use crate::glue::key_service::BOUNDS;
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

    fn with_ttls(ttl_ms: u64, negative_ttl_ms: u64) -> Verdicts<Lookup> {
        Verdicts::new(String::new(), ttl_ms, negative_ttl_ms, 500, BOUNDS)
    }

    fn lasting() -> Verdicts<Lookup> {
        with_ttls(u64::MAX, u64::MAX)
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
            assert!(bytes <= BOUNDS.bytes, "{bytes}");
            assert_eq!(bytes, l.parsed.values().map(|(_, a)| parsed_bytes(a)).sum::<usize>(), "the running total is right");
            assert!(n <= BOUNDS.bytes / size);
        }
        assert_eq!(l.parsed_usage().0, BOUNDS.bytes / size, "full to the byte bound");
        assert!(l.parsed.contains_key(&digest(999)), "the newest answer is kept");
        // Small answers: within the count too.
        let mut l = lasting();
        for i in 0..3000 {
            l.keep(&digest(i), 0, found("k", 0, 0), 0);
        }
        assert!(l.parsed_usage().0 <= BOUNDS.entries && l.parsed_usage().1 <= BOUNDS.bytes);
        // Replacing an answer does not count it twice.
        let before = l.parsed_usage();
        l.keep(&digest(2999), 0, found("k", 0, 0), 0);
        assert_eq!(l.parsed_usage(), before);
        // One answer larger than the whole bound is not kept parsed.
        let huge = found("k", 12_000, 8);
        assert!(parsed_bytes(&huge) > BOUNDS.bytes);
        l.keep(&digest(5000), 0, huge, 0);
        assert!(!l.parsed.contains_key(&digest(5000)));
        assert!(l.parsed_usage().1 <= BOUNDS.bytes);
    }

    #[test]
    fn expired_answers_make_room_first() {
        let mut l = with_ttls(10, u64::MAX);
        let full = (BOUNDS.bytes / parsed_bytes(&found("k", 0, 0))).min(BOUNDS.entries);
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
        assert_eq!(l.unknown.len(), BOUNDS.unknown, "unknown keys are bounded among themselves");
        assert_eq!(l.parsed_answer(&digest(5999), 1), Some(Lookup::NotFound));
        // A newer answer for the same digest replaces the other kind.
        l.keep(&digest(5999), 2, found("k", 1, 8), 2);
        assert!(matches!(l.parsed_answer(&digest(5999), 3), Some(Lookup::Found(_))));
        l.keep(&digest(0), 3, Lookup::NotFound, 3);
        assert_eq!(l.parsed_answer(&digest(0), 4), Some(Lookup::NotFound));
    }

    #[test]
    fn the_reader_applies_its_own_ttls() {
        let mut l = with_ttls(1000, 100);
        l.keep(&digest(1), 0, found("k", 1, 8), 0);
        l.keep(&digest(2), 0, Lookup::NotFound, 0);
        assert!(l.parsed_answer(&digest(1), 999).is_some() && l.parsed_answer(&digest(1), 1000).is_none());
        assert!(l.parsed_answer(&digest(2), 99).is_some() && l.parsed_answer(&digest(2), 100).is_none());
    }
}
