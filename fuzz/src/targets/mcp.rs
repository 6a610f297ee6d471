//! `mcp`: what the filter judges in an MCP body is what a conforming parser reads from the same
//! bytes, or the filter refuses (`mcp::read`, `mcp::judge` on example 003's MCP route).
//!
//! Input: the first byte picks the mode. Odd: the rest is the body, raw. Even: the rest is
//! `\n`-separated pieces that build a near-valid JSON-RPC body with the hostile forms of the
//! issue (duplicate members, escaped names and methods, whitespace, a BOM, a batch, trailing
//! data), so that the interesting bodies are reached quickly.
//!
//! Properties (docs/configuration.md, `routes[].mcp`):
//! - a body the filter reads is one serde_json reads too, and the method, id, tool or prompt
//!   name and resource URI it judges are serde_json's (a `Value`: last member wins), and the
//!   first-member reading (the strict tree rewritten) is the same document: no member was
//!   read two ways;
//! - a body serde_json refuses, a batch, or a body with a duplicate member is refused;
//! - `judge` lets a `tools/call` through for a key only when its scopes grant
//!   `tools:<the name serde_json reads>`, and answers a forbidden one with the contract's
//!   tool error carrying the id as serde_json reads it.

use api_auth_filter::config::Config;
use api_auth_filter::mcp::{self, Ask, HeldHeaders, Hold};
use api_auth_filter::principal::{Kind, Principal};
use serde_json::Value;

use crate::{fnv, lines, EXAMPLES};

/// Config holds Rc (one copy per worker in the filter): one per thread here.
fn config() -> &'static Config {
    thread_local! {
        static C: &'static Config = Box::leak(Box::new(Config::from_json(EXAMPLES[3].as_bytes()).expect("example 003")));
    }
    C.with(|c| *c)
}

/// A JSON string of `text` with some characters escaped (`\uXXXX`, `\/`), chosen by `seed`.
fn escaped(text: &str, seed: u64) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        let pick = (seed >> (i % 60)) & 3;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if pick == 1 => out.push_str("\\/"),
            c if (c as u32) < 0x20 || pick == 2 => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn build(pieces: &[&[u8]], seed: u64) -> Vec<u8> {
    let text = |i: usize, default: &str| pieces.get(i).map_or(default.to_string(), |p| String::from_utf8_lossy(p).into_owned());
    let method = text(0, "tools/call");
    let name = text(1, "agents.deploy");
    let other = text(2, "platform.create_roadmap_item");
    let id = match seed % 4 {
        0 => "1".to_string(),
        1 => escaped(&text(3, "req"), seed >> 7),
        2 => text(3, "7"),
        _ => "null".to_string(),
    };
    let mut members = vec![
        "\"jsonrpc\":\"2.0\"".to_string(),
        format!("\"id\":{id}"),
        format!("\"method\":{}", escaped(&method, seed >> 3)),
        format!("\"params\":{{\"name\":{},\"uri\":{},\"arguments\":{{}}}}", escaped(&name, seed >> 11), escaped(&name, seed >> 13)),
    ];
    // Duplicates of one member, with another value.
    match (seed >> 17) % 5 {
        0 => members.push(format!("\"params\":{{\"name\":{}}}", escaped(&other, seed))),
        1 => members.push(format!("\"method\":{}", escaped(&other, seed))),
        2 => members[3] = format!("\"params\":{{\"name\":{},\"name\":{}}}", escaped(&name, seed), escaped(&other, seed)),
        _ => {}
    }
    if (seed >> 20) & 1 == 1 {
        members.reverse();
    }
    let mut body = format!("{{{}}}", members.join(if (seed >> 21) & 1 == 1 { " ,\n " } else { "," }));
    match (seed >> 22) % 8 {
        0 => body = format!("[{body}]"),
        1 => body = format!("\u{feff}{body}"),
        2 => body.push_str(" {}"),
        3 => body = format!(" \t\r\n{body}\n"),
        _ => {}
    }
    body.into_bytes()
}

/// Whether the parsed `Value` holds a duplicate member anywhere: serde_json keeps the last,
/// so the strict tree rewritten (first and only member) must equal it.
fn same_document(strict: &mcp::Json, value: &Value) -> bool {
    let mut text = String::new();
    strict.write(&mut text);
    serde_json::from_str::<Value>(&text).is_ok_and(|v| &v == value)
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let body = if mode % 2 == 1 { rest.to_vec() } else { build(&lines(rest), fnv(rest)) };
    let serde: Option<Value> = serde_json::from_slice(&body).ok();
    let read = mcp::read(&body);
    let Ok(message) = read else {
        return judge_refuses(&body);
    };
    let value = serde.expect("the filter read a body serde_json refuses");
    assert!(value.is_object(), "a batch or a scalar was read as a message");
    let strict = mcp::parse(&body).expect("read implies parse");
    assert!(same_document(&strict, &value), "a member was read two ways: {}", String::from_utf8_lossy(&body));
    assert_eq!(message.method.as_deref(), value.get("method").and_then(Value::as_str), "method");
    match (&message.id, value.get("id")) {
        (None, None) => {}
        (Some(id), Some(v)) => assert_eq!(serde_json::from_str::<Value>(&id.to_json()).ok().as_ref(), Some(v), "id"),
        (id, v) => panic!("id read as {id:?}, serde_json reads {v:?}"),
    }
    let params = value.get("params");
    let field = |name: &str| params.and_then(|p| p.get(name)).and_then(Value::as_str);
    match &message.ask {
        Ask::Tool(n) => assert_eq!((message.method.as_deref(), Some(n.as_str())), (Some("tools/call"), field("name"))),
        Ask::Prompt(n) if message.method.as_deref() == Some("prompts/get") => assert_eq!(Some(n.as_str()), field("name")),
        Ask::Resource(u) if message.method.as_deref() != Some("completion/complete") => assert_eq!(Some(u.as_str()), field("uri")),
        _ => {}
    }
    judge_allows_only_granted(&body, &message, &value);
}

fn hold(scopes: &[&str]) -> Hold {
    let mut p = Principal::new(Kind::ApiKey);
    p.scopes = api_auth_filter::principal::Names::new(scopes.iter().map(|s| s.to_string()));
    Hold { route: 1, principal: Box::new(p), headers: HeldHeaders::default(), post: true, correlation: None }
}

/// A body `read` refuses is refused by `judge` too, with a JSON-RPC error.
fn judge_refuses(body: &[u8]) {
    if body.is_empty() {
        return;
    }
    let (reason, response) = mcp::judge(config(), &hold(&["tools:*"]), Some(body)).expect_err("a body read refuses was judged allowed");
    assert_eq!(response.status, 400, "{reason:?}");
    let v: Value = serde_json::from_slice(&response.body).expect("a JSON-RPC error");
    assert!(v["error"]["code"].as_i64().is_some_and(|c| c == -32700 || c == -32600), "{v}");
}

fn judge_allows_only_granted(body: &[u8], message: &mcp::Message, value: &Value) {
    let scope_sets: [&[&str]; 3] = [&["tools:agents.*"], &["tools:platform.list_roadmap_items"], &[]];
    for scopes in scope_sets {
        let verdict = mcp::judge(config(), &hold(scopes), Some(body));
        let Ask::Tool(_) = message.ask else {
            assert!(verdict.is_ok(), "only tool calls are scoped on example 003's route");
            continue;
        };
        let name = value["params"]["name"].as_str().unwrap_or_default();
        let granted = api_auth_filter::grants::grants(scopes, &format!("tools:{name}")) && name.bytes().all(mcp::is_tool_name_byte) && !name.is_empty() && name.len() <= mcp::MAX_NAME_BYTES;
        match verdict {
            Ok(_) => assert!(granted, "tools:{name} passed with {scopes:?}"),
            Err((_, response)) => {
                assert!(!granted, "tools:{name} refused with {scopes:?}");
                let v: Value = serde_json::from_slice(&response.body).expect("JSON");
                assert_eq!(response.status, 200);
                assert_eq!(&v["id"], value.get("id").unwrap_or(&Value::Null), "the id as sent");
                assert_eq!(v["result"]["isError"], Value::Bool(true));
            }
        }
    }
}
