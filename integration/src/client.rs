//! A raw HTTP/1.1 client that can send any header bytes (a proxy would not).

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::http1::{read_body, read_head};

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
