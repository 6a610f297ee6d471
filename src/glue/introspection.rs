//! Token introspection (`providers.<p>.introspection`, RFC 7662) as a remote verdict: an
//! opaque token is POSTed to its provider's endpoint once, whatever the number of requests
//! waiting for it, and the answer is cached for every worker by the token's digest (never the
//! token) under the name of the endpoint and client that asked. The machinery is `verdicts`';
//! this is what is introspection's own.

use std::time::Duration;

use crate::config::Config;
use crate::engine::VerdictState;
use crate::introspection::{read_answer, request_body, Introspected, Introspection};
use crate::secret::Secret;
use crate::stats::Counter;

use super::verdicts::{Answer, Bounds, Outcome, Remote, Source, Verdicts};
use super::{Action, Call, Host, State, Worker};

/// Introspection's bounds: as the key service's, with smaller answers (an RFC 7662 answer is
/// a few hundred bytes; 16 KiB is garbage).
pub const BOUNDS: Bounds = Bounds { slots: 4096, entries: 1024, bytes: 256 * 1024, unknown: 1024, answer_bytes: 16 * 1024 };

/// Each provider's introspection cache (`None` where it has none), by provider index.
pub fn caches_for(config: &Config) -> Vec<Option<Verdicts<Introspected>>> {
    config
        .providers
        .iter()
        .map(|p| {
            let i = p.introspection.as_ref()?;
            let s = &i.service;
            Some(Verdicts::new(format!("api-auth/introspection/{}", i.tag), s.ttl_ms, s.negative_ttl_ms, s.timeout_ms, BOUNDS))
        })
        .collect()
}

impl Answer for Introspected {
    fn unknown() -> Introspected {
        Introspected::Inactive
    }

    fn is_unknown(&self) -> bool {
        *self == Introspected::Inactive
    }

    fn approx_bytes(&self) -> usize {
        Introspected::approx_bytes(self)
    }
}

/// Provider `.0`'s introspection endpoint, as `verdicts` asks it.
pub struct IntrospectionOf(pub usize);

fn endpoint(config: &Config, i: usize) -> Option<&Introspection> {
    config.providers.get(i)?.introspection.as_ref()
}

impl<H: Host> Worker<H> {
    /// What provider `i`'s endpoint said of a token's digest, or whether the request may wait
    /// for it (`first`: in the request's own callback, not when woken).
    pub(crate) fn introspection_state(&self, i: usize, d: &[u8; 32], now: u64, first: bool) -> VerdictState<Introspected> {
        let cached = self.cached_verdict(&IntrospectionOf(i), d, now);
        if first {
            self.count(if cached.is_some() { Counter::IntrospectionCacheHit } else { Counter::IntrospectionCacheMiss });
        }
        match cached {
            Some(answer) => VerdictState::Cached(answer),
            None => VerdictState::Missing { can_wait: first },
        }
    }

    /// The request waits for provider `i`'s answer on `token` (of digest `digest`).
    pub(crate) fn wait_for_introspection(&self, ctx: u32, i: usize, digest: [u8; 32], token: &Secret, now: u64, ended: bool) -> Action {
        let Ok(token) = std::str::from_utf8(token.expose()) else { return self.fail_closed(None, None) };
        self.wait_for_verdict(&IntrospectionOf(i), ctx, digest, request_body(token), now, ended)
    }

    /// The introspection caches' turn on the root context's tick (orphaned calls).
    pub(crate) fn redispatch_introspections(&self) {
        let count = self.st.borrow().introspections.len();
        for i in 0..count {
            self.redispatch_orphans(&IntrospectionOf(i));
        }
    }
}

impl Remote for IntrospectionOf {
    type Answer = Introspected;

    fn source(&self) -> Source {
        Source::Introspection(self.0)
    }

    fn cache<'s>(&self, st: &'s mut State) -> Option<&'s mut Verdicts<Introspected>> {
        st.introspections.get_mut(self.0)?.as_mut()
    }

    fn call<'c>(&self, config: &'c Config, body: &'c [u8]) -> Option<Call<'c>> {
        let i = endpoint(config, self.0)?;
        Some(Call {
            cluster: &i.service.cluster,
            method: "POST",
            path: &i.service.path,
            authority: &i.service.authority,
            content_type: Some("application/x-www-form-urlencoded"),
            authorization: Some(i.authorization.expose()),
            body: Some(body),
            timeout: Duration::from_millis(i.service.timeout_ms),
        })
    }

    fn parse(&self, config: &Config, body: &[u8], _: &[u8; 32]) -> Option<Introspected> {
        read_answer(body, config.providers.get(self.0)?, &config.forward.claim_paths)
    }

    /// 200 with `active: false`: the token is not good (cached with the negative TTL); 200
    /// with `active: true`: the answer, judged by this provider's rules; anything else (a
    /// client-authentication error, garbage) is no answer.
    fn read(&self, config: &Config, status: Option<&[u8]>, body: Option<Vec<u8>>, digest: &[u8; 32]) -> Outcome<Introspected> {
        let cluster = endpoint(config, self.0).map_or("", |i| i.service.cluster.as_str());
        match status {
            Some(b"200") => match body.map(|b| (self.parse(config, &b, digest), b)) {
                Some((Some(Introspected::Inactive), _)) => Outcome::Unknown,
                Some((Some(answer), b)) => Outcome::Found(answer, b),
                _ => Outcome::Failed(format!("cluster {cluster} answered garbage")),
            },
            other => Outcome::Failed(format!("cluster {cluster}: status {}", other.map_or("none".into(), String::from_utf8_lossy))),
        }
    }

    fn counters(&self) -> (Counter, Counter) {
        (Counter::IntrospectionCall, Counter::IntrospectionFailed)
    }
}
