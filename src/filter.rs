//! The proxy-wasm glue: root and HTTP contexts. Requests become plain data for
//! `engine::decide`; its answer becomes header changes or a local response.
//!
//! Host calls go through `proxy_wasm::hostcalls` with their errors handled: the SDK's trait
//! helpers unwrap host errors, and nothing reachable from a request may panic.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::apikeys::{self, ApiKeys, Lookup};
use crate::config::{Config, KeySource, RemoteJwks};
use crate::engine::{self, Decision, Env, KeySlot, LookupState, Request, Wait};
use crate::jwks_cache::{self as cache, Lease};
use crate::jwt::KeySet;
use crate::stats::{Counter, Tally};
use crate::token_cache::TokenCache;

/// How long a request may wait for keys that are being fetched.
const KEY_WAIT_MS: u64 = 3000;
const TICK: Duration = Duration::from_millis(200);
/// Without remote keys or a key service, the timer only flushes counters and follows the
/// host's log level.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// A JWKS larger than this is refused as garbage.
const MAX_JWKS_BYTES: usize = 256 * 1024;

pub fn install() {
    // The host's own level is read from on_configure on (not allowed while the VM starts).
    proxy_wasm::set_log_level(LogLevel::Info);
    // panic = "abort": say where before the VM dies. The message is ours, never request data.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("api-auth-filter panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthRoot { state: None }) });
}

/// What one VM (one Envoy worker) knows, shared by its root and HTTP contexts.
struct State {
    config: Rc<Config>,
    slots: Vec<ProviderKeys>,
    /// Paused requests, by context id.
    waiters: HashMap<u32, Waiter>,
    /// Dispatched JWKS fetches: call token to provider index.
    fetches: HashMap<u32, usize>,
    /// Allowed requests whose webhook signature waits for the complete body, by context id.
    pending: HashMap<u32, PendingWebhook>,
    /// Requests whose body is complete (end of stream seen).
    body_done: HashSet<u32>,
    /// Correlation ids to return on the response, by context id.
    correlations: HashMap<u32, String>,
    random: Random,
    /// Key-service calls in flight: call token to (digest, dispatching context).
    lookups: HashMap<u32, ([u8; 32], u32)>,
    /// Last use of each API key since the last report (Unix seconds).
    usage: HashMap<String, u64>,
    verified: Rc<TokenCache>,
    /// Envoy's ids of our counters (empty when the host refused to define them).
    metric_ids: Vec<u32>,
    /// Counts not yet flushed to Envoy's stats.
    tally: Tally,
}

const TOKEN_CACHE_ENTRIES: usize = 8192;

struct PendingWebhook {
    webhook: usize,
    route: Option<usize>,
    headers: Vec<(String, Vec<u8>)>,
    correlation: Option<String>,
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

struct ProviderKeys {
    keys: Option<Rc<KeySet>>,
    version: u64,
    /// When the keys in hand were fetched (ms); `None` before the first.
    fetched_at: Option<u64>,
    remote: Option<RemoteJwks>,
}

struct Waiter {
    kind: WaitKind,
    deadline: u64,
}

enum WaitKind {
    /// Wake when this provider's version reaches `version`.
    Jwks { provider: usize, version: u64 },
    /// Woken by the key service's answer for this digest.
    Lookup([u8; 32]),
}

type Shared = Rc<RefCell<State>>;

struct AuthRoot {
    state: Option<Shared>,
}

impl Context for AuthRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(state) = self.state.clone() else { return };
        let provider = state.borrow_mut().fetches.remove(&token);
        if let Some(provider) = provider {
            on_jwks_response(&state, provider, body_size);
            wake_waiters(&state);
        }
    }
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(b) => b.unwrap_or_default(),
            Err(_) => return false,
        };
        let config = match Config::from_json(&bytes) {
            Ok(cfg) => Rc::new(cfg),
            Err(e) => {
                // The error names the field; it never quotes the document.
                log::error!("api-auth-filter: configuration refused: {e}");
                return false;
            }
        };
        let slots: Vec<ProviderKeys> = config
            .providers
            .iter()
            .map(|p| match &p.keys {
                KeySource::Inline(k) => ProviderKeys { keys: Some(k.clone()), version: 0, fetched_at: None, remote: None },
                KeySource::Remote(r) => ProviderKeys { keys: None, version: 0, fetched_at: None, remote: Some(r.clone()) },
            })
            .collect();
        let has_remote = slots.iter().any(|s| s.remote.is_some());
        log::info!(
            "api-auth-filter: configuration loaded ({} routes, {} providers)",
            config.routes.len(),
            config.providers.len()
        );
        self.state = Some(Rc::new(RefCell::new(State {
            config,
            slots,
            waiters: HashMap::new(),
            fetches: HashMap::new(),
            pending: HashMap::new(),
            body_done: HashSet::new(),
            correlations: HashMap::new(),
            random: Random { keys: std::collections::hash_map::RandomState::new(), counter: now_ms() },
            lookups: HashMap::new(),
            usage: HashMap::new(),
            verified: Rc::new(TokenCache::new(TOKEN_CACHE_ENTRIES)),
            metric_ids: define_metrics(),
            tally: Tally::default(),
        })));
        let keys = self.state.as_ref().and_then(|s| s.borrow().config.api_keys.as_ref().map(|k| k.lookup.is_some() || k.usage_report.is_some()));
        let _ = hostcalls::set_tick_period(if has_remote || keys == Some(true) { TICK } else { IDLE_TICK });
        self.on_tick();
        true
    }

    fn on_tick(&mut self) {
        let Some(state) = self.state.clone() else { return };
        let now = now_ms();
        let count = state.borrow().slots.len();
        for i in 0..count {
            refresh_from_shared(&state, i);
            maybe_fetch(&state, i, now);
        }
        report_usage(&state, now);
        wake_waiters(&state);
        follow_host_log_level();
        flush_stats(&state);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = self.state.clone()?;
        Some(Box::new(AuthFilter { state, context_id }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AuthFilter {
    state: Shared,
    context_id: u32,
}

impl Context for AuthFilter {
    fn on_done(&mut self) -> bool {
        let mut guard = self.state.borrow_mut();
        let st = &mut *guard;
        let id = self.context_id;
        // Most requests left nothing behind: an empty map costs no hashing.
        if !st.waiters.is_empty() {
            st.waiters.remove(&id);
        }
        if !st.pending.is_empty() {
            st.pending.remove(&id);
        }
        if !st.body_done.is_empty() {
            st.body_done.remove(&id);
        }
        if !st.correlations.is_empty() {
            st.correlations.remove(&id);
        }
        // A lookup this request started dies with it; the next request for the key asks again.
        if !st.lookups.is_empty() {
            st.lookups.retain(|_, (_, ctx)| *ctx != id);
        }
        true
    }

    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        on_lookup_response(&self.state, token, body_size);
    }
}

impl HttpContext for AuthFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        process(&self.state, self.context_id, true, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let id = self.context_id;
        let (pending_limit, waiting) = {
            let st = self.state.borrow();
            let limit = st.pending.get(&id).and_then(|p| st.config.webhooks.get(p.webhook)).map(|(_, w)| w.max_body_bytes);
            (limit, st.waiters.contains_key(&id))
        };
        if let Some(limit) = pending_limit {
            // Stop buffering as soon as the body is known to be too large.
            if body_size as u64 > limit {
                return finish_webhook(&self.state, id, None, true);
            }
        }
        if !end_of_stream {
            return if pending_limit.is_some() || waiting { Action::Pause } else { Action::Continue };
        }
        body_complete(&self.state, id, body_size)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the stream: the body buffered so far is the whole body.
        let size = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, usize::MAX)
            .ok()
            .flatten()
            .map_or(0, |b| b.len());
        body_complete(&self.state, self.context_id, size)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let st = self.state.borrow();
        if st.correlations.is_empty() {
            return Action::Continue;
        }
        if let (Some(id), Some(c)) = (st.correlations.get(&self.context_id), &st.config.correlation) {
            let _ = hostcalls::set_map_value_bytes(MapType::HttpResponseHeaders, &c.header, Some(id.as_bytes()));
        }
        Action::Continue
    }
}

fn body_complete(state: &Shared, id: u32, body_size: usize) -> Action {
    let has_pending = {
        let mut st = state.borrow_mut();
        st.body_done.insert(id);
        st.pending.contains_key(&id)
    };
    if has_pending {
        return finish_webhook(state, id, Some(body_size), true);
    }
    if state.borrow().waiters.contains_key(&id) {
        // Still waiting for keys; the root context decides and then verifies.
        return Action::Pause;
    }
    Action::Continue
}

/// Verifies a pending webhook over the complete body (`None`: too large) and lets the request
/// go or answers it. `in_callback` is true when called from this request's own callback.
fn finish_webhook(state: &Shared, id: u32, body_size: Option<usize>, in_callback: bool) -> Action {
    let Some(p) = state.borrow_mut().pending.remove(&id) else { return Action::Continue };
    let config = state.borrow().config.clone();
    let Some((_, webhook)) = config.webhooks.get(p.webhook) else { return fail_closed(state) };
    let result = match body_size {
        None => Err(crate::deny::Reason::BodyTooLarge),
        Some(size) => {
            let body = if size == 0 {
                Vec::new()
            } else {
                match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size) {
                    Ok(b) => b.unwrap_or_default(),
                    Err(_) => return fail_closed(state),
                }
            };
            webhook.verify(&p.headers, &body, (now_ms() / 1000) as i64)
        }
    };
    match result {
        Ok(()) => {
            count(state, Counter::Allowed);
            if !in_callback {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
        Err(reason) => {
            count(state, Counter::Denied(reason));
            let denial = crate::deny::Denial::new(reason);
            let response = engine::deny_response(&config, p.route, &denial, p.correlation.as_deref());
            log_denial(reason.as_str(), p.route, p.correlation.as_deref());
            send(&response);
            Action::Pause
        }
    }
}

fn send(response: &crate::deny::LocalResponse) {
    let headers: Vec<(&str, &str)> = response.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    if hostcalls::send_http_response(u32::from(response.status), headers, Some(&response.body)).is_err() {
        let _ = hostcalls::reset_http_request();
    }
}

/// One line per denial: reason, route and correlation id; never a credential.
fn log_denial(reason: &str, route: Option<usize>, correlation: Option<&str>) {
    log::debug!(
        "api-auth-filter: denied reason={reason} route={} correlation_id={}",
        route.map_or(-1, |r| r as i64),
        correlation.unwrap_or("-")
    );
}

/// Our log lines are filtered before they cost a host call, at the level Envoy logs wasm at
/// now: an operator who turns on `wasm:debug` (at start or through the admin `/logging`)
/// gets the denial lines within a tick.
fn follow_host_log_level() {
    let level = match hostcalls::get_log_level() {
        Ok(LogLevel::Trace) => log::LevelFilter::Trace,
        Ok(LogLevel::Debug) => log::LevelFilter::Debug,
        Ok(LogLevel::Info) => log::LevelFilter::Info,
        Ok(LogLevel::Warn) => log::LevelFilter::Warn,
        Ok(LogLevel::Error | LogLevel::Critical) => log::LevelFilter::Error,
        Err(_) => return,
    };
    log::set_max_level(level);
}

fn define_metrics() -> Vec<u32> {
    let ids: Result<Vec<u32>, _> =
        Counter::all().map(|c| hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, &c.name())).collect();
    ids.unwrap_or_else(|e| {
        log::warn!("api-auth-filter: counters unavailable ({e:?}); requests are not counted");
        Vec::new()
    })
}

fn count(state: &Shared, c: Counter) {
    state.borrow_mut().tally.bump(c);
}

/// Adds what this VM counted since the last tick to Envoy's counters.
fn flush_stats(state: &Shared) {
    let (ids, counts) = {
        let mut st = state.borrow_mut();
        let (hits, misses) = st.verified.take_counts();
        st.tally.add(Counter::TokenCacheHit, hits);
        st.tally.add(Counter::TokenCacheMiss, misses);
        let counts = st.tally.drain();
        (st.metric_ids.clone(), counts)
    };
    for (index, n) in counts {
        if let Some(id) = ids.get(index) {
            let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Decides the request of the effective context and acts on it. `first` is false when the
/// root context resumes a paused request: then an allow must resume it explicitly, and it
/// may not wait again. `ended`: the headers ended the request (no body); known to the first
/// call only, and kept in `body_done` for a later one when the request waits.
fn process(state: &Shared, context_id: u32, first: bool, ended: bool) -> Action {
    // Bytes, never the String getters: one non-UTF-8 byte would kill the VM.
    let mut headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
        Ok(h) => h,
        Err(_) => return fail_closed(state),
    };
    for (name, _) in headers.iter_mut() {
        name.make_ascii_lowercase();
    }
    let pseudo = |n: &str| headers.iter().find(|(k, _)| k == n).and_then(|(_, v)| std::str::from_utf8(v).ok());
    let method = pseudo(":method").unwrap_or("");
    let path = pseudo(":path").unwrap_or("");
    let now = now_ms();

    let (config, slots, random, verified) = {
        let mut st = state.borrow_mut();
        let random = if st.config.correlation.is_some() { st.random.next16() } else { [0; 16] };
        let slots: Vec<KeySlot> = st
            .slots
            .iter()
            .map(|s| KeySlot {
                keys: s.keys.clone(),
                version: s.version,
                can_wait: first && s.remote.is_some(),
                can_refetch: first
                    && s.remote.as_ref().is_some_and(|r| cache::refetch_allowed(&r.timing, s.fetched_at, now)),
            })
            .collect();
        (st.config.clone(), slots, random, st.verified.clone())
    };
    let lookup = |d: &[u8; 32]| {
        let cached = read_key_cache(d, now);
        if first {
            count(state, if cached.is_some() { Counter::KeyCacheHit } else { Counter::KeyCacheMiss });
        }
        match cached {
            Some(answer) => LookupState::Cached(answer),
            None => LookupState::Missing { can_wait: first },
        }
    };
    let env = Env { now: (now / 1000) as i64, keys: &slots, random, key_lookup: &lookup, verified: &*verified };
    let decision = engine::decide(&config, &Request { method, path, headers: &headers }, &env);
    if ended && matches!(decision, Decision::Wait(_)) {
        // A later call decides this request again; it must know the body is complete.
        state.borrow_mut().body_done.insert(context_id);
    }
    match decision {
        Decision::Allow(allow) => {
            for name in &allow.remove {
                let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, None);
            }
            for (name, value) in &allow.set {
                let _ = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(value.as_bytes()));
            }
            if let Some(cid) = &allow.correlation {
                state.borrow_mut().correlations.insert(context_id, cid.clone());
            }
            if config.api_keys.as_ref().is_some_and(|k| k.usage_report.is_some()) {
                if let Some(id) = allow.principal.as_ref().and_then(|p| p.key_id.clone()) {
                    state.borrow_mut().usage.insert(id, now / 1000);
                }
            }
            if let Some(webhook) = allow.webhook {
                // Nothing reaches the upstream before the signature over the whole body is
                // checked: the headers are held (allow_on_headers_stop_iteration) meanwhile.
                let done = {
                    let mut st = state.borrow_mut();
                    st.pending.insert(
                        context_id,
                        PendingWebhook { webhook, route: allow.route, headers: headers.clone(), correlation: allow.correlation.clone() },
                    );
                    ended || st.body_done.contains(&context_id)
                };
                if !done {
                    return Action::Pause;
                }
                let size = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, usize::MAX).ok().flatten().map_or(0, |b| b.len());
                return finish_webhook(state, context_id, Some(size), first);
            }
            count(state, Counter::Allowed);
            if !first {
                let _ = hostcalls::resume_http_request();
            }
            Action::Continue
        }
        Decision::Respond(response) => {
            count(state, Counter::MetadataServed);
            send(&response);
            Action::Pause
        }
        Decision::Deny(deny) => {
            count(state, Counter::Denied(deny.denial.reason));
            log_denial(deny.denial.reason.as_str(), deny.route, deny.correlation.as_deref());
            send(&deny.response);
            // Pause: with Continue the request could still reach the upstream.
            Action::Pause
        }
        Decision::Wait(Wait::Jwks { provider, refetch }) => {
            let mut st = state.borrow_mut();
            let current = st.slots.get(provider).map_or(0, |s| s.version);
            let version = if refetch { current + 1 } else { current.max(1) };
            st.waiters.insert(context_id, Waiter { kind: WaitKind::Jwks { provider, version }, deadline: now + KEY_WAIT_MS });
            if refetch {
                if let Some(r) = st.slots.get(provider).and_then(|s| s.remote.as_ref()) {
                    want_refetch(r, now);
                }
            }
            Action::Pause
        }
        Decision::Wait(Wait::KeyLookup { digest }) => {
            let Some(service) = config.api_keys.as_ref().and_then(|k| k.lookup.clone()) else { return fail_closed(state) };
            let in_flight = state.borrow().lookups.values().any(|(d, _)| *d == digest);
            // Concurrent requests for one key share one lookup.
            if !in_flight {
                let body = format!("{{\"sha256\":\"{}\"}}", apikeys::hex(&digest));
                let headers = vec![
                    (":method", "POST"),
                    (":path", service.path.as_str()),
                    (":authority", service.authority.as_str()),
                    ("content-type", "application/json"),
                ];
                match hostcalls::dispatch_http_call(&service.cluster, headers, Some(body.as_bytes()), vec![], Duration::from_millis(service.timeout_ms)) {
                    Ok(token) => {
                        count(state, Counter::KeyLookup);
                        state.borrow_mut().lookups.insert(token, (digest, context_id));
                    }
                    Err(e) => {
                        count(state, Counter::KeyLookupFailed);
                        log::warn!("api-auth-filter: key lookup on cluster {} could not start: {e:?}", service.cluster);
                        return process(state, context_id, false, false);
                    }
                }
            }
            state.borrow_mut().waiters.insert(context_id, Waiter { kind: WaitKind::Lookup(digest), deadline: now + service.timeout_ms + 500 });
            Action::Pause
        }
    }
}

/// A request whose headers cannot be read is refused, never passed.
fn fail_closed(state: &Shared) -> Action {
    count(state, Counter::HostError);
    let _ = hostcalls::send_http_response(503, vec![("content-type", "application/json")], Some(b"{\"detail\":\"Service unavailable\"}"));
    Action::Pause
}

/// Re-decides every waiter whose keys arrived or whose time is up.
fn wake_waiters(state: &Shared) {
    let now = now_ms();
    let ready: Vec<u32> = {
        let st = state.borrow();
        st.waiters
            .iter()
            .filter(|(_, w)| {
                now >= w.deadline
                    || matches!(w.kind, WaitKind::Jwks { provider, version } if st.slots.get(provider).is_some_and(|s| s.version >= version && s.keys.is_some()))
            })
            .map(|(id, _)| *id)
            .collect()
    };
    for id in ready {
        state.borrow_mut().waiters.remove(&id);
        if hostcalls::set_effective_context(id).is_ok() {
            process(state, id, false, false);
        }
    }
}

/// Re-decides the requests waiting for one digest.
fn wake_lookup_waiters(state: &Shared, digest: &[u8; 32]) {
    let ids: Vec<u32> = state
        .borrow()
        .waiters
        .iter()
        .filter(|(_, w)| matches!(&w.kind, WaitKind::Lookup(d) if d == digest))
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        state.borrow_mut().waiters.remove(&id);
        if hostcalls::set_effective_context(id).is_ok() {
            process(state, id, false, false);
        }
    }
}

/// Key-service answers are cached in shared data for every worker, in a fixed number of
/// slots (bounded memory): slot = digest prefix. Record: digest, expiry (ms), found (1/0),
/// then the service's JSON entry.
const KEY_CACHE_SLOTS: u32 = 4096;

fn key_cache_slot(d: &[u8; 32]) -> String {
    format!("api-auth/keys/{}", (u32::from(d[0]) << 8 | u32::from(d[1])) % KEY_CACHE_SLOTS)
}

fn read_key_cache(d: &[u8; 32], now: u64) -> Option<Lookup> {
    let (Some(v), _) = hostcalls::get_shared_data(&key_cache_slot(d)).ok()? else { return None };
    let digest = v.get(..32)?;
    let expires = u64::from_be_bytes(v.get(32..40)?.try_into().ok()?);
    if digest != d || now >= expires {
        return None;
    }
    match v.get(40)? {
        1 => ApiKeys::parse_lookup(v.get(41..)?, d).map(Lookup::Found),
        _ => Some(Lookup::NotFound),
    }
}

fn write_key_cache(d: &[u8; 32], expires: u64, found: Option<&[u8]>) {
    let mut v = Vec::with_capacity(41 + found.map_or(0, <[u8]>::len));
    v.extend_from_slice(d);
    v.extend_from_slice(&expires.to_be_bytes());
    match found {
        Some(body) => {
            v.push(1);
            v.extend_from_slice(body);
        }
        None => v.push(0),
    }
    let _ = hostcalls::set_shared_data(&key_cache_slot(d), Some(&v), None);
}

fn on_lookup_response(state: &Shared, token: u32, body_size: usize) {
    let Some((digest, _)) = state.borrow_mut().lookups.remove(&token) else { return };
    let Some(service) = state.borrow().config.api_keys.as_ref().and_then(|k| k.lookup.clone()) else { return };
    let now = now_ms();
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    match status.as_deref() {
        Some(b"200") => {
            let body = if body_size > 0 && body_size <= 64 * 1024 {
                hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten()
            } else {
                None
            };
            match body.filter(|b| ApiKeys::parse_lookup(b, &digest).is_some()) {
                Some(b) => write_key_cache(&digest, now.saturating_add(service.ttl_ms), Some(&b)),
                None => {
                    count(state, Counter::KeyLookupFailed);
                    log::warn!("api-auth-filter: key service on cluster {} answered garbage", service.cluster);
                }
            }
        }
        Some(b"404") => write_key_cache(&digest, now.saturating_add(service.negative_ttl_ms), None),
        other => {
            count(state, Counter::KeyLookupFailed);
            log::warn!(
                "api-auth-filter: key service on cluster {} failed (status {})",
                service.cluster,
                other.map_or("none".into(), |s| String::from_utf8_lossy(s).into_owned())
            );
        }
    }
    // Waiters re-decide: with an answer cached they get it, without one keys_unavailable.
    wake_lookup_waiters(state, &digest);
}

/// Merges this worker's key usage into shared data; the worker that wins the period's lease
/// sends the batch. Nothing here delays a request.
fn report_usage(state: &Shared, now: u64) {
    let Some(service) = state.borrow().config.api_keys.as_ref().and_then(|k| k.usage_report.clone()) else { return };
    let local: Vec<(String, u64)> = state.borrow_mut().usage.drain().collect();
    const DATA: &str = "api-auth/usage/data";
    const NEXT: &str = "api-auth/usage/next";
    if !local.is_empty() {
        for _ in 0..4 {
            let (bytes, cas) = hostcalls::get_shared_data(DATA).unwrap_or((None, None));
            let mut map: serde_json::Map<String, serde_json::Value> =
                bytes.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            for (id, at) in &local {
                let newer = map.get(id).and_then(serde_json::Value::as_u64).is_none_or(|old| old < *at);
                if newer {
                    map.insert(id.clone(), (*at).into());
                }
            }
            let doc = serde_json::Value::Object(map).to_string();
            if hostcalls::set_shared_data(DATA, Some(doc.as_bytes()), cas).is_ok() {
                break;
            }
        }
    }
    let (next, cas) = hostcalls::get_shared_data(NEXT).unwrap_or((None, None));
    let next_at = cache::decode_version(next.as_deref());
    if now < next_at {
        return;
    }
    let period = service.ttl_ms;
    if next_at == 0 {
        // The first period starts now.
        let _ = hostcalls::set_shared_data(NEXT, Some(&now.saturating_add(period).to_be_bytes()), cas);
        return;
    }
    if hostcalls::set_shared_data(NEXT, Some(&now.saturating_add(period).to_be_bytes()), cas).is_err() {
        return; // another worker sends this period's batch
    }
    let Ok((Some(batch), data_cas)) = hostcalls::get_shared_data(DATA) else { return };
    if batch.is_empty() || batch.as_slice() == b"{}" || hostcalls::set_shared_data(DATA, Some(b"{}"), data_cas).is_err() {
        return;
    }
    let headers = vec![
        (":method", "POST"),
        (":path", service.path.as_str()),
        (":authority", service.authority.as_str()),
        ("content-type", "application/json"),
    ];
    if let Err(e) = hostcalls::dispatch_http_call(&service.cluster, headers, Some(&batch), vec![], Duration::from_millis(service.timeout_ms)) {
        log::warn!("api-auth-filter: usage report to cluster {} could not start: {e:?}", service.cluster);
    }
}

/// Adopts a newer JWKS that any worker stored in shared data.
fn refresh_from_shared(state: &Shared, i: usize) {
    let (remote, local_version) = {
        let st = state.borrow();
        let Some(slot) = st.slots.get(i) else { return };
        let Some(r) = &slot.remote else { return };
        (r.clone(), slot.version)
    };
    let key = &remote.cache_key;
    let shared_version = cache::decode_version(hostcalls::get_shared_data(&format!("{key}/ver")).ok().and_then(|(v, _)| v).as_deref());
    if shared_version <= local_version {
        return;
    }
    let Ok((Some(bytes), _)) = hostcalls::get_shared_data(&format!("{key}/data")) else { return };
    let Some(doc) = cache::decode_document(&bytes) else { return };
    // Only documents that parsed when stored are stored; parse errors here are not expected,
    // and the keys in hand are kept if one happens.
    match remote.parse_keys(doc.jwks) {
        Ok(set) if !set.is_empty() => {
            let mut st = state.borrow_mut();
            st.verified.clear();
            if let Some(slot) = st.slots.get_mut(i) {
                slot.keys = Some(Rc::new(set));
                slot.version = doc.version;
                slot.fetched_at = Some(doc.fetched_at);
            }
        }
        _ => log::warn!("api-auth-filter: shared JWKS for {key} did not parse; keeping the keys in hand"),
    }
}

fn read_lease(key: &str) -> (Lease, Option<u32>) {
    match hostcalls::get_shared_data(&format!("{key}/lease")) {
        Ok((value, cas)) => (Lease::decode(value.as_deref()), cas),
        Err(_) => (Lease::default(), None),
    }
}

fn write_lease(key: &str, lease: &Lease, cas: Option<u32>) -> bool {
    hostcalls::set_shared_data(&format!("{key}/lease"), Some(&lease.encode()), cas).is_ok()
}

fn want_refetch(r: &RemoteJwks, now: u64) {
    // Best effort: on a CAS race another worker just wrote the lease, and the next unknown
    // kid will ask again.
    let (lease, cas) = read_lease(&r.cache_key);
    write_lease(&r.cache_key, &Lease { refetch_wanted: now, ..lease }, cas);
}

/// Takes the lease and fetches when a fetch is due and no other worker is at it.
fn maybe_fetch(state: &Shared, i: usize, now: u64) {
    let (remote, fetched_at) = {
        let st = state.borrow();
        let Some(slot) = st.slots.get(i) else { return };
        let Some(r) = &slot.remote else { return };
        if st.fetches.values().any(|p| *p == i) {
            return;
        }
        (r.clone(), slot.fetched_at)
    };
    let (lease, cas) = read_lease(&remote.cache_key);
    if !cache::fetch_due(&remote.timing, fetched_at, &lease, now) {
        return;
    }
    if !write_lease(&remote.cache_key, &cache::take(&lease, &remote.timing, now), cas) {
        return; // another worker won the lease
    }
    let headers = vec![
        (":method", "GET"),
        (":path", remote.path.as_str()),
        (":authority", remote.authority.as_str()),
        ("accept", "application/json"),
    ];
    match hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], Duration::from_millis(remote.timing.timeout)) {
        Ok(token) => {
            state.borrow_mut().fetches.insert(token, i);
        }
        Err(e) => {
            count(state, Counter::JwksFetchFailed);
            log::warn!("api-auth-filter: JWKS fetch from cluster {} could not start: {e:?}", remote.cluster);
            let (lease, cas) = read_lease(&remote.cache_key);
            write_lease(&remote.cache_key, &cache::after_failure(&lease, now, &remote.timing), cas);
        }
    }
}

fn on_jwks_response(state: &Shared, i: usize, body_size: usize) {
    let now = now_ms();
    let Some(remote) = state.borrow().slots.get(i).and_then(|s| s.remote.clone()) else { return };
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| String::from_utf8(s).ok());
    let body = if body_size > 0 && body_size <= MAX_JWKS_BYTES {
        hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, body_size).ok().flatten()
    } else {
        None
    };
    let parsed = match (status.as_deref(), &body) {
        (Some("200"), Some(b)) => remote.parse_keys(b).ok().filter(|s| !s.is_empty()),
        _ => None,
    };
    let (lease, cas) = read_lease(&remote.cache_key);
    match (parsed, body) {
        (Some(set), Some(b)) => {
            let ver_key = format!("{}/ver", remote.cache_key);
            let version = cache::decode_version(hostcalls::get_shared_data(&ver_key).ok().and_then(|(v, _)| v).as_deref()) + 1;
            let stored = hostcalls::set_shared_data(
                &format!("{}/data", remote.cache_key),
                Some(&cache::encode_document(version, now, &b)),
                None,
            )
            .is_ok()
                && hostcalls::set_shared_data(&ver_key, Some(&version.to_be_bytes()), None).is_ok();
            write_lease(&remote.cache_key, &cache::after_success(&lease, now, &remote.timing), cas);
            let mut st = state.borrow_mut();
            st.tally.bump(Counter::JwksFetchOk);
            st.verified.clear();
            if let Some(slot) = st.slots.get_mut(i) {
                slot.keys = Some(Rc::new(set));
                slot.version = if stored { version } else { slot.version + 1 };
                slot.fetched_at = Some(now);
            }
            log::info!("api-auth-filter: JWKS from cluster {} updated (version {version})", remote.cluster);
        }
        _ => {
            // Keep the keys in hand: a failed fetch never changes what is accepted.
            count(state, Counter::JwksFetchFailed);
            write_lease(&remote.cache_key, &cache::after_failure(&lease, now, &remote.timing), cas);
            log::warn!(
                "api-auth-filter: JWKS fetch from cluster {} failed (status {}); keeping the keys in hand",
                remote.cluster,
                status.as_deref().unwrap_or("none")
            );
        }
    }
}
