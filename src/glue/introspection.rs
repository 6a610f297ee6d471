//! Token introspection (`providers.<p>.introspection`, RFC 7662) as a remote verdict: an
//! opaque token is POSTed to its provider's endpoint once, whatever the number of requests
//! waiting for it, and the answer is cached for every worker by the token's digest (never the
//! token) under the name of the endpoint and client that asked. The machinery is `verdicts`';
//! this is what is introspection's own.

use std::rc::Rc;
use std::time::Duration;

use crate::config::Config;
use crate::engine::VerdictState;
use crate::config::Introspection;
use crate::introspection::{read_answer, request_body, Introspected};
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

/// Provider `.0`'s introspection endpoint, as `verdicts` asks it; `.1`: the path found in its
/// discovery document, where the configuration names none (only what dispatches needs it).
pub struct IntrospectionOf(pub usize, pub Option<Rc<str>>);

impl IntrospectionOf {
    /// Provider `i`'s endpoint, without its discovered path (reading answers, cleaning up).
    pub fn of(i: usize) -> IntrospectionOf {
        IntrospectionOf(i, None)
    }
}

fn endpoint(config: &Config, i: usize) -> Option<&Introspection> {
    config.providers.get(i)?.introspection.as_ref()
}

impl<H: Host> Worker<H> {
    /// What provider `i`'s endpoint said of a token's digest, or whether the request may wait
    /// for it (`first`: in the request's own callback, not when woken).
    pub(crate) fn introspection_state(&self, i: usize, d: &[u8; 32], now: u64, first: bool) -> VerdictState<Introspected> {
        let cached = self.cached_verdict(&IntrospectionOf::of(i), d, now);
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
        let path = self.discovered_introspection_path(i);
        self.wait_for_verdict(&IntrospectionOf(i, path), ctx, digest, request_body(token), now, ended)
    }

    /// The introspection path provider `i`'s discovery document named, as this worker knows it.
    fn discovered_introspection_path(&self, i: usize) -> Option<Rc<str>> {
        self.st.borrow().introspection_paths.get(i).cloned().flatten()
    }

    /// Where a provider's discovered introspection path is kept for every worker.
    pub(crate) fn introspection_path_key(remote: &crate::config::RemoteJwks) -> String {
        format!("{}/introspection", remote.cache_key)
    }

    /// The discovery document of provider `i` (fetched by this worker) names the introspection
    /// endpoint at `path` (`None`: none it may call): kept here and for every worker.
    pub(crate) fn set_introspection_path(&self, i: usize, remote: &crate::config::RemoteJwks, path: Option<String>) {
        // Logged once per document fetch, not once per refused request.
        if path.is_none() {
            log::warn!("api-auth-filter: provider {i}: its discovery document names no introspection_endpoint the filter may call; opaque tokens are refused (503)");
        }
        let _ = self.host.shared_set(&Self::introspection_path_key(remote), path.as_deref().unwrap_or("").as_bytes(), None);
        if let Some(slot) = self.st.borrow_mut().introspection_paths.get_mut(i) {
            *slot = path.map(Rc::from);
        }
    }

    /// The tick: adopts the introspection path another worker found in the document.
    pub(crate) fn refresh_introspection_path(&self, i: usize) {
        let config = self.config();
        let (Some(p), Some(e)) = (config.providers.get(i), endpoint(&config, i)) else { return };
        let (crate::config::KeySource::Remote(remote), true) = (&p.keys, e.discover) else { return };
        let Ok((Some(v), _)) = self.host.shared_get(&Self::introspection_path_key(remote)) else { return };
        let path = std::str::from_utf8(&v).ok().filter(|s| s.starts_with('/')).map(Rc::from);
        let mut st = self.st.borrow_mut();
        if let Some(slot) = st.introspection_paths.get_mut(i) {
            if slot.as_deref() != path.as_deref() {
                *slot = path;
            }
        }
    }

    /// The introspection caches' turn on the root context's tick (orphaned calls).
    pub(crate) fn redispatch_introspections(&self) {
        let count = self.st.borrow().introspections.len();
        for i in 0..count {
            self.redispatch_orphans(&IntrospectionOf(i, self.discovered_introspection_path(i)));
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

    fn call<'c>(&'c self, config: &'c Config, body: &'c [u8]) -> Option<Call<'c>> {
        let i = endpoint(config, self.0)?;
        let path = if i.discover { self.1.as_deref()? } else { i.service.path.as_str() };
        Some(Call {
            cluster: &i.service.cluster,
            method: "POST",
            path,
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
