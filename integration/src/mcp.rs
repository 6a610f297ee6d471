//! The official MCP Python SDK (`mcp` on PyPI, installed by `make python-tools` into
//! `.tools/py`) as the server behind Envoy and as the client in front of it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{free_port, repo_root, wait_until};

fn python() -> PathBuf {
    let bin = repo_root().join(".tools/py/bin/python");
    assert!(bin.is_file(), "{} not found: run `make python-tools` (make test does)", bin.display());
    bin
}

fn script(name: &str) -> PathBuf {
    repo_root().join("integration/mcp").join(name)
}

/// How the server answers a POST: one JSON body, or an SSE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    Json,
    Sse,
}

/// A real MCP server (streamable HTTP on `/v1/mcp`, stateless) with the tools of contract
/// 003; every tool that runs is recorded. Stopped on drop.
pub struct McpServer {
    child: Child,
    port: u16,
    ran: PathBuf,
}

impl McpServer {
    pub fn start(answers: Answers) -> McpServer {
        let port = free_port();
        let ran = std::env::temp_dir().join(format!("api-auth-mcp-ran-{}-{port}", std::process::id()));
        let _ = std::fs::remove_file(&ran);
        let mode = match answers {
            Answers::Json => "json",
            Answers::Sse => "sse",
        };
        let child = Command::new(python())
            .arg(script("server.py"))
            .args([port.to_string().as_str(), ran.to_str().expect("path"), mode])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the MCP server");
        let server = McpServer { child, port, ran };
        let up = wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "the MCP server did not listen on {port}");
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The tools that ran, in order.
    pub fn ran(&self) -> Vec<String> {
        std::fs::read_to_string(&self.ran).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn forget(&self) {
        let _ = std::fs::remove_file(&self.ran);
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.ran);
    }
}

/// The official client with `Authorization: Bearer <credential>`: lists the tools, then calls
/// each of `tools`. `{"tools": [...], "calls": {name: {"is_error", "text"}}}`, or the error it
/// printed.
pub fn mcp_client(url: &str, credential: &str, tools: &[&str]) -> Result<Value, String> {
    let out = Command::new(python())
        .arg(script("client.py"))
        .arg(url)
        .arg(credential)
        .args(tools)
        .stdin(Stdio::null())
        .output()
        .expect("run the MCP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), serde_json::from_str(stdout.trim())) {
        (true, Ok(v)) => Ok(v),
        _ => Err(format!("client failed ({}): {stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr))),
    }
}
