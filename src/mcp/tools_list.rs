//! Filtering a `tools/list` answer to the tools the principal's scopes grant.

use super::*;

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
