//! The key service's test bed: the built `api-auth-keys` as a process on a free port, and a
//! throwaway PostgreSQL (Debian's, from /usr/lib/postgresql/*/bin) in a temporary directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use api_auth_integration::{free_port, send, Req, Resp};
use serde_json::Value;

pub const ADMIN: &str = "test-admin-token-0f3c9a7e5b1d2468ace";
pub const PREFIX: &str = "cf_ak_";

static N: AtomicU32 = AtomicU32::new(0);

/// A temporary directory, removed on drop (also when a test fails).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn temp_dir(what: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("api-auth-keys-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    TempDir(dir)
}

/// A POST on a fresh connection that never panics: `None` when the service is gone (killed
/// in the middle of it), else the status and the JSON body.
pub fn try_post(port: u16, path: &str, body: &str) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: keys\r\nconnection: close\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

pub struct Service {
    child: Child,
    pub port: u16,
    /// Where the admin API is: `port` unless started with `--admin-listen`.
    pub admin_port: u16,
    pub db: String,
    /// What the service wrote on standard error (its request log), read on a thread.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Service {
    pub fn start(db: &str) -> Service {
        Service::start_with(db, &[("API_AUTH_KEYS_ADMIN_TOKEN", ADMIN)])
    }

    pub fn start_with(db: &str, env: &[(&str, &str)]) -> Service {
        Service::try_start(db, env).unwrap_or_else(|e| panic!("api-auth-keys did not start: {e}"))
    }

    /// Starts the service; the error is its standard error when it exits instead.
    pub fn try_start(db: &str, env: &[(&str, &str)]) -> Result<Service, String> {
        Service::try_start_args(db, env, &[])
    }

    pub fn try_start_args(db: &str, env: &[(&str, &str)], args: &[&str]) -> Result<Service, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_api-auth-keys"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--prefix", PREFIX, "--db", db])
            .args(args)
            .env_remove("API_AUTH_KEYS_ADMIN_TOKEN")
            .env_remove("API_AUTH_KEYS_SERVICE_SECRET")
            .env_remove("API_AUTH_KEYS_PREFIXES")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start api-auth-keys");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let mut out = BufReader::new(stdout);
        let mut first = String::new();
        let _ = out.read_line(&mut first);
        let mut admin_port = None;
        if args.contains(&"--admin-listen") {
            let mut second = String::new();
            let _ = out.read_line(&mut second);
            admin_port = second.trim().strip_prefix("admin on http://127.0.0.1:").and_then(|p| p.parse().ok());
        }
        let Some(port) = first.trim().strip_prefix("listening on http://127.0.0.1:").and_then(|p| p.parse().ok()) else {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            let text = log.lock().unwrap().clone();
            return Err(text);
        };
        let admin_port = admin_port.unwrap_or(port);
        Ok(Service { child, port, admin_port, db: db.to_string(), log })
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let mut req = Req::new(method, &format!("/admin/v1/keys{path}")).bearer(ADMIN);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        send(self.admin_port, &req)
    }

    /// Creates a key through the admin API: the key, and its entry.
    pub fn create(&self, body: &Value) -> (String, Value) {
        let r = self.admin("POST", "", Some(body));
        assert_eq!(r.status, 201, "create: {}", r.text());
        let v = r.json();
        (v["key"].as_str().expect("key").to_string(), v["entry"].clone())
    }

    pub fn entry(&self, id: &str) -> Value {
        let r = self.admin("GET", &format!("/{id}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn list(&self) -> Vec<Value> {
        let r = self.admin("GET", "", None);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["keys"].as_array().cloned().unwrap_or_default()
    }

    pub fn lookup(&self, body: &str) -> Resp {
        send(self.port, &Req::post("/v1/keys/lookup").header("content-type", "application/json").body(body))
    }

    /// SIGKILL: no shutdown, no flush, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

/// A PostgreSQL server of its own: `initdb` into a temporary directory, started with `pg_ctl`
/// on a free port (as the `postgres` user when the tests run as root, which PostgreSQL
/// refuses), stopped and removed on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: TempDir,
    pub port: u16,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").is_file()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().expect("PostgreSQL not found in /usr/lib/postgresql/*/bin: run `make postgres` (make test does)")
}

fn as_postgres(bin: &std::path::Path, args: &[&str]) -> Command {
    let root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = temp_dir("pg");
        let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&*dir).status();
        let data = dir.join("data");
        let d = data.to_string_lossy().to_string();
        let out = as_postgres(&bin.join("initdb"), &["-D", &d, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]).stdin(Stdio::null()).output().expect("run initdb");
        assert!(out.status.success(), "initdb: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        for _ in 0..3 {
            let port = free_port();
            let opts = format!("-p {port} -h 127.0.0.1 -k {} -c fsync=off -c max_connections=100", dir.display());
            let log = dir.join("pg.log").to_string_lossy().to_string();
            let out = as_postgres(&bin.join("pg_ctl"), &["-D", &d, "-l", &log, "-w", "-t", "30", "-o", &opts, "start"]).stdin(Stdio::null()).output().expect("run pg_ctl");
            if out.status.success() {
                return Postgres { bin, dir, port };
            }
        }
        let log = std::fs::read_to_string(dir.join("pg.log")).unwrap_or_default();
        panic!("PostgreSQL did not start:\n{log}");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let d = self.dir.join("data").to_string_lossy().to_string();
        let _ = as_postgres(&self.bin.join("pg_ctl"), &["-D", &d, "-m", "immediate", "-w", "stop"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// One HTTP/1.1 connection kept alive, for load: requests one after the other, each answer
/// read whole by its content-length.
pub struct KeepAlive {
    reader: BufReader<std::net::TcpStream>,
    host: String,
}

impl KeepAlive {
    pub fn connect(port: u16) -> KeepAlive {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        KeepAlive { reader: BufReader::new(s), host: format!("127.0.0.1:{port}") }
    }

    /// The status of one request (`authorization` given as the whole header value).
    pub fn request(&mut self, method: &str, path: &str, authorization: Option<&str>, body: &str) -> u16 {
        use std::io::{Read, Write};
        let auth = authorization.map(|a| format!("authorization: {a}\r\n")).unwrap_or_default();
        let req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", self.host, body.len());
        self.reader.get_mut().write_all(req.as_bytes()).expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().expect("length");
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).expect("body");
        status
    }
}
