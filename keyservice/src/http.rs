//! The HTTP side: the filter's two protocols (lookup, usage) and the admin API.
//!
//! Every answer is JSON with `cache-control: no-store`. Bodies are read up to a bound per
//! endpoint (a larger one is `413` before it is parsed) and parsed strictly (unknown fields are
//! `400`); nothing is written before the whole request has been checked.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::keys;
use crate::store::{NewKey, Store};

pub const LOOKUP_PATH: &str = "/v1/keys/lookup";
pub const USAGE_PATH: &str = "/v1/keys/usage";
pub const ADMIN_PATH: &str = "/admin/v1/keys";
/// The header a service secret travels in, when one is configured.
pub const SECRET_HEADER: &str = "x-api-auth-keys-secret";

/// A lookup body is `{"sha256": "<64 hex>"}`: 1 KiB is far more than it needs.
const LOOKUP_LIMIT: usize = 1024;
/// A usage batch holds one entry per key used in the period.
const USAGE_LIMIT: usize = 4 << 20;
const MAX_USAGE_ENTRIES: usize = 100_000;
const ADMIN_LIMIT: usize = 64 << 10;

pub struct App {
    pub store: Store,
    /// SHA-256 of the admin token: compared by digest, so the comparison takes the same time
    /// whatever the length or content of what was presented.
    admin_digest: [u8; 32],
    /// SHA-256 of the service secret the filter's side must present, when one is set.
    service_digest: Option<[u8; 32]>,
    pub prefixes: Vec<String>,
}

impl App {
    pub fn new(store: Store, admin_token: &str, service_secret: Option<&str>, prefixes: Vec<String>) -> App {
        App { store, admin_digest: Sha256::digest(admin_token.as_bytes()).into(), service_digest: service_secret.map(|s| Sha256::digest(s.as_bytes()).into()), prefixes }
    }
}

fn answer(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn detail(status: StatusCode, text: &str) -> Response {
    answer(status, &json!({ "detail": text }))
}

fn internal(e: &sqlx::Error) -> Response {
    // The error text of the driver (never a bound value: queries carry their values apart).
    eprintln!("api-auth-keys: database error: {e}");
    detail(StatusCode::SERVICE_UNAVAILABLE, "Store unavailable")
}

/// The whole body, or the `413` for one over `limit`.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|_| detail(StatusCode::PAYLOAD_TOO_LARGE, "Body too large"))
}

fn digest_eq(presented: &[u8], want: &[u8; 32]) -> bool {
    let got: [u8; 32] = Sha256::digest(presented).into();
    bool::from(got.ct_eq(want))
}

/// The admin token from `Authorization: Bearer <token>` (scheme in any case), checked in
/// constant time.
fn admin_ok(app: &App, headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(v), None) = (values.next(), values.next()) else { return false };
    let v = v.as_bytes();
    if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    digest_eq(&v[7..], &app.admin_digest)
}

fn service_ok(app: &App, headers: &HeaderMap) -> bool {
    let Some(want) = &app.service_digest else { return true };
    let mut values = headers.get_all(SECRET_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => digest_eq(v.as_bytes(), want),
        _ => false,
    }
}

fn unauthorized() -> Response {
    let mut r = detail(StatusCode::UNAUTHORIZED, "Unauthorized");
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Which endpoints a listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The filter's two and the admin API, on one listener.
    All,
    /// Lookup and usage only: the listener Envoy's cluster reaches.
    Filter,
    /// The admin API only: a listener of its own, on a network the Envoys are not on.
    Admin,
}

pub fn router(app: Arc<App>, part: Part) -> Router {
    let mut r = Router::new();
    if part != Part::Admin {
        r = r.route(LOOKUP_PATH, post(lookup)).route(USAGE_PATH, post(usage));
    }
    if part != Part::Filter {
        r = r
            .route(ADMIN_PATH, get(list).post(create))
            .route(&format!("{ADMIN_PATH}/{{id}}"), get(show).delete(delete))
            .route(&format!("{ADMIN_PATH}/{{id}}/revoke"), post(revoke))
            .route(&format!("{ADMIN_PATH}/{{id}}/expire"), post(expire));
    }
    r.fallback(|| async { detail(StatusCode::NOT_FOUND, "Not found") })
        .method_not_allowed_fallback(|| async { detail(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed") })
        .layer(middleware::from_fn(log))
        .with_state(app)
}

/// One line per request on standard error: method, route, status. The route's template
/// (`/admin/v1/keys/{id}/revoke`), never the path as sent, a header or a body: a client that
/// puts a key in a URL does not get it written to the log either.
async fn log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or("(no route)".to_string(), |m| m.as_str().to_string());
    let r = next.run(req).await;
    eprintln!("api-auth-keys: {method} {route} {}", r.status().as_u16());
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupBody {
    sha256: String,
}

/// `api_keys.lookup`: 200 and the entry, or 404. The answer depends on the digest alone, and
/// has one shape per outcome: an unknown digest, a malformed one and a deleted key tell
/// nothing apart from "not known". Only the index is read, by the whole digest (never a
/// prefix or a range), so there is nothing to enumerate; a digest is the SHA-256 of a 238-bit
/// secret, so the time a comparison takes says nothing about any key either.
async fn lookup(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    if !service_ok(&app, &headers) {
        return unauthorized();
    }
    let body = match read_body(body, LOOKUP_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(LookupBody { sha256 }) = serde_json::from_slice(&body) else {
        return detail(StatusCode::BAD_REQUEST, "Bad request");
    };
    if !keys::is_digest(&sha256) {
        return detail(StatusCode::BAD_REQUEST, "Bad request");
    }
    match app.store.by_digest(&sha256).await {
        Ok(Some(e)) => answer(StatusCode::OK, &e.filter_json()),
        Ok(None) => detail(StatusCode::NOT_FOUND, "Not found"),
        Err(e) => internal(&e),
    }
}

/// `api_keys.usage_report`: `{"<key id>": <Unix seconds>, ...}`. The whole batch is checked
/// before anything is written; a time ahead of this service's clock is taken as now (a
/// skewed Envoy cannot pin a key's last use in the future).
async fn usage(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    if !service_ok(&app, &headers) {
        return unauthorized();
    }
    let body = match read_body(body, USAGE_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::BAD_REQUEST, "Bad request: want {\"<key id>\": <Unix seconds>, ...}");
    };
    if map.len() > MAX_USAGE_ENTRIES {
        return detail(StatusCode::PAYLOAD_TOO_LARGE, "Too many entries");
    }
    let now = keys::unix_now();
    let mut uses = Vec::with_capacity(map.len());
    for (id, at) in map {
        let Some(at) = at.as_i64().filter(|t| *t > 0) else {
            return detail(StatusCode::BAD_REQUEST, "Bad request: want {\"<key id>\": <Unix seconds>, ...}");
        };
        if id.is_empty() || id.len() > 200 {
            return detail(StatusCode::BAD_REQUEST, "Bad request: a key id of 1 to 200 bytes");
        }
        uses.push((id, at.min(now)));
    }
    match app.store.record_usage(&uses).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(&e),
    }
}

async fn create(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    if !admin_ok(&app, &headers) {
        return unauthorized();
    }
    let body = match read_body(body, ADMIN_LIMIT).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let new: NewKey = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &format!("Bad request: {}", json_problem(&e))),
    };
    match app.store.create(&new, &app.prefixes, keys::unix_now()).await {
        Ok(Ok((key, entry))) => answer(StatusCode::CREATED, &json!({ "key": key, "entry": entry.admin_json() })),
        Ok(Err(invalid)) => detail(StatusCode::BAD_REQUEST, &format!("Bad request: {}", invalid.0)),
        Err(e) => internal(&e),
    }
}

/// serde's message without the input it quotes (a field name or value the client sent stays
/// out of the answer, which an admin UI might render).
fn json_problem(e: &serde_json::Error) -> &'static str {
    let text = e.to_string();
    if text.starts_with("unknown field") {
        "unknown field"
    } else if e.is_syntax() || e.is_eof() {
        "not JSON"
    } else {
        "a field of the wrong type"
    }
}

async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !admin_ok(&app, &headers) {
        return unauthorized();
    }
    match app.store.list().await {
        Ok(entries) => answer(StatusCode::OK, &json!({ "keys": entries.iter().map(|e| e.admin_json()).collect::<Vec<_>>() })),
        Err(e) => internal(&e),
    }
}

async fn show(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !admin_ok(&app, &headers) {
        return unauthorized();
    }
    match app.store.by_id(&id).await {
        Ok(Some(e)) => answer(StatusCode::OK, &e.admin_json()),
        Ok(None) => detail(StatusCode::NOT_FOUND, "Not found"),
        Err(e) => internal(&e),
    }
}

async fn set_status(app: &App, headers: &HeaderMap, id: &str, status: &str) -> Response {
    if !admin_ok(app, headers) {
        return unauthorized();
    }
    match app.store.set_status(id, status).await {
        Ok(Some(e)) => answer(StatusCode::OK, &e.admin_json()),
        Ok(None) => detail(StatusCode::NOT_FOUND, "Not found"),
        Err(e) => internal(&e),
    }
}

async fn revoke(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    set_status(&app, &headers, &id, "revoked").await
}

async fn expire(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    set_status(&app, &headers, &id, "expired").await
}

async fn delete(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !admin_ok(&app, &headers) {
        return unauthorized();
    }
    match app.store.delete(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => detail(StatusCode::NOT_FOUND, "Not found"),
        Err(e) => internal(&e),
    }
}
