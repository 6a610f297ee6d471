//! A request is judged by the route of the request the upstream serves (docs/configuration.md, "Route
//! matching"): engine::route_for and engine::decide on a configuration of several routes and a
//! request, both built from the input, against the request's canonical form, which this target
//! computes itself (fuzz/src/lib.rs `model`: `;` parameters refused or removed, one trailing
//! slash dropped, HEAD read as GET, lower-case methods refused).
//!
//! Input: `\n`-separated lines.
//! - line 0, options (words): `strip` sets `path_parameters: "strip"` (else the default,
//!   reject), `allow` sets `unmatched: "allow"`, `router=NAME` and `meta=FILTER.KEY=VALUE` say
//!   what Envoy's router chose (its route's name, a metadata string) for bound routes;
//! - line 1, the request: `METHOD PATH` (query string allowed; no space: a GET of the line);
//! - `route METHODS KIND PATTERN [AUTH]` lines, in order: METHODS `*` (any) or comma-separated,
//!   KIND `path`, `prefix`, `template`, `name` (PATTERN is a `route_name`) or `meta` (PATTERN
//!   is `FILTER.KEY=VALUE`, a `route_metadata`), AUTH `none` or comma-separated `key`, `jwt`,
//!   `scope:S`, `perm:P`, `role:R`, `org`, `ws` (absent: any credential, no requirement); no
//!   route line: a table mixing examples 000, 002 and 003, the paths and a route bound
//!   by name (`admin-console`), ending in a public catch-all (so that a request that missed
//!   its route would fall to a weaker one);
//! - every other line is a `name: value` request header.
//!
//! The configuration has static API keys (`k_all`: every scope and permission; `k_agents`:
//! `tools:agents.*`; `k_list`: `tools:platform.list_roadmap_items`; `k_revoked`), an inline
//! HS256 provider, two forwarded headers and the metadata document of example 003.
//!
//! Properties:
//! - the configuration compiles exactly when the model takes every route (patterns, methods
//!   with HEAD only beside GET, requirements naming only template variables);
//! - route_for answers the model: the refusal (path_not_normalized, method_invalid) or the
//!   first route whose methods and pattern match the canonical request (a bound route: whose
//!   binding the router chose, on any path);
//! - a request the model refuses is denied 400 with that reason and no route, never allowed,
//!   never another route: with `reject`, any `;` parameter or `%3B`;
//! - otherwise the request gets exactly the decision of its canonical form (same route, same
//!   allow or denial, same headers), and so does every variant the target derives from the
//!   canonical form: one trailing slash added, HEAD for GET, `;` parameters on a segment (with
//!   `strip`; with `reject` they are refused, encoded as `%3B` too), a query string; a
//!   lower-case method is refused method_invalid;
//! - the route a decision names is route_for's; the metadata document answers exactly a GET
//!   (or HEAD) of its path.
use api_auth_filter::config::Config;
use api_auth_filter::deny::Reason;
use api_auth_filter::engine::{decide_routed, inline_keys, no_lookup, route_for_routed, Decision, Env, KeySlot, NoCache, Request, Router};
use crate::model::{self, Chosen, Kind, RouteSpec};
use crate::{b64, fnv, header, lines, text, NOW};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const METADATA_PATH: &str = "/v1/.well-known/oauth-protected-resource";

/// Examples 000, 002 and 003, and the paths; the catch-all last.
const DEFAULT_ROUTES: &[&str] = &[
    "route GET path /v1/.well-known/oauth-protected-resource none",
    "route * path /health none",
    "route * name admin-console role:admin",
    "route * prefix /v1/mcp key",
    "route GET path /v1/tools/platform/roadmap-items key,scope:tools:platform.list_roadmap_items",
    "route POST path /v1/tools/platform/roadmap-items/ key,scope:tools:platform.create_roadmap_item",
    "route * template /v1/tools/agents/{tool} key,scope:tools:agents.{tool}",
    "route * template /files/{path...}/ scope:files.read",
    "route GET,HEAD prefix /v1/public/ none",
    "route * prefix /api/admin/ role:admin,org",
    "route * prefix /v1/admin perm:admin",
    "route POST path /v1/chat/completions perm:llm",
    "route GET prefix /api/v1/bots scope:bots:read",
    "route * prefix /api/v1/bots scope:bots:write",
    "route * prefix /api/ org",
    "route * prefix /v1/ key",
    "route * prefix / none",
];

struct Built {
    doc: Value,
    specs: Vec<RouteSpec>,
    /// Why the model refuses the configuration.
    invalid: Option<String>,
}

/// `FILTER.KEY=VALUE` as (filter, key, value).
fn metadata_of(text: &str) -> (String, String, String) {
    let (fk, value) = text.split_once('=').unwrap_or((text, ""));
    let (filter, key) = fk.split_once('.').unwrap_or((fk, ""));
    (filter.to_string(), key.to_string(), value.to_string())
}

fn key_digest(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a requirement compiles: non-empty, no `*`, every `{name}` a template variable.
fn requirement_ok(text: &str, vars: &[String]) -> bool {
    if text.is_empty() || text.contains('*') {
        return false;
    }
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| c + open) else { return false };
        if !vars.iter().any(|v| *v == rest[open + 1..close]) {
            return false;
        }
        rest = &rest[close + 1..];
    }
    !rest.contains('}')
}

/// The `auth` of a route line, and whether it compiles.
fn auth_of(text: Option<&str>, vars: &[String]) -> (Value, bool) {
    let Some(text) = text else { return (json!({}), true) };
    if text == "none" {
        return (json!("none"), true);
    }
    let mut auth = json!({});
    let mut ok = true;
    let mut kinds = Vec::new();
    for item in text.split(',') {
        let (name, arg) = item.split_once(':').unwrap_or((item, ""));
        match name {
            "key" => kinds.push("api_key"),
            "jwt" => kinds.push("jwt"),
            "org" => auth["organization"] = json!(true),
            "ws" => auth["workspace"] = json!(true),
            "scope" | "perm" | "role" => {
                let field = match name {
                    "scope" => "scopes",
                    "perm" => "permissions",
                    _ => "roles",
                };
                if auth.get(field).is_none() {
                    auth[field] = json!([]);
                }
                auth[field].as_array_mut().unwrap().push(json!(arg));
                ok &= if name == "role" { !arg.is_empty() } else { requirement_ok(arg, vars) };
            }
            _ => {}
        }
    }
    if !kinds.is_empty() {
        kinds.dedup();
        auth["credentials"] = json!(kinds);
    }
    (auth, ok)
}

fn build(options: &str, route_lines: &[String]) -> Built {
    let defaults: Vec<String>;
    let route_lines = if route_lines.is_empty() {
        defaults = DEFAULT_ROUTES.iter().map(|s| s.to_string()).collect();
        &defaults
    } else {
        route_lines
    };
    let mut routes = Vec::new();
    let mut specs = Vec::new();
    let mut invalid = None;
    for (i, line) in route_lines.iter().take(16).enumerate() {
        let mut words = line.splitn(5, ' ').skip(1);
        let methods = words.next().unwrap_or("*");
        let kind = match words.next().unwrap_or("") {
            "path" => Kind::Path,
            "template" => Kind::Template,
            "name" => Kind::RouteName,
            "meta" => Kind::RouteMetadata,
            _ => Kind::Prefix,
        };
        let pattern = words.next().unwrap_or("/").to_string();
        let methods = (methods != "*").then(|| methods.split(',').map(str::to_string).collect::<Vec<_>>());
        let metadata = (kind == Kind::RouteMetadata).then(|| metadata_of(&pattern));
        let spec = RouteSpec { methods: methods.clone(), kind, pattern: pattern.clone(), metadata: metadata.clone() };
        let vars = spec.valid().unwrap_or_else(|why| {
            invalid.get_or_insert(format!("routes[{i}]: {why}"));
            Vec::new()
        });
        let (auth, auth_ok) = auth_of(words.next(), &vars);
        if !auth_ok {
            invalid.get_or_insert(format!("routes[{i}].auth"));
        }
        let mut matcher = match &metadata {
            Some((filter, key, value)) => json!({ "route_metadata": { "filter": filter, "key": key, "value": value } }),
            None => json!({ kind.key(): pattern }),
        };
        if let Some(m) = methods {
            matcher["methods"] = json!(m);
        }
        routes.push(json!({ "match": matcher, "auth": auth }));
        specs.push(spec);
    }
    let key = |id: &str, key: &str, status: &str, scopes: &[&str], permissions: &[&str]| {
        json!({ "id": id, "sha256": key_digest(key), "status": status, "scopes": scopes, "permissions": permissions, "organization": "org_a" })
    };
    let doc = json!({
        "providers": { "session": {
            "issuer": "https://session.example",
            "algorithms": ["HS256"],
            "jwks": { "inline": { "keys": [ { "kty": "oct", "kid": "s1", "alg": "HS256", "k": b64("canonical-target-hmac-key-0123456789") } ] } }
        } },
        "api_keys": {
            "prefixes": ["k_"],
            "headers": ["x-api-key"],
            "keys": [
                key("key_all", "k_all", "active", &["*"], &["*"]),
                key("key_agents", "k_agents", "active", &["tools:agents.*"], &[]),
                key("key_list", "k_list", "active", &["tools:platform.list_roadmap_items"], &["llm"]),
                key("key_revoked", "k_revoked", "revoked", &["*"], &["*"])
            ]
        },
        "routes": routes,
        "unmatched": if options.split(' ').any(|w| w == "allow") { "allow" } else { "deny" },
        "path_parameters": if options.split(' ').any(|w| w == "strip") { "strip" } else { "reject" },
        "protected_resource": {
            "resource": "https://api.example/v1/mcp",
            "authorization_servers": ["https://session.example"],
            "paths": [METADATA_PATH]
        },
        "forward": { "headers": { "x-auth-key-id": "key_id", "x-auth-org": "organization" } }
    });
    Built { doc, specs, invalid }
}

struct Ctx<'a> {
    cfg: &'a Config,
    env: Env<'a>,
    specs: &'a [RouteSpec],
    headers: &'a [(String, Vec<u8>)],
    router: Router<'a>,
    chosen: Chosen<'a>,
}

impl Ctx<'_> {
    fn decide(&self, method: &str, path: &str) -> Decision {
        decide_routed(self.cfg, &Request { method, path, headers: &api_auth_filter::credentials::view(self.headers) }, &self.env, &self.router)
    }

    fn route_for(&self, method: &str, path: &str) -> Result<Option<usize>, Reason> {
        route_for_routed(self.cfg, &Request { method, path, headers: &api_auth_filter::credentials::view(self.headers) }, &self.router)
    }

    /// A request the model refuses: denied 400 with that reason, no route.
    fn refused(&self, method: &str, path: &str, reason: Reason) {
        assert_eq!(self.route_for(method, path), Err(reason), "route_for {method} {path:?}");
        match self.decide(method, path) {
            Decision::Deny(d) => assert_eq!((d.denial.reason, d.route, d.response.status), (reason, None, 400), "{method} {path:?}"),
            other => panic!("{method} {path:?} must be refused ({reason:?}): {other:?}"),
        }
    }

    /// A request whose canonical form is (cm, cp): the same route and decision as that form.
    fn same_as(&self, method: &str, path: &str, cm: &str, cp: &str, canon: &Decision) {
        let want = model::route_chosen(self.specs, cm, cp, &self.chosen);
        assert_eq!(self.route_for(method, path), Ok(want), "{method} {path:?} (as {cm} {cp})");
        let got = self.decide(method, path);
        assert_eq!(&got, canon, "{method} {path:?} is not judged as {cm} {cp}");
    }
}

fn route_of(d: &Decision) -> Option<usize> {
    match d {
        Decision::Allow(a) => a.route,
        Decision::Deny(d) => d.route,
        Decision::Wait(_) | Decision::Respond(_) => None,
    }
}

fn check(data: &[u8]) {
    let l = lines(data);
    let options = l.first().map(|b| text(b)).unwrap_or_default();
    let request = l.get(1).map(|b| text(b)).unwrap_or_default();
    let (method, path) = match request.split_once(' ') {
        Some((m, p)) => (m.to_string(), p.to_string()),
        None => ("GET".to_string(), request.clone()),
    };
    let mut route_lines = Vec::new();
    let mut headers = Vec::new();
    for line in l.iter().skip(2) {
        if let Some(r) = line.strip_prefix(b"route ") {
            route_lines.push(format!("route {}", text(r)));
        } else {
            headers.push(header(line));
        }
    }
    let built = build(&options, &route_lines);
    assert!(!route_lines.is_empty() || built.invalid.is_none(), "the default table: {:?}", built.invalid);
    let cfg = match (Config::from_json(&serde_json::to_vec(&built.doc).unwrap()), &built.invalid) {
        (Ok(cfg), None) => cfg,
        (Err(_), Some(_)) => return,
        (Ok(_), Some(why)) => panic!("{} compiled, but the model refuses {why}", built.doc),
        (Err(e), None) => panic!("{} refused: {e}", built.doc),
    };
    let keys: Vec<KeySlot> = inline_keys(&cfg);
    let words: Vec<&str> = options.split(' ').collect();
    let strip = words.contains(&"strip");
    let chosen_name = words.iter().find_map(|w| w.strip_prefix("router="));
    let chosen_metadata: Vec<(String, String, String)> =
        words.iter().filter_map(|w| w.strip_prefix("meta=")).map(metadata_of).collect();
    let lookup = |filter: &str, key: &str| {
        chosen_metadata.iter().find(|(f, k, _)| f == filter && k == key).map(|(_, _, v)| v.clone())
    };
    let ctx = Ctx {
        cfg: &cfg,
        env: Env { now: NOW, keys: &keys, random: [3; 16], key_lookup: &no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified: &NoCache, signatures: &api_auth_filter::jwt::OwnCode },
        specs: &built.specs,
        headers: &headers,
        router: Router { route_name: chosen_name, metadata: Some(&lookup) },
        chosen: Chosen { name: chosen_name, metadata: &chosen_metadata },
    };

    let (cm, cp) = match model::target(&method, &path, strip) {
        Ok(t) => t,
        Err(reason) => {
            ctx.refused(&method, &path, reason);
            return;
        }
    };
    // The canonical form is its own canonical form.
    assert_eq!(model::target(&cm, &cp, strip), Ok((cm.clone(), cp.clone())), "model: {method} {path:?}");
    let canon = ctx.decide(&cm, &cp);
    let want = model::route_chosen(ctx.specs, &cm, &cp, &ctx.chosen);
    assert_eq!(ctx.route_for(&cm, &cp), Ok(want), "route_for {cm} {cp}");
    let metadata = cm == "GET" && cp == METADATA_PATH;
    match &canon {
        Decision::Respond(r) => assert!(metadata && r.status == 200, "{cm} {cp}: answered by the filter"),
        Decision::Wait(w) => panic!("{cm} {cp}: waited for {w:?}"),
        other => {
            assert!(!metadata, "{cm} {cp}: the metadata document was not served");
            assert_eq!(route_of(other), want, "{cm} {cp}: decided on another route");
            if let (Decision::Allow(_), Some(i)) = (other, want) {
                // A public route allows anyone; a protected one only with a credential.
                let public = built.doc["routes"][i]["auth"] == json!("none");
                let credential = headers.iter().any(|(n, _)| n == "authorization" || n == "x-api-key");
                assert!(public || credential, "{cm} {cp}: allowed on protected route {i} without a credential");
            }
        }
    }
    ctx.same_as(&method, &path, &cm, &cp, &canon);

    // Variants of the canonical form: each is judged exactly as it.
    let choice = fnv(data);
    if cp != "/" {
        ctx.same_as(&cm, &format!("{cp}/"), &cm, &cp, &canon);
    }
    if cm == "GET" {
        ctx.same_as("HEAD", &cp, &cm, &cp, &canon);
    }
    let query = format!("{cp}?q=a;b/../c#f");
    ctx.same_as(&cm, &query, &cm, &cp, &canon);
    let params = ["x", "jsessionid=0123", "", "a=b;c", "v=1.0"];
    let param = params[(choice % params.len() as u64) as usize];
    let segments: Vec<&str> = cp.split('/').collect();
    let at = 1 + ((choice >> 8) as usize) % (segments.len() - 1);
    let with_param: Vec<String> =
        segments.iter().enumerate().map(|(i, s)| if i == at { format!("{s};{param}") } else { s.to_string() }).collect();
    let mut with_param = with_param.join("/");
    if (choice >> 16) & 1 == 1 && cp != "/" {
        with_param.push('/');
    }
    if strip {
        ctx.same_as(&cm, &with_param, &cm, &cp, &canon);
    } else {
        ctx.refused(&cm, &with_param, Reason::PathNotNormalized);
        // An encoded parameter, for an upstream that decodes before it splits.
        let encoded = with_param.replacen(';', ["%3B", "%3b"][((choice >> 17) & 1) as usize], 1);
        ctx.refused(&cm, &encoded, Reason::PathNotNormalized);
    }
    if cm.chars().any(|c| c.is_ascii_alphabetic()) {
        let lower = cm.to_ascii_lowercase();
        ctx.refused(&lower, &cp, Reason::MethodInvalid);
        let mixed: String = cm.chars().enumerate().map(|(i, c)| if i == 0 { c.to_ascii_lowercase() } else { c }).collect();
        if mixed != cm {
            ctx.refused(&mixed, &cp, Reason::MethodInvalid);
        }
    }
}

/// One input of the target (the fuzz target and the replay test call it).
pub fn run(data: &[u8]) {
    check(data);
}
