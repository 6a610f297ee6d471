//! Loopback servers: an upstream that records and echoes what it received, and canned
//! answers for JWKS and key services.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http1::{read_body, read_head};

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

fn read_request(r: &mut impl BufRead) -> Option<Recorded> {
    let (first, headers) = read_head(r)?;
    let first = String::from_utf8_lossy(&first).into_owned();
    let mut parts = first.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let body = read_body(r, &headers)?;
    Some(Recorded { method, path, headers, body })
}
