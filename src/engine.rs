//! The decision: a request as plain data in, allow (with header changes) or a response out.
//!
//! Checks run in the order of docs/configuration.md ("Order of checks"): route match;
//! authentication (every presented credential, and the route's accepted kinds); then
//! permissions, scopes, roles, organisation, workspace.

use std::borrow::Cow;
use std::rc::Rc;

use crate::apikeys::{self, ApiKeys, Lookup};
use crate::config::{AuthRequirements, Binding, Config, KeySource, Route, Unmatched};
use crate::credentials::{self, Credential, Headers};
use crate::deny::{self, ChallengeInfo, Denial, LocalResponse, Reason};
use crate::grants;
use crate::jwt::{self, KeySet, VerifyError};
use crate::overrides::OverrideAction;
use crate::principal::{ClaimValues, Kind, Principal};
use crate::routes::{self, strip_query};

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

/// A key-service answer as this worker sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupState {
    Cached(Lookup),
    /// Not cached: wait for a lookup (`can_wait`) or answer keys_unavailable.
    Missing { can_wait: bool },
}

/// For configurations without a key service, and for tests.
pub fn no_lookup(_: &[u8; 32]) -> LookupState {
    LookupState::Missing { can_wait: false }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The provider's keys (first keys, or a refetch for an unknown kid).
    Jwks { provider: usize, refetch: bool },
    /// The key service's answer for a digest.
    KeyLookup { digest: [u8; 32] },
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

fn add_correlation(cfg: &Config, headers: &mut Vec<(String, String)>, cid: Option<&str>) {
    if let (Some(c), Some(id)) = (&cfg.correlation, cid) {
        headers.push((c.header.clone(), id.to_string()));
    }
}

/// The response for a denial on a route (its error format, challenge and correlation id).
pub fn deny_response(cfg: &Config, route: Option<usize>, denial: &Denial, cid: Option<&str>) -> LocalResponse {
    respond(cfg, route, denial, cid, false)
}

/// Whether a request is gRPC (its denials carry a grpc-status, not a JSON body), exactly as
/// Envoy decides it (`Grpc::Common::hasGrpcContentType`), which alone decides whether Envoy
/// sends a local reply the gRPC way: the content type is `application/grpc` or begins with
/// `application/grpc+`, compared byte for byte (case-sensitive, parameters not read). So
/// `application/grpc-web`, `application/grpcx`, `application/grpc;charset=utf-8` and
/// `Application/gRPC` are not gRPC: a gRPC answer (an HTTP 200 with its status in grpc-status)
/// to a request Envoy does not take for gRPC would reach the client as a plain HTTP 200.
/// Envoy holds repeated content-type headers as one value, the non-empty ones joined with `,`:
/// that value is judged (`application/grpc` twice is `application/grpc,application/grpc`, not
/// gRPC; `application/grpc+proto` first stays gRPC).
pub fn is_grpc(headers: &Headers<'_>) -> bool {
    let mut values = headers.iter().filter(|(n, v)| *n == "content-type" && !v.is_empty()).map(|(_, v)| *v);
    let Some(first) = values.next() else {
        return false;
    };
    match first.strip_prefix(b"application/grpc".as_slice()) {
        Some([]) => values.next().is_none(),
        Some([b'+', ..]) => true,
        _ => false,
    }
}

fn respond(cfg: &Config, route: Option<usize>, denial: &Denial, cid: Option<&str>, grpc: bool) -> LocalResponse {
    let format_index = route.and_then(|i| cfg.routes.get(i)).map_or(cfg.default_format, |r| r.format);
    let fallback = deny::ErrorFormat::builtin(deny::Builtin::Detail);
    let format = cfg.formats.get(format_index).unwrap_or(&fallback);
    let challenge = ChallengeInfo { resource_metadata: cfg.protected_resource.as_ref().map(|p| p.metadata_url.as_str()) };
    let mut response = deny::render_for(denial, format, challenge, grpc);
    add_correlation(cfg, &mut response.headers, cid);
    response
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

/// Every presented credential must be accepted here and valid; the first defines the principal.
fn authenticate(cfg: &Config, auth: &AuthRequirements, req: &Request<'_>, method: &str, env: &Env<'_>) -> Result<Principal, Fail> {
    let keys = cfg.api_keys.as_ref();
    let key_headers: &[String] = keys.map(|k| k.headers.as_slice()).unwrap_or(&[]);
    let found = credentials::extract(req.headers, key_headers, |t| keys.is_some_and(|k| k.is_key(t)))?;
    if found.is_empty() {
        return match credentials::cookie_token(req.headers, &cfg.cookie_names)? {
            Some((cookie, token)) => verify_cookie_jwt(cfg, auth, req.headers, method, cookie, token, env),
            None => Err(Reason::CredentialsMissing.into()),
        };
    }
    // Kinds first: a credential this route does not take is refused before any work on it.
    for c in &found {
        let accepted = match c {
            Credential::Jwt(_) => auth.accept_jwt,
            Credential::ApiKey(_) => auth.accept_api_key,
        };
        if !accepted {
            return Err(Reason::CredentialNotAccepted.into());
        }
    }
    let mut first = None;
    for c in found {
        let p = match c {
            Credential::Jwt(token) => verify_jwt(cfg, auth, token, env)?,
            Credential::ApiKey(key) => verify_key(keys.ok_or(Reason::KeyUnknown)?, key, env)?,
        };
        first.get_or_insert(p);
    }
    Ok(first.ok_or(Reason::CredentialsMissing)?)
}

/// A token from a cookie, read only when no header carries a credential: it counts for the
/// providers that name the cookie, and on an unsafe method only with an `Origin` among the
/// provider's `authorized_parties` (browsers send cookies whoever made the page).
fn verify_cookie_jwt(
    cfg: &Config,
    auth: &AuthRequirements,
    headers: &Headers<'_>,
    method: &str,
    cookie: &str,
    token: &str,
    env: &Env<'_>,
) -> Result<Principal, Fail> {
    if !auth.accept_jwt {
        return Err(Reason::CredentialNotAccepted.into());
    }
    let p = verify_jwt(cfg, auth, token, env)?;
    let provider = cfg.providers.iter().find(|pr| p.provider.as_deref() == Some(pr.name.as_str())).ok_or(Reason::CredentialNotAccepted)?;
    if !provider.from_cookies.iter().any(|c| c == cookie) {
        return Err(Reason::CredentialNotAccepted.into());
    }
    if !matches!(method, "GET" | "OPTIONS") {
        let origin = crate::text::single_value(headers, "origin").ok().flatten();
        let allowed = origin.is_some_and(|o| provider.rules.authorized_parties.iter().any(|a| a.as_bytes() == o));
        if !allowed {
            return Err(Reason::OriginForbidden.into());
        }
    }
    Ok(p)
}

/// The static table first, then the key service's (cached) answer.
fn verify_key(keys: &ApiKeys, key: &[u8], env: &Env<'_>) -> Result<Principal, Fail> {
    let d = apikeys::digest(key);
    if let Some(entry) = keys.by_digest.get(&d) {
        return Ok(entry.principal(env.now)?);
    }
    if keys.lookup.is_none() {
        return Err(Reason::KeyUnknown.into());
    }
    match (env.key_lookup)(&d) {
        LookupState::Cached(Lookup::Found(entry)) => Ok(entry.principal(env.now)?),
        LookupState::Cached(Lookup::NotFound) => Err(Reason::KeyUnknown.into()),
        LookupState::Missing { can_wait: true } => Err(Fail::Wait(Wait::KeyLookup { digest: d })),
        LookupState::Missing { can_wait: false } => Err(Reason::KeysUnavailable.into()),
    }
}

/// jwt_authn's order: parse, issuer, time and audience, key, signature. A token verified
/// before (same bytes, same provider, same keys) skips all but the time checks.
fn verify_jwt(cfg: &Config, auth: &AuthRequirements, token: &str, env: &Env<'_>) -> Result<Principal, Fail> {
    // An oversized token is refused by decode, never looked up.
    let cacheable = token.len() <= jwt::MAX_TOKEN_BYTES;
    if let Some(hit) = cacheable.then(|| env.verified.get(token)).flatten() {
        if let Some(result) = reuse(cfg, auth, &hit, env) {
            return result.map_err(Fail::Deny);
        }
    }
    let decoded = jwt::decode(token)?;
    let claims = decoded.claims()?;
    let iss = claims.get("iss").and_then(|v| v.as_str()).ok_or(Reason::IssuerUnknown)?;
    let Some(index) = choose_provider(cfg, auth, iss)? else {
        return Err(Reason::IssuerUnknown.into());
    };
    let provider = &cfg.providers[index];
    let times = jwt::validate_claims(&claims, &provider.rules, env.now)?;
    let slot = env.keys.get(index).cloned().unwrap_or_default();
    let Some(keys) = slot.keys else {
        return Err(if slot.can_wait { Fail::Wait(Wait::Jwks { provider: index, refetch: false }) } else { Reason::KeysUnavailable.into() });
    };
    match jwt::verify_signature_by(&decoded, &keys, &provider.algorithms, env.signatures) {
        Ok(()) => {}
        Err(VerifyError::UnknownKid) if slot.can_refetch => return Err(Fail::Wait(Wait::Jwks { provider: index, refetch: true })),
        Err(_) => return Err(Reason::TokenInvalid.into()),
    }
    let paths = &provider.claims;
    let text = |found: Option<String>| found.map(Rc::<str>::from);
    let mut p = Principal::new(Kind::Jwt);
    p.provider = Some(provider.shared_name.clone());
    p.subject = text(jwt::first_string(&claims, &paths.subject));
    p.email = text(jwt::first_string(&claims, &paths.email));
    p.name = text(jwt::first_string(&claims, &paths.name));
    p.organization = text(jwt::first_string(&claims, &paths.organization));
    p.organizations = jwt::first_list(&claims, &paths.organizations, jwt::Split::Comma).into();
    p.workspaces = jwt::first_list(&claims, &paths.workspaces, jwt::Split::None).into();
    p.roles = jwt::first_list(&claims, &paths.roles, jwt::Split::None).into();
    p.permissions = jwt::first_list(&claims, &paths.permissions, jwt::Split::Comma).into();
    p.scopes = jwt::first_list(&claims, &paths.scopes, jwt::Split::Whitespace).into();
    p.full_access = provider.full_access;
    // Of the claims, only the values forwarded headers name (`claim:<path>`) are kept.
    p.claims = ClaimValues::extract(&claims, &cfg.forward.claim_paths);
    if cacheable {
        // The entry shares every text and list with the principal: a clone counts references.
        env.verified.insert(token, Rc::new(VerifiedToken { provider: index, keys_version: slot.version, times, principal: p.clone() }));
    }
    Ok(p)
}

/// The provider that verifies tokens of `iss` on this route: the first with that issuer that
/// the route accepts. `Ok(None)`: no provider has the issuer; an error: none the route accepts.
fn choose_provider(cfg: &Config, auth: &AuthRequirements, iss: &str) -> Result<Option<usize>, Reason> {
    let mut known_issuer = false;
    let index = cfg
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.rules.issuer == iss)
        .inspect(|_| known_issuer = true)
        .find(|(i, _)| auth.providers.as_ref().is_none_or(|allowed| allowed.contains(i)))
        .map(|(i, _)| i);
    match index {
        Some(i) => Ok(Some(i)),
        None if known_issuer => Err(Reason::CredentialNotAccepted),
        None => Ok(None),
    }
}

/// A cached verification, if it answers for this request: this route would choose the same
/// provider and its keys are the ones the token verified with. Then only the time claims are
/// checked again. `None`: verify the token in full.
fn reuse(cfg: &Config, auth: &AuthRequirements, hit: &VerifiedToken, env: &Env<'_>) -> Option<Result<Principal, Reason>> {
    let provider = cfg.providers.get(hit.provider)?;
    if choose_provider(cfg, auth, &provider.rules.issuer) != Ok(Some(hit.provider)) {
        return None;
    }
    let slot = env.keys.get(hit.provider)?;
    if slot.keys.is_none() || slot.version != hit.keys_version {
        return None;
    }
    Some(hit.times.check(&provider.rules, env.now).map(|()| hit.principal.clone()))
}

fn authorize(
    cfg: &Config,
    auth: &AuthRequirements,
    captures: &[&str],
    headers: &Headers<'_>,
    p: &mut Principal,
) -> Result<(), Denial> {
    if !p.full_access {
        for req in &auth.permissions {
            let needed = req.resolve(captures).map_err(|t| Denial::with_detail(Reason::PermissionDenied, t))?;
            if !grants::grants(&p.permissions, &needed) {
                return Err(Denial::with_detail(Reason::PermissionDenied, needed));
            }
        }
        for req in &auth.scopes {
            let needed = req.resolve(captures).map_err(|t| Denial::with_detail(Reason::InsufficientScope, t))?;
            if !grants::grants(&p.scopes, &needed) {
                return Err(Denial::with_detail(Reason::InsufficientScope, needed));
            }
        }
    }
    if !auth.roles.is_empty() && !auth.roles.iter().any(|r| p.roles.has(r)) {
        return Err(Reason::RoleRequired.into());
    }
    if let Some(org) = header_text(headers, &cfg.organization_header, Reason::OrganizationForbidden)? {
        // The override may only name an organisation the principal can act in: its own, or
        // one its token lists. `full_access` lifts permission and scope checks, never the
        // tenant boundary.
        if p.organization.as_deref() != Some(org) {
            if !p.organizations.has(org) {
                return Err(Reason::OrganizationForbidden.into());
            }
            p.organization = Some(org.into());
        }
    }
    if auth.organization && p.organization.as_deref().is_none_or(str::is_empty) {
        return Err(Reason::OrganizationRequired.into());
    }
    if auth.workspace {
        let ws = header_text(headers, &cfg.workspace_header, Reason::WorkspaceForbidden)?
            .ok_or(Denial::new(Reason::WorkspaceRequired))?;
        if !p.workspaces.has(ws) {
            return Err(Reason::WorkspaceForbidden.into());
        }
        p.workspace = Some(ws.into());
    }
    Ok(())
}

/// The single value of a context header, if sent. Several values, or bytes that are not
/// visible ASCII, name no organisation or workspace the principal may use: `invalid`.
fn header_text<'h>(headers: &'h Headers<'h>, name: &str, invalid: Reason) -> Result<Option<&'h str>, Denial> {
    let Some(value) = crate::text::single_value(headers, name).map_err(|()| Denial::new(invalid))? else { return Ok(None) };
    if !value.iter().all(u8::is_ascii_graphic) {
        return Err(invalid.into());
    }
    let text = std::str::from_utf8(value).map_err(|_| Denial::new(invalid))?;
    Ok((!text.is_empty()).then_some(text))
}

/// Header changes for an allowed request: forwarded identity headers are always removed first
/// (so a client cannot forge them), credentials are stripped unless configured otherwise.
/// Only headers the request has are listed for removal: each removal is a host call.
fn forward(
    cfg: &Config,
    principal: Option<Principal>,
    route: Option<usize>,
    correlation: Option<String>,
    headers: &Headers<'_>,
    present: &dyn Fn(&str) -> bool,
) -> Allow {
    let fwd = &cfg.forward;
    let mut cookie = None;
    let mut remove: Vec<String> = fwd.headers.iter().map(|(name, _)| name.clone()).filter(|n| present(n)).collect();
    if fwd.strip_credentials {
        if present("authorization") {
            remove.push("authorization".to_string());
        }
        if let Some(k) = &cfg.api_keys {
            remove.extend(k.headers.iter().filter(|n| present(n)).cloned());
        }
    }
    if fwd.strip_credentials && !cfg.cookie_names.is_empty() {
        // A token cookie never reaches the upstream; the other cookies do.
        if let Some(rest) = credentials::without_cookies(headers, &cfg.cookie_names) {
            remove.push("cookie".to_string());
            cookie = (!rest.is_empty()).then_some(rest);
        }
    }
    // Removed from every forwarded request (with `refuse`, none gets here with one).
    for name in fwd.overrides.found(headers) {
        if !remove.iter().any(|r| r == name) {
            remove.push(name.to_string());
        }
    }
    // `x_api_key` is `X-Api-Key` to a CGI/WSGI upstream (HTTP_X_API_KEY), and Envoy passes
    // underscores by default: a twin of a credential or identity header never goes upstream.
    for (name, _) in headers.iter().filter(|(n, _)| n.contains('_')) {
        if cfg.guarded_headers.iter().any(|g| is_underscore_twin(name, g)) && !remove.iter().any(|r| r == name) {
            remove.push(name.to_string());
        }
    }
    let mut set = Vec::new();
    let mut state = Vec::new();
    if let Some(p) = &principal {
        for (name, field) in &fwd.headers {
            if let Some(value) = p.field_value(field).filter(|v| header_value_safe(v)) {
                set.push((name.clone(), value));
            }
        }
        for (name, field) in &cfg.filter_state {
            if let Some(value) = p.field_value(field).filter(|v| header_value_safe(v)) {
                state.push((name.clone(), value));
            }
        }
    }
    if let (Some(c), Some(id)) = (&cfg.correlation, &correlation) {
        set.push((c.header.clone(), id.clone()));
    }
    let route_cfg = route.and_then(|i| cfg.routes.get(i));
    let webhook = route_cfg.and_then(|r| r.webhook);
    let mcp = route_cfg.filter(|r| r.mcp.is_some()).map(|_| crate::mcp::HeldHeaders::of(headers));
    Allow { remove, set, cookie, state, principal: principal.map(Box::new), route, webhook, mcp, correlation }
}

/// Whether `name` reads as `guarded` (lower-case) once `_` is read as `-`, in any case.
pub fn is_underscore_twin(name: &str, guarded: &str) -> bool {
    name.len() == guarded.len()
        && name.bytes().zip(guarded.bytes()).all(|(n, g)| {
            let n = if n == b'_' { b'-' } else { n.to_ascii_lowercase() };
            n == g
        })
}

/// Claims are attacker-influenced text: nothing that could split or end a header line.
fn header_value_safe(v: &str) -> bool {
    v.len() <= 8192 && v.chars().all(|c| c == '\t' || !c.is_control())
}

fn deny(cfg: &Config, route: Option<usize>, denial: Denial, correlation: Option<String>, grpc: bool) -> Decision {
    let response = respond(cfg, route, &denial, correlation.as_deref(), grpc);
    Decision::Deny(Deny { denial, response, route, correlation })
}
