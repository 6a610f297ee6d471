//! One request's life in the worker: its state (`Stream`) and the named entry points of its
//! callbacks. A request is decided when its headers arrive; it may wait (for keys, for a key
//! lookup), be decided again when the root context wakes it, and, when its route checks a
//! webhook signature, be held until its whole body is verified.

use crate::deny::{self, Builtin, ChallengeInfo, Denial, ErrorFormat, LocalResponse, Reason};
use crate::engine::{self, Decision, Env, KeySlot, Request, Wait};
use crate::jwks_cache as cache;
use crate::principal::Kind;
use crate::stats::Counter;

use super::host::decode_pairs;
use super::calls::Source;
use super::{Body, Host, HostResult, Worker, KEY_WAIT_MS};

/// What a callback tells the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// What the worker holds for a request between callbacks. A request it holds nothing for
/// (decided and forwarded without a correlation id, or answered) has no entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Stream {
    /// Paused until a provider's keys reach `version` (first keys, or a refetch for an
    /// unknown `kid`), or until `deadline` (ms).
    WaitingForKeys { provider: usize, version: u64, deadline: u64, body_done: bool },
    /// Paused until a remote verdict on `digest` comes (a key-service lookup), or until
    /// `deadline`.
    WaitingForVerdict { source: Source, digest: [u8; 32], deadline: u64, body_done: bool },
    /// Allowed, headers held: the webhook signature over the whole body must verify first.
    AwaitingBody { webhook: usize, route: Option<usize>, headers: Vec<(String, Vec<u8>)>, correlation: Option<String>, kind: Option<Kind> },
    /// Allowed on an MCP route, headers held: the JSON-RPC call in the whole body must be
    /// judged first.
    AwaitingMcp(Box<crate::mcp::Hold>),
    /// Gone upstream; the correlation id goes back on the response.
    Forwarded { correlation: String },
    /// Gone upstream as an MCP `tools/list`: the answer is held and filtered to the tools the
    /// principal may call.
    FilteringTools(Box<crate::mcp::ToolFilter>),
}

impl Stream {
    fn waiting(&self) -> bool {
        matches!(self, Stream::WaitingForKeys { .. } | Stream::WaitingForVerdict { .. })
    }

    fn body_done(&self) -> bool {
        matches!(self, Stream::WaitingForKeys { body_done: true, .. } | Stream::WaitingForVerdict { body_done: true, .. })
    }

    fn mark_body_done(&mut self) {
        if let Stream::WaitingForKeys { body_done, .. } | Stream::WaitingForVerdict { body_done, .. } = self {
            *body_done = true;
        }
    }
}

/// How much of a held request's body to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyRead {
    /// It grew beyond the webhook's limit.
    TooLarge,
    /// The first `n` bytes, all there is (the callback's size).
    Upto(usize),
    /// Whatever is buffered (the stream ended without a size: trailers, or headers only).
    All,
}

/// Who runs a decision: the request's own callback (the answer is the callback's return
/// value), the same callback once more when a wait could not start, or the root context on a
/// waiter's behalf (it must resume the request itself). Only the first may wait, and a
/// request whose keys came may still wait for a remote verdict (an introspection endpoint
/// found in the discovery document that brought those keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Callback,
    Retry,
    Resumed,
    KeysCame,
}

impl<H: Host> Worker<H> {
    /// `on_http_request_headers`. `end_of_stream`: the request has no body.
    pub fn on_request_headers(&self, ctx: u32, end_of_stream: bool) -> Action {
        self.decide(ctx, Turn::Callback, end_of_stream)
    }

    /// `on_http_request_body`: the body buffered so far is `size` bytes.
    pub fn on_request_body(&self, ctx: u32, size: usize, end_of_stream: bool) -> Action {
        let (held, limit, waiting) = {
            let st = self.st.borrow();
            match st.streams.get(&ctx) {
                Some(Stream::AwaitingBody { webhook, .. }) => {
                    (true, st.config.webhooks.get(*webhook).map_or(0, |(_, w)| w.max_body_bytes), false)
                }
                Some(Stream::AwaitingMcp(hold)) => {
                    let rules = st.config.routes.get(hold.route).and_then(|r| r.mcp.as_deref());
                    (true, rules.map_or(0, |m| m.max_body_bytes), false)
                }
                Some(s) => (false, 0, s.waiting()),
                None => (false, 0, false),
            }
        };
        // Stop buffering as soon as the body is known to be too large.
        if held && size as u64 > limit {
            return self.finish_held(ctx, BodyRead::TooLarge, Turn::Callback);
        }
        if !end_of_stream {
            return if held || waiting { Action::Pause } else { Action::Continue };
        }
        self.body_complete(ctx, BodyRead::Upto(size))
    }

    /// `on_http_request_trailers`: trailers end the stream, the body buffered is the whole body.
    pub fn on_request_trailers(&self, ctx: u32) -> Action {
        self.body_complete(ctx, BodyRead::All)
    }

    /// `on_http_response_headers`: the correlation id goes back to the client; a `tools/list`
    /// answer to filter loses its length (the body will change).
    pub fn on_response_headers(&self, ctx: u32) -> Action {
        let (header, id, filtering) = {
            let st = self.st.borrow();
            if st.streams.is_empty() {
                return Action::Continue;
            }
            let header = st.config.correlation.as_ref().map(|c| c.header.clone());
            match st.streams.get(&ctx) {
                Some(Stream::Forwarded { correlation }) => (header, Some(correlation.clone()), false),
                Some(Stream::FilteringTools(f)) => (header, f.correlation.clone(), true),
                _ => return Action::Continue,
            }
        };
        if let (Some(header), Some(id)) = (header, id) {
            let _ = self.host.set_response_header(&header, Some(id.as_bytes()));
        }
        if filtering {
            self.frame_tool_list(ctx);
        }
        Action::Continue
    }

    /// `on_done`: the request is over (answered, forwarded, or reset by the client).
    pub fn on_done(&self, ctx: u32) {
        {
            let mut st = self.st.borrow_mut();
            // Most requests left nothing behind: an empty map costs no hashing.
            if !st.streams.is_empty() {
                if let Some(Stream::WaitingForVerdict { source, digest, .. }) = st.streams.remove(&ctx) {
                    if let Some(p) = st.pending(source) {
                        p.remove_waiter(&digest, ctx);
                    }
                }
            }
        }
        // Also after its own wait ended: a call it dispatched must not stay in flight.
        self.orphan_verdicts_of(&super::key_service::KeyService, ctx);
        let introspecting = self.st.borrow().introspections.len();
        for i in 0..introspecting {
            self.orphan_verdicts_of(&super::introspection::IntrospectionOf::of(i), ctx);
        }
    }

    /// Re-decides a paused request on the root context's turn (its keys or its lookup answer
    /// came, or its time is up).
    pub(crate) fn resume(&self, ctx: u32) {
        let body_done = {
            let mut st = self.st.borrow_mut();
            let held = st.streams.remove(&ctx);
            if let Some(Stream::WaitingForVerdict { source, digest, .. }) = &held {
                if let Some(p) = st.pending(*source) {
                    p.remove_waiter(digest, ctx);
                }
            }
            let turn = if matches!(held, Some(Stream::WaitingForKeys { .. })) { Turn::KeysCame } else { Turn::Resumed };
            (held.is_some_and(|s| s.body_done()), turn)
        };
        let (body_done, turn) = body_done;
        if self.host.set_effective_context(ctx).is_ok() {
            self.decide(ctx, turn, body_done);
        }
    }

    fn body_complete(&self, ctx: u32, body: BodyRead) -> Action {
        let state = {
            let mut st = self.st.borrow_mut();
            match st.streams.get_mut(&ctx) {
                Some(s @ (Stream::WaitingForKeys { .. } | Stream::WaitingForVerdict { .. })) => {
                    // The root context decides once the keys come; it must know the body is here.
                    s.mark_body_done();
                    return Action::Pause;
                }
                Some(Stream::AwaitingBody { .. } | Stream::AwaitingMcp(_)) => true,
                _ => false,
            }
        };
        if state {
            return self.finish_held(ctx, body, Turn::Callback);
        }
        Action::Continue
    }

    /// Decides again in the same callback, without waiting (a lookup could not start).
    pub(crate) fn decide_without_waiting(&self, ctx: u32, ended: bool) -> Action {
        self.decide(ctx, Turn::Retry, ended)
    }

    /// Decides the request of the effective context and acts on it. `ended`: the whole body
    /// (if any) has arrived.
    fn decide(&self, ctx: u32, turn: Turn, ended: bool) -> Action {
        // Bytes, never text: one non-UTF-8 byte must not kill the VM. One buffer for the
        // whole map, read in place.
        let Ok(mut raw) = self.host.request_headers() else { return self.fail_closed(None, None) };
        let Some(headers) = decode_pairs(&mut raw) else { return self.fail_closed(None, None) };
        let pseudo = |n: &str| headers.iter().find(|(k, _)| *k == n).and_then(|(_, v)| std::str::from_utf8(v).ok());
        let method = pseudo(":method").unwrap_or("");
        let path = pseudo(":path").unwrap_or("");
        let now = self.host.now_ms();
        let first = turn == Turn::Callback;
        let verdict_wait = first || turn == Turn::KeysCame;

        let (config, slots, random, verified, delegation) = {
            let mut st = self.st.borrow_mut();
            let random = st.random16();
            let slots: Vec<KeySlot> = st
                .slots
                .iter()
                .map(|s| KeySlot {
                    keys: s.keys.clone(),
                    version: s.version,
                    can_wait: first && s.remote.is_some(),
                    can_refetch: first && s.remote.as_ref().is_some_and(|r| cache::refetch_allowed(&r.timing, s.fetched_at, now)),
                })
                .collect();
            (st.config.clone(), slots, random, st.verified.clone(), st.delegation)
        };
        let lookup = |d: &[u8; 32]| self.key_lookup_state(d, now, verdict_wait);
        let introspection = |i: usize, d: &[u8; 32]| self.introspection_state(i, d, now, verdict_wait);
        let signatures = super::signatures::HostSignatures { host: &self.host, delegation };
        let env = Env { now: (now / 1000) as i64, keys: &slots, random, key_lookup: &lookup, introspection: &introspection, verified: &*verified, signatures: &signatures };
        // The router's choice costs host calls: asked only where a route is bound to it. What
        // the host will not tell is no "no route": a bound route must not fall through.
        let route_name = if config.binds_routes {
            match self.host.get_property(&["xds", "route_name"]) {
                Ok(name) => name,
                Err(_) => return self.fail_closed(None, None),
            }
        } else {
            None
        };
        let unreadable = std::cell::Cell::new(false);
        let metadata = |filter: &str, key: &str| {
            let value = match self.host.get_property(&["xds", "route_metadata", "filter_metadata", filter, key]) {
                Ok(value) => value?,
                Err(_) => {
                    unreadable.set(true);
                    return None;
                }
            };
            String::from_utf8(value).ok()
        };
        let router = engine::Router {
            route_name: route_name.as_deref().and_then(|n| std::str::from_utf8(n).ok()),
            metadata: config.binds_routes.then_some(&metadata as engine::RouteMetadata<'_>),
        };
        let decision = engine::decide_routed(&config, &Request { method, path, headers: &headers }, &env, &router);
        if unreadable.get() {
            return self.fail_closed(None, None);
        }
        match decision {
            Decision::Allow(allow) => {
                // A forged identity header that could not be removed, or an identity that could
                // not be set, must not go upstream.
                for name in &allow.remove {
                    if self.host.set_request_header(name, None).is_err() {
                        return self.fail_closed(allow.route, allow.correlation.as_deref());
                    }
                }
                if let Some(cookie) = &allow.cookie {
                    if self.host.set_request_header("cookie", Some(cookie)).is_err() {
                        return self.fail_closed(allow.route, allow.correlation.as_deref());
                    }
                }
                for (name, value) in &allow.set {
                    if self.host.set_request_header(name, Some(value.as_bytes())).is_err() {
                        return self.fail_closed(allow.route, allow.correlation.as_deref());
                    }
                }
                // The verdict for RBAC, CEL and access logs. Written before a webhook's body
                // is checked: a request that then fails is answered locally, never routed.
                for (name, value) in &allow.state {
                    // RBAC may deny on it: a verdict Envoy did not take must not go upstream.
                    if self.host.set_property(name, value.as_bytes()).is_err() {
                        return self.fail_closed(allow.route, allow.correlation.as_deref());
                    }
                }
                if let Some(id) = allow.principal.as_ref().and_then(|p| p.key_id.as_deref()) {
                    self.record_use(id, now / 1000);
                }
                if let (Some(headers), Some(principal), Some(route)) = (allow.mcp, allow.principal.clone(), allow.route) {
                    // The JSON-RPC call in the body is judged before anything goes upstream.
                    let post = method == "POST";
                    let hold = crate::mcp::Hold { route, principal, headers, post, correlation: allow.correlation };
                    self.st.borrow_mut().streams.insert(ctx, Stream::AwaitingMcp(Box::new(hold)));
                    if !ended {
                        return Action::Pause;
                    }
                    return self.finish_held(ctx, BodyRead::All, turn);
                }
                if let Some(webhook) = allow.webhook {
                    // Nothing reaches the upstream before the signature over the whole body is
                    // checked: the headers are held (allow_on_headers_stop_iteration) meanwhile.
                    let kind = allow.principal.as_ref().map(|p| p.kind);
                    // Only what the signature check reads is held for the wait, not every header.
                    let needed = |n: &str| config.webhooks.get(webhook).is_some_and(|(_, w)| w.reads(n));
                    let headers = headers.iter().filter(|(n, _)| needed(n)).map(|(n, v)| (n.to_string(), v.to_vec())).collect();
                    let held = Stream::AwaitingBody { webhook, route: allow.route, headers, correlation: allow.correlation, kind };
                    self.st.borrow_mut().streams.insert(ctx, held);
                    if !ended {
                        return Action::Pause;
                    }
                    return self.finish_held(ctx, BodyRead::All, turn);
                }
                if let Some(correlation) = allow.correlation {
                    self.st.borrow_mut().streams.insert(ctx, Stream::Forwarded { correlation });
                }
                self.count_allowed(allow.principal.as_ref().map(|p| p.kind));
                self.go_on(turn)
            }
            Decision::Respond(response) => {
                self.count(Counter::MetadataServed);
                self.send(&response);
                Action::Pause
            }
            Decision::Deny(deny) => {
                self.count(Counter::Denied(deny.denial.reason));
                self.log_denial(deny.denial.reason, deny.route, deny.correlation.as_deref());
                self.send(&deny.response);
                // Pause: with Continue the request could still reach the upstream.
                Action::Pause
            }
            Decision::Wait(Wait::Jwks { provider, refetch }) => {
                let remote = {
                    let mut st = self.st.borrow_mut();
                    let current = st.slots.get(provider).map_or(0, |s| s.version);
                    let version = if refetch { current + 1 } else { current.max(1) };
                    let deadline = now.saturating_add(KEY_WAIT_MS);
                    st.streams.insert(ctx, Stream::WaitingForKeys { provider, version, deadline, body_done: ended });
                    st.slots.get(provider).and_then(|s| s.remote.clone()).filter(|_| refetch)
                };
                if let Some(r) = remote {
                    self.want_refetch(&r, now);
                }
                Action::Pause
            }
            Decision::Wait(Wait::KeyLookup { digest }) => self.wait_for_key(ctx, digest, now, ended),
            Decision::Wait(Wait::Introspection { provider, digest, token }) => {
                self.wait_for_introspection(ctx, provider, digest, &token, now, ended)
            }
        }
    }

    /// An allowed request goes on: from its own callback by returning Continue, from the root
    /// context's turn by resuming it.
    fn go_on(&self, turn: Turn) -> Action {
        if matches!(turn, Turn::Resumed | Turn::KeysCame) {
            let _ = self.host.resume_request();
        }
        Action::Continue
    }

    /// Judges a held request (a webhook, an MCP call) on its complete body and lets it go or
    /// answers it.
    fn finish_held(&self, ctx: u32, body_read: BodyRead, turn: Turn) -> Action {
        let held = self.st.borrow_mut().streams.remove(&ctx);
        match held {
            Some(held @ Stream::AwaitingBody { .. }) => match self.held_body(body_read) {
                Ok(body) => self.finish_webhook(ctx, held, body, turn),
                Err(()) => {
                    let Stream::AwaitingBody { route, correlation, .. } = held else { return Action::Continue };
                    self.fail_closed(route, correlation.as_deref())
                }
            },
            Some(Stream::AwaitingMcp(hold)) => {
                let Ok(body) = self.held_body(body_read) else { return self.fail_closed(Some(hold.route), hold.correlation.as_deref()) };
                self.finish_mcp(ctx, *hold, body, turn)
            }
            _ => Action::Continue,
        }
    }

    /// The whole body of a held request; `None` when it grew beyond its limit. A body the host
    /// will not give is never taken for an empty one: `Err` (then 503).
    fn held_body(&self, body_read: BodyRead) -> Result<Option<Vec<u8>>, ()> {
        let max = match body_read {
            BodyRead::TooLarge => return Ok(None),
            BodyRead::Upto(size) => size,
            BodyRead::All => usize::MAX,
        };
        if max == 0 {
            return Ok(Some(Vec::new()));
        }
        // No buffer at all (Ok(None)): the request has no body.
        self.host.body(Body::Request, max).map(|b| Some(b.unwrap_or_default())).map_err(|_| ())
    }

    /// Judges the JSON-RPC call of a held MCP request.
    fn finish_mcp(&self, ctx: u32, hold: crate::mcp::Hold, body: Option<Vec<u8>>, turn: Turn) -> Action {
        let config = self.config();
        match crate::mcp::judge(&config, &hold, body.as_deref()) {
            Ok(verdict) => {
                let kept = match verdict {
                    crate::mcp::Verdict::FilterToolList(id) => Some(Stream::FilteringTools(Box::new(crate::mcp::ToolFilter {
                        route: hold.route,
                        scopes: hold.principal.scopes.clone(),
                        id,
                        correlation: hold.correlation,
                        framing: None,
                        replaced: false,
                    }))),
                    crate::mcp::Verdict::Pass => hold.correlation.map(|correlation| Stream::Forwarded { correlation }),
                };
                if let Some(stream) = kept {
                    self.st.borrow_mut().streams.insert(ctx, stream);
                }
                self.count_allowed(Some(hold.principal.kind));
                self.go_on(turn)
            }
            Err((reason, response)) => {
                self.count(Counter::Denied(reason));
                self.log_denial(reason, Some(hold.route), hold.correlation.as_deref());
                self.send(&response);
                Action::Pause
            }
        }
    }

    /// Verifies a held webhook over the complete body and lets the request go or answers it.
    fn finish_webhook(&self, ctx: u32, held: Stream, body: Option<Vec<u8>>, turn: Turn) -> Action {
        let Stream::AwaitingBody { webhook, route, headers, correlation, kind } = held else { return Action::Continue };
        let check = engine::WebhookCheck { webhook, route, correlation: correlation.as_deref() };
        let now = (self.host.now_ms() / 1000) as i64;
        match engine::check_webhook(&self.config(), &check, &crate::credentials::view(&headers), body.as_deref(), now) {
            Ok(()) => {
                if let Some(correlation) = correlation {
                    self.st.borrow_mut().streams.insert(ctx, Stream::Forwarded { correlation });
                }
                self.count_allowed(kind);
                self.go_on(turn)
            }
            Err(deny) => {
                self.count(Counter::Denied(deny.denial.reason));
                self.log_denial(deny.denial.reason, route, correlation.as_deref());
                self.send(&deny.response);
                Action::Pause
            }
        }
    }

    pub(crate) fn send(&self, response: &LocalResponse) {
        if send_local(&self.host, response).is_err() {
            let _ = self.host.reset_request();
        }
    }

    /// What the host would not tell (headers, a body) is never guessed: 503 `host_error`, in the
    /// route's format when the route is known, with the correlation id.
    pub(crate) fn fail_closed(&self, route: Option<usize>, correlation: Option<&str>) -> Action {
        self.count(Counter::HostError);
        self.count(Counter::Denied(Reason::HostError));
        let config = self.config();
        self.send(&engine::deny_response(&config, route, &Denial::new(Reason::HostError), correlation));
        Action::Pause
    }

    /// Wakes every waiter whose keys arrived or whose time is up.
    pub(crate) fn wake_waiters(&self) {
        let now = self.host.now_ms();
        let ready: Vec<u32> = {
            let st = self.st.borrow();
            st.streams
                .iter()
                .filter(|(_, s)| match s {
                    Stream::WaitingForKeys { provider, version, deadline, .. } => {
                        now >= *deadline || st.slots.get(*provider).is_some_and(|k| k.version >= *version && k.keys.is_some())
                    }
                    Stream::WaitingForVerdict { deadline, .. } => now >= *deadline,
                    _ => false,
                })
                .map(|(id, _)| *id)
                .collect()
        };
        for id in ready {
            self.resume(id);
        }
    }
}

/// A request reaching a filter without a configuration (the host created contexts though
/// `on_configure` refused) is refused, never passed.
pub fn refuse_unconfigured<H: Host>(host: &H) -> Action {
    let response = deny::render(&Denial::new(Reason::Unconfigured), &ErrorFormat::builtin(Builtin::Detail), ChallengeInfo::default());
    let _ = send_local(host, &response);
    Action::Pause
}

/// A local response, as the host takes it.
fn send_local<H: Host>(host: &H, response: &LocalResponse) -> HostResult<()> {
    let headers: Vec<(&str, &str)> = response.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    host.send_response(response.status, &headers, &response.body, &response.details, response.grpc_status)
}
