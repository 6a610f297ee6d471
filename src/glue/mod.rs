//! The host glue: what one VM (one Envoy worker) does with the host's callbacks. Requests
//! become plain data for `engine::decide`, and its answer becomes header changes, a local
//! response, or a wait.
//!
//! Everything here is generic over `Host`, so it runs natively against `mock::MockHost` in
//! tests and against `abi::AbiHost` (the only code that calls the host) inside Envoy; the
//! seam costs nothing at run time (monomorphised, inlined). By job:
//! - `stream`: one state per request (`Stream`) and the named entry points of its callbacks;
//! - `jwks`: fetching remote JWKS through Envoy (directly, or at the `jwks_uri` of the issuer's
//!   discovery document), once per process, shared by every worker;
//! - `calls`: the one table of calls in flight (JWKS, verdicts, usage), routing answers;
//! - `verdicts`: remote verdicts on a credential's digest (one call per digest, handed on when
//!   their stream dies, shared slots named by their service, a parsed copy per worker);
//!   `key_service` and `introspection` are its kinds;
//! - `usage`: batched last-use reports;
//! - `telemetry`: counters, the log level, denial lines.
//!
//! `exports` (wasm32 only) is the filter's side of the ABI: the callbacks the host calls, mapped
//! onto `Worker`, one line per callback.

pub mod calls;
pub mod host;
pub mod introspection;
pub mod jwks;
pub mod key_service;
pub mod mock;
pub mod signatures;
pub mod stream;
pub mod telemetry;
mod tool_list;
pub mod usage;
pub mod verdicts;

#[cfg(target_arch = "wasm32")]
pub mod abi;
#[cfg(all(target_arch = "wasm32", feature = "filter"))]
mod exports;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

use crate::config::{Config, KeySource};
use crate::token_cache::TokenCache;

pub use host::{Body, Call, Host, HostError, HostResult, Level};
pub use stream::{Action, Stream};

/// How long a request may wait for keys that are being fetched.
pub const KEY_WAIT_MS: u64 = 3000;
/// With remote keys or a key service: how often the worker looks at fetches, leases and
/// waiters.
pub const TICK: Duration = Duration::from_millis(200);
/// Otherwise the timer only flushes counters and follows the host's log level.
pub const IDLE_TICK: Duration = Duration::from_secs(1);

/// One worker's filter: the host, and what the worker knows. State sits in a `RefCell` that is
/// borrowed only between host calls: a local reply may run this filter's response callback
/// inside the host call that sends it.
pub struct Worker<H: Host> {
    pub host: H,
    pub(crate) st: RefCell<State>,
}

pub(crate) struct State {
    pub config: Rc<Config>,
    pub slots: Vec<jwks::ProviderKeys>,
    /// Requests the worker still holds something for, by context id.
    pub streams: HashMap<u32, Stream>,
    /// Calls in flight, by token.
    pub calls: calls::Calls,
    /// Key-service answers, when the configuration has a key service.
    pub lookups: Option<verdicts::Verdicts<crate::apikeys::Lookup>>,
    /// Introspection answers, by provider index (`None` where it does not introspect).
    pub introspections: Vec<Option<verdicts::Verdicts<crate::introspection::Introspected>>>,
    /// The introspection paths the providers' discovery documents named, by provider index.
    pub introspection_paths: Vec<Option<Rc<str>>>,
    pub usage: usage::Usage,
    pub verified: Rc<TokenCache>,
    pub telemetry: telemetry::Telemetry,
    /// What the host verifies in this VM (`signatures::probe`, once).
    pub delegation: crate::jwt::foreign::Delegation,
    random: Random,
}

/// Randomness for correlation ids: SipHash with the VM's random keys (std draws them from
/// WASI `random_get`) over a counter. Unique ids, not secrets.
struct Random {
    keys: std::collections::hash_map::RandomState,
    counter: u64,
}

impl Random {
    fn next16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for half in out.chunks_exact_mut(8) {
            self.counter = self.counter.wrapping_add(1);
            let mut h = self.keys.build_hasher();
            h.write_u64(self.counter);
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
        out
    }
}

impl State {
    pub fn random16(&mut self) -> [u8; 16] {
        if self.config.correlation.is_some() {
            self.random.next16()
        } else {
            [0; 16]
        }
    }
}

impl<H: Host> Worker<H> {
    /// The root context's `on_configure`: compiles the configuration (a bad one is refused,
    /// naming the field, never quoting the document) and starts the timer.
    pub fn configure(host: H, bytes: &[u8]) -> Option<Worker<H>> {
        let config = match Config::from_json(bytes) {
            Ok(cfg) => Rc::new(cfg),
            Err(e) => {
                log::error!("api-auth-filter: configuration refused: {e}");
                return None;
            }
        };
        let slots: Vec<jwks::ProviderKeys> = config
            .providers
            .iter()
            .map(|p| match &p.keys {
                KeySource::Inline(k) => jwks::ProviderKeys::inline(k.clone()),
                KeySource::Remote(r) => jwks::ProviderKeys::remote(r.clone()),
            })
            .collect();
        let busy = slots.iter().any(|s| s.remote.is_some())
            || config.api_keys.as_ref().is_some_and(|k| k.lookup.is_some() || k.usage_report.is_some())
            || config.providers.iter().any(|p| p.introspection.is_some());
        log::info!("api-auth-filter: configuration loaded ({} routes, {} providers)", config.routes.len(), config.providers.len());
        let telemetry = telemetry::Telemetry::define(&host);
        let cache_entries = config.token_cache_entries;
        let delegation = signatures::probe(&host, signatures::PREFERRED);
        let now = host.now_ms();
        // Answers are kept under the name of the service that gave them (one VM may hold
        // several configurations, and shared data is the whole process's).
        let lookups = key_service::cache_for(&config);
        let introspections = introspection::caches_for(&config);
        let worker = Worker {
            st: RefCell::new(State {
                config,
                slots,
                streams: HashMap::new(),
                calls: calls::Calls::default(),
                lookups,
                introspection_paths: vec![None; introspections.len()],
                introspections,
                usage: usage::Usage::default(),
                verified: Rc::new(TokenCache::new(cache_entries)),
                telemetry,
                delegation,
                random: Random { keys: std::collections::hash_map::RandomState::new(), counter: now },
            }),
            host,
        };
        worker.prepare_claims(&key_service::KeyService);
        for i in 0..worker.config().providers.len() {
            worker.prepare_claims(&introspection::IntrospectionOf::of(i));
        }
        let _ = worker.host.set_tick_period(if busy { TICK } else { IDLE_TICK });
        worker.on_tick();
        Some(worker)
    }

    pub fn config(&self) -> Rc<Config> {
        self.st.borrow().config.clone()
    }

    /// The root context's timer: adopt and fetch keys, hand on orphaned lookups, report
    /// usage, wake waiters whose keys came or whose time is up, flush counters.
    pub fn on_tick(&self) {
        let now = self.host.now_ms();
        let count = self.st.borrow().slots.len();
        for i in 0..count {
            // The path before the keys: a worker that has the keys has the path too.
            self.refresh_introspection_path(i);
            self.refresh_from_shared(i);
            self.maybe_fetch(i, now);
        }
        self.redispatch_orphans(&key_service::KeyService);
        self.redispatch_introspections();
        self.report_usage(now);
        self.wake_waiters();
        self.follow_host_log_level();
        self.flush_stats();
    }

    /// An answer to a call, delivered to whichever context the SDK routes it to: calls are
    /// told apart by their token, not by the context that receives them.
    pub fn on_call_response(&self, token: u32, body_size: usize) {
        let purpose = self.st.borrow_mut().calls.take(token);
        match purpose {
            Some(calls::Purpose::Jwks(provider)) => {
                self.on_jwks_response(provider, body_size);
                self.wake_waiters();
            }
            Some(calls::Purpose::Discovery(provider, which)) => {
                self.on_discovery_response(provider, which, body_size);
                self.wake_waiters();
            }
            Some(calls::Purpose::Verdict(verdicts::Source::KeyService, digest)) => {
                self.on_verdict_response(&key_service::KeyService, digest, body_size);
            }
            Some(calls::Purpose::Verdict(verdicts::Source::Introspection(i), digest)) => {
                self.on_verdict_response(&introspection::IntrospectionOf::of(i), digest, body_size);
            }
            Some(calls::Purpose::Usage) => self.on_usage_response(),
            // A call given up (its request ended, or it outlived its timeout).
            None => {}
        }
    }

    /// The stream a context's request is in, for tests and tools.
    pub fn stream(&self, context_id: u32) -> Option<Stream> {
        self.st.borrow().streams.get(&context_id).cloned()
    }
}
