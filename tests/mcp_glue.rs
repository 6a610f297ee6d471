//! MCP routes in the glue, against the mock host: the body is held and judged whole, whatever
//! its chunks; a call the key's scopes do not grant never goes on; waits for a key lookup keep
//! the body; the contract's tool error carries the request's id.

use api_auth_filter::glue::mock::MockHost;
use api_auth_filter::glue::{Action, Stream, Worker};
use serde_json::{json, Value};

const NOW_MS: u64 = 1_790_000_000_000;
const AGENTS_KEY: &str = "mk_agents_key";
const REMOTE_KEY: &str = "mk_remote_key";

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

fn config(mcp: Value) -> Value {
    json!({
        "api_keys": {
            "prefixes": ["mk_"],
            "keys": [{ "id": "key_agents", "sha256": sha256_hex(AGENTS_KEY.as_bytes()), "scopes": ["tools:agents.*"] }],
            "lookup": { "cluster": "keys", "path": "/lookup", "timeout_ms": 500, "cache_ttl_s": 30 }
        },
        "routes": [{ "match": { "prefix": "/mcp" }, "auth": {}, "errors": "error", "mcp": mcp }],
        "correlation_id": { "header": "x-correlation-id", "generate": false }
    })
}

fn worker(mcp: Value) -> Worker<MockHost> {
    Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&config(mcp)).unwrap()).expect("configuration loads")
}

fn call(id: Value, tool: &str) -> Vec<u8> {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": tool, "arguments": {} } }).to_string().into_bytes()
}

/// Sends a POST with `body` in chunks of `chunk` bytes; the action of the last callback.
fn post(w: &Worker<MockHost>, ctx: u32, key: &str, headers: &[(&str, &[u8])], body: &[u8], chunk: usize) -> Action {
    let mut all: Vec<(&str, &[u8])> = vec![("x-api-key", key.as_bytes())];
    all.extend_from_slice(headers);
    w.host.start(ctx, "POST", "/mcp", &all);
    let first = w.on_request_headers(ctx, body.is_empty());
    if body.is_empty() {
        return first;
    }
    assert_eq!(first, Action::Pause, "headers held until the body is judged");
    let pieces: Vec<&[u8]> = body.chunks(chunk).collect();
    let mut last = Action::Pause;
    for (i, piece) in pieces.iter().enumerate() {
        let size = w.host.push_body(ctx, piece);
        last = w.on_request_body(ctx, size, i + 1 == pieces.len());
        if w.host.request(ctx).answered.is_some() {
            // A local reply ends the stream: Envoy delivers no more of the body.
            return last;
        }
        if i + 1 < pieces.len() {
            assert_eq!(last, Action::Pause, "held while the body comes");
        }
    }
    last
}

/// A local answer: status, headers, body as JSON.
type Answer = (u16, Vec<(String, String)>, Value);

fn answer(w: &Worker<MockHost>, ctx: u32) -> Option<Answer> {
    w.host.request(ctx).answered.map(|(s, h, b)| (s, h, serde_json::from_slice(&b).unwrap_or(Value::Null)))
}

#[test]
fn a_granted_tool_goes_on_and_another_is_the_contracts_tool_error() {
    let w = worker(json!({}));
    // Split inside the tool's name: judged on the whole body.
    assert_eq!(post(&w, 1, AGENTS_KEY, &[], &call(json!(7), "agents.deploy"), 3), Action::Continue);
    assert_eq!(answer(&w, 1), None);
    assert_eq!(w.stream(1), None, "nothing held once it went on");

    assert_eq!(post(&w, 2, AGENTS_KEY, &[("x-correlation-id", b"cid-2")], &call(json!("req-9"), "platform.create_roadmap_item"), 5), Action::Pause);
    let (status, headers, body) = answer(&w, 2).expect("answered by the filter");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "jsonrpc": "2.0", "id": "req-9", "result": { "content": [{ "type": "text", "text": "Insufficient scope: tools:platform.create_roadmap_item" }], "isError": true, "resultType": "complete" } })
    );
    assert!(headers.contains(&("content-type".into(), "application/json".into())), "{headers:?}");
    assert!(headers.contains(&("x-correlation-id".into(), "cid-2".into())), "{headers:?}");
    assert_eq!(w.host.request(2).resumed, 0);
    w.on_tick();
    assert_eq!(w.host.counter("api_auth.denied.insufficient_scope"), 1);
    assert_eq!(w.host.counter("api_auth.allowed"), 1);
}

#[test]
fn an_event_stream_client_gets_one_event_and_a_step_up_route_a_challenge() {
    let w = worker(json!({}));
    assert_eq!(post(&w, 1, AGENTS_KEY, &[("accept", b"text/event-stream")], &call(json!(1), "platform.x"), 64), Action::Pause);
    let (status, headers, body) = w.host.request(1).answered.unwrap();
    assert_eq!(status, 200);
    assert!(headers.contains(&("content-type".into(), "text/event-stream".into())), "{headers:?}");
    let text = String::from_utf8(body).unwrap();
    let data = text.strip_prefix("event: message\ndata: ").and_then(|t| t.strip_suffix("\n\n")).expect("one SSE event");
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!((event["id"].clone(), event["result"]["isError"].clone()), (json!(1), json!(true)));

    let w = worker(json!({ "scope_denial": "challenge" }));
    assert_eq!(post(&w, 1, AGENTS_KEY, &[], &call(json!(1), "platform.x"), 64), Action::Pause);
    let (status, headers, _) = answer(&w, 1).unwrap();
    assert_eq!(status, 403);
    let challenge = headers.iter().find(|(n, _)| n == "www-authenticate").map(|(_, v)| v.as_str()).expect("a challenge");
    assert!(challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"tools:platform.x\""), "{challenge}");
}

#[test]
fn bodies_read_two_ways_or_too_large_are_refused_and_never_go_on() {
    let w = worker(json!({ "max_body_bytes": 256 }));
    let dup = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"agents.deploy","name":"platform.x"}}"#;
    let cases: Vec<(&[u8], u16, &str, i64)> = vec![
        (dup, 400, "api_auth.mcp_parse_error", -32700),
        (b"\xef\xbb\xbf{}", 400, "api_auth.mcp_parse_error", -32700),
        (br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, 400, "api_auth.mcp_invalid_request", -32600),
        (&[b' '; 300], 413, "api_auth.body_too_large", -32600),
    ];
    for (i, (body, want, details, code)) in cases.into_iter().enumerate() {
        let ctx = 10 + i as u32;
        assert_eq!(post(&w, ctx, AGENTS_KEY, &[], body, 7), Action::Pause, "case {i}");
        let r = w.host.request(ctx);
        let (status, _, bytes) = r.answered.clone().expect("answered");
        assert_eq!(status, want, "case {i}");
        assert_eq!(r.details.as_ref().map(|d| d.0.as_str()), Some(details), "case {i}");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], json!(code), "case {i}: {v}");
        assert_eq!(r.resumed, 0);
    }
    // Mcp-Name naming another tool than the body.
    assert_eq!(post(&w, 20, AGENTS_KEY, &[("mcp-name", b"agents.deploy")], &call(json!(1), "agents.other"), 64), Action::Pause);
    assert_eq!(w.host.request(20).details.map(|d| d.0).as_deref(), Some("api_auth.mcp_header_mismatch"));
    assert_eq!(post(&w, 21, AGENTS_KEY, &[("mcp_method", b"tools/call"), ("mcp-name", b"agents.deploy")], &call(json!(1), "agents.deploy"), 64), Action::Continue);
    // An empty POST carries no message: refused. A GET without a body carries no call: passes.
    assert_eq!(post(&w, 22, AGENTS_KEY, &[], b"", 1), Action::Pause);
    assert_eq!(answer(&w, 22).map(|a| a.0), Some(400));
    w.host.start(23, "GET", "/mcp", &[("x-api-key", AGENTS_KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(23, true), Action::Continue);
    // A GET with a body is judged like a POST.
    w.host.start(24, "GET", "/mcp", &[("x-api-key", AGENTS_KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(24, false), Action::Pause);
    let body = call(json!(1), "platform.x");
    let n = w.host.push_body(24, &body);
    assert_eq!(w.on_request_body(24, n, true), Action::Pause);
    assert_eq!(answer(&w, 24).map(|a| a.0), Some(200));
    assert!(matches!(w.stream(24), None | Some(Stream::Forwarded { .. })));
}

#[test]
fn a_call_waiting_for_the_key_service_is_judged_with_the_whole_body() {
    let w = worker(json!({}));
    let body = call(json!(3), "agents.deploy");
    w.host.start(5, "POST", "/mcp", &[("x-api-key", REMOTE_KEY.as_bytes())]);
    assert_eq!(w.on_request_headers(5, false), Action::Pause);
    assert!(matches!(w.stream(5), Some(Stream::WaitingForVerdict { .. })));
    let n = w.host.push_body(5, &body);
    assert_eq!(w.on_request_body(5, n, true), Action::Pause, "the body came while the lookup is out");
    let lookup = w.host.calls.borrow().iter().find(|c| c.cluster == "keys").cloned().expect("a lookup");
    let entry = json!({ "id": "key_remote", "sha256": sha256_hex(REMOTE_KEY.as_bytes()), "status": "active", "scopes": ["tools:platform.*"] });
    let size = w.host.answer(200, entry.to_string().as_bytes());
    w.on_call_response(lookup.token, size);
    // Resumed by the root context: decided with the body that arrived, and refused.
    let (status, _, v) = answer(&w, 5).expect("answered");
    assert_eq!((status, v["result"]["isError"].clone(), v["id"].clone()), (200, json!(true), json!(3)));
    assert_eq!(w.host.request(5).resumed, 0, "never let go");
    // The same key on a tool its scopes grant.
    assert_eq!(post(&w, 6, REMOTE_KEY, &[], &call(json!(4), "platform.list_roadmap_items"), 9), Action::Continue);
}

fn list_tools(w: &Worker<MockHost>, ctx: u32, key: &str) {
    let body = json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/list" }).to_string();
    assert_eq!(post(w, ctx, key, &[], body.as_bytes(), 4), Action::Continue);
}

#[test]
fn a_tool_list_answer_shows_only_the_granted_tools_or_an_error() {
    let w = worker(json!({}));
    let answer = json!({ "jsonrpc": "2.0", "id": 5, "result": { "tools": [{ "name": "agents.deploy" }, { "name": "platform.x" }, { "name": "agents.stop" }] } }).to_string();
    // JSON in two chunks: held to the end, then filtered; the length goes.
    list_tools(&w, 1, AGENTS_KEY);
    w.host.respond(1, &[(":status", b"200"), ("content-type", b"application/json"), ("content-length", answer.len().to_string().as_bytes())], b"");
    assert_eq!(w.on_response_headers(1), Action::Continue);
    assert_eq!(w.host.request(1).response_headers.iter().find(|(n, _)| n == "content-length"), None);
    let (a, b) = answer.as_bytes().split_at(20);
    let n = w.host.respond(1, &[], a);
    assert_eq!(w.on_response_body(1, n, false), Action::Pause);
    let n = w.host.respond(1, &[], b);
    assert_eq!(w.on_response_body(1, n, true), Action::Continue);
    let v: Value = serde_json::from_slice(&w.host.request(1).response_body).unwrap();
    assert_eq!(v["result"]["tools"], json!([{ "name": "agents.deploy" }, { "name": "agents.stop" }]));
    assert_eq!(w.stream(1), None);
    // An answer that is not JSON is replaced by an error with the request's id.
    list_tools(&w, 2, AGENTS_KEY);
    w.host.respond(2, &[(":status", b"200"), ("content-type", b"text/html")], b"");
    w.on_response_headers(2);
    let n = w.host.respond(2, &[], answer.as_bytes());
    assert_eq!(w.on_response_body(2, n, true), Action::Continue);
    let r = w.host.request(2);
    let v: Value = serde_json::from_slice(&r.response_body).unwrap();
    assert_eq!((v["id"].clone(), v["error"]["code"].clone()), (json!(5), json!(-32603)));
    assert!(r.response_headers.contains(&("content-type".into(), b"application/json".to_vec())));
    // Trailers end a held answer, filtered too.
    list_tools(&w, 3, AGENTS_KEY);
    w.host.respond(3, &[(":status", b"200"), ("content-type", b"application/json")], b"");
    w.on_response_headers(3);
    let n = w.host.respond(3, &[], answer.as_bytes());
    assert_eq!(w.on_response_body(3, n, false), Action::Pause);
    assert_eq!(w.on_response_trailers(3), Action::Continue);
    assert!(!String::from_utf8(w.host.request(3).response_body).unwrap().contains("platform.x"));
    // Other calls' answers are never held.
    assert_eq!(post(&w, 4, AGENTS_KEY, &[], &call(json!(1), "agents.deploy"), 64), Action::Continue);
    w.host.respond(4, &[(":status", b"200"), ("content-type", b"application/json")], b"");
    w.on_response_headers(4);
    let n = w.host.respond(4, &[], b"{\"partial\":");
    assert_eq!(w.on_response_body(4, n, false), Action::Continue);
    // Full access sees everything, unfiltered and unheld.
    let full = Worker::configure(MockHost::new(NOW_MS), &serde_json::to_vec(&json!({
        "api_keys": { "prefixes": ["mk_"], "keys": [{ "id": "k", "sha256": sha256_hex(AGENTS_KEY.as_bytes()), "scopes": ["*"] }] },
        "routes": [{ "match": { "prefix": "/mcp" }, "auth": {}, "mcp": { "filter_tools_list": false } }]
    })).unwrap()).unwrap();
    list_tools(&full, 5, AGENTS_KEY);
    assert_eq!(full.stream(5), None, "filter_tools_list off: nothing held");
}

#[test]
fn an_oversized_tool_list_is_replaced_and_the_rest_dropped() {
    let w = worker(json!({}));
    list_tools(&w, 1, AGENTS_KEY);
    w.host.respond(1, &[(":status", b"200"), ("content-type", b"text/event-stream")], b"");
    w.on_response_headers(1);
    let big = vec![b'x'; api_auth_filter::mcp::MAX_TOOL_LIST_BYTES + 1];
    let n = w.host.respond(1, &[], &big);
    assert_eq!(w.on_response_body(1, n, false), Action::Continue);
    let body = String::from_utf8(w.host.request(1).response_body).unwrap();
    assert!(body.starts_with("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"error\""), "{}", &body[..80.min(body.len())]);
    assert!(matches!(w.stream(1), Some(Stream::FilteringTools(f)) if f.replaced), "what follows is dropped");
}

#[test]
fn prompts_and_resources_need_the_scopes_their_templates_name() {
    // The agents key holds only tools:agents.*: a prompt or resource the route maps to another
    // scope is refused with the JSON-RPC error, not a tool result; one its scope grants goes on.
    let w = worker(json!({ "prompts": "tools:agents.{name}", "resources": "tools:{uri}" }));
    let message = |id: i64, method: &str, params: Value| json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string().into_bytes();
    assert_eq!(post(&w, 1, AGENTS_KEY, &[], &message(1, "prompts/get", json!({ "name": "deploy" })), 4), Action::Continue, "tools:agents.deploy");
    assert_eq!(post(&w, 2, AGENTS_KEY, &[], br#"{"jsonrpc":"2.0","id":2,"method":"prompts\/get","params":{"name":"deploy\u002ex"}}"#, 4), Action::Continue, "escapes decoded");
    assert_eq!(post(&w, 3, AGENTS_KEY, &[], &message(3, "resources/read", json!({ "uri": "agents.logs" })), 4), Action::Continue, "tools:agents.logs");
    for (ctx, method, params, scope) in [
        // A name no scope can be built from: refused, the template named.
        (4, "prompts/get", json!({ "name": "../platform" }), "tools:agents.{name}"),
        (5, "resources/read", json!({ "uri": "platform.roadmap" }), "tools:platform.roadmap"),
        (6, "resources/subscribe", json!({ "uri": "platform.roadmap" }), "tools:platform.roadmap"),
    ] {
        assert_eq!(post(&w, ctx, AGENTS_KEY, &[], &message(ctx as i64, method, params), 4), Action::Pause, "{method}");
        let (status, _, body) = answer(&w, ctx).expect("answered by the filter");
        assert_eq!(status, 200, "{method}");
        assert_eq!(body["id"], ctx, "{method}");
        assert_eq!(body["error"]["code"], -32003, "{method}: {body}");
        assert_eq!(body["error"]["message"], format!("Insufficient scope: {scope}"), "{method}");
        assert!(body.get("result").is_none(), "{method}: a JSON-RPC error, not a tool result");
    }
    // Without a template, prompts and resources need authentication only.
    let open = worker(json!({}));
    assert_eq!(post(&open, 1, AGENTS_KEY, &[], &message(1, "resources/read", json!({ "uri": "platform.roadmap" })), 4), Action::Continue);
}
