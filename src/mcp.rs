//! MCP over streamable HTTP (`routes[].mcp`): the JSON-RPC message in a request body, read as a
//! conforming parser reads it, and what it asks for.
//!
//! The upstream executes the call in the body, not the HTTP request, so the filter judges the
//! body — and only a body it reads exactly as the server will. Whatever a conforming parser
//! could read in two ways, or a lenient one differently from a strict one, is refused: a
//! duplicate member anywhere (Python's `json` keeps the last, others the first), invalid
//! UTF-8, a byte-order mark, trailing data, lone surrogates, `NaN`, nesting beyond 128 levels.
//! Escapes are decoded before a name is judged (`"agents\u002edeploy"` is `agents.deploy`).
//! Batches are refused: MCP removed them in 2025-06-18, and the official SDKs no longer read
//! them; one message per request is one decision.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that a duplicate member anywhere refuses.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    /// Members in document order, each name once.
    Object(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as compact JSON, members in document order.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&n.to_string()),
            Json::String(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(name.clone()).to_string());
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v).map(Json::Number).ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members: Vec<(String, Json)> = Vec::new();
        // Small objects are scanned; a large one is checked through a set (no quadratic cost).
        let mut seen: Option<HashSet<String>> = None;
        while let Some(name) = map.next_key::<String>()? {
            let duplicate = match &mut seen {
                Some(set) => !set.insert(name.clone()),
                None => members.iter().any(|(n, _)| *n == name),
            };
            if duplicate {
                return Err(de::Error::custom("duplicate member"));
            }
            if seen.is_none() && members.len() >= 16 {
                let mut set: HashSet<String> = members.iter().map(|(n, _)| n.clone()).collect();
                set.insert(name.clone());
                seen = Some(set);
            }
            let value = map.next_value()?;
            members.push((name, value));
        }
        Ok(Json::Object(members))
    }
}

/// Parses a whole body as one JSON text, strictly (see the module's documentation); `None`
/// when it is not one.
pub fn parse(body: &[u8]) -> Option<Json> {
    // serde_json refuses a BOM, invalid UTF-8, lone surrogates, NaN, trailing data and nesting
    // beyond 128; `Json` refuses duplicate members.
    serde_json::from_slice::<Json>(body).ok()
}

/// A request id as sent: a string, or an integer (its digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Text(String),
    Integer(String),
}

impl Id {
    /// The id as JSON, to echo in a response.
    pub fn to_json(&self) -> String {
        match self {
            Id::Text(s) => serde_json::Value::String(s.clone()).to_string(),
            Id::Integer(digits) => digits.clone(),
        }
    }
}

/// What a message asks of the server, as far as the filter judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// `tools/call` of `params.name`.
    Tool(String),
    /// `prompts/get` of `params.name`, or a completion for that prompt.
    Prompt(String),
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe` of `params.uri`, or a
    /// completion for that resource.
    Resource(String),
    /// `tools/list`: authentication only; the answer is filtered to the key's tools.
    ToolList,
    /// Anything else (initialize, ping, notifications, lists, responses): authentication only.
    Other,
}

/// One JSON-RPC 2.0 message from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `None` for a notification (and for a client's response to the server).
    pub id: Option<Id>,
    /// `None` for a client's response to a server request.
    pub method: Option<String>,
    pub ask: Ask,
}

impl Message {
    /// The name `Mcp-Name` must carry: the tool, prompt or resource.
    pub fn name(&self) -> Option<&str> {
        match &self.ask {
            Ask::Tool(n) | Ask::Prompt(n) | Ask::Resource(n) => Some(n),
            Ask::ToolList | Ask::Other => None,
        }
    }
}

/// Why a body is refused, as JSON-RPC names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// -32700: not one strict JSON text.
    Parse,
    /// -32600: JSON, but not one JSON-RPC 2.0 message the filter can judge.
    Invalid,
}

impl Refusal {
    pub fn code(self) -> i32 {
        match self {
            Refusal::Parse => -32700,
            Refusal::Invalid => -32600,
        }
    }
}

/// Reads one message from a request body.
pub fn read(body: &[u8]) -> Result<Message, (Refusal, Option<Id>)> {
    let json = parse(body).ok_or((Refusal::Parse, None))?;
    let Json::Object(_) = &json else { return Err((Refusal::Invalid, None)) };
    let id = match json.get("id") {
        None => None,
        Some(Json::String(s)) => Some(Id::Text(s.clone())),
        Some(Json::Number(n)) if n.is_i64() || n.is_u64() => Some(Id::Integer(n.to_string())),
        Some(_) => return Err((Refusal::Invalid, None)),
    };
    let invalid = |id: &Option<Id>| (Refusal::Invalid, id.clone());
    if json.get("jsonrpc").and_then(Json::as_str) != Some("2.0") {
        return Err(invalid(&id));
    }
    let answers = json.get("result").is_some() || json.get("error").is_some();
    let Some(method) = json.get("method") else {
        // A client's answer to a server request: an id and exactly one of result and error.
        if id.is_none() || json.get("result").is_some() == json.get("error").is_some() || json.get("params").is_some() {
            return Err(invalid(&id));
        }
        return Ok(Message { id, method: None, ask: Ask::Other });
    };
    let method = method.as_str().ok_or_else(|| invalid(&id))?;
    // A request must not also read as a response; notifications are exactly `notifications/*`.
    let notification = method.starts_with("notifications/");
    if answers || notification != id.is_none() {
        return Err(invalid(&id));
    }
    let params = json.get("params");
    if params.is_some_and(|p| !matches!(p, Json::Object(_))) {
        return Err(invalid(&id));
    }
    let text = |name: &str| params.and_then(|p| p.get(name)).and_then(Json::as_str).map(str::to_string).ok_or_else(|| invalid(&id));
    let ask = match method {
        "tools/call" => Ask::Tool(text("name")?),
        "prompts/get" => Ask::Prompt(text("name")?),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Ask::Resource(text("uri")?),
        "completion/complete" => {
            let reference = params.and_then(|p| p.get("ref")).ok_or_else(|| invalid(&id))?;
            let field = |name: &str| reference.get(name).and_then(Json::as_str).map(str::to_string).ok_or_else(|| invalid(&id));
            match field("type")?.as_str() {
                "ref/prompt" => Ask::Prompt(field("name")?),
                "ref/resource" => Ask::Resource(field("uri")?),
                _ => return Err(invalid(&id)),
            }
        }
        "tools/list" => Ask::ToolList,
        _ => Ask::Other,
    };
    Ok(Message { id, method: Some(method.to_string()), ask })
}

/// A scope template with one variable (`tools:{name}`, `resources:{uri}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeTemplate {
    pub text: String,
    before: String,
    after: String,
    /// `{uri}`: any visible ASCII; `{name}`: MCP's tool-name characters.
    uri: bool,
}

/// The longest name or URI a scope is built from.
pub const MAX_NAME_BYTES: usize = 2048;

impl ScopeTemplate {
    /// `variable` is `name` or `uri`.
    pub fn parse(text: &str, variable: &str) -> Result<ScopeTemplate, String> {
        let marker = format!("{{{variable}}}");
        let (before, after) = text.split_once(&marker).ok_or_else(|| format!("must contain {marker}"))?;
        if before.contains(['{', '}', '*']) || after.contains(['{', '}', '*']) || before.is_empty() {
            return Err(format!("must be a scope with text before {marker}, one {marker}, and no other '{{', '}}' or '*'"));
        }
        Ok(ScopeTemplate { text: text.to_string(), before: before.to_string(), after: after.to_string(), uri: variable == "uri" })
    }

    /// The scope for one name. `Err(template)`: the name can never be granted (characters
    /// outside the set, or too long); the template's text names it in the denial.
    pub fn scope(&self, name: &str) -> Result<String, &str> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_BYTES
            && if self.uri { name.bytes().all(|b| b.is_ascii_graphic() && b != b'*') } else { name.bytes().all(is_tool_name_byte) };
        if !ok {
            return Err(&self.text);
        }
        Ok(format!("{}{}{}", self.before, name, self.after))
    }
}

/// MCP's tool-name characters (2025-11-25: `A-Z a-z 0-9 _ - .`).
pub fn is_tool_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// A JSON-RPC error response.
pub fn error_response(id: Option<&Id>, code: i32, message: &str) -> String {
    let id = id.map_or_else(|| "null".to_string(), Id::to_json);
    let message = serde_json::Value::String(message.to_string());
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{code},\"message\":{message}}}}}")
}

/// A tool's error result (MCP's "error in tool response"): the call was answered, not run.
/// `resultType` is required of servers by MCP 2026-07-28 (the official SDKs refuse a result
/// without it there) and an extra member, which results may carry, to earlier versions.
pub fn tool_error_response(id: &Id, text: &str) -> String {
    let text = serde_json::Value::String(text.to_string());
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":{text}}}],\"isError\":true,\"resultType\":\"complete\"}}}}",
        id.to_json()
    )
}

/// One SSE event carrying a JSON-RPC message, as streamable HTTP servers send it.
pub fn sse_event(json: &str) -> String {
    format!("event: message\ndata: {json}\n\n")
}

/// Whether a client's `Accept` takes only an event stream (then answers go as one SSE event).
/// Absent, `*/*` or `application/json` anywhere: JSON.
pub fn wants_event_stream(accept: &[&[u8]]) -> bool {
    let mut sse = false;
    for value in accept {
        for item in value.split(|b| *b == b',') {
            let media = item.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
            if media.eq_ignore_ascii_case(b"application/json") || media == b"*/*" || media.eq_ignore_ascii_case(b"application/*") {
                return false;
            }
            sse |= media.eq_ignore_ascii_case(b"text/event-stream");
        }
    }
    sse
}

// --- judging a held MCP request -------------------------------------------------------------

/// What the request's headers tell about its body, taken when it was allowed (the headers are
/// not kept while the body is held).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeldHeaders {
    /// Every value of `Mcp-Method` (and its underscore twins).
    pub method: Vec<Vec<u8>>,
    /// Every value of `Mcp-Name` (and its underscore twins).
    pub name: Vec<Vec<u8>>,
    /// The client takes only an event stream: answers go as one SSE event.
    pub event_stream: bool,
    /// A `Content-Encoding` other than `identity`: the body is not the JSON the server reads.
    pub encoded: bool,
}

impl HeldHeaders {
    pub fn of(headers: &crate::credentials::Headers<'_>) -> HeldHeaders {
        use crate::text::is_underscore_twin;
        let mut held = HeldHeaders::default();
        let mut accept = Vec::new();
        for (n, v) in headers.iter() {
            if is_underscore_twin(n, "mcp-method") {
                held.method.push(v.to_vec());
            } else if is_underscore_twin(n, "mcp-name") {
                held.name.push(v.to_vec());
            } else if *n == "accept" {
                accept.push(*v);
            } else if is_underscore_twin(n, "content-encoding") {
                held.encoded |= !v.trim_ascii().eq_ignore_ascii_case(b"identity");
            }
        }
        held.event_stream = wants_event_stream(&accept);
        held
    }
}

/// An allowed request on an MCP route, waiting for its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub route: usize,
    pub principal: Box<crate::principal::Principal>,
    pub headers: HeldHeaders,
    /// A POST always carries one message; another method without a body carries none (GET
    /// opens the server's event stream, DELETE ends a session).
    pub post: bool,
    pub correlation: Option<String>,
}

/// What an allowed MCP call leaves for the answer: `tools/list` answers are filtered to the
/// tools the principal's scopes grant.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    /// The request's id, for the error that replaces an answer the filter cannot read.
    FilterToolList(Option<Id>),
}

/// JSON-RPC code of a call the principal may not make (a server error code: JSON-RPC reserves
/// -32000 to -32099 for them).
pub const FORBIDDEN_CODE: i32 = -32003;

/// Judges a held MCP request on its whole body (`None`: larger than the route allows).
pub fn judge(cfg: &crate::config::Config, hold: &Hold, body: Option<&[u8]>) -> Result<Verdict, (crate::deny::Reason, crate::deny::LocalResponse)> {
    use crate::deny::{Denial, Reason};
    let Some(rules) = cfg.routes.get(hold.route).and_then(|r| r.mcp.as_deref()) else {
        return Err(rpc_denial(cfg, hold, Reason::McpInvalidRequest, None, 400, Refusal::Invalid.code(), "Invalid Request"));
    };
    let Some(body) = body else {
        return Err(rpc_denial(cfg, hold, Reason::BodyTooLarge, None, 413, Refusal::Invalid.code(), "Payload too large"));
    };
    if body.is_empty() && !hold.post {
        return Ok(Verdict::Pass);
    }
    if hold.headers.encoded {
        return Err(rpc_denial(cfg, hold, Reason::McpParseError, None, 400, Refusal::Parse.code(), "Parse error"));
    }
    let message = match read(body) {
        Ok(m) => m,
        Err((refusal, id)) => {
            let (reason, text) = match refusal {
                Refusal::Parse => (Reason::McpParseError, "Parse error"),
                Refusal::Invalid => (Reason::McpInvalidRequest, "Invalid Request"),
            };
            return Err(rpc_denial(cfg, hold, reason, id.as_ref(), 400, refusal.code(), text));
        }
    };
    let agrees = |values: &[Vec<u8>], want: Option<&str>| values.iter().all(|v| Some(v.as_slice()) == want.map(str::as_bytes));
    if !agrees(&hold.headers.method, message.method.as_deref()) || !agrees(&hold.headers.name, message.name()) {
        let text = Reason::McpHeaderMismatch.default_message();
        return Err(rpc_denial(cfg, hold, Reason::McpHeaderMismatch, message.id.as_ref(), 400, Refusal::Invalid.code(), text));
    }
    let template = match &message.ask {
        Ask::Tool(_) => Some(&rules.tools),
        Ask::Prompt(_) => rules.prompts.as_ref(),
        Ask::Resource(_) => rules.resources.as_ref(),
        Ask::ToolList => {
            let filter = rules.filter_tools_list && !hold.principal.full_access;
            return Ok(if filter { Verdict::FilterToolList(message.id.clone()) } else { Verdict::Pass });
        }
        Ask::Other => None,
    };
    let (Some(template), Some(name)) = (template, message.name()) else { return Ok(Verdict::Pass) };
    if hold.principal.full_access {
        return Ok(Verdict::Pass);
    }
    let needed = match template.scope(name) {
        Ok(scope) if crate::grants::grants(&hold.principal.scopes, &scope) => return Ok(Verdict::Pass),
        Ok(scope) => scope,
        Err(text) => text.to_string(),
    };
    let denial = Denial::with_detail(Reason::InsufficientScope, needed);
    if rules.challenge {
        return Err((Reason::InsufficientScope, crate::engine::deny_response(cfg, Some(hold.route), &denial, hold.correlation.as_deref())));
    }
    let format = cfg.routes.get(hold.route).and_then(|r| cfg.formats.get(r.format));
    let text = format.map_or_else(|| Reason::InsufficientScope.default_message().replace("{scope}", denial.detail.as_deref().unwrap_or("")), |f| crate::deny::message(&denial, f));
    let json = match (&message.ask, &message.id) {
        (Ask::Tool(_), Some(id)) => tool_error_response(id, &text),
        (_, id) => error_response(id.as_ref(), FORBIDDEN_CODE, &text),
    };
    Err((Reason::InsufficientScope, rpc_response(cfg, hold, Reason::InsufficientScope, 200, json)))
}

fn rpc_denial(
    cfg: &crate::config::Config,
    hold: &Hold,
    reason: crate::deny::Reason,
    id: Option<&Id>,
    status: u16,
    code: i32,
    text: &str,
) -> (crate::deny::Reason, crate::deny::LocalResponse) {
    (reason, rpc_response(cfg, hold, reason, status, error_response(id, code, text)))
}

/// A JSON-RPC answer from the filter: JSON, or one SSE event when the client takes only those.
fn rpc_response(cfg: &crate::config::Config, hold: &Hold, reason: crate::deny::Reason, status: u16, json: String) -> crate::deny::LocalResponse {
    let (content_type, body) = if hold.headers.event_stream && status == 200 { ("text/event-stream", sse_event(&json)) } else { ("application/json", json) };
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    if let (Some(c), Some(id)) = (&cfg.correlation, &hold.correlation) {
        headers.push((c.header.clone(), id.clone()));
    }
    crate::deny::LocalResponse { status, headers, body: body.into_bytes(), details: format!("api_auth.{}", reason.as_str()), grpc_status: None }
}

// --- filtering a tools/list answer ----------------------------------------------------------

/// The largest `tools/list` answer the filter holds to filter; a larger one is replaced.
pub const MAX_TOOL_LIST_BYTES: usize = 4 << 20;

/// JSON-RPC code of an answer the filter could not read (internal error).
pub const UNREADABLE_CODE: i32 = -32603;

/// How an upstream answer is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Json,
    EventStream,
    /// Neither: a body is replaced by an error.
    Other,
}

impl Framing {
    pub fn of(content_type: Option<&[u8]>) -> Framing {
        let media = content_type.map(|v| v.split(|b| *b == b';').next().unwrap_or_default().trim_ascii());
        match media {
            Some(m) if m.eq_ignore_ascii_case(b"application/json") => Framing::Json,
            Some(m) if m.eq_ignore_ascii_case(b"text/event-stream") => Framing::EventStream,
            _ => Framing::Other,
        }
    }
}

/// A `tools/list` answer on its way back: which tools the principal may see.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolFilter {
    pub route: usize,
    pub scopes: crate::principal::Names,
    pub id: Option<Id>,
    pub correlation: Option<String>,
    /// Known once the response headers came.
    pub framing: Option<Framing>,
    /// The body went over `MAX_TOOL_LIST_BYTES`: replaced, the rest dropped.
    pub replaced: bool,
}

impl ToolFilter {
    /// Whether the principal may call `name` on this route.
    pub fn grants(&self, cfg: &crate::config::Config, name: &str) -> bool {
        let Some(rules) = cfg.routes.get(self.route).and_then(|r| r.mcp.as_deref()) else { return false };
        rules.tools.scope(name).is_ok_and(|scope| crate::grants::grants(&self.scopes, &scope))
    }

    /// The error that replaces an answer the filter cannot read.
    pub fn unreadable(&self) -> Vec<u8> {
        let json = error_response(self.id.as_ref(), UNREADABLE_CODE, "The tool list could not be read");
        match self.framing {
            Some(Framing::EventStream) => sse_event(&json).into_bytes(),
            _ => json.into_bytes(),
        }
    }
}

/// Keeps in every JSON-RPC result's `tools` list only the tools `keep` grants. `None`: the
/// message is not JSON (then the whole answer is replaced).
fn filter_message(text: &[u8], keep: &dyn Fn(&str) -> bool) -> Option<String> {
    let mut json = parse(text)?;
    if let Json::Object(members) = &mut json {
        if let Some((_, Json::Object(result))) = members.iter_mut().find(|(n, _)| n == "result") {
            if let Some((_, Json::Array(tools))) = result.iter_mut().find(|(n, _)| n == "tools") {
                tools.retain(|t| t.get("name").and_then(Json::as_str).is_some_and(keep));
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    json.write(&mut out);
    Some(out)
}

/// A `tools/list` answer with only the tools `keep` grants: a JSON body, or an event stream
/// whose events carrying JSON-RPC messages are filtered (events without data pass as they
/// are). `None`: the answer cannot be read.
pub fn filter_tool_list(body: &[u8], framing: Framing, keep: &dyn Fn(&str) -> bool) -> Option<Vec<u8>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(body.to_vec());
    }
    match framing {
        Framing::Json => filter_message(body, keep).map(String::into_bytes),
        Framing::Other => None,
        Framing::EventStream => {
            let text = std::str::from_utf8(body).ok()?;
            // Line ends are CRLF, LF or CR; an empty line ends an event.
            let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
            let mut out = String::with_capacity(body.len());
            let mut events = normalized.split("\n\n").peekable();
            while let Some(event) = events.next() {
                let last = events.peek().is_none();
                if last && event.is_empty() {
                    break;
                }
                let mut fields = Vec::new();
                let mut data: Option<String> = None;
                for line in event.split('\n') {
                    match line.strip_prefix("data") {
                        Some(rest) if rest.is_empty() || rest.starts_with(':') => {
                            let value = rest.strip_prefix(':').map_or("", |v| v.strip_prefix(' ').unwrap_or(v));
                            let d = data.get_or_insert_with(String::new);
                            if !d.is_empty() {
                                d.push('\n');
                            }
                            d.push_str(value);
                        }
                        _ => fields.push(line),
                    }
                }
                for f in fields {
                    out.push_str(f);
                    out.push('\n');
                }
                if let Some(d) = data.filter(|d| !d.is_empty()) {
                    out.push_str("data: ");
                    out.push_str(&filter_message(d.as_bytes(), keep)?);
                    out.push('\n');
                }
                if !last {
                    out.push('\n');
                }
            }
            Some(out.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(body: &str) -> Result<Ask, Refusal> {
        read(body.as_bytes()).map(|m| m.ask).map_err(|(r, _)| r)
    }

    #[test]
    fn names_are_read_as_a_conforming_parser_reads_them() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"agents.deploy","arguments":{}}}"#;
        assert_eq!(ask(call), Ok(Ask::Tool("agents.deploy".into())));
        let escaped = r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"agents\u002edeploy"}}"#;
        assert_eq!(ask(escaped), Ok(Ask::Tool("agents.deploy".into())));
        let m = read(call.as_bytes()).unwrap();
        assert_eq!(m.id, Some(Id::Integer("1".into())));
        assert_eq!(m.name(), Some("agents.deploy"));
        let sid = read(br#"{"jsonrpc":"2.0","id":"a\"b","method":"ping"}"#).unwrap();
        assert_eq!(sid.id.as_ref().unwrap().to_json(), r#""a\"b""#);
        assert_eq!(ask(r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"p"}}"#), Ok(Ask::Prompt("p".into())));
        assert_eq!(ask(r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}"#), Ok(Ask::Resource("file:///a".into())));
        assert_eq!(
            ask(r#"{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":""}}}"#),
            Ok(Ask::Prompt("p".into()))
        );
        assert_eq!(ask(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#), Ok(Ask::ToolList));
        assert_eq!(ask(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#), Ok(Ask::Other));
        assert_eq!(ask(r#"{"jsonrpc":"2.0","id":9,"result":{}}"#), Ok(Ask::Other));
        assert_eq!(ask(" \r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n"), Ok(Ask::Other), "JSON whitespace around");
    }

    #[test]
    fn what_could_be_read_two_ways_is_refused() {
        let parse_errors: &[&[u8]] = &[
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#,
            b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}",
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"} {}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800"}}"#,
            br#"{"jsonrpc":"2.0","id":NaN,"method":"ping"}"#,
            b"",
            b"not json",
        ];
        for body in parse_errors {
            assert_eq!(read(body).map_err(|(r, _)| r), Err(Refusal::Parse), "{}", String::from_utf8_lossy(body));
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(read(deep.as_bytes()).map_err(|(r, _)| r), Err(Refusal::Parse));
        // Many members: duplicates found past the scanned part too.
        let mut many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        many.push_str("\"k3\":0");
        assert_eq!(read(format!("{{{many}}}").as_bytes()).map_err(|(r, _)| r), Err(Refusal::Parse));
        let invalid = [
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[]}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            r#"{"jsonrpc":"2.0","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#""tools/call""#,
        ];
        for body in invalid {
            assert_eq!(ask(body), Err(Refusal::Invalid), "{body}");
        }
    }

    #[test]
    fn scopes_come_only_from_names_that_can_be_granted() {
        let t = ScopeTemplate::parse("tools:{name}", "name").unwrap();
        assert_eq!(t.scope("agents.deploy").as_deref(), Ok("tools:agents.deploy"));
        for bad in ["", "a b", "a*", "a:b", "a/b", "é", &"a".repeat(MAX_NAME_BYTES + 1)] {
            assert_eq!(t.scope(bad), Err("tools:{name}"), "{bad:?}");
        }
        let r = ScopeTemplate::parse("resources:{uri}", "uri").unwrap();
        assert_eq!(r.scope("file:///a/b").as_deref(), Ok("resources:file:///a/b"));
        assert!(r.scope("file:///a*").is_err());
        for bad in ["tools", "{name}", "tools:*{name}", "tools:{name}{name}", "tools:{tool}"] {
            assert!(ScopeTemplate::parse(bad, "name").is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_echo_the_id_as_sent() {
        let id = Id::Integer("42".into());
        let v: serde_json::Value = serde_json::from_str(&tool_error_response(&id, "Insufficient scope: tools:a")).unwrap();
        assert_eq!(v["id"], 42);
        assert_eq!(v["result"]["isError"], true);
        assert_eq!(v["result"]["content"][0]["text"], "Insufficient scope: tools:a");
        let e: serde_json::Value = serde_json::from_str(&error_response(None, -32700, "Parse error")).unwrap();
        assert_eq!(e["id"], serde_json::Value::Null);
        assert_eq!(e["error"]["code"], -32700);
        assert!(sse_event("{}").starts_with("event: message\ndata: {}\n\n"));
        assert!(wants_event_stream(&[b"text/event-stream"]));
        assert!(!wants_event_stream(&[b"application/json, text/event-stream"]));
        assert!(!wants_event_stream(&[]));
        assert!(!wants_event_stream(&[b"text/event-stream", b"*/*"]));
    }

    #[test]
    fn tool_lists_keep_only_the_granted_tools() {
        let keep = |n: &str| n.starts_with("agents.");
        let json = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"agents.deploy","inputSchema":{}},{"name":"platform.x"},{"nameless":1}],"nextCursor":"c"}}"#;
        let out = filter_tool_list(json, Framing::Json, &keep).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"agents.deploy","inputSchema":{}}],"nextCursor":"c"}}"#
        );
        let sse = "id: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"platform.x\"},{\"name\":\"agents.a\"}]}}\r\n\r\nid: 0\ndata:\n\n";
        let out = String::from_utf8(filter_tool_list(sse.as_bytes(), Framing::EventStream, &keep).unwrap()).unwrap();
        assert_eq!(out, "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"agents.a\"}]}}\n\nid: 0\n\n");
        // Data split over lines is one message.
        let split = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\ndata: \"result\":{\"tools\":[{\"name\":\"platform.x\"}]}}\n\n";
        let out = String::from_utf8(filter_tool_list(split.as_bytes(), Framing::EventStream, &keep).unwrap()).unwrap();
        assert!(out.contains(r#""tools":[]"#) && !out.contains("platform.x"), "{out}");
        // What cannot be read is never passed.
        assert_eq!(filter_tool_list(b"<html>", Framing::Json, &keep), None);
        assert_eq!(filter_tool_list(b"{}", Framing::Other, &keep), None);
        assert_eq!(filter_tool_list(b"data: not json\n\n", Framing::EventStream, &keep), None);
        assert_eq!(filter_tool_list(br#"{"a":1,"a":2}"#, Framing::Json, &keep), None);
        assert_eq!(filter_tool_list(b"", Framing::Other, &keep), Some(Vec::new()), "no body: nothing to filter");
    }
}
