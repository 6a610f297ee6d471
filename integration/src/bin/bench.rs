//! `make bench`: the filter side by side with Envoy's own filters, in one run, on loopback,
//! with wrk and Envoy --concurrency 1. Reports ratios; asserts nothing.
//!
//! Contestants: Envoy with no auth filter, an empty wasm filter (bench/noop: the floor every
//! wasm filter pays), Envoy's native jwt_authn without and with jwt_cache_config, and this
//! filter. Workloads: (a) one valid RS256 token repeated, (b) a different valid token on every
//! request (a pre-minted pool), (c) an API key, (d) tokens with forged signatures, (e) a public
//! route. Each with a direct response and with a fast real upstream. Then the MCP rows, and
//! opaque tokens (`introspection_phase`): a cached introspection answer beside a cached JWT,
//! and one introspection call's cost against one key-service lookup's.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use api_auth_integration::oidc::{self, AuthServer, AGENT, RESOURCE_OPAQUE, RESOURCE_SERVER};
use api_auth_integration::*;
use serde_json::{json, Value};

const ISSUER: &str = "https://clerk.cf0.example";
const API_KEY: &str = "cm_bench_key_0123456789";

/// How to start one contestant's Envoy, given the upstream's port.
type Setup<'a> = Box<dyn Fn(u16) -> EnvoyOpts + 'a>;

struct Load {
    name: &'static str,
    path: &'static str,
    /// Authorization values, rotated per request by a wrk script when more than one.
    auth: Vec<String>,
    expect_2xx: bool,
    /// A whole wrk script instead (a POST with a body: the MCP rows).
    lua: Option<String>,
}

struct Sample {
    rps: f64,
    p50: String,
    p99: String,
    non_2xx: u64,
    /// Envoy worker CPU per request, µs.
    cpu_us: f64,
}

fn wrk(envoy: &Envoy, load: &Load, seconds: u32, dir: &std::path::Path) -> Sample {
    let port = envoy.port();
    let cpu_before = envoy.worker_cpu_us();
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c16", &format!("-d{seconds}s"), "--latency"]);
    match load.auth.len() {
        _ if load.lua.is_some() => {
            let script = dir.join(format!("{}.lua", load.name.replace([' ', '/', '(', ')'], "_")));
            std::fs::write(&script, load.lua.as_deref().unwrap_or_default()).expect("write wrk script");
            cmd.arg("-s").arg(&script);
        }
        0 => {}
        1 => {
            cmd.arg("-H").arg(format!("Authorization: {}", load.auth[0]));
        }
        _ => {
            let script = dir.join(format!("{}.lua", load.name.replace(' ', "_")));
            let mut lua = String::from("local t = {\n");
            for a in &load.auth {
                let _ = writeln!(lua, "  {:?},", a);
            }
            lua.push_str("}\nlocal i = 0\nrequest = function()\n  i = i % #t + 1\n  return wrk.format(nil, nil, { [\"Authorization\"] = t[i] })\nend\n");
            std::fs::write(&script, lua).expect("write wrk script");
            cmd.arg("-s").arg(&script);
        }
    }
    cmd.arg(format!("http://127.0.0.1:{port}{}", load.path));
    let out = cmd.output().expect("wrk (make wrk installs it)");
    let cpu = envoy.worker_cpu_us().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0);
    let pct = |p: &str| text.lines().find_map(|l| l.trim().strip_prefix(p).map(|v| v.trim().to_string())).unwrap_or_default();
    let non_2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let requests: f64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.trim().parse().ok()))
        .unwrap_or(0.0);
    let cpu_us = cpu.map_or(f64::NAN, |c| c as f64 / requests.max(1.0));
    Sample { rps, p50: pct("50%"), p99: pct("99%"), non_2xx, cpu_us }
}

/// The sample of median requests/s, with the median CPU per request of all samples.
fn median(mut samples: Vec<Sample>) -> Sample {
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.cpu_us).collect();
    cpu.sort_by(f64::total_cmp);
    samples.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = samples.len() / 2;
    let mut m = samples.swap_remove(mid);
    m.cpu_us = cpu[mid];
    m
}

/// A wrk script that POSTs one JSON-RPC message with an API key, as an MCP client does.
fn mcp_lua(key: &str, body: &str) -> String {
    format!(
        "wrk.method = \"POST\"\nwrk.body = {body:?}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Accept\"] = \"application/json, text/event-stream\"\nwrk.headers[\"Authorization\"] = \"Bearer {key}\"\n"
    )
}

/// MCP routes (`routes[].mcp`): a `tools/call` with an API key on a route that judges the
/// JSON-RPC body, against the same route without MCP judging, and a `tools/list` whose answer
/// (20 tools, 8 granted) is filtered, against the same unfiltered. One Envoy, a canned
/// upstream answering every request with that tool list; the difference in worker CPU per
/// request is what holding and reading the body (and rewriting the answer) adds.
fn mcp_phase(seconds: u32, rounds: usize, dir: &std::path::Path) -> String {
    let key = "cm_mcp_bench_key_0123456789";
    let tools: Vec<Value> = (0..20)
        .map(|i| json!({ "name": format!("{}.tool_{i}", if i % 5 < 2 { "agents" } else { "platform" }), "description": "a tool of the benchmark", "inputSchema": { "type": "object", "properties": {} } }))
        .collect();
    let answer = json!({ "jsonrpc": "2.0", "id": 1, "result": { "tools": tools } }).to_string();
    let upstream = Server::mock(Canned::json(200, &answer));
    let cfg = json!({
        "api_keys": { "prefixes": ["cm_"], "keys": [{ "id": "mcp", "sha256": sha256_hex(key.as_bytes()), "scopes": ["tools:agents.*"] }] },
        "routes": [
            { "match": { "prefix": "/judged" }, "auth": {}, "mcp": {} },
            { "match": { "prefix": "/plain" }, "auth": {} }
        ]
    });
    let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()));
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"agents.tool_1","arguments":{"text":"hello"}}}"#;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let load = |name: &'static str, path: &'static str, body: &str| Load { name, path, auth: vec![], expect_2xx: true, lua: Some(mcp_lua(key, body)) };
    let loads = [
        load("(f) tools/call, MCP judged", "/judged", call),
        load("(f) tools/call, route without mcp", "/plain", call),
        load("(g) tools/list, answer filtered", "/judged", list),
        load("(g) tools/list, route without mcp", "/plain", list),
    ];
    let mut cells: Vec<Vec<Sample>> = loads.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, l) in loads.iter().enumerate() {
            cells[i].push(wrk(&envoy, l, seconds, dir));
        }
        eprintln!("mcp round {}/{rounds} done", round + 1);
    }
    let samples: Vec<Sample> = cells.into_iter().map(median).collect();
    let mut out = String::from(
        "## MCP routes

This filter with API keys, on a route with `mcp` and on the same route without it (a canned upstream \
         answers every request with a 20-tool `tools/list` result; 8 tools are granted to the key, so the filtered answer \
         keeps 8). `added` is the worker CPU per request over the row without `mcp`: holding the headers, reading and \
         judging the body (and, for (g), holding and rewriting the answer).\n\n\
         | workload | requests/s | p50 | p99 | non-2xx | worker CPU µs/req | added µs/req |\n|---|---|---|---|---|---|---|\n",
    );
    for (i, (l, s)) in loads.iter().zip(&samples).enumerate() {
        let base = if i % 2 == 0 { samples[i + 1].cpu_us } else { s.cpu_us };
        let added = if i % 2 == 0 { format!("{:+.1}", s.cpu_us - base) } else { "—".into() };
        let _ = writeln!(out, "| {} | {:.0} | {} | {} | {} | {:.1} | {added} |", l.name, s.rps, s.p50, s.p99, s.non_2xx, s.cpu_us);
    }
    let filtered = envoy.send(&Req::post("/judged").bearer(key).header("content-type", "application/json").body(list));
    let kept = filtered.json()["result"]["tools"].as_array().map_or(0, Vec::len);
    let _ = writeln!(out, "\nThe filtered answer lists {kept} of 20 tools.\n");
    out
}

/// One keep-alive HTTP/1.1 connection for sequential timed requests (the cold rows of the
/// introspection phase): a request's status, its answer read whole (content-length or chunked).
/// A connection the server closed while idle is opened again once.
struct KeepAlive {
    port: u16,
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl KeepAlive {
    fn connect(port: u16) -> KeepAlive {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        KeepAlive { port, reader: std::io::BufReader::new(s) }
    }

    fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\n", self.port);
        for (n, v) in headers {
            let _ = write!(req, "{n}: {v}\r\n");
        }
        if !body.is_empty() || method == "POST" {
            let _ = write!(req, "content-length: {}\r\n", body.len());
        }
        req.push_str("\r\n");
        req.push_str(body);
        match self.exchange(&req) {
            Some(status) => status,
            None => {
                *self = KeepAlive::connect(self.port);
                self.exchange(&req).expect("an answer on a new connection")
            }
        }
    }

    fn exchange(&mut self, req: &str) -> Option<u16> {
        use std::io::{BufRead, Read, Write};
        self.reader.get_mut().write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok())?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line).ok()?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                let (n, v) = (n.trim(), v.trim());
                if n.eq_ignore_ascii_case("content-length") {
                    length = v.parse().ok()?;
                } else if n.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if n.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line).ok()?;
                let size = usize::from_str_radix(line.trim().split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    loop {
                        line.clear();
                        self.reader.read_line(&mut line).ok()?;
                        if line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0u8; size + 2];
                self.reader.read_exact(&mut chunk).ok()?;
            }
        } else {
            let mut rest = vec![0u8; length];
            self.reader.read_exact(&mut rest).ok()?;
        }
        if close {
            *self = KeepAlive::connect(self.port);
        }
        Some(status)
    }

    /// The request's status and how long it took, wall clock.
    fn timed(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Duration) {
        let t0 = std::time::Instant::now();
        let status = self.request(method, path, headers, body);
        (status, t0.elapsed())
    }
}

/// The value at `p` (0..=1) of sorted durations, in ms (nearest rank).
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// A child process killed (by its own id) when dropped: the demo key service.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The repository's demo key service (`api-auth demo-issuer --keys FILE`: entries in memory,
/// one thread per keep-alive connection, no database) with these entries; its port. `None`
/// (and why, on stderr) when the release build of the command line is missing.
fn demo_key_service(dir: &std::path::Path, entries: &[Value]) -> Option<(KillOnDrop, u16)> {
    use std::io::BufRead;
    let bin = repo_root().join("target/release/api-auth");
    if !bin.is_file() {
        eprintln!("introspection: {} not built (`cargo build --release -p api-auth-cli`, make bench does): the key-service rows are skipped", bin.display());
        return None;
    }
    let keys_file = dir.join("cold-keys.json");
    std::fs::write(&keys_file, Value::Array(entries.to_vec()).to_string()).expect("write the key file");
    let mut child = Command::new(bin)
        .args(["demo-issuer", "--port", "0", "--key"])
        .arg(dir.join("demo-issuer-key.pem"))
        .arg("--keys")
        .arg(&keys_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        // A line per request: not wanted, and not worth a pipe to drain.
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start api-auth demo-issuer");
    let stdout = child.stdout.take().expect("stdout");
    let guard = KillOnDrop(child);
    let mut first = String::new();
    let _ = std::io::BufReader::new(stdout).read_line(&mut first);
    // `http://127.0.0.1:<port>/.well-known/jwks.json`
    let port = first.trim().strip_prefix("http://127.0.0.1:").and_then(|r| r.split('/').next()).and_then(|p| p.parse().ok());
    match port {
        Some(port) => Some((guard, port)),
        None => {
            eprintln!("introspection: api-auth demo-issuer did not start: the key-service rows are skipped");
            None
        }
    }
}

/// Opaque tokens (`providers.<p>.introspection`, RFC 7662) against the test bed's
/// authorization server (oidc-provider, `api_auth_integration::oidc`; `make node-tools`).
/// One Envoy (--concurrency 1, direct response) with `base` (the bench's configuration) plus a
/// provider with introspection, a route `/opaque/` taking only opaque tokens, and
/// `api_keys.lookup` at the demo key service. Cached: wrk with one opaque token (answer cached
/// by the warm-up) beside (a), one RS256 token (a cached JWT), on that Envoy. Cold: sequential
/// requests on one keep-alive connection, each with a fresh opaque token (one introspection
/// call each) or a fresh API key (one key-service lookup each), interleaved in a shuffled order
/// with the same POSTs sent to each service directly (the service's own time) and the cached
/// paths.
fn introspection_phase(base: &Value, jwt: &str, jwks_port: u16, seconds: u32, rounds: usize, dir: &std::path::Path) -> String {
    let cold_n: usize = std::env::var("BENCH_COLD").ok().and_then(|s| s.parse().ok()).unwrap_or(200).max(1);
    let warm_n = 5;
    let bed = AuthServer::start();
    let lookup_path = "/v1/keys/lookup";
    // Fresh API keys (the static table and every cache know none of them), in the service.
    let keys: Vec<String> = (0..2 * cold_n + warm_n).map(|i| format!("cm_cold_{i:05}_0123456789abcdef")).collect();
    let entries: Vec<Value> =
        keys.iter().enumerate().map(|(i, k)| json!({ "id": format!("cold_{i}"), "sha256": sha256_hex(k.as_bytes()), "permissions": ["*"] })).collect();
    let key_service = demo_key_service(dir, &entries);

    let mut cfg = base.clone();
    let secret_env = "BENCH_INTROSPECTION_SECRET";
    cfg["providers"]["idp"] = json!({
        "issuer": bed.issuer(),
        "algorithms": ["RS256"],
        "audiences": [RESOURCE_OPAQUE],
        "jwks": { "inline": bed.jwks() },
        "introspection": {
            "cluster": "idp",
            "path": format!("{}/token/introspection", bed.issuer_path()),
            "client_id": RESOURCE_SERVER.id,
            "client_secret": { "env": secret_env },
            // Longer than the cached loads: every request of them finds the warm-up's answer.
            "cache_ttl_s": 300
        }
    });
    cfg["routes"].as_array_mut().expect("routes").insert(0, json!({ "match": { "prefix": "/opaque/" }, "auth": { "credentials": ["opaque"], "providers": ["idp"] } }));
    let keys_port = key_service.as_ref().map_or_else(free_port, |(_, p)| *p);
    cfg["api_keys"]["lookup"] = json!({ "cluster": "keys", "path": lookup_path, "cache_ttl_s": 300 });
    let upstream = Server::echo();
    let mut opts = EnvoyOpts::new(cfg, upstream.port())
        .cluster("clerk_jwks", jwks_port)
        .cluster("idp", bed.port())
        .cluster("keys", keys_port)
        .env(secret_env, RESOURCE_SERVER.secret);
    opts.direct_response = true;
    let envoy = Envoy::start(opts);
    let stat = |name: &str| {
        // The filter adds its counters to Envoy's on its timer.
        std::thread::sleep(Duration::from_millis(1500));
        envoy.stat(&format!("wasmcustom.api_auth.{name}")).unwrap_or(0)
    };
    let mint = || bed.client_credentials_token(AGENT.id, AGENT.secret, "read", Some(RESOURCE_OPAQUE));

    // Cached: one opaque token, its answer cached by the warm-up, beside one cached JWT.
    let opaque = mint();
    for (what, path, auth) in [("the JWT", "/api/projects", jwt.to_string()), ("the opaque token", "/opaque/items", format!("Bearer {opaque}"))] {
        let mut resp = envoy.send(&Req::get(path).header("authorization", &auth));
        for _ in 0..50 {
            if resp.status == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            resp = envoy.send(&Req::get(path).header("authorization", &auth));
        }
        if resp.status != 200 {
            eprintln!("introspection: warm-up with {what}: {} {}", resp.status, resp.text());
        }
    }
    let loads = [
        Load { name: "(a) one RS256 token (a cached JWT)", path: "/api/projects", auth: vec![jwt.to_string()], expect_2xx: true, lua: None },
        Load { name: "(h) one opaque token (a cached introspection answer)", path: "/opaque/items", auth: vec![format!("Bearer {opaque}")], expect_2xx: true, lua: None },
    ];
    let calls_before = stat("introspection_call");
    let mut cells: Vec<Vec<Sample>> = loads.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, l) in loads.iter().enumerate() {
            cells[i].push(wrk(&envoy, l, seconds, dir));
        }
        eprintln!("introspection round {}/{rounds} done", round + 1);
    }
    let calls_during_loads = stat("introspection_call").saturating_sub(calls_before);
    let samples: Vec<Sample> = cells.into_iter().map(median).collect();

    // Cold: fresh tokens and keys, minted and listed before any is timed.
    let tokens: Vec<String> = (0..2 * cold_n + warm_n).map(|_| mint()).collect();
    let (warm_tokens, tokens) = tokens.split_at(warm_n);
    let (via_envoy, direct) = tokens.split_at(cold_n);
    let (warm_keys, keys) = keys.split_at(warm_n);
    let (keys_via_envoy, keys_direct) = keys.split_at(cold_n);
    let has_keys = key_service.is_some();
    let mut to_envoy = KeepAlive::connect(envoy.port());
    let mut to_bed = KeepAlive::connect(bed.port());
    let mut to_keys = key_service.as_ref().map(|(_, port)| KeepAlive::connect(*port));
    let intro_path = format!("{}/token/introspection", bed.issuer_path());
    let client = oidc::basic(RESOURCE_SERVER.id, RESOURCE_SERVER.secret);
    let form_headers = [("content-type", "application/x-www-form-urlencoded"), ("authorization", client.as_str())];
    let json_headers = [("content-type", "application/json")];
    let bearer = |t: &str| format!("Bearer {t}");
    let introspect_body = |t: &str| oidc::form(&[("token", t), ("token_type_hint", "access_token")]);
    let lookup_body = |k: &str| json!({ "sha256": sha256_hex(k.as_bytes()) }).to_string();
    // Warm-up: V8, the clusters' connections, the client connections.
    for (t, k) in warm_tokens.iter().zip(warm_keys) {
        to_envoy.request("GET", "/opaque/items", &[("authorization", &bearer(t))], "");
        to_bed.request("POST", &intro_path, &form_headers, &introspect_body(t));
        if let Some(c) = to_keys.as_mut() {
            to_envoy.request("GET", "/keys/list", &[("authorization", &bearer(k))], "");
            c.request("POST", lookup_path, &json_headers, &lookup_body(k));
        }
    }
    let (calls0, lookups0) = (stat("introspection_call"), stat("key_lookup"));
    // Rows: (label, durations, answers other than 200).
    let mut rows: Vec<(&str, Vec<Duration>, usize)> = [
        "opaque token, one introspection call each",
        "introspection endpoint alone (the same POST, sent directly)",
        "opaque token, answer cached (the warm-up's token again)",
        "API key, one key-service lookup each",
        "key service alone (the same POST, sent directly)",
        "API key, cached (the warm-up's key again)",
        "(a)'s RS256 token, cached",
    ]
    .into_iter()
    .map(|l| (l, Vec::with_capacity(cold_n), 0))
    .collect();
    // Each round sends one request of every row, in an order shuffled per round (xorshift,
    // fixed seed): what a request leaves behind (Node finishing its answer on a core of two)
    // then falls on every row alike, not always on the row after it.
    let mut order: Vec<usize> = (0..rows.len()).filter(|r| has_keys || !(3..=5).contains(r)).collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..cold_n {
        for j in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(j, (seed % (j as u64 + 1)) as usize);
        }
        for &row in &order {
            let (status, took) = match row {
                0 => to_envoy.timed("GET", "/opaque/items", &[("authorization", &bearer(&via_envoy[i]))], ""),
                1 => to_bed.timed("POST", &intro_path, &form_headers, &introspect_body(&direct[i])),
                2 => to_envoy.timed("GET", "/opaque/items", &[("authorization", &bearer(&warm_tokens[0]))], ""),
                6 => to_envoy.timed("GET", "/api/projects", &[("authorization", jwt)], ""),
                _ => {
                    let Some(c) = to_keys.as_mut() else { continue };
                    match row {
                        3 => to_envoy.timed("GET", "/keys/list", &[("authorization", &bearer(&keys_via_envoy[i]))], ""),
                        4 => c.timed("POST", lookup_path, &json_headers, &lookup_body(&keys_direct[i])),
                        _ => to_envoy.timed("GET", "/keys/list", &[("authorization", &bearer(&warm_keys[0]))], ""),
                    }
                }
            };
            rows[row].1.push(took);
            rows[row].2 += usize::from(status != 200);
        }
    }
    let (calls, lookups) = (stat("introspection_call").saturating_sub(calls0), stat("key_lookup").saturating_sub(lookups0));
    for r in &mut rows {
        r.1.sort();
    }
    if !envoy.wasm_failures().is_empty() {
        eprintln!("introspection: the wasm VM failed: {:?}", envoy.wasm_failures());
    }

    let mut out = format!(
        "## Opaque tokens (introspection)\n\n\
         One Envoy (--concurrency 1, direct response) with this filter and the configuration above, plus a provider with \
         `introspection` at the test bed's authorization server (oidc-provider under Node, `integration/oidc`, tokens in its \
         memory; `cache_ttl_s` 300), a route `/opaque/` taking only its opaque tokens (client-credentials tokens for \
         `{RESOURCE_OPAQUE}`, `aud` checked), and `api_keys.lookup` at a key service: `api-auth demo-issuer --keys FILE`, \
         the repository's demo key service (its entries in memory, no database; `make bench-keys` measures the real one, \
         `api-auth-keys`, on SQLite and PostgreSQL: keyservice/BENCHMARKS.md).\n\n\
         Cached: wrk -t1 -c16, {seconds} s per cell, median of {rounds} rounds taken round-robin; one opaque token whose \
         answer one request before cached, beside (a), one RS256 token (a cached JWT), on the same Envoy.\n\n\
         | workload | requests/s | p50 | p99 | non-2xx | worker CPU µs/req |\n|---|---|---|---|---|---|\n"
    );
    for (l, s) in loads.iter().zip(&samples) {
        let flag = if s.non_2xx == 0 { "" } else { " (!)" };
        let _ = writeln!(out, "| {} | {:.0} | {} | {} | {}{flag} | {:.1} |", l.name, s.rps, s.p50, s.p99, s.non_2xx, s.cpu_us);
    }
    let (jwt_s, op_s) = (&samples[0], &samples[1]);
    let _ = writeln!(
        out,
        "\nThe cached opaque token against the cached JWT: ×{:.2} requests/s, {:+.1} µs/req worker CPU (×{:.2}). \
         Introspection calls during these loads: {calls_during_loads}.\n",
        op_s.rps / jwt_s.rps.max(1.0),
        op_s.cpu_us - jwt_s.cpu_us,
        op_s.cpu_us / jwt_s.cpu_us
    );
    let _ = writeln!(
        out,
        "Cold: one keep-alive client, one request at a time, {cold_n} of each row, the rows interleaved in an order \
         shuffled each round (a slow moment of the machine, or what one request leaves behind, lands on all of them alike). Each opaque token is fresh from the server, so each request waits for one \
         introspection call ({calls} calls counted, `api_auth.introspection_call`); each API key is one no cache has seen, so \
         each request waits for one lookup ({lookups} counted, `api_auth.key_lookup`). The `alone` rows send the POST the \
         filter sends (the form body with client_secret_basic; `{{\"sha256\": …}}`), for other fresh tokens and keys, \
         straight to the service on a keep-alive connection: the service's own time. The `cached` rows are Envoy and the \
         filter without a call (the JWT's on its route, `/api/`).\n\n\
         | request | n | median ms | p90 ms | non-200 |\n|---|---|---|---|---|"
    );
    for (label, lat, bad) in &rows {
        if lat.is_empty() {
            let _ = writeln!(out, "| {label} | 0 | skipped: no key service | | |");
            continue;
        }
        let flag = if *bad == 0 { "" } else { " (!)" };
        let _ = writeln!(out, "| {label} | {} | {:.2} | {:.2} | {bad}{flag} |", lat.len(), percentile_ms(lat, 0.5), percentile_ms(lat, 0.9));
    }
    let share = |cold: usize, alone: usize| percentile_ms(&rows[cold].1, 0.5) - percentile_ms(&rows[alone].1, 0.5);
    let _ = write!(out, "\nEnvoy and the filter around one call (median through Envoy − median alone): introspection {:.2} ms", share(0, 1));
    if has_keys {
        let _ = write!(out, ", key lookup {:.2} ms", share(3, 4));
    }
    if has_keys {
        let _ = write!(out, ". The cold opaque request against the cold key request: ×{:.2} (medians)", percentile_ms(&rows[0].1, 0.5) / percentile_ms(&rows[3].1, 0.5));
    }
    let _ = writeln!(out, ".\n");
    out
}

fn jwt_authn_yaml(jwks: &str, cache: bool) -> String {
    let cache_cfg = if cache { "\n                  jwt_cache_config: { jwt_cache_size: 1000 }" } else { "" };
    format!(
        r#"
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                clerk:
                  issuer: {ISSUER}
                  local_jwks: {{ inline_string: {jwks} }}
                  forward: false{cache_cfg}
              rules:
              - match: {{ prefix: "/health" }}
              - match: {{ prefix: "/keys/" }}
              - match: {{ prefix: "/" }}
                requires: {{ provider_name: clerk }}"#,
        jwks = serde_json::to_string(jwks).expect("quoted"),
    )
}

/// The empty wasm filter; with `host_calls`, the same module making the real filter's host
/// calls and nothing else (see bench/noop).
fn noop_yaml(wasm: &std::path::Path, host_calls: bool) -> String {
    wasm_filter_yaml("noop", "noop", "", host_calls.then_some("host-calls"), wasm, "")
}

/// The core's decision per workload, timed inside V8 by node's WASI (bench/core): what each
/// decision costs without Envoy, the network and wrk around it. `None` when node is absent.
/// V8 runs without Liftoff, as Envoy's V8 does: every function is optimised from the start.
fn core_costs(cfg: &Value, jwks_doc: &str, loads: &[Load], iterations: usize) -> Option<Vec<(String, f64, String)>> {
    let root = repo_root();
    let wasm = root.join("target/wasm32-wasip1/release/core-bench.wasm");
    // The runner of `make test-wasm`: the host's file system is visible at the same paths.
    let runner = root.join("tests/wasm-runner.mjs");
    if !wasm.is_file() {
        eprintln!("core costs skipped: {} not built", wasm.display());
        return None;
    }
    let mut cfg = cfg.clone();
    // The same keys, inline: the core sees no host, so nothing is fetched.
    cfg["providers"]["clerk"]["jwks"] = json!({ "inline": serde_json::from_str::<Value>(jwks_doc).ok()? });
    let workloads: Vec<Value> = loads
        .iter()
        .map(|l| {
            let method = if l.path.starts_with("/api/") || l.path.starts_with("/keys/") || l.path == "/health" { "GET" } else { "POST" };
            // (a) runs with the filter's verified-token cache, the others cold, as in Envoy.
            json!({ "name": l.name, "method": method, "path": l.path, "auth": l.auth, "cache": l.name.starts_with("(a)") })
        })
        .collect();
    let input = json!({ "config": cfg, "now": unix_now(), "iterations": iterations, "workloads": workloads }).to_string();
    let file = std::env::temp_dir().join(format!("api-auth-core-bench-{}.json", std::process::id()));
    std::fs::write(&file, input).ok()?;
    let out = Command::new("node").args(["--no-warnings", "--no-liftoff"]).arg(&runner).arg(&wasm).arg(&file).output();
    let _ = std::fs::remove_file(&file);
    let out = out.map_err(|e| eprintln!("core costs skipped: node not available ({e})")).ok()?;
    if !out.status.success() {
        eprintln!("core costs failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("?").to_string(),
                v["ns_per_decision"].as_f64().unwrap_or(0.0),
                v["outcome"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    Some(rows)
}

/// Sends `total` requests with the pool's Authorization values, in pool order (continuing
/// where the last burst stopped), in bursts of wrk runs of a second or two.
fn send_pool(envoy: &Envoy, pool: &[String], total: u64, dir: &std::path::Path) {
    let script = dir.join("memory-pool.lua");
    if !script.is_file() {
        let mut lua = String::from("local t = {\n");
        for a in pool {
            let _ = writeln!(lua, "  {:?},", a);
        }
        lua.push_str(
            "}\nlocal i = 0\ninit = function(args)\n  i = (tonumber(args[1]) or 0) % #t\nend\n\
             request = function()\n  i = i % #t + 1\n  return wrk.format(nil, nil, { [\"Authorization\"] = t[i] })\nend\n",
        );
        std::fs::write(&script, lua).expect("write wrk script");
    }
    let mut sent = 0u64;
    while sent < total {
        let out = Command::new("wrk")
            .args(["-t1", "-c16", "-d2s", "-s"])
            .arg(&script)
            .arg(format!("http://127.0.0.1:{}/api/projects", envoy.port()))
            .arg("--")
            .arg(sent.to_string())
            .output()
            .expect("wrk (make wrk installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        let n: u64 = text.lines().find_map(|l| l.trim().split_once(" requests in ").and_then(|(n, _)| n.trim().parse().ok())).unwrap_or(0);
        if n == 0 {
            eprintln!("memory: wrk sent nothing: {}", String::from_utf8_lossy(&out.stderr));
            return;
        }
        sent += n;
    }
}

/// One contestant of the memory phase at one worker count, measured: Envoy's RSS after the
/// warm-up, and the filter's verified-token cache hit rate over one more pass (`None` for other
/// filters).
#[derive(Clone)]
struct MemorySample {
    name: String,
    workers: u32,
    /// Right after start, and after the warm-up.
    rss_start_kib: Option<u64>,
    rss_kib: Option<u64>,
    hit_rate: Option<f64>,
    /// Each wasm VM's linear memory: (size, resident) KiB.
    wasm: Vec<(u64, u64)>,
    /// Envoy's allocator (admin /memory) after the warm-up: (allocated, what it holds besides:
    /// total_physical_bytes - allocated) KiB.
    heap: Option<(u64, u64)>,
}

/// The memory phase: each contestant alone at each worker count, `runs` times (round-robin, the
/// minimum is kept), `passes` passes over the token pool (each worker sees a part of every pass:
/// its share of the connections), then one more pass for the hit rate, then VmRSS.
fn memory_phase(contestants: &[(String, Setup)], pool: &[String], passes: u64, workers: &[u32], runs: u32, dir: &std::path::Path) -> Vec<MemorySample> {
    let mut out: Vec<MemorySample> = Vec::new();
    for run in 0..runs {
        for &w in workers {
            for (name, make) in contestants {
                let s = memory_sample(name, make, pool, passes, w, dir);
                eprintln!(
                    "memory (run {}, {w} workers): {name}: RSS {} KiB (at start {}), hit rate {:?}, allocator {:?}, wasm memories {:?}",
                    run + 1,
                    s.rss_kib.unwrap_or(0),
                    s.rss_start_kib.unwrap_or(0),
                    s.hit_rate,
                    s.heap,
                    s.wasm
                );
                match out.iter_mut().find(|o| o.name == s.name && o.workers == w) {
                    Some(o) => {
                        // The minimum of the runs: what the process needs, less what the
                        // allocator happened to keep.
                        if s.rss_kib.is_some() && (o.rss_kib.is_none() || s.rss_kib < o.rss_kib) {
                            *o = MemorySample { rss_start_kib: min_some(o.rss_start_kib, s.rss_start_kib), ..s };
                        } else {
                            o.rss_start_kib = min_some(o.rss_start_kib, s.rss_start_kib);
                        }
                    }
                    None => out.push(s),
                }
            }
        }
    }
    out
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn memory_sample(name: &str, make: &Setup, pool: &[String], passes: u64, workers: u32, dir: &std::path::Path) -> MemorySample {
    let mut opts = make(0).concurrency(workers);
    opts.direct_response = true;
    let envoy = Envoy::start(opts);
    for _ in 0..50 {
        let status = envoy.send(&Req::get("/api/projects").header("authorization", &pool[0])).status;
        if status == 200 || name == "empty wasm filter" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_start_kib = envoy.rss_kib();
    send_pool(&envoy, pool, passes * pool.len() as u64, dir);
    // The filter adds its counters to Envoy's on its timer.
    std::thread::sleep(Duration::from_millis(1500));
    let counts = |e: &Envoy| {
        let hit = e.stat("wasmcustom.api_auth.token_cache_hit");
        let miss = e.stat("wasmcustom.api_auth.token_cache_miss");
        (hit.unwrap_or(0), miss.unwrap_or(0), hit.is_some() || miss.is_some())
    };
    let (h0, m0, _) = counts(&envoy);
    send_pool(&envoy, pool, pool.len() as u64, dir);
    std::thread::sleep(Duration::from_millis(1500));
    let (h1, m1, counted) = counts(&envoy);
    let looked_up = (h1 + m1).saturating_sub(h0 + m0);
    let hit_rate = (counted && name.starts_with("api-auth") && looked_up > 0).then(|| h1.saturating_sub(h0) as f64 / looked_up as f64);
    let rss_kib = envoy.rss_kib();
    let wasm = envoy.wasm_memories();
    let heap = serde_json::from_str::<Value>(&envoy.admin("/memory")).ok().and_then(|m| {
        let kib = |k: &str| m[k].as_str().and_then(|v| v.parse::<u64>().ok()).map(|b| b / 1024);
        let (used, total) = (kib("allocated")?, kib("total_physical_bytes")?);
        Some((used, total.saturating_sub(used)))
    });
    MemorySample { name: name.to_string(), workers, rss_start_kib, rss_kib, hit_rate, wasm, heap }
}

/// The least-squares line through (workers, KiB): (intercept, slope). `None` with fewer than
/// two worker counts.
fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (sx, sy) = points.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((my - slope * mx, slope))
}

/// BENCHMARKS.md with its memory section (from its heading to the paragraph after the table
/// that a full run writes next) replaced by `section` from a memory-only run, marked as such.
/// `None` when the file has no memory section.
fn replace_memory_section(file: &str, section: &str) -> Option<String> {
    const HEADING: &str = "## Memory per Envoy process";
    const AFTER: &str = "`worker CPU µs/req` is";
    let start = file.find(HEADING)?;
    let end = start + file[start..].find(AFTER)?;
    let note = format!(
        "Written by `BENCH_ONLY=memory make bench` on {}, after the rest of this file: the sections above are the last full \
         run's.\n\n",
        std::process::Command::new("git")
            .args(["log", "-1", "--format=%h (%cs)"])
            .current_dir(repo_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
            .map_or_else(|| "this tree".to_string(), |c| format!("commit {c}")),
    );
    let body = section.strip_prefix(HEADING).unwrap_or(section).trim_start_matches('\n');
    Some(format!("{}{HEADING}\n\n{note}{body}{}", &file[..start], &file[end..]))
}

fn memory_report(samples: &[MemorySample], modules: &[(String, u64)], pool_size: usize, passes: u64, workers: &[u32], runs: u32) -> String {
    let mut r = String::new();
    let mib = |kib: f64| kib / 1024.0;
    let counts = workers.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(", ");
    let most = workers.iter().copied().max().unwrap_or(1);
    let least = workers.iter().copied().min().unwrap_or(1);
    let _ = writeln!(
        r,
        "## Memory per Envoy process\n\nEach contestant alone, Envoy --concurrency {counts}, direct response: {passes} passes of wrk -t1 -c16 \
         over the {pool_size} pre-minted tokens in order (each worker gets its share of the connections, so it sees part of every \
         pass), then one more pass, over which the filter's token-cache hit rate is counted (`api_auth.token_cache_hit` / \
         (hit + miss)); then Envoy's VmRSS. Each cell is the minimum of {runs} runs taken round-robin.\n\n\
         - `fixed` and `per worker` (above the empty wasm filter): the least-squares line through (workers, RSS − the empty \
         wasm filter's RSS at the same worker count): its value at zero workers, and its slope. The fixed part comes with \
         loading the module: Envoy's V8 compiles every function with TurboFan once per process (`--no-liftoff`, and \
         `Module::share` tiers everything up) and the workers' VMs share that code; a VM's own isolate and linear memory are \
         per worker.\n\
         - `at start`: RSS above the empty wasm filter right after start, before any traffic, at {least} worker(s).\n\
         - `allocator`: Envoy's tcmalloc after the warm-up at {least} worker(s) (admin `/memory`): bytes in use / what it \
         holds besides (free pages, caches, metadata: `total_physical_bytes` − `allocated`). Most of the fixed part is here: \
         what V8 keeps of the compiled module, and the memory its compile used and freed, which tcmalloc keeps.\n\
         - `wasm heap per VM`: each wasm VM's linear memory, resident / size, the mean over the VMs (one per worker, and the \
         main thread's), from /proc/<pid>/smaps, at {most} workers; the hit rate is from that run too.\n\n\
         `token_cache off` is the filter with `token_cache.max_entries: 0`; `forwarding claim:org_id` adds a `claim:` header \
         to `forward.headers`.\n"
    );
    let _ = write!(r, "| setup | module |");
    for w in workers {
        let _ = write!(r, " RSS {w}w |");
    }
    let _ = writeln!(r, " fixed above empty wasm | per worker above empty wasm | at start | allocator | wasm heap per VM | token-cache hit rate (last pass) |");
    let _ = writeln!(r, "|---|---|{}---|---|---|---|---|---|", "---|".repeat(workers.len()));
    let mut names: Vec<&str> = Vec::new();
    for s in samples {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let get = |name: &str, w: u32| samples.iter().find(|s| s.name == name && s.workers == w);
    for name in names {
        let is_base = name == "empty wasm filter";
        let module = modules.iter().find(|m| m.0 == name).map_or("-".into(), |m| format!("{} KiB", m.1 / 1024));
        let _ = write!(r, "| {name} | {module} |");
        let mut above = Vec::new();
        for &w in workers {
            let mine = get(name, w).and_then(|s| s.rss_kib);
            let _ = write!(r, " {} |", mine.map_or("?".into(), |k| format!("{:.1} MiB", mib(k as f64))));
            if let (Some(m), Some(b)) = (mine, get("empty wasm filter", w).and_then(|s| s.rss_kib)) {
                above.push((f64::from(w), m as f64 - b as f64));
            }
        }
        let line = if is_base { None } else { fit_line(&above) };
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} MiB", mib(v)));
        let at_start = get(name, least)
            .and_then(|s| s.rss_start_kib)
            .zip(get("empty wasm filter", least).and_then(|s| s.rss_start_kib))
            .filter(|_| !is_base)
            .map(|(m, b)| m as f64 - b as f64);
        let heap = get(name, least).and_then(|s| s.heap).map_or("-".into(), |(a, f)| format!("{:.1} / {:.1} MiB", mib(a as f64), mib(f as f64)));
        let big = get(name, most);
        let wasm = big.map(|s| s.wasm.clone()).unwrap_or_default();
        let heap_vm = if wasm.is_empty() {
            "-".into()
        } else {
            let vms = wasm.len() as f64;
            let (size, res): (u64, u64) = wasm.iter().fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
            format!("{:.2} / {:.2} MiB ({} VMs)", mib(res as f64 / vms), mib(size as f64 / vms), wasm.len())
        };
        let hits = big.and_then(|s| s.hit_rate).map_or("-".into(), |h| format!("{:.0} %", h * 100.0));
        let _ = writeln!(
            r,
            " {} | {} | {} | {heap} | {heap_vm} | {hits} |",
            show(line.map(|l| l.0)),
            line.map_or("-".into(), |l| format!("{:.2} MiB", mib(l.1))),
            show(at_start)
        );
    }
    let _ = writeln!(r);
    r
}

fn main() {
    let seconds: u32 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    // `BENCH_ONLY=memory`: the memory phase alone (quick); `core`: the core alone; `mcp`: the MCP
    // rows alone; `introspection`: the opaque-token rows alone.
    let only = std::env::var("BENCH_ONLY").ok().filter(|v| !v.is_empty());
    let introspection_only = only.as_deref() == Some("introspection");
    // The introspection rows use one token of the pool.
    let default_pool = if introspection_only { 1 } else { 10_000 };
    let pool_size: usize = std::env::var("BENCH_POOL").ok().and_then(|s| s.parse().ok()).unwrap_or(default_pool).max(1);
    let noop = repo_root().join("target/wasm32-wasip1/release/noop_filter.wasm");
    assert!(introspection_only || noop.is_file(), "build bench/noop first (make bench does)");
    let lean = repo_root().join("target/wasm32-wasip1/release/noop_lean_filter.wasm");
    assert!(introspection_only || lean.is_file(), "build bench/noop-lean first (make bench does)");
    let dir = std::env::temp_dir().join(format!("api-auth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");

    let issuer = Issuer::new(&["k1"]);
    let jwks_doc = issuer.jwks(&[]);
    let jwks = Server::mock(Canned::json(200, &jwks_doc));
    let now = unix_now();
    let claims = |i: usize| json!({ "iss": ISSUER, "sub": format!("user_{i}"), "org_id": "org_1", "iat": now, "exp": now + 7200 });
    eprintln!("minting {pool_size} tokens...");
    let pool: Vec<String> = (0..pool_size).map(|i| format!("Bearer {}", issuer.token("k1", &claims(i)))).collect();
    let forged: Vec<String> = pool
        .iter()
        .take(pool_size.min(500))
        .map(|t| {
            let mut f = t.clone();
            // Flip a character in the middle of the signature: the token stays well formed.
            let at = f.len() - 20;
            let c = if &f[at..at + 1] == "A" { "B" } else { "A" };
            f.replace_range(at..at + 1, c);
            f
        })
        .collect();

    let mut cfg: Value = example("000");
    cfg["api_keys"] = json!({ "prefixes": ["cm_"], "keys": [{ "id": "bench", "sha256": sha256_hex(API_KEY.as_bytes()), "permissions": ["*"] }] });
    cfg["routes"].as_array_mut().unwrap().insert(0, json!({ "match": { "prefix": "/keys/" }, "auth": { "credentials": ["api_key"] } }));

    let loads = vec![
        Load { name: "(a) one RS256 token", path: "/api/projects", auth: vec![pool[0].clone()], expect_2xx: true, lua: None },
        Load { name: "(b) token pool", path: "/api/projects", auth: pool.clone(), expect_2xx: true, lua: None },
        Load { name: "(c) API key", path: "/keys/list", auth: vec![format!("Bearer {API_KEY}")], expect_2xx: true, lua: None },
        Load { name: "(d) forged signatures", path: "/api/projects", auth: forged, expect_2xx: false, lua: None },
        Load { name: "(e) public route", path: "/health", auth: vec![], expect_2xx: true, lua: None },
    ];
    let iterations = std::env::var("BENCH_CORE_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let memory_only = only.as_deref() == Some("memory");
    let skip_core = memory_only || matches!(only.as_deref(), Some("mcp" | "introspection"));
    let mut core = if skip_core { None } else { core_costs(&cfg, &jwks_doc, &loads, iterations) };
    // ES256 in the core alone: one P-256 key, one token, verified cold every time.
    {
        use base64::Engine;
        use jwt_simple::prelude::*;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let kp = ES256KeyPair::generate().with_key_id("e1");
        let point = kp.public_key().public_key().to_bytes_uncompressed();
        let es_jwks = json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "e1", "alg": "ES256", "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]) }] });
        let claims = Claims::with_custom_claims(json!({ "org_id": "org_1" }), jwt_simple::prelude::Duration::from_hours(2))
            .with_issuer(ISSUER)
            .with_subject("user_ec");
        let token = kp.sign(claims).expect("ES256 token");
        let mut es_cfg = cfg.clone();
        es_cfg["providers"]["clerk"]["algorithms"] = json!(["ES256"]);
        let load = Load { name: "(b) one ES256 token, cold", path: "/api/projects", auth: vec![format!("Bearer {token}")], expect_2xx: true, lua: None };
        if let (Some(rows), false) = (core.as_mut(), skip_core) {
            let es_rows = core_costs(&es_cfg, &es_jwks.to_string(), &[load], iterations).unwrap_or_default();
            rows.extend(es_rows.into_iter().map(|(name, ns, outcome)| (if name.starts_with("step") { format!("ES256 {name}") } else { name }, ns, outcome)));
        }
    }
    if let Some(rows) = &core {
        for (name, ns, outcome) in rows {
            eprintln!("core in V8: {name}: {:.1} us ({outcome})", ns / 1000.0);
        }
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("core") {
        return;
    }
    // `BENCH_ONLY=mcp`: the MCP rows alone.
    if only.as_deref() == Some("mcp") {
        let seconds_each = seconds.min(5);
        print!("{}", mcp_phase(seconds_each, 3, &dir));
        eprintln!("BENCH_ONLY=mcp: BENCHMARKS.md left as it was");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    // `BENCH_ONLY=introspection`: the opaque-token rows alone (needs `make node-tools`).
    if introspection_only {
        print!("{}", introspection_phase(&cfg, &pool[0], jwks.port(), seconds, rounds, &dir));
        eprintln!("BENCH_ONLY=introspection: BENCHMARKS.md left as it was");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    // A/B: other builds of the filter beside this one (`BENCH_AB=name=path.wasm,name2=path2.wasm`).
    let ab: Vec<(String, PathBuf)> = std::env::var("BENCH_AB")
        .unwrap_or_default()
        .split(',')
        .filter_map(|item| item.split_once('='))
        .map(|(name, path)| (format!("api-auth-filter ({name})"), PathBuf::from(path)))
        .collect();
    let mut setups: Vec<(&str, Setup)> = vec![
        ("no auth filter", Box::new(|up| EnvoyOpts::new(json!({}), up).without_filter())),
        ("empty wasm filter", Box::new(|up| EnvoyOpts { filters_yaml: Some(noop_yaml(&noop, false)), ..EnvoyOpts::new(json!({}), up) })),
        ("empty wasm filter, four callbacks", Box::new(|up| EnvoyOpts { filters_yaml: Some(noop_yaml(&lean, false)), ..EnvoyOpts::new(json!({}), up) })),
        ("wasm host calls only", Box::new(|up| EnvoyOpts { filters_yaml: Some(noop_yaml(&noop, true)), ..EnvoyOpts::new(json!({}), up) })),
        ("jwt_authn", Box::new(|up| EnvoyOpts { filters_yaml: Some(jwt_authn_yaml(&jwks_doc, false)), ..EnvoyOpts::new(json!({}), up) })),
        ("jwt_authn + cache", Box::new(|up| EnvoyOpts { filters_yaml: Some(jwt_authn_yaml(&jwks_doc, true)), ..EnvoyOpts::new(json!({}), up) })),
        ("api-auth-filter", Box::new(|up| EnvoyOpts::new(cfg.clone(), up).cluster("clerk_jwks", jwks.port()))),
    ];
    for (name, other) in &ab {
        setups.push((name.as_str(), Box::new(|up| EnvoyOpts { wasm: Some(other.clone()), ..EnvoyOpts::new(cfg.clone(), up).cluster("clerk_jwks", jwks.port()) })));
    }
    // Quick runs while working: `BENCH_SETUPS=empty,api-auth` (name substrings), `BENCH_LOADS=ace`
    // (workload letters), `BENCH_MODES=direct` (or `upstream`), `BENCH_ONLY=memory` (the memory
    // phase alone) or `core`. BENCHMARKS.md is then not written.
    let pick = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let (only_setups, only_loads, only_modes) = (pick("BENCH_SETUPS"), pick("BENCH_LOADS"), pick("BENCH_MODES"));
    let partial = only_setups.is_some() || only_loads.is_some() || only_modes.is_some();
    if let Some(names) = &only_setups {
        setups.retain(|(name, _)| names.split(',').any(|n| name.contains(n.trim())));
    }
    let loads: Vec<Load> = match &only_loads {
        Some(letters) => loads.into_iter().filter(|l| letters.contains(&l.name[1..2])).collect(),
        None => loads,
    };

    // Memory per Envoy process (`memory_phase`): the empty wasm filter, jwt_authn with its cache, this
    // filter with its default cache and with the cache off, the sizes of
    // `BENCH_MEMORY_SIZES=1024,8192` (`token_cache.max_entries`), and the A/B builds (with the
    // configuration as it is: an older build may not know `token_cache`). `BENCH_SETUPS` picks
    // among them too (the empty wasm filter always runs: it is the baseline).
    // A quick run of some workloads or modes (`BENCH_LOADS`, `BENCH_MODES`) skips it.
    let mut memory_section = String::new();
    if memory_only || (only.is_none() && only_loads.is_none() && only_modes.is_none()) {
        let passes: u64 = std::env::var("BENCH_MEMORY_PASSES").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
        let sizes: Vec<u64> =
            std::env::var("BENCH_MEMORY_SIZES").unwrap_or_default().split(',').filter_map(|n| n.trim().parse().ok()).collect();
        let jwks_port = jwks.port();
        let filter = |c: Value, wasm: Option<PathBuf>| -> Setup {
            Box::new(move |up| EnvoyOpts { wasm: wasm.clone(), ..EnvoyOpts::new(c.clone(), up).cluster("clerk_jwks", jwks_port) })
        };
        let with_cache = |n: u64| {
            let mut c = cfg.clone();
            c["token_cache"] = json!({ "max_entries": n });
            c
        };
        let noop_filters = noop_yaml(&noop, false);
        let native = jwt_authn_yaml(&jwks_doc, true);
        let mut contestants: Vec<(String, Setup)> = vec![
            ("empty wasm filter".into(), Box::new(move |up| EnvoyOpts { filters_yaml: Some(noop_filters.clone()), ..EnvoyOpts::new(json!({}), up) })),
            ("jwt_authn + cache".into(), Box::new(move |up| EnvoyOpts { filters_yaml: Some(native.clone()), ..EnvoyOpts::new(json!({}), up) })),
            ("api-auth-filter".into(), filter(cfg.clone(), None)),
            ("api-auth-filter, token_cache off".into(), filter(with_cache(0), None)),
        ];
        for n in sizes {
            contestants.push((format!("api-auth-filter, max_entries {n}"), filter(with_cache(n), None)));
        }
        // A forwarded claim: what an entry keeps of the claims (a build that kept the whole
        // claims tree shows it here).
        let mut with_claim = cfg.clone();
        with_claim["forward"]["headers"]["x-org-claim"] = json!("claim:org_id");
        contestants.push(("api-auth-filter, forwarding claim:org_id".into(), filter(with_claim.clone(), None)));
        for (name, other) in &ab {
            contestants.push((name.clone(), filter(cfg.clone(), Some(other.clone()))));
            contestants.push((format!("{name}, forwarding claim:org_id"), filter(with_claim.clone(), Some(other.clone()))));
        }
        if let Some(names) = &only_setups {
            contestants.retain(|(name, _)| name == "empty wasm filter" || names.split(',').any(|n| name.contains(n.trim())));
        }
        let upstream = Server::echo();
        let upstream_port = upstream.port();
        let contestants: Vec<(String, Setup)> =
            contestants.into_iter().map(|(name, make)| (name, Box::new(move |_| make(upstream_port)) as Setup)).collect();
        // `BENCH_MEMORY_WORKERS`: Envoy's --concurrency values (1,2,4 unless set);
        // `BENCH_MEMORY_RUNS`: runs of each, the minimum kept (2 unless set).
        let mut workers: Vec<u32> = std::env::var("BENCH_MEMORY_WORKERS")
            .unwrap_or_else(|_| "1,2,4".into())
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .filter(|n| *n > 0)
            .collect();
        if workers.is_empty() {
            workers = vec![1, 2, 4];
        }
        let runs: u32 = std::env::var("BENCH_MEMORY_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(2).max(1);
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        // The A/B builds first: a name is looked up by its first entry.
        let mut modules = vec![("empty wasm filter".to_string(), size(&noop))];
        for (name, other) in &ab {
            modules.push((name.clone(), size(other)));
            modules.push((format!("{name}, forwarding claim:org_id"), size(other)));
        }
        for (name, _) in &contestants {
            if name.starts_with("api-auth-filter") {
                modules.push((name.clone(), size(&wasm_path())));
            }
        }
        let samples = memory_phase(&contestants, &pool, passes, &workers, runs, &dir);
        memory_section = memory_report(&samples, &modules, pool.len(), passes, &workers, runs);
        if memory_only {
            print!("{memory_section}");
            // Every contestant and no A/B build: the memory section of BENCHMARKS.md is replaced
            // (the rest of the file stays the last full run's, and says so).
            if ab.is_empty() && only_setups.is_none() {
                let path = repo_root().join("BENCHMARKS.md");
                let old = std::fs::read_to_string(&path).unwrap_or_default();
                match replace_memory_section(&old, &memory_section) {
                    Some(new) => {
                        std::fs::write(&path, new).expect("write BENCHMARKS.md");
                        eprintln!("BENCH_ONLY=memory: the memory section of BENCHMARKS.md replaced");
                    }
                    None => eprintln!("BENCH_ONLY=memory: BENCHMARKS.md has no memory section to replace; left as it was"),
                }
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
            eprintln!("BENCH_ONLY=memory with BENCH_AB or BENCH_SETUPS: BENCHMARKS.md left as it was");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    }

    let mut report = String::new();
    let _ = writeln!(
        report,
        "# Benchmarks\n\nWritten by `make bench` (wrk -t1 -c16, {seconds} s per cell, median of {rounds} rounds taken round-robin over \
         contestants that run side by side, Envoy {} --concurrency 1, loopback, \
         {pool_size} pre-minted RS256 tokens for (b), sent in order, more than the filter's token cache holds \
         (`token_cache.max_entries`, 4096 by default), so (b) measures cold verification). Ratios are requests/s over the empty wasm filter's and over \
         native jwt_authn's (with cache for (a), without for the others). The API key (c) and public route (e) rows of \
         jwt_authn run without a token rule that applies to them, so they are Envoy's floor, not a comparison.\n\n\
         `wasm host calls only` is the empty wasm filter making the host calls this filter makes on an allowed \
         request, and nothing else: it reads the request headers and the clock and, on requests with an \
         Authorization header, removes it and sets two identity headers (bench/noop). Its distance to the empty \
         filter is what the proxy-wasm ABI charges in Envoy for that work; `× host calls only` is how close this \
         filter's own code comes to that floor. Both are built with the proxy-wasm Rust SDK, which exports every \
         callback of the ABI, so Envoy enters their VM seven times per request (create, request headers, response \
         headers, response body, done, log, delete); this filter exports only the callbacks it uses and is entered \
         four times (create, request headers, response headers, delete), plus once per response body chunk (where MCP `tools/list` answers are filtered), which is how it can come out above them. \
         `empty wasm filter, four callbacks` is an empty filter that exports just those (bench/noop-lean, no SDK): \
         the floor of this filter's shape.\n",
        std::env::var("ENVOY_VERSION").unwrap_or_else(|_| "1.40.0".into())
    );
    // Every contestant runs at once (one worker each) and the cells are taken round-robin,
    // `rounds` times, keeping each cell's median: a slow moment of the machine then lands on
    // all contestants alike instead of on one of them.
    if let Some(rows) = &core {
        let _ = writeln!(
            report,
            "## The core alone, inside V8\n\nThe filter's decision (`engine::decide`) per request, built for wasm32-wasip1 and run \
             {iterations} times per workload by node's V8 (bench/core), without Envoy, host calls or the network; (a) with \
             the verified-token cache, the others without. The `step:` rows time the parts of one token's check.\n\n\
             | workload | µs per decision | decided |\n|---|---|---|"
        );
        for (name, ns, outcome) in rows {
            let _ = writeln!(report, "| {name} | {:.1} | {outcome} |", ns / 1000.0);
        }
        let _ = writeln!(report);
    }
    for direct in [true, false] {
        if only_modes.as_deref().is_some_and(|m| !m.contains(if direct { "direct" } else { "upstream" })) {
            continue;
        }
        let upstream = Server::echo();
        let envoys: Vec<(&str, Envoy)> = setups
            .iter()
            .map(|(name, make)| {
                let mut opts = make(upstream.port());
                opts.direct_response = direct;
                let envoy = Envoy::start(opts);
                // Warm up: the filter's first JWKS fetch, V8's compilation.
                for _ in 0..50 {
                    if envoy.send(&Req::get("/api/projects").header("authorization", &pool[0])).status == 200 || *name == "no auth filter" || name.starts_with("empty wasm filter") {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                (*name, envoy)
            })
            .collect();
        let mut cells: Vec<Vec<Vec<Sample>>> = envoys.iter().map(|_| loads.iter().map(|_| Vec::new()).collect()).collect();
        for round in 0..rounds {
            for (li, load) in loads.iter().enumerate() {
                for (ei, (_, envoy)) in envoys.iter().enumerate() {
                    cells[ei][li].push(wrk(envoy, load, seconds, &dir));
                }
            }
            eprintln!("{} round {}/{rounds} done", if direct { "direct" } else { "upstream" }, round + 1);
        }
        let mut results: Vec<(&str, Vec<Sample>, Option<u64>)> = Vec::new();
        for ((name, envoy), per_load) in envoys.iter().zip(cells) {
            let samples: Vec<Sample> = per_load.into_iter().map(median).collect();
            eprintln!("{name} ({}): {:?}", if direct { "direct" } else { "upstream" }, samples.iter().map(|s| s.rps as u64).collect::<Vec<_>>());
            results.push((name, samples, envoy.peak_rss_kib()));
        }
        drop(envoys);
        let floor = |i: usize| results.iter().find(|r| r.0 == "empty wasm filter").map_or(1.0, |r| r.1[i].rps.max(1.0));
        let calls = |i: usize| results.iter().find(|r| r.0 == "wasm host calls only").map_or(1.0, |r| r.1[i].rps.max(1.0));
        let native = |i: usize| {
            let which = if i == 0 { "jwt_authn + cache" } else { "jwt_authn" };
            results.iter().find(|r| r.0 == which).map_or(1.0, |r| r.1[i].rps.max(1.0))
        };
        let _ = writeln!(report, "## {}\n", if direct { "Direct response" } else { "Fast real upstream (echo on loopback)" });
        let _ = writeln!(report, "| setup | workload | requests/s | p50 | p99 | non-2xx | × empty wasm | × jwt_authn | × host calls only | worker CPU µs/req | peak RSS |");
        let _ = writeln!(report, "|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, samples, rss) in &results {
            for (i, (load, s)) in loads.iter().zip(samples).enumerate() {
                let authenticates = name.starts_with("jwt") || name.starts_with("api-auth");
                let want_all_2xx = !authenticates || load.expect_2xx;
                let flag = if want_all_2xx == (s.non_2xx == 0) { "" } else { " (!)" };
                let _ = writeln!(
                    report,
                    "| {name} | {} | {:.0} | {} | {} | {}{flag} | {:.2} | {:.2} | {:.2} | {:.1} | {} MiB |",
                    load.name,
                    s.rps,
                    s.p50,
                    s.p99,
                    s.non_2xx,
                    s.rps / floor(i),
                    s.rps / native(i),
                    s.rps / calls(i),
                    s.cpu_us,
                    rss.map_or("?".into(), |k| (k / 1024).to_string())
                );
            }
        }
        let _ = writeln!(report);
    }
    if !partial {
        report.push_str(&mcp_phase(seconds, rounds, &dir));
        report.push_str(&introspection_phase(&cfg, &pool[0], jwks.port(), seconds, rounds, &dir));
    }
    report.push_str(&memory_section);
    let _ = writeln!(
        report,
        "`worker CPU µs/req` is the CPU time Envoy's worker thread spent per request (user + system, from /proc), the \
         cost figure that load elsewhere on the machine distorts least; requests/s depend on wrk and the machine too.\n"
    );
    let _ = writeln!(
        report,
        "`non-2xx` is expected for (d) only (forged signatures are refused), and for the no-filter and empty-wasm \
         setups never. A `(!)` marks a cell whose status mix was not the expected one."
    );
    print!("{report}");
    if partial {
        eprintln!("a partial run (BENCH_SETUPS/BENCH_LOADS/BENCH_MODES): BENCHMARKS.md left as it was");
    } else {
        std::fs::write(repo_root().join("BENCHMARKS.md"), &report).expect("write BENCHMARKS.md");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(test)]
mod tests {
    use super::replace_memory_section;

    #[test]
    fn a_memory_only_run_replaces_the_memory_section_alone() {
        let file = "# Benchmarks\n\n## Direct response\n\n| a |\n\n## Memory per Envoy process\n\nold text\n\n| old |\n\n`worker CPU µs/req` is the CPU time.\n\n`non-2xx` tail\n";
        let section = "## Memory per Envoy process\n\nnew text\n\n| new |\n\n";
        let new = replace_memory_section(file, section).expect("a memory section");
        assert!(new.starts_with("# Benchmarks\n\n## Direct response\n\n| a |\n\n## Memory per Envoy process\n\nWritten by `BENCH_ONLY=memory make bench`"), "{new}");
        assert!(new.contains("the sections above are the last full run's.\n\nnew text\n\n| new |\n\n`worker CPU µs/req` is the CPU time.\n\n`non-2xx` tail\n"), "{new}");
        assert!(!new.contains("old"), "{new}");
        assert_eq!(new.matches("## Memory per Envoy process").count(), 1);
        // A file without the section, or without what follows it, is left to the caller.
        assert_eq!(replace_memory_section("# Benchmarks\n", section), None);
        assert_eq!(replace_memory_section("## Memory per Envoy process\n\nno end\n", section), None);
    }
}
