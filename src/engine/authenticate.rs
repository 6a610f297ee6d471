//! Authentication: every credential presented must be of a kind the route accepts, and valid;
//! the first one defines the principal. One verifier per kind of credential, behind `Verifier`:
//! a bearer JWT, a JWT from a cookie, an API key.

use std::rc::Rc;

use super::{Env, Fail, LookupState, Request, VerdictState, VerifiedToken, Wait};
use crate::introspection;
use crate::secret::Secret;
use crate::apikeys::{self, ApiKeys, Lookup};
use crate::config::{AuthRequirements, Config};
use crate::credentials::{self, Credential, Headers};
use crate::deny::Reason;
use crate::jwt::{self, VerifyError};
use crate::principal::{Kind, Principal};

/// What a verifier may read of the request and its configuration.
pub(super) struct Context<'r> {
    pub cfg: &'r Config,
    pub auth: &'r AuthRequirements,
    pub headers: &'r Headers<'r>,
    /// The canonical method (`HEAD` read as `GET`).
    pub method: &'r str,
    pub env: &'r Env<'r>,
}

/// One kind of credential as presented: what a route must accept for it, and the principal it
/// proves (or why not, or what it waits for).
trait Verifier {
    fn kind(&self) -> Kind;
    fn verify(&self, cx: &Context<'_>) -> Result<Principal, Fail>;
}

/// A bearer token that is not an API key.
struct BearerJwt<'t>(&'t str);
/// A token from a cookie a provider names, read only when no header carries a credential.
struct CookieJwt<'t> {
    cookie: &'t str,
    token: &'t str,
}
/// An API key, from a key header or a bearer token with a key prefix.
struct ApiKey<'k>(&'k [u8]);
/// A bearer token that is neither an API key nor shaped as a JWS, where a provider
/// introspects opaque tokens (without one, it is read as a malformed JWT, as always).
struct Opaque<'t>(&'t str);

fn verifier<'c>(cfg: &Config, c: &Credential<'c>) -> Presented<'c> {
    match *c {
        Credential::Jwt(token) if cfg.introspects && !introspection::looks_like_jws(token) => {
            Presented::Opaque(Opaque(token))
        }
        Credential::Jwt(token) => Presented::Jwt(BearerJwt(token)),
        Credential::ApiKey(key) => Presented::ApiKey(ApiKey(key)),
    }
}

/// A header credential with its verifier (an enum, not a box: no allocation per request).
enum Presented<'c> {
    Jwt(BearerJwt<'c>),
    ApiKey(ApiKey<'c>),
    Opaque(Opaque<'c>),
}

impl Presented<'_> {
    fn as_verifier(&self) -> &dyn Verifier {
        match self {
            Presented::Jwt(v) => v,
            Presented::ApiKey(v) => v,
            Presented::Opaque(v) => v,
        }
    }
}

/// Every presented credential must be accepted here and valid; the first defines the principal.
pub(super) fn authenticate(cfg: &Config, auth: &AuthRequirements, req: &Request<'_>, method: &str, env: &Env<'_>) -> Result<Principal, Fail> {
    let cx = Context { cfg, auth, headers: req.headers, method, env };
    let keys = cfg.api_keys.as_ref();
    let key_headers: &[String] = keys.map(|k| k.headers.as_slice()).unwrap_or(&[]);
    let found = credentials::extract(req.headers, key_headers, |t| keys.is_some_and(|k| k.is_key(t)))?;
    if found.is_empty() {
        return match credentials::cookie_token(req.headers, &cfg.cookie_names)? {
            Some((cookie, token)) => accepted(&cx, &CookieJwt { cookie, token }).and_then(|v| v.verify(&cx)),
            None => Err(Reason::CredentialsMissing.into()),
        };
    }
    // Kinds first: a credential this route does not take is refused before any work on it.
    for c in &found {
        accepted(&cx, verifier(cfg, c).as_verifier())?;
    }
    let mut first = None;
    for c in &found {
        let principal = verifier(cfg, c).as_verifier().verify(&cx)?;
        first.get_or_insert(principal);
    }
    Ok(first.ok_or(Reason::CredentialsMissing)?)
}

/// The verifier, when the route takes its kind.
fn accepted<'v, V: Verifier + ?Sized>(cx: &Context<'_>, v: &'v V) -> Result<&'v V, Fail> {
    if cx.auth.kinds.contains(v.kind()) {
        Ok(v)
    } else {
        Err(Reason::CredentialNotAccepted.into())
    }
}

impl Verifier for BearerJwt<'_> {
    fn kind(&self) -> Kind {
        Kind::Jwt
    }

    fn verify(&self, cx: &Context<'_>) -> Result<Principal, Fail> {
        verify_jwt(cx.cfg, cx.auth, self.0, cx.env)
    }
}

impl Verifier for CookieJwt<'_> {
    fn kind(&self) -> Kind {
        Kind::Jwt
    }

    /// It counts for the providers that name the cookie, and on an unsafe method only with an
    /// `Origin` among the provider's `authorized_parties` (browsers send cookies whoever made
    /// the page).
    fn verify(&self, cx: &Context<'_>) -> Result<Principal, Fail> {
        let p = verify_jwt(cx.cfg, cx.auth, self.token, cx.env)?;
        let provider =
            cx.cfg.providers.iter().find(|pr| p.provider.as_deref() == Some(pr.name.as_str())).ok_or(Reason::CredentialNotAccepted)?;
        if !provider.from_cookies.iter().any(|c| c == self.cookie) {
            return Err(Reason::CredentialNotAccepted.into());
        }
        if !matches!(cx.method, "GET" | "OPTIONS") {
            let origin = crate::text::single_value(cx.headers, "origin").ok().flatten();
            let allowed = origin.is_some_and(|o| provider.rules.authorized_parties.iter().any(|a| a.as_bytes() == o));
            if !allowed {
                return Err(Reason::OriginForbidden.into());
            }
        }
        Ok(p)
    }
}

impl Verifier for ApiKey<'_> {
    fn kind(&self) -> Kind {
        Kind::ApiKey
    }

    fn verify(&self, cx: &Context<'_>) -> Result<Principal, Fail> {
        verify_key(cx.cfg.api_keys.as_ref().ok_or(Reason::KeyUnknown)?, self.0, cx.env)
    }
}

impl Verifier for Opaque<'_> {
    fn kind(&self) -> Kind {
        Kind::Opaque
    }

    /// The first provider with introspection that the route accepts answers for it: its
    /// cached answer, checked against the clock, or a wait for one call.
    fn verify(&self, cx: &Context<'_>) -> Result<Principal, Fail> {
        let allowed = |i: &usize| cx.auth.providers.as_ref().is_none_or(|a| a.contains(i));
        let (index, provider) = cx
            .cfg
            .providers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.introspection.is_some())
            .find(|(i, _)| allowed(i))
            .ok_or(Reason::CredentialNotAccepted)?;
        // An endpoint named by the discovery document is known once the provider's keys (from
        // the same document) are: before them, the request waits for the keys first.
        if provider.introspection.as_ref().is_some_and(|e| e.discover) {
            let slot = cx.env.keys.get(index).cloned().unwrap_or_default();
            if slot.keys.is_none() {
                return Err(if slot.can_wait { Fail::Wait(Wait::Jwks { provider: index, refetch: false }) } else { Reason::KeysUnavailable.into() });
            }
        }
        let d = super::token_digest(self.0);
        match (cx.env.introspection)(index, &d) {
            VerdictState::Cached(answer) => Ok(answer.principal(provider, cx.env.now)?),
            VerdictState::Missing { can_wait: true } => {
                Err(Fail::Wait(Wait::Introspection { provider: index, digest: d, token: Secret::new(self.0) }))
            }
            VerdictState::Missing { can_wait: false } => Err(Reason::KeysUnavailable.into()),
        }
    }
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
    // RFC 9068 §4: where the provider names a `typ` (at+jwt), an ID token or any other JWT of
    // the same issuer is not an access token.
    if !jwt::typ_accepted(provider.rules.typ.as_deref(), decoded.typ.as_deref()) {
        return Err(Reason::TokenInvalid.into());
    }
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
    let p = Principal::from_claims(&claims, provider.shared_name.clone(), &provider.claims, provider.full_access, &cfg.forward.claim_paths);
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

