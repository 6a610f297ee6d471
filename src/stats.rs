//! The filter's counters: their names as Envoy shows them, and a per-VM tally that the host
//! glue flushes to Envoy's stats in batches (on its timer), so that counting costs a request
//! no host call.
//!
//! Envoy lists them under `wasmcustom.` in `/stats` and as-is in `/stats/prometheus`, where
//! dots become underscores: `api_auth_denied_token_expired`.

use crate::deny::Reason;
use crate::principal::Kind;

pub const PREFIX: &str = "api_auth";

/// Declares the counters once: each row gives the variant and the name Envoy shows (after
/// `api_auth.`); the enum, its index order and `name` follow. One counter per credential kind
/// and one per reason come after.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident = $leaf:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant,)*
            /// Requests let through, by the kind of credential that defined the principal.
            /// Envoy's tag extraction makes `kind` a label.
            AllowedBy(Kind),
            /// Requests answered with a denial, by reason.
            Denied(Reason),
        }

        const FIXED: [Counter; [$(stringify!($variant)),*].len()] = [$(Counter::$variant,)*];

        impl Counter {
            /// The stat name, without Envoy's `wasmcustom.` namespace.
            pub fn name(self) -> String {
                match self {
                    $(Counter::$variant => format!("{PREFIX}.{}", $leaf),)*
                    Counter::AllowedBy(k) => format!("{PREFIX}.allowed_by.{}", k.as_str()),
                    Counter::Denied(r) => format!("{PREFIX}.denied.{}", r.as_str()),
                }
            }
        }
    };
}

counters! {
    /// Requests let through to the upstream (webhooks: once their signature verified).
    Allowed = "allowed";
    /// The same without a credential (a public route, or `unmatched: allow`), beside the
    /// `AllowedBy` kinds.
    AllowedPublic = "allowed_by.public";
    /// RFC 9728 metadata documents served by the filter.
    MetadataServed = "metadata_served";
    /// Requests refused because the host could not be read (headers, body): 503. The same
    /// count as `denied.host_error`, kept under the name dashboards know.
    HostError = "host_error";
    JwksFetchOk = "jwks_fetch_ok";
    JwksFetchFailed = "jwks_fetch_failed";
    /// Calls made to the key service.
    KeyLookup = "key_lookup";
    /// Key-service calls that failed (could not start, error status, garbage).
    KeyLookupFailed = "key_lookup_failed";
    /// Key-service answers found in (or missing from) the shared cache.
    KeyCacheHit = "key_cache_hit";
    KeyCacheMiss = "key_cache_miss";
    /// Calls made to introspection endpoints.
    IntrospectionCall = "introspection_call";
    /// Introspection calls that failed (could not start, error status, garbage).
    IntrospectionFailed = "introspection_failed";
    /// Introspection answers found in (or missing from) the shared cache.
    IntrospectionCacheHit = "introspection_cache_hit";
    IntrospectionCacheMiss = "introspection_cache_miss";
    /// Token signatures found in (or missing from) the verified-token cache.
    TokenCacheHit = "token_cache_hit";
    TokenCacheMiss = "token_cache_miss";
}

/// How many counters there are.
pub const COUNT: usize = FIXED.len() + Kind::ALL.len() + Reason::ALL.len();

impl Counter {
    /// Every counter, in index order.
    pub fn all() -> impl Iterator<Item = Counter> {
        FIXED.into_iter().chain(Kind::ALL.into_iter().map(Counter::AllowedBy)).chain(Reason::ALL.into_iter().map(Counter::Denied))
    }

    pub fn index(self) -> usize {
        match self {
            Counter::AllowedBy(k) => FIXED.len() + Kind::ALL.iter().position(|x| *x == k).unwrap_or(0),
            Counter::Denied(r) => FIXED.len() + Kind::ALL.len() + Reason::ALL.iter().position(|x| *x == r).unwrap_or(0),
            fixed => FIXED.iter().position(|x| *x == fixed).unwrap_or(0),
        }
    }
}

/// Counts since the last flush.
#[derive(Debug, Clone)]
pub struct Tally([u64; COUNT]);

impl Default for Tally {
    fn default() -> Self {
        Tally([0; COUNT])
    }
}

impl Tally {
    pub fn bump(&mut self, c: Counter) {
        self.add(c, 1);
    }

    pub fn add(&mut self, c: Counter, by: u64) {
        if let Some(n) = self.0.get_mut(c.index()) {
            *n += by;
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.0.get(c.index()).copied().unwrap_or(0)
    }

    /// The non-zero counts by index, and a clean slate.
    pub fn drain(&mut self) -> Vec<(usize, u64)> {
        let out = self.0.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (i, *n)).collect();
        self.0 = [0; COUNT];
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_own_index_and_name() {
        let all: Vec<Counter> = Counter::all().collect();
        assert_eq!(all.len(), COUNT);
        for (i, c) in all.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
        let mut names: Vec<String> = all.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COUNT);
        assert_eq!(Counter::Denied(Reason::TokenExpired).name(), "api_auth.denied.token_expired");
        assert_eq!(Counter::Allowed.name(), "api_auth.allowed");
    }

    #[test]
    fn drain_returns_what_was_counted_once() {
        let mut t = Tally::default();
        t.bump(Counter::Allowed);
        t.bump(Counter::Allowed);
        t.bump(Counter::Denied(Reason::InsufficientScope));
        assert_eq!(t.get(Counter::Allowed), 2);
        let drained = t.drain();
        assert_eq!(
            drained,
            vec![(Counter::Allowed.index(), 2), (Counter::Denied(Reason::InsufficientScope).index(), 1)]
        );
        assert!(t.drain().is_empty());
    }
}
