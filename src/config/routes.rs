//! `routes`: what each route matches (path, prefix, template, or the router's choice), the
//! credentials and requirements of its `auth`, its error format, webhook and MCP rules.

use std::collections::HashMap;

use super::raw::{RawAuth, RawAuthSpec, RawMcp, RawRoute};
use super::ConfigError;
use crate::principal::{Kind, Kinds};
use crate::routes::{is_plain_name, PathPattern};

#[derive(Debug)]
pub struct Route {
    /// Upper-case methods; `None` is any method.
    pub methods: Option<Vec<String>>,
    /// For a route bound to the router's choice (`binding`), the empty prefix.
    pub pattern: PathPattern,
    pub binding: Option<Binding>,
    /// `None` is a public route (`auth: "none"`).
    pub auth: Option<AuthRequirements>,
    /// Index into `Config::webhooks`: the body signature that must verify.
    pub webhook: Option<usize>,
    pub format: usize,
    /// The route serves MCP: a request's JSON-RPC body is judged (`routes[].mcp`).
    pub mcp: Option<Box<McpRules>>,
}

/// `routes[].mcp`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpRules {
    pub tools: crate::mcp::scope::ScopeTemplate,
    pub prompts: Option<crate::mcp::scope::ScopeTemplate>,
    pub resources: Option<crate::mcp::scope::ScopeTemplate>,
    pub max_body_bytes: u64,
    /// Insufficient scope on `tools/call` answers 403 with a step-up challenge instead of a
    /// tool error.
    pub challenge: bool,
    pub filter_tools_list: bool,
}

/// `routes[].mcp.max_body_bytes` when not set.
pub const DEFAULT_MCP_BODY_BYTES: u64 = 1 << 20;

/// The most `routes[].mcp.max_body_bytes` may be: the body is held in the worker's memory.
pub const MAX_MCP_BODY_BYTES: u64 = 16 << 20;

/// A route that follows the route Envoy's router selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Name(String),
    /// `filter_metadata.<filter>.<key>` of the selected route equals `value`.
    Metadata { filter: String, key: String, value: String },
}

#[derive(Debug)]
pub struct AuthRequirements {
    /// The kinds of credential the route takes (`auth.credentials`; every kind when not set).
    pub kinds: Kinds,
    /// Indexes of the providers accepted here; `None` is every provider.
    pub providers: Option<Vec<usize>>,
    pub permissions: Vec<Requirement>,
    pub scopes: Vec<Requirement>,
    pub roles: Vec<String>,
    pub organization: bool,
    pub workspace: bool,
}

/// A required scope or permission, possibly naming template variables (`tools:agents.{tool}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Literal(String),
    Template { text: String, pieces: Vec<Piece> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Capture(usize),
}

impl Requirement {
    /// The requirement for one request. `Err(text)` when a captured segment is not a plain name:
    /// such a requirement can never be met (the text is used in the denial).
    pub fn resolve<'a>(&'a self, captures: &[&str]) -> Result<std::borrow::Cow<'a, str>, &'a str> {
        match self {
            Requirement::Literal(s) => Ok(std::borrow::Cow::Borrowed(s)),
            Requirement::Template { text, pieces } => {
                let mut out = String::with_capacity(text.len());
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Capture(i) => match captures.get(*i) {
                            Some(v) if is_plain_name(v) => out.push_str(v),
                            _ => return Err(text),
                        },
                    }
                }
                Ok(std::borrow::Cow::Owned(out))
            }
        }
    }
}

pub(super) struct RouteContext<'a> {
    pub(super) formats: &'a HashMap<String, usize>,
    pub(super) default_format: usize,
    pub(super) have_keys: bool,
    /// Whether some provider introspects opaque tokens.
    pub(super) introspects: bool,
    pub(super) providers: &'a [&'a str],
    pub(super) webhooks: &'a [&'a str],
}

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_route(path: &str, r: RawRoute, ctx: &RouteContext<'_>) -> Result<Route, ConfigError> {
    let m = r.matcher;
    let methods = match m.methods {
        Some(list) => {
            if list.is_empty() {
                return Err(ConfigError::new(format!("{path}.match.methods"), "must not be empty (leave it out for any method)"));
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, method) in list.iter().enumerate() {
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(ConfigError::new(format!("{path}.match.methods[{i}]"), "not an HTTP method"));
                }
                out.push(method.to_ascii_uppercase());
            }
            // HEAD is judged as GET (routes::canonical_method): a route for HEAD alone would
            // judge every GET.
            if let Some(i) = out.iter().position(|m| m == "HEAD") {
                if !out.iter().any(|m| m == "GET") {
                    return Err(ConfigError::new(format!("{path}.match.methods[{i}]"), "HEAD is judged as GET: list GET instead"));
                }
                out.retain(|m| m != "HEAD");
            }
            Some(out)
        }
        None => None,
    };
    let mut variables: Vec<String> = Vec::new();
    let mut binding = None;
    let pattern = match (m.path, m.prefix, m.template, m.route_name, m.route_metadata) {
        (Some(p), None, None, None, None) => PathPattern::exact(&route_path(&format!("{path}.match.path"), p)?),
        (None, Some(p), None, None, None) => PathPattern::prefix(&route_path(&format!("{path}.match.prefix"), p)?),
        (None, None, Some(t), None, None) => {
            let tpath = format!("{path}.match.template");
            let t = route_path(&tpath, t)?;
            let (pattern, names) = PathPattern::template(&t).map_err(|e| ConfigError::new(tpath, e))?;
            variables = names;
            pattern
        }
        (None, None, None, Some(name), None) => {
            if name.is_empty() {
                return Err(ConfigError::new(format!("{path}.match.route_name"), "must not be empty"));
            }
            binding = Some(Binding::Name(name));
            PathPattern::prefix("/")
        }
        (None, None, None, None, Some(md)) => {
            if md.filter.is_empty() || md.key.is_empty() {
                return Err(ConfigError::new(format!("{path}.match.route_metadata"), "filter and key must not be empty"));
            }
            binding = Some(Binding::Metadata { filter: md.filter, key: md.key, value: md.value });
            PathPattern::prefix("/")
        }
        _ => {
            return Err(ConfigError::new(
                format!("{path}.match"),
                "exactly one of path, prefix, template, route_name or route_metadata is required",
            ))
        }
    };
    let format = match &r.errors {
        Some(name) => *ctx
            .formats
            .get(name.as_str())
            .ok_or_else(|| ConfigError::new(format!("{path}.errors"), format!("unknown error format '{name}'")))?,
        None => ctx.default_format,
    };
    let webhook = match &r.webhook {
        Some(name) => Some(
            ctx.webhooks
                .iter()
                .position(|w| w == name)
                .ok_or_else(|| ConfigError::new(format!("{path}.webhook"), format!("unknown webhook '{name}'")))?,
        ),
        None => None,
    };
    let auth = match r.auth {
        RawAuth::None => None,
        RawAuth::Required(spec) => Some(compile_auth(&format!("{path}.auth"), spec, &variables, ctx)?),
    };
    let mcp = match r.mcp {
        Some(raw) => {
            if auth.is_none() {
                return Err(ConfigError::new(format!("{path}.mcp"), "an MCP route needs auth: its scopes are the principal's"));
            }
            if webhook.is_some() {
                return Err(ConfigError::new(format!("{path}.mcp"), "a route is a webhook or serves MCP, not both"));
            }
            Some(Box::new(compile_mcp(&format!("{path}.mcp"), raw)?))
        }
        None => None,
    };
    Ok(Route { methods, pattern, binding, auth, webhook, format, mcp })
}

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_mcp(path: &str, raw: RawMcp) -> Result<McpRules, ConfigError> {
    use crate::mcp::scope::ScopeTemplate;
    let template = |field: &str, text: &str, variable: &str| ScopeTemplate::parse(text, variable).map_err(|e| ConfigError::new(format!("{path}.{field}"), e));
    let tools = template("tools", raw.tools.as_deref().unwrap_or("tools:{name}"), "name")?;
    let prompts = raw.prompts.as_deref().map(|t| template("prompts", t, "name")).transpose()?;
    let resources = raw.resources.as_deref().map(|t| template("resources", t, "uri")).transpose()?;
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MCP_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > MAX_MCP_BODY_BYTES {
        return Err(ConfigError::new(format!("{path}.max_body_bytes"), format!("must be between 1 and {MAX_MCP_BODY_BYTES}")));
    }
    let challenge = match raw.scope_denial.as_deref() {
        None | Some("tool_error") => false,
        Some("challenge") => true,
        Some(_) => return Err(ConfigError::new(format!("{path}.scope_denial"), "must be \"tool_error\" or \"challenge\"")),
    };
    Ok(McpRules { tools, prompts, resources, max_body_bytes, challenge, filter_tools_list: raw.filter_tools_list.unwrap_or(true) })
}

pub(super) fn route_path(path: &str, p: String) -> Result<String, ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::new(path, "must start with '/'"));
    }
    if p.contains(['?', '#']) {
        return Err(ConfigError::new(path, "matching ignores the query string; leave it out"));
    }
    if p.contains(';') {
        return Err(ConfigError::new(path, "a path with ';' parameters never matches: requests carrying them are refused, or matched without them"));
    }
    if !crate::routes::is_normalized(&p) {
        return Err(ConfigError::new(path, "never matches: no empty, '.' or '..' segment, backslash or percent-encoded slash or unreserved character"));
    }
    Ok(p)
}

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_auth(path: &str, spec: RawAuthSpec, variables: &[String], ctx: &RouteContext<'_>) -> Result<AuthRequirements, ConfigError> {
    // Every kind this configuration can verify: opaque tokens only where a provider introspects.
    let mut kinds = Kind::ALL.into_iter().filter(|k| *k != Kind::Opaque || ctx.introspects).fold(Kinds::NONE, Kinds::with);
    if let Some(words) = &spec.credentials {
        if words.is_empty() {
            return Err(ConfigError::new(format!("{path}.credentials"), "must not be empty (use auth: \"none\" for a public route)"));
        }
        kinds = Kinds::NONE;
        for (i, word) in words.iter().enumerate() {
            let Some(kind) = Kind::parse(word) else {
                let names: Vec<String> = Kind::ALL.iter().map(|k| format!("\"{}\"", k.as_str())).collect();
                return Err(ConfigError::new(format!("{path}.credentials[{i}]"), format!("must be {}", names.join(" or "))));
            };
            kinds = kinds.with(kind);
        }
        if kinds == Kinds::NONE.with(Kind::ApiKey) && !ctx.have_keys {
            return Err(ConfigError::new(format!("{path}.credentials"), "accepts only API keys but no api_keys section is configured"));
        }
        if kinds == Kinds::NONE.with(Kind::Jwt) && ctx.providers.is_empty() {
            return Err(ConfigError::new(format!("{path}.credentials"), "accepts only JWTs but no provider is configured"));
        }
        if let Some(i) = words.iter().position(|w| w == Kind::Opaque.as_str()).filter(|_| !ctx.introspects) {
            return Err(ConfigError::new(format!("{path}.credentials[{i}]"), "accepts opaque tokens but no provider has introspection"));
        }
    }
    let providers = match &spec.providers {
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let idx = ctx
                    .providers
                    .iter()
                    .position(|p| p == name)
                    .ok_or_else(|| ConfigError::new(format!("{path}.providers[{i}]"), format!("unknown provider '{name}'")))?;
                out.push(idx);
            }
            Some(out)
        }
        None => None,
    };
    let permissions = compile_requirements(&format!("{path}.permissions"), &spec.permissions, variables)?;
    let scopes = compile_requirements(&format!("{path}.scopes"), &spec.scopes, variables)?;
    for (i, role) in spec.roles.iter().enumerate() {
        if role.is_empty() {
            return Err(ConfigError::new(format!("{path}.roles[{i}]"), "must not be empty"));
        }
    }
    Ok(AuthRequirements {
        kinds,
        providers,
        permissions,
        scopes,
        roles: spec.roles,
        organization: spec.organization,
        workspace: spec.workspace,
    })
}

#[inline(never)] // one function for V8's compiler: see `config::compile`
pub(super) fn compile_requirements(path: &str, items: &[String], variables: &[String]) -> Result<Vec<Requirement>, ConfigError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, text) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        if text.is_empty() || text.contains('*') {
            return Err(ConfigError::new(ipath, "a requirement must be a non-empty name without '*'"));
        }
        if !text.contains('{') && !text.contains('}') {
            out.push(Requirement::Literal(text.clone()));
            continue;
        }
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').map(|c| c + open).ok_or_else(|| ConfigError::new(&ipath, "unclosed '{'"))?;
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let name = &rest[open + 1..close];
            let idx = variables
                .iter()
                .position(|v| v == name)
                .ok_or_else(|| ConfigError::new(&ipath, format!("{{{name}}} is not a variable of the route's template")))?;
            pieces.push(Piece::Capture(idx));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(ConfigError::new(ipath, "unmatched '}'"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        out.push(Requirement::Template { text: text.clone(), pieces });
    }
    Ok(out)
}
