//! The verified-token cache of one VM (one Envoy worker): bounded, oldest entry out first.
//!
//! Keys are `engine::token_digest` (SHA-256 of the whole token); what an entry may be used
//! for, and when it is stale, is `engine`'s business (see `VerifiedCache`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::engine::{VerifiedCache, VerifiedToken};

pub struct TokenCache {
    capacity: usize,
    entries: RefCell<Entries>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

#[derive(Default)]
struct Entries {
    by_digest: HashMap<[u8; 32], Rc<VerifiedToken>>,
    /// Insertion order, for eviction.
    order: VecDeque<[u8; 32]>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache { capacity: capacity.max(1), entries: RefCell::default(), hits: Cell::new(0), misses: Cell::new(0) }
    }

    /// The keys changed: nothing verified with the old ones will be used again (the version
    /// check already refuses it); this frees the entries.
    pub fn clear(&self) {
        let mut e = self.entries.borrow_mut();
        e.by_digest.clear();
        e.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups that found (hits) or did not find (misses) an entry since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        (self.hits.take(), self.misses.take())
    }
}

impl VerifiedCache for TokenCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Rc<VerifiedToken>> {
        let found = self.entries.borrow().by_digest.get(digest).cloned();
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.set(counter.get() + 1);
        found
    }

    fn insert(&self, digest: [u8; 32], token: Rc<VerifiedToken>) {
        let mut guard = self.entries.borrow_mut();
        let e = &mut *guard;
        // A replaced entry (verified again after a key change, or for another provider)
        // keeps its place in the order.
        if e.by_digest.insert(digest, token).is_none() {
            e.order.push_back(digest);
            while e.order.len() > self.capacity {
                if let Some(old) = e.order.pop_front() {
                    e.by_digest.remove(&old);
                }
            }
        }
    }
}
