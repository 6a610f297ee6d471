//! `api-auth demo-issuer`: the demo key's JWKS over HTTP on loopback, for `make run` and local
//! tests. Tokens come from `api-auth mint-token` with the same key file.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::args::{self, Arg, Parser};
use crate::keys::{take_key_flag, DemoKey, DEMO_ISSUER};
use crate::util::{self, err, Failure};

pub const HELP: &str = "\
Usage: api-auth demo-issuer [--port N] [--key FILE] [--kid K] [--iss URL]

FOR LOCAL TESTING ONLY. Serves the demo key's JWKS (public key only) on 127.0.0.1, as a
provider's `jwks.remote` cluster would fetch it from a real issuer:

  GET /.well-known/jwks.json                the JWKS (what `api-auth jwks` prints)
  GET /.well-known/openid-configuration     {\"issuer\": ..., \"jwks_uri\": ...}

Prints the JWKS URL on standard output once listening (a log line per request goes to
standard error) and runs until stopped. Mint matching tokens with
`api-auth mint-token --key FILE` (same key file, same --kid if you change it).

Options:
  --port N     the port (default 0: any free port, see the printed URL)
  --key FILE   the demo key (see `api-auth mint-token --help`); created when missing
  --kid K      the key's `kid` (default: its RFC 7638 thumbprint)
  --iss URL    the issuer named in the discovery document (default https://demo-issuer.local)
  -h, --help   this text
";

struct Docs {
    jwks: String,
    discovery: String,
}

pub fn run(argv: Vec<String>) -> Result<String, Failure> {
    let mut p = Parser::new(argv);
    let (mut key, mut kid) = (None, None);
    let mut port: u16 = 0;
    let mut iss = DEMO_ISSUER.to_string();
    while let Some(a) = p.next_arg() {
        match a {
            Arg::Flag(f, _) if args::is_help(&f) => return Ok(HELP.to_string()),
            Arg::Flag(f, inline) => match f.as_str() {
                "--port" => {
                    let v = p.value(&f, inline)?;
                    port = v.parse().map_err(|_| Failure::Usage(format!("--port wants a port number, not '{v}'")))?;
                }
                "--iss" => iss = p.value(&f, inline)?,
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
    // Loopback only: this is a test fixture, not an identity provider.
    let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| err(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let port = listener.local_addr().map_err(|e| err(format!("no local address: {e}")))?.port();
    let jwks_uri = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
    let docs = Arc::new(Docs {
        jwks: key.jwks().to_string(),
        discovery: json!({ "issuer": iss, "jwks_uri": jwks_uri }).to_string(),
    });
    util::print_err(&format!("demo-issuer (local testing only): kid {}, issuer {iss}\n", key.kid));
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
        if std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).ok() != Some(length) {
            return;
        }
        let path = target.split(['?', '#']).next().unwrap_or("");
        let (status, body) = match (method, path) {
            ("GET" | "HEAD", "/.well-known/jwks.json") => (200, docs.jwks.as_str()),
            ("GET" | "HEAD", "/.well-known/openid-configuration") => (200, docs.discovery.as_str()),
            ("GET" | "HEAD", _) => (404, r#"{"detail":"Not found"}"#),
            _ => (405, r#"{"detail":"Method not allowed"}"#),
        };
        util::print_err(&format!("demo-issuer: {method} {path} {status}\n"));
        if respond(&mut writer, status, body, close, method == "HEAD").is_err() || close {
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
