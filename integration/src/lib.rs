//! The end-to-end test bed: the built filter inside a real Envoy, a loopback upstream that
//! echoes what it received, mock servers for JWKS and key services, and a raw HTTP/1.1 client
//! that can send any header bytes. Everything binds 127.0.0.1 on free ports and is stopped on
//! drop, also when a test panics.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod mcp;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An example configuration of the repository's `examples/` by file-name prefix ("002");
/// panics when there is none (the examples ship with the repository).
pub fn example(prefix: &str) -> Value {
    let dir = repo_root().join("examples");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let entry = entries
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no example {prefix}*.json in {}", dir.display()));
    let text = std::fs::read_to_string(entry.path()).unwrap_or_else(|e| panic!("{}: {e}", entry.path().display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", entry.path().display()))
}

fn envoy_bin() -> PathBuf {
    let bin = std::env::var_os("ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/envoy-1.40.0/envoy/_bin/envoy"));
    assert!(bin.is_file(), "Envoy not found at {}: run `make envoy` (make test does)", bin.display());
    bin
}

/// `envoy --mode validate -c <config>` with the Envoy under test, run from the repository root
/// (where the relative paths of envoy/envoy.yaml point): whether Envoy accepted it, and what it
/// printed.
pub fn envoy_validate(config: &Path) -> (bool, String) {
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--log-level", "warn", "--use-dynamic-base-id", "-c"])
        .arg(config)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run envoy --mode validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub fn wasm_path() -> PathBuf {
    let rel = std::env::var("WASM").unwrap_or_else(|_| "target/wasm32-wasip1/release/api_auth_filter.wasm".into());
    let p = Path::new(&rel);
    let p = if p.is_absolute() { p.to_path_buf() } else { repo_root().join(p) };
    assert!(p.is_file(), "filter not built at {}: run `make build` (make test does)", p.display());
    p.canonicalize().expect("canonical wasm path")
}

/// The signature probe (integration/sig-probe), beside the filter's wasm: `make test-e2e`
/// builds it.
pub fn sig_probe_wasm() -> PathBuf {
    let p = wasm_path().with_file_name("sig_probe.wasm");
    assert!(p.is_file(), "the signature probe is not built at {}: run `cargo build --release --target wasm32-wasip1 -p sig-probe` (make test-e2e does)", p.display());
    p
}

/// One `envoy.filters.http.wasm` entry of an HTTP filter chain: plugin `name` (also its
/// root_id) in the VM `vm_id` running `wasm`, with `settings` (YAML lines already indented
/// under `config:`), the plugin configuration as a string when given, and `vm_extra` (lines
/// under `vm_config:`, such as environment variables).
pub fn wasm_filter_yaml(name: &str, vm_id: &str, settings: &str, configuration: Option<&str>, wasm: &Path, vm_extra: &str) -> String {
    let configuration = configuration.map_or(String::new(), |c| {
        format!(
            "\n                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: {}",
            serde_json::to_string(c).expect("quoted")
        )
    });
    format!(
        r#"
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}{settings}{configuration}
                vm_config:
                  vm_id: {vm_id}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {wasm} }} }}{vm_extra}"#,
        wasm = serde_json::to_string(&wasm.display().to_string()).expect("path"),
    )
}

/// Polls `f` every 100 ms until it holds or `within` has passed; its last answer.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    f()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

// ---------------------------------------------------------------------------------------------
// Servers

/// A request as a server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-case names, raw values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: &str) -> Canned {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
}

enum Mode {
    Echo,
    Canned(Canned),
}

struct ServerState {
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Recorded>>,
    stop: AtomicBool,
    connections: AtomicU32,
}

/// An HTTP/1.1 server on loopback: an echo upstream or a mock with a settable answer.
pub struct Server {
    port: u16,
    state: Arc<ServerState>,
}

impl Server {
    /// Answers 200 with a JSON echo of the request: method, path, headers, body.
    pub fn echo() -> Server {
        Server::start(Mode::Echo)
    }

    pub fn mock(answer: Canned) -> Server {
        Server::start(Mode::Canned(answer))
    }

    pub fn echo_on(port: u16) -> Server {
        Server::start_on(port, Mode::Echo)
    }

    /// A mock on a given port: a service that comes up where nothing listened before.
    pub fn mock_on(port: u16, answer: Canned) -> Server {
        Server::start_on(port, Mode::Canned(answer))
    }

    fn start(mode: Mode) -> Server {
        Server::start_on(0, mode)
    }

    fn start_on(port: u16, mode: Mode) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(ServerState { mode: Mutex::new(mode), seen: Mutex::new(Vec::new()), stop: AtomicBool::new(false), connections: AtomicU32::new(0) });
        let st = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    st.connections.fetch_add(1, Ordering::SeqCst);
                    let st = st.clone();
                    thread::spawn(move || serve_connection(stream, &st));
                }
            }
        });
        Server { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn set(&self, answer: Canned) {
        *self.state.mode.lock().unwrap() = Mode::Canned(answer);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.seen.lock().unwrap().clone()
    }

    /// TCP connections accepted so far (a request that never opened one never reached here).
    pub fn connections(&self) -> u32 {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    pub fn clear(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    /// Waits (bounded) until at least `n` requests were seen; returns whether they were.
    pub fn wait_for(&self, n: usize, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.count() >= n {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.count() >= n
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_connection(stream: TcpStream, st: &ServerState) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let Some(req) = read_request(&mut reader) else { return };
        if st.stop.load(Ordering::SeqCst) {
            // Dropped: connections the client kept open are closed unanswered too, so a
            // service that went away is gone for every caller, not only for new connections.
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let close = req.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        st.seen.lock().unwrap().push(req.clone());
        let answer = match &*st.mode.lock().unwrap() {
            Mode::Echo => {
                let headers: serde_json::Map<String, Value> = req
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), Value::String(String::from_utf8_lossy(v).into_owned())))
                    .collect();
                let body = serde_json::json!({
                    "method": req.method, "path": req.path, "headers": headers,
                    "body": String::from_utf8_lossy(&req.body),
                });
                Canned::json(200, &body.to_string())
            }
            Mode::Canned(c) => c.clone(),
        };
        if !answer.delay.is_zero() {
            thread::sleep(answer.delay);
        }
        let mut out = format!("HTTP/1.1 {} X\r\ncontent-length: {}\r\n", answer.status, answer.body.len());
        for (n, v) in &answer.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        // A HEAD response has the GET response's headers and no body (RFC 9110 §9.3.2).
        if req.method != "HEAD" {
            bytes.extend_from_slice(&answer.body);
        }
        if writer.write_all(&bytes).is_err() || close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn read_line(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).ok()?;
    if n == 0 {
        return None;
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Some(line)
}

/// A request or status line, and the header fields after it.
type Head = (Vec<u8>, Vec<(String, Vec<u8>)>);

fn read_head(r: &mut impl BufRead) -> Option<Head> {
    let first = read_line(r)?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|b| *b == b':')?;
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
        let mut value = &line[colon + 1..];
        while value.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            value = &value[1..];
        }
        headers.push((name, value.to_vec()));
    }
    Some((first, headers))
}

fn read_body(r: &mut impl BufRead, headers: &[(String, Vec<u8>)]) -> Option<Vec<u8>> {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| String::from_utf8_lossy(v).trim().to_string());
    if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let size_line = read_line(r)?;
            let text = String::from_utf8_lossy(&size_line);
            let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !read_line(r)?.is_empty() {}
                return Some(body);
            }
            let mut chunk = vec![0; size];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            read_line(r)?;
        }
    }
    let len: usize = get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn read_request(r: &mut impl BufRead) -> Option<Recorded> {
    let (first, headers) = read_head(r)?;
    let first = String::from_utf8_lossy(&first).into_owned();
    let mut parts = first.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let body = read_body(r, &headers)?;
    Some(Recorded { method, path, headers, body })
}

// ---------------------------------------------------------------------------------------------
// Client

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Sent chunked (the body in two chunks) with these trailers, when set.
    pub trailers: Option<Vec<(String, String)>>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req { method: method.into(), path: path.into(), headers: Vec::new(), body: Vec::new(), trailers: None }
    }
    /// The body goes chunked, ended by these trailers.
    pub fn trailers(mut self, trailers: &[(&str, &str)]) -> Req {
        self.trailers = Some(trailers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect());
        self
    }
    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }
    pub fn post(path: &str) -> Req {
        Req::new("POST", path)
    }
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Req {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }
    pub fn bearer(self, token: &str) -> Req {
        self.header("authorization", format!("Bearer {token}"))
    }
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Req {
        self.body = body.as_ref().to_vec();
        self
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole answer.
pub fn send(port: u16, req: &Req) -> Resp {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to Envoy");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut out = format!("{} {} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n", req.method, req.path).into_bytes();
    for (n, v) in &req.headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(trailers) = &req.trailers {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        let (first, second) = req.body.split_at(req.body.len() / 2);
        for chunk in [first, second].into_iter().filter(|c| !c.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        for (n, v) in trailers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    } else {
        if !req.body.is_empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH" {
            out.extend_from_slice(format!("content-length: {}\r\n", req.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&req.body);
    }
    stream.write_all(&out).expect("send request");
    let mut reader = BufReader::new(stream);
    let (first, headers) = read_head(&mut reader).expect("response head");
    let status: u16 = String::from_utf8_lossy(&first).split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = if headers.iter().any(|(n, _)| n == "content-length" || n == "transfer-encoding") {
        read_body(&mut reader, &headers).unwrap_or_default()
    } else {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        rest
    };
    let headers = headers.into_iter().map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned())).collect();
    Resp { status, headers, body }
}

// ---------------------------------------------------------------------------------------------
// Envoy

pub struct EnvoyOpts {
    pub filter_config: Value,
    pub upstream_port: u16,
    /// Extra STATIC clusters on 127.0.0.1: (name, port).
    pub clusters: Vec<(String, u16)>,
    pub concurrency: u32,
    pub vm_env: Vec<(String, String)>,
    /// Load the filter (default); off gives the no-filter baseline of the benchmark.
    pub with_filter: bool,
    /// HTTP filters (YAML list items, indented for `http_filters:`) used instead of this
    /// filter: the benchmark's other contestants.
    pub filters_yaml: Option<String>,
    /// Answer every routed request with a direct 200 instead of the upstream.
    pub direct_response: bool,
    /// Envoy's path normalisation (`normalize_path`, `merge_slashes`, escaped slashes
    /// unescaped and redirected): on by default, as the filter requires. Off, the `:path`
    /// reaches the filter as the client sent it (`KEEP_UNCHANGED`).
    pub normalize_path: bool,
    /// Another build of the filter than `$WASM` (the benchmark's A/B comparisons).
    pub wasm: Option<PathBuf>,
    /// Envoy's `headers_with_underscores_action`: `REJECT_REQUEST` by default, as in the
    /// shipped envoy/envoy.yaml (Envoy answers 400 before any filter runs). Off (`ALLOW`,
    /// Envoy's own default), a header such as `x_api_key` reaches the filter, which must remove
    /// the underscore twins of credential and identity headers itself.
    pub reject_underscore_headers: bool,
    /// Blocks of the shipped envoy/envoy.yaml added to the bootstrap, unchanged but for their
    /// indentation (the access log's path aside, see `Shipped::AccessLog`): none by
    /// default (the bootstrap the other tests have always run).
    pub shipped: Vec<Shipped>,
    /// Named router routes before the catch-all: (name, prefix, a string in its
    /// `filter_metadata`: (filter, key, value)), for filter routes bound to the router's choice.
    pub routes: Vec<NamedRoute>,
}

/// A router route of the test bed: name, prefix, and a (filter, key, value) string of its
/// metadata.
pub type NamedRoute = (String, String, Option<(String, String, String)>);

/// A block of envoy/envoy.yaml, between its `# begin <name>` and `# end <name>` lines, that the
/// test bed can put in its bootstrap (`EnvoyOpts::shipped`), so that the end-to-end tests run
/// what `make run` runs and the README shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shipped {
    /// The access log (`access_log` of the connection manager). The test bed writes it to a file
    /// of its own instead of /dev/stdout: `Envoy::access_log`.
    AccessLog,
    /// The RBAC filter on the filter's filter state, after the filter.
    Rbac,
    /// The per-key local rate limit, after the filter (and after RBAC when both are on).
    LocalRateLimit,
    /// `stats_config.stats_tags`: the `reason` and `kind` labels of the filter's counters.
    StatsTags,
    /// `failure_policy: FAIL_RELOAD` with its backoff, instead of the test bed's
    /// `fail_open: false`.
    FailurePolicy,
}

impl Shipped {
    pub const ALL: [Shipped; 5] = [Shipped::AccessLog, Shipped::Rbac, Shipped::LocalRateLimit, Shipped::StatsTags, Shipped::FailurePolicy];

    /// The block's name in envoy/envoy.yaml.
    pub fn name(self) -> &'static str {
        match self {
            Shipped::AccessLog => "access_log",
            Shipped::Rbac => "rbac",
            Shipped::LocalRateLimit => "local_ratelimit",
            Shipped::StatsTags => "stats_tags",
            Shipped::FailurePolicy => "failure_policy",
        }
    }

    /// The block as it stands in envoy/envoy.yaml, re-indented to `indent` spaces.
    pub fn yaml(self, indent: usize) -> String {
        shipped_block(self.name(), indent)
    }
}

/// The shipped envoy/envoy.yaml (the configuration `make run` starts).
pub fn shipped_envoy_yaml() -> PathBuf {
    repo_root().join("envoy/envoy.yaml")
}

/// The lines of envoy/envoy.yaml strictly between `# begin <name>` and `# end <name>`, shifted so
/// that the marker's indentation becomes `indent` spaces. Panics when the block is missing,
/// empty or less indented than its marker: the test bed must not silently drop a piece.
pub fn shipped_block(name: &str, indent: usize) -> String {
    let path = shipped_envoy_yaml();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let begin = lines.iter().position(|l| l.trim() == format!("# begin {name}")).unwrap_or_else(|| panic!("{}: no `# begin {name}`", path.display()));
    let end = lines[begin..].iter().position(|l| l.trim() == format!("# end {name}")).map(|i| begin + i).unwrap_or_else(|| panic!("{}: no `# end {name}`", path.display()));
    let margin = lines[begin].len() - lines[begin].trim_start().len();
    let body = &lines[begin + 1..end];
    assert!(body.iter().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')), "{}: block {name} is empty", path.display());
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for line in body {
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        let own = line.len() - line.trim_start().len();
        assert!(own >= margin, "{}: a line of block {name} is left of its `# begin`: {line:?}", path.display());
        out.push_str(&pad);
        out.push_str(&line[margin..]);
        out.push('\n');
    }
    out
}

impl EnvoyOpts {
    pub fn new(filter_config: Value, upstream_port: u16) -> EnvoyOpts {
        EnvoyOpts { filter_config, upstream_port, clusters: Vec::new(), concurrency: 1, vm_env: Vec::new(), with_filter: true, filters_yaml: None, direct_response: false, normalize_path: true, wasm: None, reject_underscore_headers: true, shipped: Vec::new(), routes: Vec::new() }
    }
    /// Adds these blocks of the shipped envoy/envoy.yaml to the bootstrap.
    pub fn shipped(mut self, blocks: &[Shipped]) -> EnvoyOpts {
        for b in blocks {
            if !self.shipped.contains(b) {
                self.shipped.push(*b);
            }
        }
        self
    }
    fn has(&self, block: Shipped) -> bool {
        self.shipped.contains(&block)
    }
    pub fn cluster(mut self, name: &str, port: u16) -> EnvoyOpts {
        self.clusters.push((name.into(), port));
        self
    }
    pub fn concurrency(mut self, n: u32) -> EnvoyOpts {
        self.concurrency = n;
        self
    }
    pub fn without_filter(mut self) -> EnvoyOpts {
        self.with_filter = false;
        self
    }
    pub fn env(mut self, name: &str, value: &str) -> EnvoyOpts {
        self.vm_env.push((name.into(), value.into()));
        self
    }
    /// Envoy without path normalisation: what the filter must refuse to judge.
    pub fn without_path_normalization(mut self) -> EnvoyOpts {
        self.normalize_path = false;
        self
    }
    /// Envoy's default `headers_with_underscores_action: ALLOW` instead of the shipped
    /// `REJECT_REQUEST`: headers with `_` in their names reach the filter.
    pub fn allow_underscore_headers(mut self) -> EnvoyOpts {
        self.reject_underscore_headers = false;
        self
    }

    /// A named router route for `prefix` (before the catch-all), with a string in its
    /// metadata when given: what `match.route_name` and `match.route_metadata` bind to.
    pub fn route(mut self, name: &str, prefix: &str, metadata: Option<(&str, &str, &str)>) -> EnvoyOpts {
        let md = metadata.map(|(f, k, v)| (f.to_string(), k.to_string(), v.to_string()));
        self.routes.push((name.to_string(), prefix.to_string(), md));
        self
    }
}

static BASE_ID: AtomicU32 = AtomicU32::new(0);

pub struct Envoy {
    child: Child,
    port: u16,
    admin_port: u16,
    log_path: PathBuf,
    /// Where the shipped access log writes (`Shipped::AccessLog`).
    access_log_path: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cluster_yaml(name: &str, port: u16) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"#
    )
}

/// The bootstrap the tests run: one listener, the filter before the router, path normalisation
/// on unless `normalize_path` is off (the filter must judge the path the router routes), and
/// request headers with underscores refused unless `reject_underscore_headers` is off. The
/// blocks of `opts.shipped` come from envoy/envoy.yaml unchanged; its access log goes where the
/// shipped one does (stdout).
pub fn bootstrap_yaml(opts: &EnvoyOpts, port: u16, admin_port: u16, wasm: &Path) -> String {
    bootstrap(opts, port, admin_port, wasm, Path::new("/dev/stdout"))
}

fn bootstrap(opts: &EnvoyOpts, port: u16, admin_port: u16, wasm: &Path, access_log: &Path) -> String {
    let config = serde_json::to_string(&opts.filter_config).expect("config");
    let env: String = if opts.vm_env.is_empty() {
        String::new()
    } else {
        let kv: Vec<String> = opts.vm_env.iter().map(|(k, v)| format!("{}: {}", k, serde_json::to_string(v).unwrap())).collect();
        format!("\n                  environment_variables:\n                    key_values: {{ {} }}", kv.join(", "))
    };
    let mut clusters = cluster_yaml("upstream", opts.upstream_port);
    for (name, p) in &opts.clusters {
        clusters.push_str(&cluster_yaml(name, *p));
    }
    let wasm_filter = if let Some(custom) = &opts.filters_yaml {
        custom.clone()
    } else if !opts.with_filter {
        String::new()
    } else {
        let failure = if opts.has(Shipped::FailurePolicy) { Shipped::FailurePolicy.yaml(16).trim_end().to_string() } else { "                fail_open: false".to_string() };
        let settings = format!(
            "\n{failure}\n                # Hold the headers while a webhook body is buffered and verified (Envoy >= 1.35).\n                allow_on_headers_stop_iteration: true"
        );
        wasm_filter_yaml("api_auth", "api_auth", &settings, Some(&config), wasm, &env)
    };
    // The filters that act on the verdict, after the filter, in the order of envoy/envoy.yaml.
    let mut after_filter = String::new();
    for block in [Shipped::Rbac, Shipped::LocalRateLimit].into_iter().filter(|b| opts.has(*b)) {
        after_filter.push('\n');
        after_filter.push_str(block.yaml(10).trim_end());
    }
    let access_log = if opts.has(Shipped::AccessLog) {
        let shipped = Shipped::AccessLog.yaml(10);
        assert!(shipped.contains("path: /dev/stdout"), "the shipped access log no longer writes to /dev/stdout: the test bed cannot redirect it");
        let path = serde_json::to_string(&access_log.display().to_string()).expect("path");
        format!("\n{}", shipped.replace("path: /dev/stdout", &format!("path: {path}")).trim_end())
    } else {
        String::new()
    };
    let stats_config = if opts.has(Shipped::StatsTags) { Shipped::StatsTags.yaml(0) } else { String::new() };
    let (normalize, escaped_slashes) = if opts.normalize_path { ("true", "UNESCAPE_AND_REDIRECT") } else { ("false", "KEEP_UNCHANGED") };
    let underscores = if opts.reject_underscore_headers { "REJECT_REQUEST" } else { "ALLOW" };
    let route_action = if opts.direct_response {
        r#"direct_response: { status: 200, body: { inline_string: "ok" } }"#
    } else {
        "route: { cluster: upstream }"
    };
    let named_routes: String = opts
        .routes
        .iter()
        .map(|(name, prefix, md)| {
            let metadata = md.as_ref().map_or(String::new(), |(f, k, v)| {
                format!("\n                metadata: {{ filter_metadata: {{ {f}: {{ {k}: {v:?} }} }} }}")
            });
            format!("\n              - name: {name}\n                match: {{ prefix: {prefix:?} }}{metadata}\n                {route_action}")
        })
        .collect();
    format!(
        r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
{stats_config}static_resources:
  listeners:
  - name: main
    # Above every webhook's max_body_bytes, so that the filter (not Envoy's buffer limit)
    # answers an over-large signed body with its documented 413.
    per_connection_buffer_limit_bytes: 4194304
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress{access_log}
          # HTTP/1.1 trailers reach the filters (webhook bodies ended by trailers are tested).
          http_protocol_options: {{ enable_trailers: true }}
          # As envoy/envoy.yaml: `x_api_key` is `X-Api-Key` to CGI/WSGI upstreams.
          common_http_protocol_options: {{ headers_with_underscores_action: {underscores} }}
          normalize_path: {normalize}
          merge_slashes: {normalize}
          path_with_escaped_slashes_action: {escaped_slashes}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:{named_routes}
              - match: {{ prefix: "/" }}
                {route_action}
          http_filters:{wasm_filter}{after_filter}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}"#
    )
}

impl Envoy {
    pub fn start(opts: EnvoyOpts) -> Envoy {
        let bin = envoy_bin();
        let wasm = opts.wasm.clone().unwrap_or_else(wasm_path);
        let n = BASE_ID.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("api-auth-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let dir = TempDir(dir);
        for _attempt in 0..3 {
            let (port, admin_port) = (free_port(), free_port());
            let access_log_path = dir.0.join("access.log");
            let _ = std::fs::remove_file(&access_log_path);
            let yaml = bootstrap(&opts, port, admin_port, &wasm, &access_log_path);
            let cfg_path = dir.0.join("envoy.yaml");
            std::fs::write(&cfg_path, yaml).expect("write bootstrap");
            let log_path = dir.0.join("envoy.log");
            // Envoy appends: a failed attempt's lines (its critical "cannot bind") must not
            // read as this Envoy's failures.
            let _ = std::fs::remove_file(&log_path);
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&cfg_path)
                .args(["--concurrency", &opts.concurrency.to_string(), "--log-level", "info", "--use-dynamic-base-id", "--file-flush-interval-msec", "100"])
                .arg("--log-path")
                .arg(&log_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Envoy");
            let mut envoy = Envoy { child, port, admin_port, log_path, access_log_path, _dir: TempDir(PathBuf::new()) };
            if envoy.wait_ready(Duration::from_secs(20)) {
                envoy._dir = dir;
                return envoy;
            }
            let log = envoy.log();
            let exited = envoy.child.try_wait().ok().flatten().is_some();
            drop(envoy);
            // A port taken between probe and bind is worth another try; anything else is not.
            if !(exited && log.contains("Address already in use")) {
                panic!("Envoy did not become ready. Log:\n{log}");
            }
        }
        panic!("Envoy could not bind free ports three times");
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.admin_port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                if text.starts_with("HTTP/1.1 200") && text.contains("LIVE") {
                    return true;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Envoy process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the Envoy process (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Resident memory of the Envoy process now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Each wasm VM's linear memory (size, resident), in KiB: see `wasm_linear_memories`.
    pub fn wasm_memories(&self) -> Vec<(u64, u64)> {
        wasm_linear_memories(self.child.id())
    }

    /// CPU time (user + system) used so far by Envoy's worker threads (`wrk:worker_N`), in
    /// microseconds: per request, a measure of cost that other load on the machine does not
    /// distort the way it distorts requests per second.
    pub fn worker_cpu_us(&self) -> Option<u64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).ok()?;
        let mut ticks = 0u64;
        for task in tasks.filter_map(Result::ok) {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            if !stat[open + 1..close].starts_with("wrk:worker") {
                continue;
            }
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            // After the command: state, ppid, ..., utime (12th), stime (13th).
            ticks += fields.get(11).and_then(|v| v.parse::<u64>().ok())? + fields.get(12).and_then(|v| v.parse::<u64>().ok())?;
        }
        // Linux reports these in USER_HZ, 100 per second.
        Some(ticks * 10_000)
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The log so far; bytes that are not UTF-8 (a client's, quoted by Envoy) read as U+FFFD.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    pub fn send(&self, req: &Req) -> Resp {
        send(self.port, req)
    }

    /// The lines of the shipped access log so far (`Shipped::AccessLog`; Envoy flushes it every
    /// 100 ms here), in the order the requests ended.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read(&self.access_log_path).map(|b| String::from_utf8_lossy(&b).lines().map(str::to_string).collect()).unwrap_or_default()
    }

    /// Waits (bounded) until the access log has at least `n` lines; all its lines then.
    pub fn access_log_lines(&self, n: usize, within: Duration) -> Vec<String> {
        let mut lines = self.access_log();
        let end = Instant::now() + within;
        while lines.len() < n && Instant::now() < end {
            thread::sleep(Duration::from_millis(50));
            lines = self.access_log();
        }
        lines
    }

    pub fn admin(&self, path: &str) -> String {
        send(self.admin_port, &Req::get(path)).text()
    }

    /// Envoy's counter or gauge value, by exact name.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.admin("/stats").lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
    }

    /// Signs that the filter's wasm VM failed, empty when there are none: Envoy's per-plugin
    /// reload counters (`wasm.api_auth.vm_reload*`, moved by `failure_policy: FAIL_RELOAD`) and
    /// the log lines of a trapped VM (a panic is logged at critical, then `Uncaught
    /// RuntimeError`). Under `fail_open: false` a dead VM moves no other wasm stat
    /// (`wasm.envoy.wasm.runtime.v8.active` stays), it answers every request with an empty 503:
    /// callers also check that a normal request gets its normal answer, and
    /// `http.ingress.downstream_rq_5xx`.
    pub fn wasm_failures(&self) -> Vec<String> {
        let stats = self.admin("/stats");
        let mut found: Vec<String> = stats
            .lines()
            .filter(|l| l.starts_with("wasm.api_auth.vm_reload") && !l.ends_with(": 0"))
            .map(str::to_string)
            .collect();
        found.extend(
            self.log()
                .lines()
                .filter(|l| l.contains("[critical]") || l.contains("Uncaught") || l.contains("Wasm VM failed") || l.contains("panicked"))
                .map(str::to_string),
        );
        found
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Table cases

pub enum Upstream {
    /// The upstream must not have received this request.
    None,
    /// The upstream received it, with these headers set and these absent.
    Saw { present: Vec<(&'static str, String)>, absent: Vec<&'static str> },
}

pub struct Case {
    pub name: &'static str,
    pub req: Req,
    pub status: u16,
    /// Exact JSON body, when given.
    pub body: Option<Value>,
    /// Response headers that must be present with these values.
    pub headers: Vec<(&'static str, String)>,
    pub upstream: Upstream,
}

/// Sends one case and checks its answer and what the upstream saw: the response, and every
/// problem found (none when the case holds).
pub fn check_case(envoy: &Envoy, upstream: &Server, case: &Case) -> (Resp, Vec<String>) {
    upstream.clear();
    let resp = envoy.send(&case.req);
    let mut problems = Vec::new();
    if resp.status != case.status {
        problems.push(format!("status {} want {}", resp.status, case.status));
    }
    if let Some(want) = &case.body {
        if &resp.json() != want {
            problems.push(format!("body {} want {}", resp.text(), want));
        }
    }
    for (name, value) in &case.headers {
        if resp.header(name) != Some(value.as_str()) {
            problems.push(format!("header {name}: {:?} want {value:?}", resp.header(name)));
        }
    }
    let seen = upstream.requests();
    match &case.upstream {
        Upstream::None => {
            if !seen.is_empty() {
                problems.push(format!("upstream saw {} request(s), want none", seen.len()));
            }
        }
        Upstream::Saw { present, absent } => match seen.first() {
            None => problems.push("upstream saw nothing".into()),
            Some(r) => {
                for (name, value) in present {
                    if r.header(name).as_deref() != Some(value.as_str()) {
                        problems.push(format!("upstream header {name}: {:?} want {value:?}", r.header(name)));
                    }
                }
                for name in absent {
                    if let Some(v) = r.header(name) {
                        problems.push(format!("upstream header {name} present ({} bytes), want absent", v.len()));
                    }
                }
            }
        },
    }
    (resp, problems)
}

/// Runs every case, collects every failure, and panics with all of them and the Envoy log.
pub fn run_cases(envoy: &Envoy, upstream: &Server, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let (_, problems) = check_case(envoy, upstream, case);
        if !problems.is_empty() {
            failures.push(format!("- {}: {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n--- Envoy log ---\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        envoy.log()
    );
    eprintln!("{} cases passed", cases.len());
}

/// Shorthand for the common expectations.
pub fn denied(name: &'static str, req: Req, status: u16, body: Value) -> Case {
    Case { name, req, status, body: Some(body), headers: vec![("content-type", "application/json".into())], upstream: Upstream::None }
}

pub fn allowed(name: &'static str, req: Req, present: Vec<(&'static str, String)>) -> Case {
    Case {
        name,
        req,
        status: 200,
        body: None,
        headers: vec![],
        upstream: Upstream::Saw { present, absent: vec!["authorization", "x-api-key"] },
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

pub type Map = HashMap<String, String>;

// ---------------------------------------------------------------------------------------------
// A demo issuer: RSA keys, a JWKS document and tokens with any claims.

pub struct Issuer {
    keys: Vec<(String, jwt_simple::algorithms::RS256KeyPair)>,
}

impl Issuer {
    /// An issuer with one 2048-bit RSA key per kid.
    pub fn new(kids: &[&str]) -> Issuer {
        use jwt_simple::algorithms::RS256KeyPair;
        let keys = kids
            .iter()
            .map(|kid| (kid.to_string(), RS256KeyPair::generate(2048).expect("RSA key").with_key_id(kid)))
            .collect();
        Issuer { keys }
    }

    /// The JWKS of the given kids (all when empty).
    pub fn jwks(&self, kids: &[&str]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let keys: Vec<Value> = self
            .keys
            .iter()
            .filter(|(kid, _)| kids.is_empty() || kids.contains(&kid.as_str()))
            .map(|(kid, kp)| {
                let c = kp.public_key().to_components();
                serde_json::json!({ "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64.encode(&c.n), "e": b64.encode(&c.e) })
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    /// A compact JWS of exactly these header and payload bytes (any JSON, or none), with an
    /// RS256 signature by `kid` over them: hostile tokens with a valid signature.
    pub fn sign_raw(&self, kid: &str, header: &[u8], payload: &[u8]) -> String {
        use base64::Engine;
        let kp = &self.keys.iter().find(|(k, _)| k == kid).expect("kid").1;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!("{}.{}", b64.encode(header), b64.encode(payload));
        let sig = rsa_sign(kp, signing_input.as_bytes());
        format!("{signing_input}.{}", b64.encode(sig))
    }

    /// The PEM of `kid`'s public key (what an algorithm-confusion attacker uses as HMAC secret).
    pub fn public_pem(&self, kid: &str) -> String {
        self.keys.iter().find(|(k, _)| k == kid).expect("kid").1.public_key().to_pem().expect("PEM")
    }

    /// An RS256 token with exactly these claims, signed by `kid`.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        use base64::Engine;
        let kp = &self.keys.iter().find(|(k, _)| k == kid).expect("kid").1;
        // jwt-simple signs its own claim struct; to control every claim byte, sign a token it
        // made for an empty payload and splice ours in with a fresh signature over it.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": kid }).to_string());
        let payload = b64.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let sig = rsa_sign(kp, signing_input.as_bytes());
        format!("{signing_input}.{}", b64.encode(sig))
    }
}

/// RSASSA-PKCS1-v1_5 with SHA-256, through the key's DER form and the `rsa` crate that
/// jwt-simple's pure-Rust build uses.
fn rsa_sign(kp: &jwt_simple::algorithms::RS256KeyPair, msg: &[u8]) -> Vec<u8> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let der = kp.to_der().expect("DER");
    let key = rsa::RsaPrivateKey::from_pkcs1_der(&der).or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(&der)).expect("RSA key");
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    signer.sign(msg).to_vec()
}

/// The wasm linear memories of a process, (size, resident) in KiB each. V8 reserves each wasm
/// memory as a read-write mapping of its current size followed by a guard region of several
/// GiB with no access: the read-write mapping right before such a region is a linear memory
/// (Envoy 1.40 has no per-VM memory stat).
pub fn wasm_linear_memories(pid: u32) -> Vec<(u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    // (start, end, perms, rss)
    let mut maps: Vec<(u64, u64, String, u64)> = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                maps.push((a, b, parts.next().unwrap_or("").to_string(), 0));
                continue;
            }
        }
        if let (Some(rss), Some(last)) = (line.strip_prefix("Rss:"), maps.last_mut()) {
            last.3 = rss.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        }
    }
    let mut wasm = Vec::new();
    for w in maps.windows(2) {
        let (mem, guard) = (&w[0], &w[1]);
        if guard.2.starts_with("---") && guard.1 - guard.0 >= 4 << 30 && mem.1 == guard.0 && mem.2.starts_with("rw") {
            wasm.push(((mem.1 - mem.0) / 1024, mem.3));
        }
    }
    wasm
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
