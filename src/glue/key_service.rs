//! The key service (`api_keys.lookup`) as a remote verdict: a digest not in the static table
//! is looked up (`{"sha256": "<hex>"}`, never the key), once whatever the number of requests
//! waiting for it, and the answer is cached for every worker and, parsed, in each (so that a
//! cached key costs no JSON parse per request). The machinery is `verdicts`'; this is what is
//! the key service's own.

use crate::apikeys::{Lookup, Service};
use crate::config::{key_service_answer, Config};
use crate::stats::Counter;

use super::verdicts::{Answer, Bounds, Outcome, Remote, Source, Verdicts};
use super::{Action, Call, Host, State, Worker};
use crate::engine::LookupState;

/// The key service's bounds: 4096 shared-data slots per kind of answer (found, unknown; a
/// slot stores the full digest, so a collision costs a lookup, never a wrong answer); per
/// worker at most 1024 found keys parsed within 256 KiB (by estimate), and 1024 unknown ones
/// apart; an answer over 64 KiB is garbage.
pub const BOUNDS: Bounds = Bounds { slots: 4096, entries: 1024, bytes: 256 * 1024, unknown: 1024, answer_bytes: 64 * 1024 };

/// The shared-data prefix of a key service's answers: a short hash of its cluster, authority
/// and path (the same service shares its answers between configurations; another never does).
pub fn service_prefix(service: &Service) -> String {
    format!("api-auth/keys/{}", service.tag())
}

/// A configuration's key-service cache, when it has a key service.
pub fn cache_for(config: &Config) -> Option<Verdicts<Lookup>> {
    let service = config.api_keys.as_ref()?.lookup.as_ref()?;
    Some(Verdicts::new(service_prefix(service), service.ttl_ms, service.negative_ttl_ms, service.timeout_ms, BOUNDS))
}

/// What a lookup asks: the digest, never the key.
pub fn lookup_body(digest: &[u8; 32]) -> Vec<u8> {
    format!("{{\"sha256\":\"{}\"}}", crate::text::hex(digest)).into_bytes()
}

impl Answer for Lookup {
    fn unknown() -> Lookup {
        Lookup::NotFound
    }

    fn is_unknown(&self) -> bool {
        *self == Lookup::NotFound
    }

    fn approx_bytes(&self) -> usize {
        match self {
            Lookup::Found(e) => e.approx_bytes(),
            Lookup::NotFound => 0,
        }
    }
}

impl<H: Host> Worker<H> {
    /// What the engine learns of a digest: the cached answer, or whether it may wait for one
    /// (`first`: in the request's own callback, not when woken).
    pub(crate) fn key_lookup_state(&self, d: &[u8; 32], now: u64, first: bool) -> LookupState {
        let cached = self.cached_verdict(&KeyService, d, now);
        if first {
            self.count(if cached.is_some() { Counter::KeyCacheHit } else { Counter::KeyCacheMiss });
        }
        match cached {
            Some(answer) => LookupState::Cached(answer),
            None => LookupState::Missing { can_wait: first },
        }
    }

    /// The request waits for the key service's answer on `digest`.
    pub(crate) fn wait_for_key(&self, ctx: u32, digest: [u8; 32], now: u64, ended: bool) -> Action {
        self.wait_for_verdict(&KeyService, ctx, digest, lookup_body(&digest), now, ended)
    }
}

/// The key service, as `verdicts` asks it.
pub struct KeyService;

fn service(config: &Config) -> Option<&Service> {
    config.api_keys.as_ref()?.lookup.as_ref()
}

impl Remote for KeyService {
    type Answer = Lookup;

    fn source(&self) -> Source {
        Source::KeyService
    }

    fn cache<'s>(&self, st: &'s mut State) -> Option<&'s mut Verdicts<Lookup>> {
        st.lookups.as_mut()
    }

    fn call<'c>(&'c self, config: &'c Config, body: &'c [u8]) -> Option<Call<'c>> {
        Some(Call::post_json(service(config)?, body))
    }

    fn parse(&self, _: &Config, body: &[u8], digest: &[u8; 32]) -> Option<Lookup> {
        key_service_answer(body, digest).map(Lookup::Found)
    }

    /// 200 with the digest's entry: found; 404: unknown; anything else is no answer.
    fn read(&self, config: &Config, status: Option<&[u8]>, body: Option<Vec<u8>>, digest: &[u8; 32]) -> Outcome<Lookup> {
        let cluster = service(config).map_or("", |s| s.cluster.as_str());
        match status {
            Some(b"200") => match body.and_then(|b| key_service_answer(&b, digest).map(|entry| (b, entry))) {
                Some((b, entry)) => Outcome::Found(Lookup::Found(entry), b),
                None => Outcome::Failed(format!("cluster {cluster} answered garbage")),
            },
            Some(b"404") => Outcome::Unknown,
            other => Outcome::Failed(format!("cluster {cluster}: status {}", other.map_or("none".into(), String::from_utf8_lossy))),
        }
    }

    fn counters(&self) -> (Counter, Counter) {
        (Counter::KeyLookup, Counter::KeyLookupFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
