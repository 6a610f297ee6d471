//! `make soak` (not part of `make test`): minutes of mixed load through Envoy (--concurrency 2)
//! and the filter, with a JWKS server and an echo upstream on loopback. First the peak
//! requests/s of the mix is measured (unthrottled, SOAK_PEAK_SECONDS), then the mix runs for
//! SOAK_SECONDS (default 300) at SOAK_RATE (default 0.6) of that peak, paced. Then it checks:
//! every response had the status its request kind expects, Envoy's log has no error or
//! critical line, no wasm VM failed, and reports the memory of Envoy (RSS) and of each wasm
//! VM (its linear memory, found in /proc/<pid>/smaps beside V8's guard reservation: Envoy
//! 1.40 has no per-VM memory stat) at the start and the end of the soak.
//!
//! Exits 1 when a response had an unexpected status, a request failed, the log has an error
//! line, or a VM failed. Memory is reported with a verdict, not asserted.
//!
//! The mix, per 100 requests: 35 valid JWTs (a pool of distinct tokens, most of them in the
//! filter's verified-token cache after the first round), 20 valid API keys, 20 invalid
//! credentials (forged signature, expired, wrong issuer, unknown, revoked and missing keys,
//! Basic auth, a member on an admin route, a forged webhook signature), 15 public routes and
//! 10 signed webhooks with a 1 KiB body.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_auth_integration::*;
use hmac::Mac;
use serde_json::{json, Value};

const ISS: &str = "https://idp.soak.example";
const SECRET: &str = "whsec_soak_secret";
const KEYS: [&str; 3] = ["sk_soak_alpha", "sk_soak_beta", "sk_soak_gamma"];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config() -> Value {
    let mut keys: Vec<Value> = KEYS
        .iter()
        .map(|k| json!({ "id": format!("id_{k}"), "sha256": sha256_hex(k.as_bytes()), "status": "active", "permissions": ["items"] }))
        .collect();
    keys.push(json!({ "id": "id_revoked", "sha256": sha256_hex(b"sk_soak_revoked"), "status": "revoked", "permissions": ["items"] }));
    json!({
        "providers": {
            // Refreshed every 30 s during the soak: the fetch path runs under load.
            "idp": { "issuer": ISS, "algorithms": ["RS256"], "clock_skew_s": 5,
                     "jwks": { "remote": { "cluster": "jwks", "authority": "idp.soak.example", "path": "/jwks.json",
                                           "timeout_ms": 1000, "refresh_s": 30, "min_refetch_s": 5 } } }
        },
        "api_keys": { "prefixes": ["sk_"], "keys": keys },
        "webhooks": { "hook": { "secrets": [{ "value": SECRET }], "max_body_bytes": 65536 } },
        "routes": [
            { "match": { "path": "/health" }, "auth": "none" },
            { "match": { "prefix": "/hooks/" }, "auth": "none", "webhook": "hook" },
            { "match": { "prefix": "/api/admin/" }, "auth": { "credentials": ["jwt"], "roles": ["admin"] } },
            { "match": { "prefix": "/api/" }, "auth": { "credentials": ["jwt"] } },
            { "match": { "prefix": "/v1/" }, "auth": { "credentials": ["api_key"], "permissions": ["items"] } }
        ],
        "forward": { "headers": { "x-auth-subject": "subject", "x-auth-key-id": "key_id" } },
        "correlation_id": { "header": "x-correlation-id", "generate": true }
    })
}

/// A request ready to write on a kept-alive connection, with the status it must get.
struct Template {
    kind: &'static str,
    name: &'static str,
    bytes: Vec<u8>,
    expect: u16,
}

fn template(kind: &'static str, name: &'static str, method: &str, path: &str, headers: &[(&str, String)], body: &[u8], expect: u16) -> Template {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: soak.local\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if method == "POST" {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Template { kind, name, bytes, expect }
}

fn sign(body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The request templates and the rotation: indices into the templates, by the mix's weights.
fn workload(issuer: &Issuer, pool: usize) -> (Vec<Template>, Vec<usize>) {
    let now = unix_now();
    let claims = |i: usize, roles: &[&str]| json!({ "iss": ISS, "sub": format!("user_{i}"), "iat": now, "exp": now + 86_400, "roles": roles });
    let mut t = Vec::new();
    let mut by_kind: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut add = |t: &mut Vec<Template>, tpl: Template| {
        by_kind.entry(tpl.kind).or_default().push(t.len());
        t.push(tpl);
    };
    for i in 0..pool {
        let tok = issuer.token("k1", &claims(i, if i % 10 == 0 { &["admin"] } else { &["member"] }));
        let path = if i % 10 == 0 { "/api/admin/users" } else { "/api/projects?page=2" };
        add(&mut t, template("jwt", "valid JWT", "GET", path, &[("authorization", format!("Bearer {tok}"))], b"", 200));
    }
    for k in KEYS {
        add(&mut t, template("key", "valid API key", "GET", "/v1/items", &[("x-api-key", k.to_string())], b"", 200));
        add(&mut t, template("key", "valid API key as bearer", "POST", "/v1/items", &[("authorization", format!("Bearer {k}"))], b"{}", 200));
    }
    let member = issuer.token("k1", &claims(1, &["member"]));
    let other = Issuer::new(&["k1"]);
    for i in 0..50 {
        let forged = other.token("k1", &claims(i, &["admin"]));
        add(&mut t, template("invalid", "forged signature", "GET", "/api/projects", &[("authorization", format!("Bearer {forged}"))], b"", 401));
    }
    let expired = issuer.token("k1", &json!({ "iss": ISS, "sub": "old", "iat": now - 7200, "exp": now - 3600 }));
    let stranger = issuer.token("k1", &json!({ "iss": "https://other.example", "sub": "x", "exp": now + 3600 }));
    let body = vec![b'x'; 1024];
    let webhook_body = |i: usize| format!("{{\"event\":\"soak\",\"n\":{i},\"pad\":\"{}\"}}", "p".repeat(1000)).into_bytes();
    for (name, method, path, headers, expect) in [
        ("expired JWT", "GET", "/api/projects", vec![("authorization", format!("Bearer {expired}"))], 401),
        ("wrong issuer", "GET", "/api/projects", vec![("authorization", format!("Bearer {stranger}"))], 401),
        ("unknown key", "GET", "/v1/items", vec![("x-api-key", "sk_soak_unknown".to_string())], 401),
        ("revoked key", "GET", "/v1/items", vec![("x-api-key", "sk_soak_revoked".to_string())], 401),
        ("no credentials", "GET", "/api/projects", vec![], 401),
        ("Basic auth", "GET", "/v1/items", vec![("authorization", "Basic dXNlcjpwYXNz".to_string())], 401),
        ("member on the admin route", "GET", "/api/admin/users", vec![("authorization", format!("Bearer {member}"))], 403),
        ("forged webhook signature", "POST", "/hooks/soak", vec![("x-webhook-signature", sign(b"another body"))], 401),
    ] {
        let b: &[u8] = if method == "POST" { &body } else { b"" };
        add(&mut t, template("invalid", name, method, path, &headers, b, expect));
    }
    add(&mut t, template("public", "health", "GET", "/health", &[], b"", 200));
    add(&mut t, template("public", "health with a query", "GET", "/health?probe=soak", &[("x-correlation-id", "soak-probe".into())], b"", 200));
    for i in 0..20 {
        let b = webhook_body(i);
        add(&mut t, template("webhook", "signed webhook", "POST", "/hooks/soak", &[("x-webhook-signature", sign(&b)), ("content-type", "application/json".into())], &b, 200));
    }
    // Weights per 100 requests; within a kind, templates in turn.
    let weights = [("jwt", 35), ("key", 20), ("invalid", 20), ("public", 15), ("webhook", 10)];
    let mut rotation = Vec::new();
    let mut next: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut pick = (rng % 100) as i64;
        let kind = weights.iter().find(|(_, w)| {
            pick -= *w as i64;
            pick < 0
        });
        let kind = kind.map_or("public", |(k, _)| *k);
        let list = &by_kind[kind];
        let n = next.entry(kind).or_insert(0);
        rotation.push(list[*n % list.len()]);
        *n += 1;
    }
    (t, rotation)
}

/// A kept-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn { writer: s.try_clone()?, reader: BufReader::new(s) })
    }

    /// Sends one request; returns the status, whether the server closes, and the body's start.
    fn roundtrip(&mut self, req: &[u8]) -> std::io::Result<(u16, bool, Vec<u8>)> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        self.writer.write_all(req)?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(bad("closed before a response"));
        }
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status line"))?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("closed in the head"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').ok_or_else(|| bad("header line"))?;
            let (n, v) = (n.trim().to_ascii_lowercase(), v.trim());
            match n.as_str() {
                "content-length" => length = v.parse().map_err(|_| bad("content-length"))?,
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| bad("chunk size"))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        }
        body.truncate(200);
        Ok((status, close, body))
    }
}

#[derive(Default)]
struct Tally {
    /// (kind, status) -> count
    statuses: BTreeMap<(&'static str, u16), u64>,
    /// (kind, name, status) -> count, for statuses that were not expected.
    unexpected: BTreeMap<(&'static str, &'static str, u16), u64>,
    examples: Vec<String>,
    errors: BTreeMap<String, u64>,
    requests: u64,
    late: u64,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in o.unexpected {
            *self.unexpected.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.examples.extend(o.examples.into_iter().take(5));
        self.requests += o.requests;
        self.late += o.late;
        self.latencies_us.extend(o.latencies_us);
    }
}

/// Runs the rotation on `conns` connections for `duration`; `rate` (requests/s over all
/// connections) paces them, `None` runs unthrottled.
fn run_load(port: u16, templates: &Arc<Vec<Template>>, rotation: &Arc<Vec<usize>>, conns: usize, duration: Duration, rate: Option<f64>) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|w| {
            let (templates, rotation, stop) = (templates.clone(), rotation.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                let mut conn: Option<Conn> = None;
                let mut i = w * rotation.len() / conns;
                // Each connection sends at its own slots: w/rate, (w + conns)/rate, ...
                let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
                let mut next = start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(w as f64 / conns as f64));
                while !stop.load(Ordering::Relaxed) {
                    if let Some(iv) = interval {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else if now - next > Duration::from_millis(500) {
                            // Behind by more than half a second: drop the backlog, count it.
                            tally.late += 1;
                            next = now;
                        }
                        next += iv;
                    }
                    let tpl = &templates[rotation[i % rotation.len()]];
                    i += 1;
                    if conn.is_none() {
                        match Conn::open(port) {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                *tally.errors.entry(format!("connect: {e}")).or_default() += 1;
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                        }
                    }
                    let sent = Instant::now();
                    let result = conn.as_mut().map(|c| c.roundtrip(&tpl.bytes)).expect("connection");
                    tally.requests += 1;
                    match result {
                        Ok((status, close, body)) => {
                            tally.latencies_us.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            *tally.statuses.entry((tpl.kind, status)).or_default() += 1;
                            if status != tpl.expect {
                                *tally.unexpected.entry((tpl.kind, tpl.name, status)).or_default() += 1;
                                if tally.examples.len() < 5 {
                                    tally.examples.push(format!("{} ({}): {status} {}", tpl.name, tpl.kind, String::from_utf8_lossy(&body)));
                                }
                            }
                            if close {
                                conn = None;
                            }
                        }
                        Err(e) => {
                            *tally.errors.entry(format!("{} ({}): {e}", tpl.name, tpl.kind)).or_default() += 1;
                            conn = None;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for h in handles {
        total.merge(h.join().expect("load thread"));
    }
    total
}

/// Envoy's resident memory and each wasm VM's linear memory (size and resident), in KiB.
#[derive(Clone, Debug, Default)]
struct Memory {
    rss_kib: u64,
    /// (size, resident) of each wasm linear memory.
    wasm: Vec<(u64, u64)>,
}

impl Memory {
    fn wasm_size(&self) -> u64 {
        self.wasm.iter().map(|m| m.0).sum()
    }
    fn wasm_rss(&self) -> u64 {
        self.wasm.iter().map(|m| m.1).sum()
    }
    fn show(&self) -> String {
        format!(
            "Envoy RSS {} KiB; {} wasm linear memories, {} KiB in all ({} KiB resident): {:?}",
            self.rss_kib,
            self.wasm.len(),
            self.wasm_size(),
            self.wasm_rss(),
            self.wasm.iter().map(|m| m.0).collect::<Vec<_>>()
        )
    }
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0);
    Memory { rss_kib, wasm: wasm_linear_memories(pid) }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn main() {
    let seconds: u64 = env_or("SOAK_SECONDS", 300);
    let peak_seconds: u64 = env_or("SOAK_PEAK_SECONDS", 15);
    let fraction: f64 = env_or("SOAK_RATE", 0.6);
    let conns: usize = env_or("SOAK_CONNECTIONS", 16);
    let pool: usize = env_or("SOAK_TOKENS", 1000);
    assert!(fraction >= 0.5, "SOAK_RATE must be at least 0.5 (half the peak)");

    eprintln!("soak: load average at start {}", loadavg());
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let envoy = Envoy::start(EnvoyOpts::new(config(), upstream.port()).cluster("jwks", jwks.port()).concurrency(2));
    eprintln!("soak: minting {pool} tokens...");
    let (templates, rotation) = workload(&issuer, pool);
    let (templates, rotation) = (Arc::new(templates), Arc::new(rotation));
    // Warm up: the first JWKS fetch, then every template once.
    let first = templates.iter().find(|t| t.kind == "jwt").expect("a JWT template");
    let ready = (0..200).any(|_| {
        let ok = Conn::open(envoy.port()).and_then(|mut c| c.roundtrip(&first.bytes)).is_ok_and(|r| r.0 == 200);
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(ready, "no JWT passed: the JWKS was not fetched\n{}", envoy.log());
    let at_envoy_start = memory(envoy.pid());
    let warm = run_load(envoy.port(), &templates, &rotation, conns, Duration::from_secs(3), None);

    eprintln!("soak: measuring the peak for {peak_seconds} s ({conns} connections, unthrottled)...");
    let peak = run_load(envoy.port(), &templates, &rotation, conns, Duration::from_secs(peak_seconds), None);
    let peak_rps = peak.requests as f64 / peak_seconds as f64;
    let rate = peak_rps * fraction;
    eprintln!("soak: peak {peak_rps:.0} requests/s; soaking at {rate:.0}/s ({:.0}% of the peak) for {seconds} s", fraction * 100.0);

    let at_start = memory(envoy.pid());
    let load_start = loadavg();
    let mut samples = vec![(0u64, at_start.clone())];
    let soak = {
        let port = envoy.port();
        let (t, r) = (templates.clone(), rotation.clone());
        let runner = std::thread::spawn(move || run_load(port, &t, &r, conns, Duration::from_secs(seconds), Some(rate)));
        let began = Instant::now();
        let every = Duration::from_secs((seconds / 10).clamp(5, 60));
        while !runner.is_finished() {
            std::thread::sleep(Duration::from_millis(250));
            if began.elapsed() >= every * samples.len() as u32 && began.elapsed() < Duration::from_secs(seconds) {
                samples.push((began.elapsed().as_secs(), memory(envoy.pid())));
            }
        }
        runner.join().expect("soak load")
    };
    let load_end = loadavg();
    let at_end = memory(envoy.pid());
    samples.push((seconds, at_end.clone()));
    // Let the filter flush its counters, and the log its last lines.
    std::thread::sleep(Duration::from_millis(1500));

    let achieved = soak.requests as f64 / seconds as f64;
    let log = envoy.log();
    let error_lines: Vec<&str> = log.lines().filter(|l| l.contains("][error][") || l.contains("][critical][")).collect();
    let failures = envoy.wasm_failures();
    let mut lat = soak.latencies_us.clone();
    lat.sort_unstable();

    println!("\n=== soak summary ===");
    let version = std::env::var("ENVOY").ok().and_then(|p| p.split('/').find(|s| s.starts_with("envoy-")).map(str::to_string)).unwrap_or_else(|| "envoy-1.40.0".into());
    println!("{version} --concurrency 2, {conns} connections, mix per 100: 35 JWT, 20 API key, 20 invalid, 15 public, 10 webhook");
    println!("peak (unthrottled, {peak_seconds} s): {peak_rps:.0} requests/s");
    println!(
        "soak: {seconds} s at a target of {rate:.0}/s; achieved {achieved:.0}/s = {:.0}% of the peak ({} requests; {} slots dropped behind schedule)",
        100.0 * achieved / peak_rps.max(1.0),
        soak.requests,
        soak.late
    );
    println!("latency in the soak: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", percentile(&lat, 0.5), percentile(&lat, 0.99), percentile(&lat, 1.0));
    println!("statuses by kind:");
    for ((kind, status), n) in &soak.statuses {
        println!("  {kind:8} {status}: {n}");
    }
    let unexpected: u64 = soak.unexpected.values().sum::<u64>() + peak.unexpected.values().sum::<u64>() + warm.unexpected.values().sum::<u64>();
    let errors: u64 = soak.errors.values().sum::<u64>() + peak.errors.values().sum::<u64>() + warm.errors.values().sum::<u64>();
    println!("unexpected statuses (warm-up, peak and soak): {unexpected}");
    for ((kind, name, status), n) in soak.unexpected.iter().chain(&peak.unexpected).chain(&warm.unexpected) {
        println!("  {name} ({kind}): {status} x{n}");
    }
    for e in soak.examples.iter().chain(&peak.examples).take(5) {
        println!("  e.g. {e}");
    }
    println!("request errors (connect, reset, timeout): {errors}");
    for (e, n) in soak.errors.iter().chain(&peak.errors).chain(&warm.errors) {
        println!("  {e} x{n}");
    }
    println!("Envoy error/critical log lines: {}", error_lines.len());
    for l in error_lines.iter().take(10) {
        println!("  {l}");
    }
    println!("wasm VM failures (reload stats, traps): {}", failures.len());
    println!(
        "filter counters: allowed {}, jwks_fetch_ok {}, jwks_fetch_failed {}, token_cache_hit {}, token_cache_miss {}, host_error {}",
        envoy.stat("wasmcustom.api_auth.allowed").unwrap_or(0),
        envoy.stat("wasmcustom.api_auth.jwks_fetch_ok").unwrap_or(0),
        envoy.stat("wasmcustom.api_auth.jwks_fetch_failed").unwrap_or(0),
        envoy.stat("wasmcustom.api_auth.token_cache_hit").unwrap_or(0),
        envoy.stat("wasmcustom.api_auth.token_cache_miss").unwrap_or(0),
        envoy.stat("wasmcustom.api_auth.host_error").unwrap_or(0),
    );
    println!("memory after Envoy started:  {}", at_envoy_start.show());
    println!("memory at the soak's start:  {}", at_start.show());
    println!("memory at the soak's end:    {}", at_end.show());
    println!("memory during the soak (s: Envoy RSS KiB / wasm linear KiB / wasm resident KiB):");
    for (t, m) in &samples {
        println!("  {t:>4}: {} / {} / {}", m.rss_kib, m.wasm_size(), m.wasm_rss());
    }
    let grown = |a: u64, b: u64| if a == 0 { 0.0 } else { 100.0 * (b as f64 - a as f64) / a as f64 };
    let wasm_growth = grown(at_start.wasm_size(), at_end.wasm_size());
    let rss_growth = grown(at_start.rss_kib, at_end.rss_kib);
    let flat = at_start.wasm.len() == at_end.wasm.len() && wasm_growth <= 0.0 && rss_growth < 10.0;
    println!(
        "memory verdict: {} (wasm linear memory {:+.1}%, Envoy RSS {:+.1}% from the soak's start to its end)",
        if flat { "flat" } else { "NOT flat" },
        wasm_growth,
        rss_growth
    );
    println!("load average (1, 5, 15 min): at the soak's start {load_start}; at its end {load_end}");
    let ok = unexpected == 0 && errors == 0 && error_lines.is_empty() && failures.is_empty() && achieved >= 0.5 * peak_rps;
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    drop(envoy);
    if !ok {
        std::process::exit(1);
    }
}
