//! Judging a held MCP request once its whole body is read: the call in it against the
//! principal's scopes, answered the JSON-RPC way when refused.

use super::*;

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
        return Err((Reason::InsufficientScope, crate::reply::deny_response(cfg, Some(hold.route), &denial, hold.correlation.as_deref())));
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
