//! A real Envoy with the built filter: its bootstrap, its admin interface, its logs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::*;

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

    /// Waits until the Prometheus sample `sample` (`name{labels}` exactly, or a bare name that
    /// also reads `name{}`) shows `want`: the filter flushes its counters on its timer.
    pub fn prometheus_reaches(&self, sample: &str, want: u64) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.admin("/stats/prometheus");
            let value = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix("{} ").or_else(|| rest.strip_prefix(' '))))
                .and_then(|v| v.trim().parse::<u64>().ok());
            if value == Some(want) {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(format!("{sample} = {value:?}, want {want}"));
            }
            thread::sleep(Duration::from_millis(100));
        }
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
