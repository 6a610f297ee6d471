//! `api-auth explain`: the filter's real decision (`engine::decide`) for one request, with the
//! route it matched, the route's requirements and the exact answer, credentials redacted.

use std::rc::Rc;

use api_auth_filter::config::{AuthRequirements, Config, KeySource, RemoteJwks, Requirement};
use api_auth_filter::deny::{Denial, LocalResponse};
use api_auth_filter::engine::{self, Decision, Env, KeySlot, LookupState, NoCache, Request, VerdictState, Wait};
use api_auth_filter::introspection;
use api_auth_filter::jwt::KeySet;
use api_auth_filter::mcp;
use api_auth_filter::principal::Principal;
use api_auth_filter::routes::strip_query;
use serde_json::{json, Map, Value};

use crate::args::{self, Arg, Parser};
use crate::failure::{err, Failure};
use crate::util::{self, VmEnv};

pub const HELP: &str = concat!(
    "\
Usage: api-auth explain [options] CONFIG METHOD PATH [-H 'name: value']...

Runs the filter's own decision (the `engine::decide` Envoy runs) for one request and prints:
the route matched (its index in `routes` and its `match`), the route's requirements, the
decision (allow / deny / respond / wait), the reason code, and either the exact response of a
denial (status, headers, body) or the header changes of an allow. Credential headers
(authorization, API-key headers, cookies) are shown as `<redacted>`, never echoed.

Keys: API keys come from the static table (`api_keys.keys`); a key that would go to the key
service (`api_keys.lookup`) shows as `wait`. JWT providers with inline JWKS use them; a
provider with remote JWKS shows as `wait` (Envoy holds the request until it fetched the keys)
unless keys are given with --jwks. Every signature is verified (no token cache); the clock is
the current time unless --now says otherwise.

Options:
  -H, --header 'name: value'  a request header (repeatable; names are case-insensitive)
  --jwks FILE                 a JWKS document for every provider whose `jwks` is `remote`
  --jwks PROVIDER=FILE        a JWKS document for that provider only (repeatable; wins over
                              a plain --jwks). E.g. with `api-auth jwks > demo.json`, tokens
                              from `api-auth mint-token` can be explained.
  --body FILE|-               the request body: on a webhook route, its signature is verified
                              too; on an MCP route, its JSON-RPC call is judged (else the
                              allow is shown as pending that check)
  --introspection FILE|-      an introspection answer (RFC 7662 JSON, as the provider's
                              endpoint would give it) for an opaque bearer token: judged as
                              the filter judges it (else the request shows as `wait`)
  --now SECONDS               the clock, in Unix seconds (default: now)
  --route-name NAME           the route Envoy's router selected (for routes with
                              `match.route_name`; Istio: the VirtualService route name)
  --route-metadata F=K=V      a string in the selected route's filter_metadata (for routes
                              with `match.route_metadata`; repeatable)
  --json                      one JSON object instead of text
",
    crate::env_help!(),
    "  -h, --help                  this text

Exit status: 0 when the request was explained, whatever the decision; 1 when CONFIG is invalid
or a file cannot be read; 2 on a usage error.

Example:
  api-auth explain config.json POST /v1/chat/completions -H 'authorization: Bearer cm_...'
"
);

struct Opts {
    config: String,
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    jwks: Vec<String>,
    body: Option<String>,
    /// An introspection answer (RFC 7662 JSON) to replay for an opaque token.
    introspection: Option<String>,
    now: Option<i64>,
    json: bool,
    env: VmEnv,
    /// The route Envoy's router selected, for routes bound to it (`match.route_name`).
    route_name: Option<String>,
    /// `filter=key=value` strings of the selected route's metadata (`match.route_metadata`).
    route_metadata: Vec<(String, String, String)>,
}

fn parse(argv: Vec<String>) -> Result<Option<Opts>, Failure> {
    let mut p = Parser::new(argv);
    let mut env = VmEnv::default();
    let mut pos = Vec::new();
    let mut headers = Vec::new();
    let (mut jwks, mut body, mut now, mut as_json) = (Vec::new(), None, None, false);
    let (mut route_name, mut route_metadata, mut introspection) = (None, Vec::new(), None);
    while let Some(a) = p.next_arg() {
        match a {
            Arg::Flag(f, _) if args::is_help(&f) => return Ok(None),
            Arg::Flag(f, inline) => match f.as_str() {
                "-H" | "--header" => headers.push(parse_header(&p.value(&f, inline)?)?),
                "--jwks" => jwks.push(p.value(&f, inline)?),
                "--body" => body = Some(p.value(&f, inline)?),
                "--introspection" => introspection = Some(p.value(&f, inline)?),
                "--route-name" => route_name = Some(p.value(&f, inline)?),
                "--route-metadata" => {
                    let v = p.value(&f, inline)?;
                    let mut parts = v.splitn(3, '=');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(fl), Some(k), Some(val)) if !fl.is_empty() && !k.is_empty() => {
                            route_metadata.push((fl.to_string(), k.to_string(), val.to_string()))
                        }
                        _ => return Err(Failure::Usage(format!("--route-metadata wants FILTER=KEY=VALUE, not '{v}'"))),
                    }
                }
                "--now" => {
                    let v = p.value(&f, inline)?;
                    now = Some(v.parse().map_err(|_| Failure::Usage(format!("--now wants Unix seconds, not '{v}'")))?);
                }
                "--json" => {
                    args::no_value(&f, inline)?;
                    as_json = true;
                }
                _ => {
                    if !env.take(&f, inline, &mut p)? {
                        return Err(args::unknown(&f));
                    }
                }
            },
            Arg::Pos(v) => pos.push(v),
        }
    }
    let mut pos = pos.into_iter();
    let (Some(config), Some(method), Some(target), None) = (pos.next(), pos.next(), pos.next(), pos.next()) else {
        return Err(Failure::Usage("CONFIG, METHOD and PATH are required (and nothing more)".into()));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Failure::Usage(format!("'{method}' is not an HTTP method")));
    }
    Ok(Some(Opts { config, method, path: request_path(&target)?, headers, jwks, body, introspection, now, json: as_json, env, route_name, route_metadata }))
}

/// The `:path` of a target: a path, or the path of a URL.
fn request_path(target: &str) -> Result<String, Failure> {
    let path = match target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
        Some(rest) => match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => rest[i..].to_string(),
            Some(i) => format!("/{}", &rest[i..]),
            None => "/".to_string(),
        },
        None => target.to_string(),
    };
    if !path.starts_with('/') {
        return Err(Failure::Usage(format!("PATH must start with '/' (got '{target}')")));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(Failure::Usage("PATH must not contain spaces or control characters".into()));
    }
    Ok(path)
}

fn parse_header(text: &str) -> Result<(String, Vec<u8>), Failure> {
    let (name, value) = text.split_once(':').ok_or_else(|| Failure::Usage("a header is 'name: value'".into()))?;
    let name = name.trim();
    if !api_auth_filter::text::is_header_token(name) {
        return Err(Failure::Usage(format!("'{name}' is not a header name")));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Failure::Usage("a header value must not contain CR, LF or NUL".into()));
    }
    Ok((name.to_ascii_lowercase(), value.as_bytes().to_vec()))
}

pub fn run(argv: Vec<String>) -> Result<String, Failure> {
    let Some(o) = parse(argv)? else { return Ok(HELP.to_string()) };
    let (cfg, raw) = util::load_config(&o.config, &o.env)?;
    let slots = key_slots(&cfg, &o.jwks)?;
    let body = o.body.as_deref().map(util::read_input).transpose()?;
    let now = o.now.unwrap_or_else(util::unix_now);
    // A key outside the static table goes to the key service, which only Envoy can ask.
    let lookup = |_: &[u8; 32]| LookupState::Missing { can_wait: true };
    // An opaque token's introspection answer: the one given with --introspection, read by the
    // provider that would ask, else a wait (only Envoy can ask).
    let answer = o.introspection.as_deref().map(util::read_input).transpose()?;
    let introspected = |i: usize, _: &[u8; 32]| match (&answer, cfg.providers.get(i)) {
        (Some(body), Some(p)) => match introspection::read_answer(body, p, &cfg.forward.claim_paths) {
            Some(a) => VerdictState::Cached(a),
            // Not an answer: what Envoy does with garbage (503 keys_unavailable).
            None => VerdictState::Missing { can_wait: false },
        },
        _ => VerdictState::Missing { can_wait: true },
    };
    let env = Env { now, keys: &slots, random: random16(), key_lookup: &lookup, introspection: &introspected, verified: &NoCache, signatures: &api_auth_filter::jwt::OwnCode };
    let headers = api_auth_filter::credentials::view(&o.headers);
    let req = Request { method: &o.method, path: &o.path, headers: &headers };
    let metadata = |filter: &str, key: &str| o.route_metadata.iter().find(|(f, k, _)| f == filter && k == key).map(|(_, _, v)| v.clone());
    let router = engine::Router { route_name: o.route_name.as_deref(), metadata: Some(&metadata) };
    let decision = engine::decide_routed(&cfg, &req, &env, &router);

    let mut r = Report::default();
    r.request(&cfg, &o);
    if let Ok(target) = engine::Target::of(&cfg, &req) {
        if target.method != o.method || target.path != strip_query(&o.path) {
            r.set("judged_as", json!({ "method": target.method, "path": target.path }));
            r.text("judged as", &format!("{} {} (the resource the upstream serves: HEAD as GET, one trailing slash and ';' parameters ignored)", target.method, target.path));
        }
    }
    let matched = engine::route_for_routed(&cfg, &req, &router).ok().flatten();
    r.route(&cfg, &raw, matched, &decision);
    match decision {
        Decision::Respond(resp) => {
            r.set("decision", json!("respond"));
            r.text("decision", "respond: the filter answers itself (RFC 9728 protected-resource metadata)");
            r.response(&resp);
        }
        Decision::Deny(d) => r.deny(&d.denial, &d.response),
        Decision::Wait(w) => r.wait(&cfg, w),
        Decision::Allow(a) if a.mcp.is_some() => explain_mcp(&mut r, &cfg, &o, a, body.as_deref()),
        Decision::Allow(a) => {
            let webhook = a.webhook.and_then(|i| cfg.webhooks.get(i).map(|w| (i, w)));
            match (webhook, &body) {
                (Some((index, (name, _))), Some(body)) => {
                    let check = engine::WebhookCheck { webhook: index, route: a.route, correlation: a.correlation.as_deref() };
                    match engine::check_webhook(&cfg, &check, &headers, Some(body), now) {
                        Ok(()) => {
                            r.allow(&a);
                            r.set("webhook", json!({ "name": name, "signature": "valid" }));
                            r.text("webhook", &format!("{name}: the body signature verifies"));
                        }
                        Err(deny) => {
                            r.set("webhook", json!({ "name": name, "signature": "invalid" }));
                            r.deny(&deny.denial, &deny.response);
                        }
                    }
                }
                (Some((_, (name, _))), None) => {
                    r.allow(&a);
                    r.set("webhook", json!({ "name": name, "signature": "not checked" }));
                    r.text(
                        "webhook",
                        &format!("{name}: the request waits for its whole body, whose signature must verify (--body FILE checks it)"),
                    );
                }
                (None, body) => {
                    r.allow(&a);
                    if body.is_some() {
                        r.note("--body is only read on a webhook route; this route has none");
                    }
                }
            }
        }
    }
    if o.method.bytes().any(|b| b.is_ascii_lowercase()) {
        r.note(&format!("methods are case-sensitive: '{}' is refused, not matched as another method", o.method));
    }
    Ok(if o.json { format!("{}\n", Value::Object(r.json)) } else { r.lines })
}

/// An allow on an MCP route: the JSON-RPC call in the body decides, as in Envoy.
fn explain_mcp(r: &mut Report, cfg: &Config, o: &Opts, a: engine::Allow, body: Option<&[u8]>) {
    let (Some(headers), Some(principal), Some(route)) = (a.mcp.clone(), a.principal.clone(), a.route) else {
        r.allow(&a);
        return;
    };
    let Some(body) = body else {
        r.allow(&a);
        r.set("mcp", json!({ "call": "not checked" }));
        r.text("mcp", "the request waits for its whole body, whose JSON-RPC call is judged (--body FILE judges it)");
        return;
    };
    let call = match mcp::read(body) {
        Ok(m) => json!({ "method": m.method, "name": m.name() }),
        Err(_) => json!({ "unreadable": true }),
    };
    let hold = mcp::Hold { route, principal, headers, post: o.method == "POST", correlation: a.correlation.clone() };
    match mcp::judge(cfg, &hold, Some(body)) {
        Ok(verdict) => {
            r.allow(&a);
            let filtered = matches!(verdict, mcp::Verdict::FilterToolList(_));
            r.set("mcp", json!({ "call": call, "verdict": "allow", "tools_list_filtered": filtered }));
            let what = match (call.get("method").and_then(Value::as_str), call.get("name").and_then(Value::as_str)) {
                (Some(m), Some(n)) => format!("{m} {n}"),
                (Some(m), None) => m.to_string(),
                _ => "a call".to_string(),
            };
            let tail = if filtered { "; its answer lists only the tools the principal may call" } else { "" };
            r.text("mcp", &format!("{what}: allowed{tail}"));
        }
        Err((reason, response)) => {
            r.set("mcp", json!({ "call": call, "verdict": "deny" }));
            r.deny(&Denial::new(reason), &response);
        }
    }
}

/// Inline keys as configured; remote keys from --jwks, else "not fetched yet".
fn key_slots(cfg: &Config, specs: &[String]) -> Result<Vec<KeySlot>, Failure> {
    let any_remote = cfg.providers.iter().any(|p| matches!(p.keys, KeySource::Remote(_)));
    let mut every: Option<(String, Vec<u8>)> = None;
    let mut named: Vec<Option<(String, Vec<u8>)>> = vec![None; cfg.providers.len()];
    for spec in specs {
        let target = spec.split_once('=').and_then(|(name, file)| {
            cfg.providers.iter().position(|p| p.name == name).map(|i| (i, file))
        });
        match target {
            Some((i, file)) => {
                if matches!(cfg.providers[i].keys, KeySource::Inline(_)) {
                    return Err(Failure::Usage(format!("--jwks: provider '{}' has inline keys", cfg.providers[i].name)));
                }
                named[i] = Some((file.to_string(), util::read_input(file)?));
            }
            None if !any_remote => {
                return Err(Failure::Usage("--jwks: no provider of this configuration has remote JWKS".into()));
            }
            None => every = Some((spec.clone(), util::read_input(spec)?)),
        }
    }
    let mut slots = engine::inline_keys(cfg);
    for (i, p) in cfg.providers.iter().enumerate() {
        if let (KeySource::Remote(remote), Some(slot)) = (&p.keys, slots.get_mut(i)) {
            let keys = match named[i].as_ref().or(every.as_ref()) {
                Some((file, bytes)) => Some(parse_jwks(remote, file, bytes)?),
                None => None,
            };
            // Given keys are final (an unknown kid is token_invalid); no keys: Envoy would wait.
            *slot = KeySlot { keys, version: 1, can_wait: true, can_refetch: false };
        }
    }
    Ok(slots)
}

/// A JWKS document as Envoy's fetch would take it for this provider (HMAC keys only where it
/// opts in).
fn parse_jwks(remote: &RemoteJwks, file: &str, bytes: &[u8]) -> Result<Rc<KeySet>, Failure> {
    let set = KeySet::fetched(bytes, remote.allow_symmetric_keys).map_err(|e| err(format!("{}: not a JWKS document: {e}", util::display_name(file))))?;
    if set.is_empty() {
        return Err(err(format!("{}: no usable key in this JWKS", util::display_name(file))));
    }
    Ok(Rc::new(set))
}

/// Only for a generated correlation id: not secret, merely different from one run to the next.
fn random16() -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut h = Sha256::new();
    h.update(nanos.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn is_credential_header(cfg: &Config, name: &str) -> bool {
    matches!(name, "authorization" | "proxy-authorization" | "cookie" | "x-api-key")
        || cfg.api_keys.as_ref().is_some_and(|k| k.headers.iter().any(|h| h == name))
}

/// What `explain` says, as aligned text and as JSON, built side by side.
#[derive(Default)]
struct Report {
    lines: String,
    json: Map<String, Value>,
}

const LABEL: usize = 10;

impl Report {
    fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_string(), value);
    }

    fn text(&mut self, label: &str, value: &str) {
        self.text_lines(label, &[value.to_string()]);
    }

    fn text_lines(&mut self, label: &str, values: &[String]) {
        for (i, v) in values.iter().enumerate() {
            let l = if i == 0 { label } else { "" };
            let line = format!("{l:<LABEL$}{v}");
            self.lines.push_str(line.trim_end());
            self.lines.push('\n');
        }
        if values.is_empty() {
            self.lines.push_str(label);
            self.lines.push('\n');
        }
    }

    fn note(&mut self, text: &str) {
        self.json.entry("notes").or_insert_with(|| json!([]));
        if let Some(Value::Array(a)) = self.json.get_mut("notes") {
            a.push(json!(text));
        }
        self.text("note", text);
    }

    fn request(&mut self, cfg: &Config, o: &Opts) {
        let shown: Vec<(String, String)> = o
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if is_credential_header(cfg, n) { "<redacted>".to_string() } else { String::from_utf8_lossy(v).into_owned() };
                (n.clone(), v)
            })
            .collect();
        self.set("request", json!({ "method": o.method, "path": o.path, "headers": pairs(&shown) }));
        self.text("request", &format!("{} {}", o.method, o.path));
        if !shown.is_empty() {
            self.text_lines("headers", &shown.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>());
        }
    }

    fn route(&mut self, cfg: &Config, raw: &Value, matched: Option<usize>, decision: &Decision) {
        if matches!(decision, Decision::Respond(_)) {
            self.set("route", Value::Null);
            self.text("route", "none: a protected_resource.paths entry, answered before routing");
            return;
        }
        let Some((i, route)) = matched.and_then(|i| cfg.routes.get(i).map(|r| (i, r))) else {
            let unmatched = raw.get("unmatched").and_then(Value::as_str).unwrap_or("deny");
            self.set("route", Value::Null);
            self.text("route", &format!("none matches (unmatched: {unmatched})"));
            return;
        };
        let raw_route = raw.get("routes").and_then(|r| r.get(i));
        let matcher = raw_route.and_then(|r| r.get("match")).cloned().unwrap_or(Value::Null);
        let format = raw_route
            .and_then(|r| r.get("errors"))
            .or_else(|| raw.get("errors"))
            .and_then(Value::as_str)
            .unwrap_or("detail")
            .to_string();
        let webhook = route.webhook.and_then(|w| cfg.webhooks.get(w)).map(|(n, _)| n.clone());
        let (mut req_json, mut req_text) = match &route.auth {
            None => (json!({ "public": true }), vec!["none (public route)".to_string()]),
            Some(auth) => requirements(cfg, auth),
        };
        if let Some(w) = &webhook {
            req_json["webhook"] = json!(w);
            req_text.push(format!("webhook signature: {w}"));
        }
        req_json["errors"] = json!(format);
        req_text.push(format!("error format: {format}"));
        self.set("route", json!({ "index": i, "match": matcher, "requirements": req_json }));
        self.text("route", &format!("routes[{i}] {matcher}"));
        self.text_lines("requires", &req_text);
    }

    fn response(&mut self, resp: &LocalResponse) {
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        self.set("status", json!(resp.status));
        self.set("headers", pairs(&resp.headers));
        self.set("body", json!(body));
        self.text("status", &resp.status.to_string());
        self.text_lines("response", &resp.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>());
        self.text("body", &body);
    }

    fn deny(&mut self, denial: &Denial, resp: &LocalResponse) {
        self.set("decision", json!("deny"));
        self.set("reason", json!(denial.reason.as_str()));
        self.set("detail", json!(denial.detail));
        self.text("decision", "deny");
        let reason = match &denial.detail {
            Some(d) => format!("{} ({d})", denial.reason.as_str()),
            None => denial.reason.as_str().to_string(),
        };
        self.text("reason", &reason);
        self.response(resp);
    }

    fn allow(&mut self, a: &engine::Allow) {
        self.set("decision", json!("allow"));
        self.text("decision", "allow");
        match &a.principal {
            Some(p) => {
                self.set("principal", principal_json(p));
                self.text_lines("principal", &principal_text(p));
            }
            None => {
                self.set("principal", Value::Null);
                self.text("principal", "none (public route or unmatched: allow)");
            }
        }
        let mut set: Vec<Value> = a.set.iter().map(|(n, v)| json!([n, v])).collect();
        let mut changes: Vec<String> = a.remove.iter().map(|n| format!("remove {n}")).collect();
        if a.cookie.is_some() {
            // The other cookies, never echoed.
            set.insert(0, json!(["cookie", "<redacted>"]));
            changes.push("set cookie: <redacted>".into());
        }
        self.set("upstream", json!({ "remove": a.remove, "set": set }));
        changes.extend(a.set.iter().map(|(n, v)| format!("set {n}: {v}")));
        if changes.is_empty() {
            changes.push("no header changes".into());
        }
        self.text_lines("upstream", &changes);
    }

    fn wait(&mut self, cfg: &Config, w: Wait) {
        self.set("decision", json!("wait"));
        let (what, text) = match w {
            Wait::Jwks { provider, refetch } => {
                let p = cfg.providers.get(provider);
                let name = p.map_or("?", |p| p.name.as_str());
                let (cluster, path, get) = match p.map(|p| &p.keys) {
                    Some(KeySource::Remote(r)) if r.discovery.is_some() => {
                        (r.cluster.as_str(), r.path.as_str(), format!("GET {}, then the keys at its jwks_uri", r.path))
                    }
                    Some(KeySource::Remote(r)) => (r.cluster.as_str(), r.path.as_str(), format!("GET {}", r.path)),
                    _ => ("?", "?", "GET ?".to_string()),
                };
                (
                    {
                        let mut jwks = json!({ "provider": name, "cluster": cluster, "path": path, "refetch": refetch });
                        if matches!(p.map(|p| &p.keys), Some(KeySource::Remote(r)) if r.discovery.is_some()) {
                            jwks["discovery"] = json!(true);
                        }
                        json!({ "jwks": jwks })
                    },
                    format!(
                        "the remote JWKS of provider '{name}' (cluster {cluster}, {get}): Envoy holds the \
                         request until the keys arrive (up to 3 s, then 503 keys_unavailable) and decides again. \
                         Give the keys with --jwks FILE to see that decision."
                    ),
                )
            }
            Wait::Introspection { provider, .. } => {
                let p = cfg.providers.get(provider);
                let name = p.map_or("?", |p| p.name.as_str());
                let (cluster, path) = p.and_then(|p| p.introspection.as_ref()).map_or(("?", "?"), |i| {
                    (i.service.cluster.as_str(), if i.discover { "(the discovery document's introspection_endpoint)" } else { i.service.path.as_str() })
                });
                (
                    json!({ "introspection": { "provider": name, "cluster": cluster, "path": path } }),
                    format!(
                        "the introspection endpoint of provider '{name}': the bearer token is opaque, so \
                         Envoy asks cluster {cluster} (POST {path}, RFC 7662) and decides on the answer \
                         (inactive: token_invalid; unreachable with nothing cached: 503 keys_unavailable). \
                         Give an answer with --introspection FILE to see that decision."
                    ),
                )
            }
            Wait::KeyLookup { .. } => {
                let s = cfg.api_keys.as_ref().and_then(|k| k.lookup.as_ref());
                let (cluster, path) = s.map_or(("?", "?"), |s| (s.cluster.as_str(), s.path.as_str()));
                (
                    json!({ "key_service": { "cluster": cluster, "path": path } }),
                    format!(
                        "the key service: the key is not in the static table, so Envoy asks cluster \
                         {cluster} (POST {path}, with the key's digest only) and decides on the answer \
                         (404: key_unknown; unreachable with nothing cached: 503 keys_unavailable)."
                    ),
                )
            }
        };
        self.set("wait", what);
        self.text("decision", "wait");
        self.text_lines("waits", &wrap(&text, 86));
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().map_or(0, |l| l.len());
        if line > 0 && line + 1 + word.len() > width {
            lines.push(String::new());
        }
        if let Some(l) = lines.last_mut() {
            if !l.is_empty() {
                l.push(' ');
            }
            l.push_str(word);
        }
    }
    lines
}

fn pairs(list: &[(String, String)]) -> Value {
    Value::Array(list.iter().map(|(n, v)| json!([n, v])).collect())
}

fn requirement_text(r: &Requirement) -> &str {
    match r {
        Requirement::Literal(s) => s,
        Requirement::Template { text, .. } => text,
    }
}

fn requirements(cfg: &Config, auth: &AuthRequirements) -> (Value, Vec<String>) {
    let kinds: Vec<&str> = auth.kinds.iter().map(|k| k.as_str()).collect();
    let providers: Option<Vec<&str>> =
        auth.providers.as_ref().map(|l| l.iter().filter_map(|i| cfg.providers.get(*i)).map(|p| p.name.as_str()).collect());
    let permissions: Vec<&str> = auth.permissions.iter().map(requirement_text).collect();
    let scopes: Vec<&str> = auth.scopes.iter().map(requirement_text).collect();
    let j = json!({
        "credentials": kinds, "providers": providers, "permissions": permissions, "scopes": scopes,
        "roles": auth.roles, "organization": auth.organization, "workspace": auth.workspace,
    });
    let mut t = vec![format!("credentials: {}", kinds.join(", "))];
    if let Some(p) = &providers {
        t.push(format!("providers: {}", p.join(", ")));
    }
    if !permissions.is_empty() {
        t.push(format!("permissions (all): {}", permissions.join(", ")));
    }
    if !scopes.is_empty() {
        t.push(format!("scopes (all): {}", scopes.join(", ")));
    }
    if !auth.roles.is_empty() {
        t.push(format!("roles (any): {}", auth.roles.join(", ")));
    }
    if auth.organization {
        t.push(format!("an organisation (may be named by {})", cfg.organization_header));
    }
    if auth.workspace {
        t.push(format!("a workspace the principal may use, in {}", cfg.workspace_header));
    }
    (j, t)
}

fn principal_json(p: &Principal) -> Value {
    json!({
        "kind": p.kind.as_str(), "provider": p.provider.as_deref(), "key_id": p.key_id.as_deref(), "subject": p.subject.as_deref(),
        "email": p.email.as_deref(), "name": p.name.as_deref(), "organization": p.organization.as_deref(), "workspace": p.workspace.as_deref(),
        "workspaces": p.workspaces, "roles": p.roles, "permissions": p.permissions, "scopes": p.scopes,
        "full_access": p.full_access, "organizations": p.organizations,
    })
}

fn principal_text(p: &Principal) -> Vec<String> {
    let who = match (&p.key_id, &p.provider) {
        (Some(k), _) => format!("api_key {k}"),
        (None, Some(prov)) => format!("jwt from provider {prov}"),
        (None, None) => p.kind.as_str().to_string(),
    };
    let mut out = vec![who];
    let one = [("subject", &p.subject), ("email", &p.email), ("name", &p.name), ("organization", &p.organization), ("workspace", &p.workspace)];
    for (label, v) in one {
        if let Some(v) = v {
            out.push(format!("{label}: {v}"));
        }
    }
    let many = [("workspaces", &p.workspaces), ("roles", &p.roles), ("permissions", &p.permissions), ("scopes", &p.scopes)];
    for (label, v) in many {
        if !v.is_empty() {
            out.push(format!("{label}: {}", v.join(", ")));
        }
    }
    if p.full_access {
        out.push("full access (passes permission and scope checks, never another organisation or workspace)".into());
    }
    out
}
