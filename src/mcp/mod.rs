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

mod json;
mod judge;
pub mod scope;
mod tools_list;

pub use json::{parse, Json};
pub use judge::{judge, HeldHeaders, Hold, Verdict, FORBIDDEN_CODE};
pub use scope::{is_tool_name_byte, ScopeTemplate, MAX_NAME_BYTES};
pub use tools_list::{filter_tool_list, Framing, ToolFilter, MAX_TOOL_LIST_BYTES, UNREADABLE_CODE};

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
