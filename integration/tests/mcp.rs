//! Contract 003's MCP half end to end: the official MCP Python SDK as the server behind Envoy
//! and as the client in front of it, example 003 in the filter. A key's scopes decide which
//! tools run; a forbidden one comes back as the contract's error in the tool response and
//! never runs; an OAuth user runs every tool; bodies a server could read otherwise than the
//! filter are refused before anything reaches the server.

use std::time::Duration;

use api_auth_integration::mcp::{mcp_client, Answers, McpServer};
use api_auth_integration::*;
use serde_json::{json, Value};

const FULL: &str = "cf_ak_example_full_access";
const AGENTS: &str = "cf_ak_example_agents_only";
const LIST: &str = "cf_ak_example_list_roadmap";
const TOOLS: [&str; 4] = ["agents.deploy", "agents.stop", "platform.create_roadmap_item", "platform.list_roadmap_items"];

/// Envoy with example 003 in front of `server`, its JWKS served for `issuer`.
fn start(server: &McpServer, issuer: &Issuer) -> (Server, Envoy) {
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let envoy = Envoy::start(EnvoyOpts::new(example("003"), server.port()).cluster("clerk_jwks", jwks.port()).shipped(&[Shipped::AccessLog]).allow_underscore_headers());
    (jwks, envoy)
}

fn oauth_token(issuer: &Issuer) -> String {
    let now = unix_now();
    issuer.token("k1", &json!({ "iss": "https://your-app.clerk.accounts.dev", "sub": "user_human", "org_id": "org_abc123", "iat": now, "nbf": now - 1, "exp": now + 300 }))
}

fn contract_rows(answers: Answers) {
    let server = McpServer::start(answers);
    let issuer = Issuer::new(&["k1"]);
    let (_jwks, envoy) = start(&server, &issuer);
    let url = format!("http://127.0.0.1:{}/v1/mcp", envoy.port());
    let denied = |tool: &str| json!({ "is_error": true, "text": format!("Insufficient scope: tools:{tool}") });
    let ran = |tool: &str| json!({ "is_error": false, "text": format!("{tool} ran") });
    // Wait for the JWKS, so the OAuth row does not depend on the first fetch's timing.
    assert!(wait_until(Duration::from_secs(10), || envoy.stat("wasmcustom.api_auth.jwks_fetch_ok").unwrap_or(0) > 0), "{}", envoy.log());
    let human = oauth_token(&issuer);
    let rows: [(&str, &str, &[&str]); 4] = [
        ("tools:platform.list_roadmap_items", LIST, &["platform.list_roadmap_items"]),
        ("tools:agents.*", AGENTS, &["agents.deploy", "agents.stop"]),
        ("tools:*", FULL, &TOOLS),
        ("OAuth user", &human, &TOOLS),
    ];
    for (who, credential, allowed) in rows {
        server.forget();
        let got = mcp_client(&url, credential, &TOOLS).unwrap_or_else(|e| panic!("{who}: {e}\n{}", envoy.log()));
        for tool in TOOLS {
            let want = if allowed.contains(&tool) { ran(tool) } else { denied(tool) };
            assert_eq!(got["calls"][tool], want, "{who} calling {tool} ({answers:?})");
        }
        assert_eq!(got["tools"], json!(allowed), "{who}: tools/list shows exactly the granted tools ({answers:?})");
        let mut ran_tools = server.ran();
        ran_tools.sort();
        let mut want: Vec<String> = allowed.iter().map(|t| t.to_string()).collect();
        want.sort();
        assert_eq!(ran_tools, want, "{who}: exactly the granted tools ran ({answers:?})");
    }
    // A key the service does not know never reaches the server.
    let refused = mcp_client(&url, "cf_ak_unknown", &[]);
    assert!(refused.is_err(), "an unknown key connected: {refused:?}");
}

#[test]
fn contract_003_scopes_gate_each_tool_with_json_answers() {
    contract_rows(Answers::Json);
}

#[test]
fn contract_003_scopes_gate_each_tool_with_sse_answers() {
    contract_rows(Answers::Sse);
}

fn call(id: Value, tool: &str) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": tool, "arguments": {} } }).to_string()
}

fn mcp_post(key: &str, body: impl AsRef<[u8]>) -> Req {
    Req::post("/v1/mcp").bearer(key).header("content-type", "application/json").header("accept", "application/json, text/event-stream").body(body)
}

/// A hostile table through Envoy, against the real server: nothing forbidden runs.
#[test]
fn bodies_the_server_could_read_otherwise_are_refused() {
    let server = McpServer::start(Answers::Json);
    let issuer = Issuer::new(&["k1"]);
    let (_jwks, envoy) = start(&server, &issuer);
    let forbidden = "platform.create_roadmap_item";
    let dup_name = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"platform.list_roadmap_items","name":"platform.create_roadmap_item","arguments":{}}}"#;
    let dup_method = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"platform.create_roadmap_item","arguments":{}}}"#;
    let dup_params = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"platform.list_roadmap_items","arguments":{}},"params":{"name":"platform.create_roadmap_item","arguments":{}}}"#;
    let escaped_name = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"platform\u002ecreate_roadmap_item","arguments":{}}}"#;
    let escaped_method = r#"{"jsonrpc":"2.0","id":"e","method":"tools\/call","params":{"name":"platform.create_roadmap_item","arguments":{}}}"#;
    let batch = format!("[{}]", call(json!(1), forbidden));
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(call(json!(1), forbidden).as_bytes());
    let oversized = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{forbidden}","arguments":{{"pad":"{}"}}}}}}"#, "x".repeat(1 << 20));
    // (name, request, status, reason in the access log's response details, JSON-RPC error code)
    let rpc_error = |name: &'static str, req: Req, status: u16, details: &'static str, code: i64| (name, req, status, details, Some(code));
    let tool_error = |name: &'static str, req: Req| (name, req, 200u16, "api_auth.insufficient_scope", None);
    let cases = vec![
        rpc_error("duplicate name", mcp_post(LIST, dup_name), 400, "api_auth.mcp_parse_error", -32700),
        rpc_error("duplicate method", mcp_post(LIST, dup_method), 400, "api_auth.mcp_parse_error", -32700),
        rpc_error("duplicate params", mcp_post(LIST, dup_params), 400, "api_auth.mcp_parse_error", -32700),
        tool_error("escaped name", mcp_post(LIST, escaped_name)),
        tool_error("escaped method", mcp_post(LIST, escaped_method)),
        rpc_error("batch", mcp_post(LIST, batch), 400, "api_auth.mcp_invalid_request", -32600),
        rpc_error("BOM", mcp_post(LIST, bom), 400, "api_auth.mcp_parse_error", -32700),
        rpc_error("not JSON", mcp_post(LIST, "tools/call platform.create_roadmap_item"), 400, "api_auth.mcp_parse_error", -32700),
        rpc_error("over max_body_bytes", mcp_post(LIST, oversized), 413, "api_auth.body_too_large", -32600),
        // Chunked, the split in the middle of the tool's name (send() cuts the body in half).
        tool_error("split across chunks", mcp_post(LIST, format!("{:>width$}", call(json!(1), forbidden), width = 2 * 60)).trailers(&[("x-t", "1")])),
        rpc_error(
            "Mcp-Name naming a granted tool",
            mcp_post(LIST, call(json!(1), forbidden)).header("mcp-method", "tools/call").header("mcp-name", "platform.list_roadmap_items"),
            400,
            "api_auth.mcp_header_mismatch",
            -32600,
        ),
        rpc_error(
            "Mcp_Name (underscore) naming a granted tool",
            mcp_post(LIST, call(json!(1), forbidden)).header("mcp_name", "platform.list_roadmap_items"),
            400,
            "api_auth.mcp_header_mismatch",
            -32600,
        ),
        tool_error("another content type", mcp_post(LIST, call(json!(1), forbidden)).header("content-type", "text/plain")),
        rpc_error("gzip content encoding", mcp_post(LIST, call(json!(1), forbidden)).header("content-encoding", "gzip"), 400, "api_auth.mcp_parse_error", -32700),
    ];
    for (sent, (name, req, status, details, code)) in cases.into_iter().enumerate() {
        let r = envoy.send(&req);
        assert_eq!(r.status, status, "{name}: {}", r.text());
        let v = r.json();
        match code {
            Some(code) => assert_eq!(v["error"]["code"], json!(code), "{name}: {v}"),
            None => {
                assert_eq!(v["result"]["isError"], json!(true), "{name}: {v}");
                assert_eq!(v["result"]["content"][0]["text"], json!(format!("Insufficient scope: tools:{forbidden}")), "{name}");
            }
        }
        let log = envoy.access_log_lines(sent + 1, Duration::from_secs(5));
        assert!(log.get(sent).is_some_and(|l| l.contains(details)), "{name}: {log:?}");
    }
    // The string id comes back as sent.
    assert_eq!(envoy.send(&mcp_post(LIST, escaped_method)).json()["id"], json!("e"));
    // A GET (the server's event stream) carries no call: authentication only.
    let get = envoy.send(&Req::get("/v1/mcp").bearer(LIST).header("accept", "text/event-stream"));
    assert_ne!(get.status, 401);
    assert_eq!(server.ran(), Vec::<String>::new(), "nothing forbidden ran");
    // The granted tool, sent raw, runs.
    let ok = envoy.send(&mcp_post(LIST, call(json!(2), "platform.list_roadmap_items")));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(server.ran(), vec!["platform.list_roadmap_items".to_string()]);
    assert_eq!(envoy.stat("wasmcustom.api_auth.denied.mcp_parse_error"), Some(6));
}
