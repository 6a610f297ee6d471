//! The verified-token cache of one VM (one Envoy worker): at most `token_cache.max_entries`
//! entries (0: no cache), oldest entry out first. An entry is compact (`principal::Principal`
//! shares its texts and lists with the principal a hit hands out: a hit allocates nothing).
//!
//! Entries are keyed by `engine::token_digest` (SHA-256 of the whole token), so the cache never
//! holds the tokens themselves, except the few most recently used: those are kept whole in a
//! small table that a repeated token finds by comparing bytes, without hashing 1 KiB of token
//! on every request (and the last token that missed, whose digest its insert reuses). Either way an entry is only found by the very token it was stored for.
//! What an entry may then be used for, and when it is stale, is `engine`'s business (see
//! `VerifiedCache`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::engine::{token_digest, VerifiedCache, VerifiedToken};

/// Slots of the table of recent tokens (a power of two).
const RECENT_SLOTS: usize = 64;

pub struct TokenCache {
    capacity: usize,
    entries: RefCell<Entries>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

struct Entries {
    by_digest: HashMap<[u8; 32], Rc<VerifiedToken>>,
    /// Insertion order, for eviction.
    order: VecDeque<[u8; 32]>,
    /// Recent tokens, whole, each in the slot its bytes select.
    recent: Vec<Option<(Box<str>, Rc<VerifiedToken>)>>,
    /// The last token that missed, with its digest: the insert after its verification
    /// reuses the digest instead of hashing the token again.
    last_miss: (String, [u8; 32]),
}

/// The slot of a token in the recent table: from its length and last bytes (the signature's,
/// which differ between any two tokens). Only a hint: a slot is used after a full comparison.
fn slot(token: &str) -> usize {
    let b = token.as_bytes();
    let mut tail = [0u8; 8];
    let n = b.len().min(8);
    tail[..n].copy_from_slice(&b[b.len() - n..]);
    let mixed = (u64::from_le_bytes(tail) ^ b.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 58) as usize % RECENT_SLOTS
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        let entries =
            Entries { by_digest: HashMap::new(), order: VecDeque::new(), recent: vec![None; RECENT_SLOTS], last_miss: (String::new(), token_digest("")) };
        TokenCache { capacity, entries: RefCell::new(entries), hits: Cell::new(0), misses: Cell::new(0) }
    }

    /// The keys changed: nothing verified with the old ones will be used again (the version
    /// check already refuses it); this frees the entries.
    pub fn clear(&self) {
        let mut e = self.entries.borrow_mut();
        e.by_digest.clear();
        e.order.clear();
        e.last_miss = (String::new(), token_digest(""));
        e.recent.iter_mut().for_each(|s| *s = None);
    }

    /// Entries (tokens verified and not evicted).
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

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.set(counter.get() + 1);
    }
}

impl VerifiedCache for TokenCache {
    fn get(&self, token: &str) -> Option<Rc<VerifiedToken>> {
        if self.capacity == 0 {
            // No cache: every token is verified in full, and counted so.
            self.count(false);
            return None;
        }
        let i = slot(token);
        let mut e = self.entries.borrow_mut();
        if let Some((recent, entry)) = &e.recent[i] {
            if **recent == *token {
                let entry = entry.clone();
                drop(e);
                self.count(true);
                return Some(entry);
            }
        }
        let digest = token_digest(token);
        let found = e.by_digest.get(&digest).cloned();
        match &found {
            Some(entry) => e.recent[i] = Some((token.into(), entry.clone())),
            None => {
                e.last_miss.0.clear();
                e.last_miss.0.push_str(token);
                e.last_miss.1 = digest;
            }
        }
        drop(e);
        self.count(found.is_some());
        found
    }

    fn insert(&self, token: &str, entry: Rc<VerifiedToken>) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = self.entries.borrow_mut();
        let e = &mut *guard;
        let digest = if e.last_miss.0 == token { e.last_miss.1 } else { token_digest(token) };
        // A replaced entry (verified again after a key change, or for another provider)
        // keeps its place in the order.
        if let Some(kept) = e.by_digest.get_mut(&digest) {
            *kept = entry.clone();
        } else {
            // Room first: the map and the order never hold more than `capacity`, not even for a
            // moment (one more would double the order's buffer).
            while e.order.len() >= self.capacity {
                let Some(oldest) = e.order.pop_front() else { break };
                if let Some(gone) = e.by_digest.remove(&oldest) {
                    // Out of the recent table too: the cache holds at most `capacity` entries.
                    for s in e.recent.iter_mut() {
                        if s.as_ref().is_some_and(|(_, entry)| Rc::ptr_eq(entry, &gone)) {
                            *s = None;
                        }
                    }
                }
            }
            e.order.push_back(digest);
            e.by_digest.insert(digest, entry.clone());
        }
        e.recent[slot(token)] = Some((token.into(), entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{validate_claims, ClaimRules};
    use crate::principal::{Kind, Principal};

    fn entry(subject: &str) -> Rc<VerifiedToken> {
        let rules = ClaimRules {
            issuer: "i".into(),
            audiences: vec![],
            authorized_parties: vec![],
            clock_skew_s: 0,
            require_exp: false,
            max_lifetime_s: None,
            reject_pending_sessions: false,
            typ: None,
        };
        let times = validate_claims(&serde_json::json!({ "iss": "i" }), &rules, 0).expect("valid");
        let mut principal = Principal::new(Kind::Jwt);
        principal.subject = Some(subject.into());
        Rc::new(VerifiedToken { provider: 0, keys_version: 0, times, principal })
    }

    #[test]
    fn a_token_sharing_a_recent_slot_never_finds_another_tokens_entry() {
        let cache = TokenCache::new(8);
        // Same length, same last bytes: the same recent slot, other tokens.
        let (a, b) = ("aaaa.bbbb.SIGNATURE-12345678", "aaab.bbbb.SIGNATURE-12345678");
        assert_eq!(slot(a), slot(b));
        cache.insert(a, entry("a"));
        assert!(cache.get(b).is_none());
        cache.insert(b, entry("b"));
        // b took the slot; a is still found through its digest, and each gets its own.
        assert_eq!(cache.get(a).and_then(|e| e.principal.subject.clone()).as_deref(), Some("a"));
        assert_eq!(cache.get(b).and_then(|e| e.principal.subject.clone()).as_deref(), Some("b"));
        assert!(cache.get("aaaa.bbbb.SIGNATURE-1234567").is_none(), "a prefix is another token");
        assert!(cache.get("aaaa.bbbb.SIGNATURE-123456789").is_none(), "so is an extension");
    }

    #[test]
    fn an_insert_after_another_tokens_miss_files_under_its_own_digest() {
        let cache = TokenCache::new(8);
        let (a, b, c) = ("h.a.TAIL-12345678", "h.b.TAIL-12345678", "h.c.TAIL-12345678");
        assert_eq!(slot(b), slot(c));
        assert!(cache.get(a).is_none());
        cache.insert(b, entry("b"));
        // c takes b's recent slot: b is now found through its digest only.
        cache.insert(c, entry("c"));
        assert_eq!(cache.get(b).and_then(|e| e.principal.subject.clone()).as_deref(), Some("b"));
        assert!(cache.get(a).is_none(), "a missed and was never inserted");
        // The common case: a miss, then the insert of the same token.
        assert!(cache.get("h.d.TAIL-00000000").is_none());
        cache.insert("h.d.TAIL-00000000", entry("d"));
        cache.insert("h.e.TAIL-00000000", entry("e"));
        assert_eq!(cache.get("h.d.TAIL-00000000").and_then(|e| e.principal.subject.clone()).as_deref(), Some("d"));
    }

    #[test]
    fn bounded_with_the_recent_table_included_and_cleared_on_key_change() {
        let cache = TokenCache::new(3);
        let tokens: Vec<String> = (0..10).map(|i| format!("h.p.sig{i:04}")).collect();
        for t in &tokens {
            cache.insert(t, entry(t));
        }
        assert_eq!(cache.len(), 3);
        let found: Vec<&String> = tokens.iter().filter(|t| cache.get(t).is_some()).collect();
        assert_eq!(found, tokens[7..].iter().collect::<Vec<_>>(), "only the newest three, recent table or not");
        // Never one more, even for a moment: the order's buffer stays the size of the cache.
        let big = TokenCache::new(64);
        for i in 0..1000 {
            big.insert(&format!("h.p.sig{i:04}"), entry("x"));
        }
        assert_eq!(big.len(), 64);
        assert!(big.entries.borrow().order.capacity() < 128, "{}", big.entries.borrow().order.capacity());
        cache.clear();
        assert!(cache.is_empty());
        assert!(tokens.iter().all(|t| cache.get(t).is_none()));
    }
}
