//! The decision: a request as plain data in, allow (with header changes) or a response out.
//! Here the types and the pipeline; each step is a module of its own (`authenticate`,
//! `authorize`, `forward`); what the filter answers itself is `crate::reply`.
//!
//! Checks run in the order of docs/configuration.md ("Order of checks"): route match;
//! authentication (every presented credential, and the route's accepted kinds); then
//! permissions, scopes, roles, organisation, workspace.

mod authenticate;
mod authorize;
mod forward;

use std::borrow::Cow;
use std::rc::Rc;

use crate::apikeys::Lookup;
use crate::introspection::Introspected;
use crate::secret::Secret;
use crate::config::{Binding, Config, KeySource, Route, Unmatched};
use crate::credentials::Headers;
use crate::deny::{Denial, LocalResponse, Reason};
use crate::jwt::{self, KeySet};
use crate::overrides::OverrideAction;
use crate::principal::Principal;
use crate::routes::{self, strip_query};

use authenticate::authenticate;
use authorize::authorize;
use forward::forward;
use crate::reply::{self, add_correlation};
pub use crate::reply::{deny_response, is_grpc};

/// A request as the core sees it. Header names are lower-case.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The `:path`, query string included.
    pub path: &'a str,
    pub headers: &'a Headers<'a>,
}

/// `filter_metadata.<filter>.<key>` of the selected route, as a string.
pub type RouteMetadata<'a> = &'a dyn Fn(&str, &str) -> Option<String>;

/// The route Envoy's router selected for the request, for routes bound to it
/// (`match.route_name`, `match.route_metadata`).
#[derive(Clone, Copy, Default)]
pub struct Router<'a> {
    pub route_name: Option<&'a str>,
    pub metadata: Option<RouteMetadata<'a>>,
}

impl Router<'_> {
    fn selects(&self, binding: &Binding) -> bool {
        match binding {
            Binding::Name(name) => self.route_name == Some(name.as_str()),
            Binding::Metadata { filter, key, value } => self.metadata.and_then(|m| m(filter, key)).as_deref() == Some(value.as_str()),
        }
    }
}

/// What the host knows that a request does not carry.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// Unix seconds.
    pub now: i64,
    /// The keys of each provider, by index.
    pub keys: &'a [KeySlot],
    /// Randomness for a generated correlation id.
    pub random: [u8; 16],
    /// What the key service said of a digest (see `LookupState`).
    pub key_lookup: &'a dyn Fn(&[u8; 32]) -> LookupState,
    /// What provider `i`'s introspection endpoint said of a token's digest.
    pub introspection: &'a dyn Fn(usize, &[u8; 32]) -> VerdictState<Introspected>,
    /// Tokens whose signature already verified with the same keys.
    pub verified: &'a dyn VerifiedCache,
    /// Who checks signatures (`jwt::OwnCode`, or the host's verifier through the glue).
    pub signatures: &'a dyn jwt::Signatures,
}

/// Tokens already verified. An implementation must find an entry only for the very token it
/// was inserted with (`TokenCache` keys by `token_digest`, SHA-256 of the whole token, and
/// compares recent tokens byte for byte). An entry is only reused for the provider it was
/// verified for, with the same version of that provider's keys, and after its time claims are
/// checked again: `exp` is honoured on every request, and a key change makes every entry of
/// the provider stale.
pub trait VerifiedCache {
    fn get(&self, token: &str) -> Option<Rc<VerifiedToken>>;
    fn insert(&self, token: &str, entry: Rc<VerifiedToken>);
}

/// What one successful verification of a token established: its signature under the
/// provider's keys of `keys_version`, every claim rule that does not depend on the clock, and
/// the principal its claims give.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub provider: usize,
    pub keys_version: u64,
    pub times: jwt::TimeClaims,
    pub principal: Principal,
}

/// No cache: every token is verified.
pub struct NoCache;

impl VerifiedCache for NoCache {
    fn get(&self, _: &str) -> Option<Rc<VerifiedToken>> {
        None
    }
    fn insert(&self, _: &str, _: Rc<VerifiedToken>) {}
}

/// The cache key of a token: SHA-256 over every byte of it, so that no other token (another
/// signature, one changed claim) can ever find its entry.
pub fn token_digest(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// A remote verdict (a key-service or introspection answer) as this worker sees it now.
#[derive(Debug, Clone, PartialEq)]
pub enum VerdictState<A> {
    Cached(A),
    /// Not cached: wait for a call (`can_wait`) or answer keys_unavailable.
    Missing { can_wait: bool },
}

/// A key-service answer as this worker sees it now.
pub type LookupState = VerdictState<Lookup>;

/// For configurations without a key service, and for tests.
pub fn no_lookup(_: &[u8; 32]) -> LookupState {
    LookupState::Missing { can_wait: false }
}

/// For configurations without introspection, and for tests.
pub fn no_introspection(_: usize, _: &[u8; 32]) -> VerdictState<Introspected> {
    VerdictState::Missing { can_wait: false }
}

/// One provider's keys as this worker has them now.
#[derive(Debug, Clone, Default)]
pub struct KeySlot {
    pub keys: Option<Rc<KeySet>>,
    /// Changes whenever `keys` change.
    pub version: u64,
    /// The request may wait for the first keys (else: keys_unavailable).
    pub can_wait: bool,
    /// The request may wait for a refetch on an unknown `kid` (else: token_invalid).
    pub can_refetch: bool,
}

/// Key slots with the inline keys of a configuration and no remote keys (tests, tools).
pub fn inline_keys(cfg: &Config) -> Vec<KeySlot> {
    cfg.providers
        .iter()
        .map(|p| match &p.keys {
            KeySource::Inline(k) => KeySlot { keys: Some(k.clone()), ..KeySlot::default() },
            KeySource::Remote(_) => KeySlot::default(),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Allow),
    Deny(Deny),
    /// Decide again once the provider's keys arrive (or change, for `refetch`).
    Wait(Wait),
    /// The filter answers itself (RFC 9728 metadata).
    Respond(LocalResponse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The provider's keys (first keys, or a refetch for an unknown kid).
    Jwks { provider: usize, refetch: bool },
    /// The key service's answer for a digest.
    KeyLookup { digest: [u8; 32] },
    /// Provider `provider`'s introspection answer on an opaque token (`digest`: SHA-256 of
    /// the token; `token`: what the call must send, never shown by Debug).
    Introspection { provider: usize, digest: [u8; 32], token: Secret },
}

enum Fail {
    Deny(Reason),
    Wait(Wait),
}

impl From<Reason> for Fail {
    fn from(r: Reason) -> Self {
        Fail::Deny(r)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Allow {
    /// Headers removed from the request before it goes upstream.
    pub remove: Vec<String>,
    /// Headers set on the request (after removal).
    pub set: Vec<(String, String)>,
    /// The `Cookie` header to set (after removal, before `set`): the other cookies once the
    /// token cookies are gone, in bytes as they came.
    pub cookie: Option<Vec<u8>>,
    /// Filter state to write: (name, value), shown by Envoy as `wasm.<name>`.
    pub state: Vec<(String, String)>,
    pub principal: Option<Box<Principal>>,
    pub route: Option<usize>,
    /// A webhook whose signature over the complete body must still verify.
    pub webhook: Option<usize>,
    /// An MCP route: the JSON-RPC call in the body must still be judged (what the headers
    /// say of it).
    pub mcp: Option<crate::mcp::HeldHeaders>,
    pub correlation: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deny {
    pub denial: Denial,
    pub response: LocalResponse,
    pub route: Option<usize>,
    pub correlation: Option<String>,
}

pub fn decide(cfg: &Config, req: &Request<'_>, env: &Env<'_>) -> Decision {
    decide_routed(cfg, req, env, &Router::default())
}

/// `decide`, for a configuration with routes bound to the router's choice (`binds_routes`).
pub fn decide_routed(cfg: &Config, req: &Request<'_>, env: &Env<'_>, router: &Router<'_>) -> Decision {
    let cid = cfg.correlation.as_ref().and_then(|c| c.resolve(req.headers, env.random));
    let present = |name: &str| req.headers.iter().any(|(n, _)| *n == name);
    let grpc = is_grpc(req.headers);
    let target = match Target::of(cfg, req) {
        Ok(t) => t,
        Err(reason) => return deny(cfg, None, reason.into(), cid, grpc),
    };
    // A method or path override would have the upstream serve another request than this one.
    if cfg.forward.overrides.action == OverrideAction::Refuse && cfg.forward.overrides.found(req.headers).next().is_some() {
        return deny(cfg, None, Reason::OverrideHeaderRefused.into(), cid, grpc);
    }
    if let Some(pr) = cfg.protected_resource.as_ref().filter(|pr| pr.serves(target.method, &target.path)) {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        add_correlation(cfg, &mut headers, cid.as_deref());
        let details = "api_auth.protected_resource_metadata".to_string();
        return Decision::Respond(LocalResponse { status: 200, headers, body: pr.document.clone(), details, grpc_status: None });
    }
    let Some((index, route, captures)) = find_route(cfg, target.method, &target.path, router) else {
        return match cfg.unmatched {
            Unmatched::Allow => Decision::Allow(forward(cfg, None, None, cid, req.headers, &present)),
            Unmatched::Deny => deny(cfg, None, Reason::RouteNotFound.into(), cid, grpc),
        };
    };
    let Some(auth) = &route.auth else {
        return Decision::Allow(forward(cfg, None, Some(index), cid, req.headers, &present));
    };
    let mut principal = match authenticate(cfg, auth, req, target.method, env) {
        Ok(p) => p,
        Err(Fail::Deny(reason)) => return deny(cfg, Some(index), reason.into(), cid, grpc),
        Err(Fail::Wait(w)) => return Decision::Wait(w),
    };
    if let Err(denial) = authorize(cfg, auth, &captures, req.headers, &mut principal) {
        return deny(cfg, Some(index), denial, cid, grpc);
    }
    // A list item the header would split or change: refused, never forwarded altered.
    let forwarded = cfg.forward.headers.iter().chain(&cfg.filter_state).map(|(_, field)| field);
    if !principal.forwardable(forwarded) {
        return deny(cfg, Some(index), Reason::IdentityUnforwardable.into(), cid, grpc);
    }
    Decision::Allow(forward(cfg, Some(principal), Some(index), cid, req.headers, &present))
}

/// The resource a request is for, as the upstream will serve it (`routes`,
/// docs/configuration.md "Route matching"): the method with `HEAD` read as `GET`, and the
/// canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub method: &'a str,
    pub path: Cow<'a, str>,
}

impl<'a> Target<'a> {
    /// Refuses what the filter cannot judge as the upstream will serve it: a path Envoy's
    /// normalisation would still change (the router may route another path than the one
    /// judged here), `;` parameters unless configured otherwise, a lower-case method.
    pub fn of(cfg: &Config, req: &Request<'a>) -> Result<Target<'a>, Reason> {
        let path = strip_query(req.path);
        if !routes::is_normalized(path) {
            return Err(Reason::PathNotNormalized);
        }
        let path = routes::canonical_path(path, cfg.path_parameters).ok_or(Reason::PathNotNormalized)?;
        let method = routes::canonical_method(req.method).ok_or(Reason::MethodInvalid)?;
        Ok(Target { method, path })
    }
}

/// The route that judges a request: `Ok(None)` when none matches (then `unmatched` applies).
pub fn route_for(cfg: &Config, req: &Request<'_>) -> Result<Option<usize>, Reason> {
    route_for_routed(cfg, req, &Router::default())
}

/// `route_for` with the router's choice, for routes bound to it.
pub fn route_for_routed(cfg: &Config, req: &Request<'_>, router: &Router<'_>) -> Result<Option<usize>, Reason> {
    let target = Target::of(cfg, req)?;
    Ok(find_route(cfg, target.method, &target.path, router).map(|(i, _, _)| i))
}

/// The last check of an allowed webhook request, once its whole body is known: the signature
/// over it (`body`: `None` when it grew beyond the webhook's `max_body_bytes`). A denial is
/// rendered in the route's format, with the correlation id.
pub fn check_webhook(
    cfg: &Config,
    allow: &WebhookCheck<'_>,
    headers: &Headers<'_>,
    body: Option<&[u8]>,
    now: i64,
) -> Result<(), Box<Deny>> {
    let result = match (cfg.webhooks.get(allow.webhook), body) {
        (None, _) => Err(Reason::SignatureInvalid),
        (Some(_), None) => Err(Reason::BodyTooLarge),
        (Some((_, hook)), Some(body)) => hook.verify(headers, body, now),
    };
    result.map_err(|reason| {
        let denial = Denial::new(reason);
        let response = deny_response(cfg, allow.route, &denial, allow.correlation);
        Box::new(Deny { denial, response, route: allow.route, correlation: allow.correlation.map(str::to_string) })
    })
}

/// What an allow that still needs its webhook signature leaves to check.
#[derive(Debug, Clone, Copy)]
pub struct WebhookCheck<'a> {
    pub webhook: usize,
    pub route: Option<usize>,
    pub correlation: Option<&'a str>,
}

fn find_route<'c, 'p>(cfg: &'c Config, method: &str, path: &'p str, router: &Router<'_>) -> Option<(usize, &'c Route, Vec<&'p str>)> {
    cfg.routes.iter().enumerate().find_map(|(i, r)| {
        if let Some(methods) = &r.methods {
            if !methods.iter().any(|m| m == method) {
                return None;
            }
        }
        if r.binding.as_ref().is_some_and(|b| !router.selects(b)) {
            return None;
        }
        r.pattern.matches(path).map(|c| (i, r, c))
    })
}

fn deny(cfg: &Config, route: Option<usize>, denial: Denial, correlation: Option<String>, grpc: bool) -> Decision {
    let response = reply::respond(cfg, route, &denial, correlation.as_deref(), grpc);
    Decision::Deny(Deny { denial, response, route, correlation })
}
