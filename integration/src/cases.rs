//! Table cases: a request, the status and body it must get, what the upstream must see.

use std::collections::HashMap;

use serde_json::Value;

use crate::*;

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
