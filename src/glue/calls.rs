//! The calls this worker has in flight, in one table: the host hands an answer to whichever
//! context it likes, so an answer is routed by its call's token to what the call was for.

use std::collections::HashMap;

/// The kinds of remote verdict, as a waiting request and a call in flight name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `api_keys.lookup`.
    KeyService,
    /// `providers.<p>.introspection`, by provider index.
    Introspection(usize),
}

impl Source {
    /// The kind's name in log lines.
    pub fn name(self) -> &'static str {
        match self {
            Source::KeyService => "key service",
            Source::Introspection(_) => "introspection",
        }
    }
}

/// What a call in flight is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A provider's JWKS (its index).
    Jwks(usize),
    /// A provider's discovery document (its index), before its JWKS.
    Discovery(usize, crate::discovery::WellKnown),
    /// A remote verdict on a digest (a key-service lookup, and the kinds to come).
    Verdict(Source, [u8; 32]),
    /// A usage batch: its answer is only logged when it is not a success.
    Usage,
}

#[derive(Default)]
pub struct Calls {
    by_token: HashMap<u32, Purpose>,
}

impl Calls {
    pub fn insert(&mut self, token: u32, purpose: Purpose) {
        self.by_token.insert(token, purpose);
    }

    /// What the call `token` was for, forgetting it (its answer came, or it is given up).
    pub fn take(&mut self, token: u32) -> Option<Purpose> {
        self.by_token.remove(&token)
    }

    /// Whether a call for `purpose` is in flight.
    pub fn any(&self, purpose: Purpose) -> bool {
        self.by_token.values().any(|p| *p == purpose)
    }

    /// Whether a call for provider `i`'s keys (its JWKS or its discovery document) is in flight.
    pub fn any_for_keys(&self, i: usize) -> bool {
        self.by_token.values().any(|p| matches!(p, Purpose::Jwks(j) | Purpose::Discovery(j, _) if *j == i))
    }
}

struct InFlight {
    token: u32,
    /// The request that dispatched it; `None`: the root context.
    owner: Option<u32>,
    /// When (ms).
    at: u64,
    /// What was asked, to ask again on a hand-off.
    body: Vec<u8>,
}

/// The calls of one kind in flight and the requests waiting for them: what does not depend on
/// the answer's type, so that a request's stream reaches it by its `Source` alone.
#[derive(Default)]
pub struct Pending {
    /// How long a waiter waits for a call (ms).
    patience_ms: u64,
    in_flight: HashMap<[u8; 32], InFlight>,
    /// The digests each request dispatched, so that its end does not scan every call.
    by_owner: HashMap<u32, Vec<[u8; 32]>>,
    /// The requests waiting for each digest, so that an answer does not scan every stream.
    waiters: HashMap<[u8; 32], Vec<u32>>,
    /// Calls whose dispatching request ended while others wait: the digest and what was asked.
    orphans: Vec<([u8; 32], Vec<u8>)>,
}

impl Pending {
    /// Waiters wait for a call `timeout_ms` and a margin.
    pub fn new(timeout_ms: u64) -> Pending {
        Pending { patience_ms: timeout_ms.saturating_add(500), ..Pending::default() }
    }

    /// How long a waiter waits for a call (ms).
    pub(crate) fn patience_ms(&self) -> u64 {
        self.patience_ms
    }

    pub(crate) fn is_in_flight(&self, d: &[u8; 32]) -> bool {
        self.in_flight.contains_key(d)
    }

    /// The call for `d` answered.
    pub(crate) fn finished(&mut self, d: &[u8; 32]) {
        self.in_flight.remove(d);
    }

    /// A call whose dispatcher ended, to dispatch again (`body`: what was asked).
    pub(crate) fn orphan(&mut self, d: [u8; 32], body: Vec<u8>) {
        self.orphans.push((d, body));
    }

    pub(crate) fn take_orphans(&mut self) -> Vec<([u8; 32], Vec<u8>)> {
        std::mem::take(&mut self.orphans)
    }
    /// Whether a request's end may have calls to hand on (or their index to clear).
    pub(crate) fn any_in_flight(&self) -> bool {
        !self.in_flight.is_empty() || !self.by_owner.is_empty()
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

    pub(crate) fn started(&mut self, d: [u8; 32], token: u32, owner: Option<u32>, at: u64, body: Vec<u8>) {
        self.in_flight.insert(d, InFlight { token, owner, at, body });
        if let Some(ctx) = owner {
            self.by_owner.entry(ctx).or_default().push(d);
        }
    }

    /// The calls `ctx` dispatched, forgotten: (digest, token, what was asked).
    pub(crate) fn drop_owner(&mut self, ctx: u32) -> Vec<([u8; 32], u32, Vec<u8>)> {
        let dispatched = self.by_owner.remove(&ctx).unwrap_or_default();
        let mut gone = Vec::new();
        for d in dispatched {
            if self.in_flight.get(&d).is_some_and(|c| c.owner == Some(ctx)) {
                if let Some(call) = self.in_flight.remove(&d) {
                    gone.push((d, call.token, call.body));
                }
            }
        }
        gone
    }

    /// Calls that outlived twice the waiters' patience (their answer is not coming), forgotten:
    /// their tokens.
    pub(crate) fn drop_stale(&mut self, now: u64) -> Vec<u32> {
        let limit = self.patience_ms.saturating_mul(2);
        let stale: Vec<[u8; 32]> = self.in_flight.iter().filter(|(_, c)| now.saturating_sub(c.at) > limit).map(|(d, _)| *d).collect();
        stale.into_iter().filter_map(|d| self.in_flight.remove(&d)).map(|c| c.token).collect()
    }
}
