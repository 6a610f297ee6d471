//! The JWKS cache that all of Envoy's workers share: when to fetch, who fetches, how long to
//! back off, as plain data and rules.
//!
//! Each worker runs its own wasm VM. The fetched JWKS lives once in proxy-wasm shared data, with
//! a small lease record that one worker takes (compare-and-swap) before it fetches, so there is
//! one fetch per refresh for the whole process. Every VM keeps a parsed copy, keyed by the
//! version number of the shared document. The host module moves bytes; this module decides.
//! The records' formats are in `records`.

use crate::records::Lease;

/// Timing of one remote JWKS, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub timeout: u64,
    pub refresh: u64,
    pub min_refetch: u64,
}

/// Whether the keys should be fetched now. `fetched_at` is `None` before the first success.
pub fn fetch_due(t: &Timing, fetched_at: Option<u64>, lease: &Lease, now: u64) -> bool {
    if now < lease.held_until || now < lease.not_before {
        return false;
    }
    match fetched_at {
        None => true,
        Some(at) => {
            let age = now.saturating_sub(at);
            age >= t.refresh || (lease.refetch_wanted > at && age >= t.min_refetch)
        }
    }
}

/// Whether a request with an unknown `kid` may wait for a refetch: only when one can start now.
pub fn refetch_allowed(t: &Timing, fetched_at: Option<u64>, now: u64) -> bool {
    fetched_at.is_none_or(|at| now.saturating_sub(at) >= t.min_refetch)
}

/// The lease a worker writes to fetch: held for the call's timeout plus a margin, after which
/// another worker may take over (the holder may have died mid-call).
pub fn take(lease: &Lease, t: &Timing, now: u64) -> Lease {
    Lease { held_until: now.saturating_add(t.timeout).saturating_add(1000), ..*lease }
}

pub fn after_success(lease: &Lease, now: u64, t: &Timing) -> Lease {
    // refetch_wanted is kept: a want newer than this fetch still counts.
    Lease { held_until: 0, not_before: now.saturating_add(t.min_refetch.min(t.refresh)), failures: 0, ..*lease }
}

/// Exponential backoff, 1 s doubling to at most 30 s (or the refresh period, if shorter).
pub fn after_failure(lease: &Lease, now: u64, t: &Timing) -> Lease {
    let failures = lease.failures.saturating_add(1);
    let backoff = 1000u64.saturating_mul(1 << failures.saturating_sub(1).min(5)).min(30_000).min(t.refresh.max(1000));
    Lease { held_until: 0, not_before: now.saturating_add(backoff), failures, ..*lease }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing { timeout: 1500, refresh: 300_000, min_refetch: 30_000 };

    #[test]
    fn when_to_fetch() {
        let free = Lease::default();
        assert!(fetch_due(&T, None, &free, 1_000_000));
        let held = take(&free, &T, 1_000_000);
        assert!(!fetch_due(&T, None, &held, 1_000_500), "another worker holds the lease");
        assert!(fetch_due(&T, None, &held, 1_000_000 + 2500), "a lease expires if its holder vanished");
        let ok = after_success(&held, 1_001_000, &T);
        assert!(!fetch_due(&T, Some(1_001_000), &ok, 1_002_000));
        assert!(fetch_due(&T, Some(1_001_000), &ok, 1_001_000 + 300_000), "refresh period");
        let wanted = Lease { refetch_wanted: 1_005_000, ..ok };
        assert!(!fetch_due(&T, Some(1_001_000), &wanted, 1_020_000), "min_refetch not yet passed");
        assert!(fetch_due(&T, Some(1_001_000), &wanted, 1_031_000));
        assert!(!refetch_allowed(&T, Some(1_001_000), 1_020_000));
        assert!(refetch_allowed(&T, Some(1_001_000), 1_031_000));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut l = Lease::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            l = after_failure(&l, 0, &T);
            waits.push(l.not_before);
        }
        assert_eq!(waits, vec![1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        let short = Timing { refresh: 5000, ..T };
        assert_eq!(after_failure(&Lease { failures: 9, ..l }, 0, &short).not_before, 5000);
    }

    #[test]
    fn periods_too_long_for_milliseconds_saturate() {
        let forever = Timing { timeout: 60_000, refresh: u64::MAX, min_refetch: u64::MAX };
        let now = 1_790_000_000_000;
        assert_eq!(after_success(&Lease::default(), now, &forever).not_before, u64::MAX);
        assert_eq!(take(&Lease::default(), &forever, u64::MAX - 10).held_until, u64::MAX);
        assert_eq!(after_failure(&Lease::default(), u64::MAX - 10, &forever).not_before, u64::MAX);
        assert!(!fetch_due(&forever, Some(now), &Lease::default(), now + 86_400_000), "a day is not forever");
    }
}
