//! `api-auth demo-issuer`: the demo key's JWKS over HTTP on loopback, for `make run` and local
//! tests. Tokens come from `api-auth mint-token` with the same key file. With `--keys FILE` it
//! also answers as a key service (`api_keys.lookup`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::args::{self, Arg, Parser};
use crate::failure::{err, Failure};
use crate::keys::{take_key_flag, DemoKey, DEMO_ISSUER};
use crate::util;

pub const HELP: &str = "\
Usage: api-auth demo-issuer [--port N] [--key FILE] [--kid K] [--iss URL] [--keys FILE]

FOR LOCAL TESTING ONLY. Serves the demo key's JWKS (public key only) on 127.0.0.1, as a
provider's `jwks.remote` cluster would fetch it from a real issuer:

  GET /.well-known/jwks.json                the JWKS (what `api-auth jwks` prints)
  GET /.well-known/openid-configuration     {\"issuer\": ..., \"jwks_uri\": ...}
  POST /v1/keys/lookup                      with --keys: a demo key service, as an
                                            `api_keys.lookup` cluster would call it

The key service takes {\"sha256\": \"<hex>\"} (at most 64 KiB) and answers 200 with the entry
of the --keys file whose `sha256` matches, 404 when none does, 400 for any other body.

Prints the JWKS URL on standard output once listening (a log line per request goes to
standard error) and runs until stopped. Mint matching tokens with
`api-auth mint-token --key FILE` (same key file, same --kid if you change it).

Options:
  --port N     the port (default 0: any free port, see the printed URL)
  --key FILE   the demo key (see `api-auth mint-token --help`); created when missing
  --kid K      the key's `kid` (default: its RFC 7638 thumbprint)
  --iss URL    the issuer named in the discovery document (default https://demo-issuer.local)
  --keys FILE  a JSON array of key entries shaped as `api_keys.keys` entries (id, sha256,
               status, permissions, scopes, ...), served by POST /v1/keys/lookup; digests
               from `api-auth hash-key KEY`
  -h, --help   this text
";

struct Docs {
    jwks: String,
    discovery: String,
    /// The key service's entries by lower-case digest, each as its JSON text; `None` without
    /// `--keys`.
    keys: Option<HashMap<String, String>>,
}

/// The entries of a `--keys` file: a JSON array of objects, each with a 64-hex-digit `sha256`
/// unique in the file.
fn load_keys(path: &str) -> Result<HashMap<String, String>, Failure> {
    let text = std::fs::read(path).map_err(|e| err(format!("{path}: {e}")))?;
    let doc: Value = serde_json::from_slice(&text).map_err(|e| err(format!("{path}: not JSON: {e}")))?;
    let Value::Array(entries) = doc else {
        return Err(err(format!("{path}: want a JSON array of key entries")));
    };
    let mut keys = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let digest = entry
            .get("sha256")
            .and_then(Value::as_str)
            .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| err(format!("{path}: [{i}].sha256: want 64 hex digits (`api-auth hash-key KEY`)")))?;
        if keys.insert(digest.to_ascii_lowercase(), entry.to_string()).is_some() {
            return Err(err(format!("{path}: [{i}].sha256: a digest listed twice")));
        }
    }
    Ok(keys)
}

pub fn run(argv: Vec<String>) -> Result<String, Failure> {
    let mut p = Parser::new(argv);
    let (mut key, mut kid) = (None, None);
    let mut port: u16 = 0;
    let mut iss = DEMO_ISSUER.to_string();
    let mut keys_file = None;
    while let Some(a) = p.next_arg() {
        match a {
            Arg::Flag(f, _) if args::is_help(&f) => return Ok(HELP.to_string()),
            Arg::Flag(f, inline) => match f.as_str() {
                "--port" => {
                    let v = p.value(&f, inline)?;
                    port = v.parse().map_err(|_| Failure::Usage(format!("--port wants a port number, not '{v}'")))?;
                }
                "--iss" => iss = p.value(&f, inline)?,
                "--keys" => keys_file = Some(p.value(&f, inline)?),
                _ => {
                    if !take_key_flag(&f, inline, &mut p, &mut key, &mut kid)? {
                        return Err(args::unknown(&f));
                    }
                }
            },
            Arg::Pos(v) => return Err(Failure::Usage(format!("unexpected argument '{v}'"))),
        }
    }
    let key = DemoKey::open(key, kid)?;
    let keys = keys_file.as_deref().map(load_keys).transpose()?;
    // Loopback only: this is a test fixture, not an identity provider.
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| err(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let port = listener.local_addr().map_err(|e| err(format!("no local address: {e}")))?.port();
    let jwks_uri = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
    let docs = Arc::new(Docs {
        jwks: key.jwks().to_string(),
        discovery: json!({ "issuer": iss, "jwks_uri": jwks_uri }).to_string(),
        keys,
    });
    util::print_err(&format!("demo-issuer (local testing only): kid {}, issuer {iss}\n", key.kid));
    if let Some(keys) = &docs.keys {
        util::print_err(&format!("demo-issuer: key service on POST {LOOKUP_PATH}, {} key(s)\n", keys.len()));
    }
    if !util::print_out(&format!("{jwks_uri}\n")) {
        return Err(err("cannot write to standard output"));
    }
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let docs = docs.clone();
                if let Err(e) = std::thread::Builder::new().spawn(move || serve(stream, &docs)) {
                    util::print_err(&format!("demo-issuer: cannot start a thread: {e}\n"));
                }
            }
            Err(e) => util::print_err(&format!("demo-issuer: accept failed: {e}\n")),
        }
    }
    Ok(String::new())
}

const MAX_LINE: u64 = 8192;
const MAX_HEADERS: usize = 100;
const MAX_BODY: u64 = 1 << 20;
/// The most of a key-service request body that is read; a larger one is a 400.
const MAX_LOOKUP_BODY: u64 = 64 << 10;
const LOOKUP_PATH: &str = "/v1/keys/lookup";

/// The key service's answer to a lookup body: 200 and the entry, 404, or 400.
fn lookup(keys: &HashMap<String, String>, body: Option<&[u8]>) -> (u16, String) {
    let digest = body
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| v.get("sha256").and_then(Value::as_str).map(str::to_ascii_lowercase));
    match digest {
        Some(d) => match keys.get(&d) {
            Some(entry) => (200, entry.clone()),
            None => (404, r#"{"detail":"Not found"}"#.to_string()),
        },
        None => (400, r#"{"detail":"Bad request"}"#.to_string()),
    }
}

/// One connection, HTTP/1.1 with keep-alive (Envoy pools its connections to a cluster).
fn serve(stream: TcpStream, docs: &Docs) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let Some(line) = read_line(&mut reader) else { return };
        if line.is_empty() {
            continue; // tolerated before a request line (RFC 9112 §2.2)
        }
        let mut parts = line.split(' ');
        let (method, target, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let mut close = version == "HTTP/1.0";
        let mut length: u64 = 0;
        let mut chunked = false;
        let mut count = 0;
        loop {
            let Some(h) = read_line(&mut reader) else { return };
            if h.is_empty() {
                break;
            }
            count += 1;
            if count > MAX_HEADERS {
                return;
            }
            let Some((name, value)) = h.split_once(':') else { return };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "connection" if value.eq_ignore_ascii_case("close") => close = true,
                "connection" if value.eq_ignore_ascii_case("keep-alive") => close = false,
                "content-length" => match value.parse() {
                    Ok(n) => length = n,
                    Err(_) => return,
                },
                "transfer-encoding" => chunked = true,
                _ => {}
            }
        }
        if chunked || length > MAX_BODY {
            let _ = respond(&mut writer, 400, r#"{"detail":"Bad request"}"#, true, false);
            return;
        }
        // A body small enough for a lookup is kept; a larger one is read and discarded.
        let body = if length <= MAX_LOOKUP_BODY {
            let mut buf = Vec::with_capacity(length as usize);
            if (&mut reader).take(length).read_to_end(&mut buf).ok() != Some(length as usize) {
                return;
            }
            Some(buf)
        } else {
            if std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).ok() != Some(length) {
                return;
            }
            None
        };
        let path = target.split(['?', '#']).next().unwrap_or("");
        let (status, body) = match (method, path, &docs.keys) {
            ("GET" | "HEAD", "/.well-known/jwks.json", _) => (200, docs.jwks.clone()),
            ("GET" | "HEAD", "/.well-known/openid-configuration", _) => (200, docs.discovery.clone()),
            ("POST", LOOKUP_PATH, Some(keys)) => lookup(keys, body.as_deref()),
            ("GET" | "HEAD", _, _) => (404, r#"{"detail":"Not found"}"#.to_string()),
            _ => (405, r#"{"detail":"Method not allowed"}"#.to_string()),
        };
        util::print_err(&format!("demo-issuer: {method} {path} {status}\n"));
        if respond(&mut writer, status, &body, close, method == "HEAD").is_err() || close {
            return;
        }
    }
}

fn read_line(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf).ok()?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return None;
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).ok()
}

fn respond(w: &mut TcpStream, status: u16, body: &str, close: bool, head: bool) -> std::io::Result<()> {
    let text = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {text}\r\ncontent-type: application/json\r\ncontent-length: {}\r\ncache-control: no-store\r\n",
        body.len()
    );
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head {
        out.push_str(body);
    }
    w.write_all(out.as_bytes())?;
    w.flush()
}
