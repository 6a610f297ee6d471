//! A test tool, not shipped: a proxy-wasm HTTP filter that verifies signatures sent in the
//! request body with the filter's own signature path (`glue::signatures::HostSignatures`, the
//! same DER conversion, protobuf encoder and fallback the filter uses, over the same ABI
//! host), and answers with the verdicts and who gave them. JWTs cannot carry Wycheproof's
//! messages; this can. Used by integration/tests/host_signatures.rs.
//!
//! Request body (JSON): `{"jwk": {...}, "alg": "RS256", "via": "host" | "own",
//! "tests": [{"msg": hex, "sig": hex}, ...], "repeat": n}`. `via: "host"` delegates every
//! algorithm the host can verify (no probe: the test sees the host's own answers); `own` uses
//! the filter's own code. With `repeat`, the first test is verified n times and the answer
//! also gives the wall-clock nanoseconds that took.
//!
//! With `{"raw": {"hash": "sha256", "key": hex DER SubjectPublicKeyInfo, "tests": [...]}}`
//! instead, each signature goes to the host as it is, in the filter's protobuf encoding, and
//! the answer is `{"raw": ["valid" | "invalid" | "error", ...]}`: what the host itself can
//! verify (PSS, for one).
//!
//! Answer: `{"key": bool, "verdicts": ["host:true", "host:false", "fallback:true", "refused",
//! "own:false", ...], "ns": n}`; `key: false` when the JWK is refused (every verdict is then
//! "nokey").
//!
//! Only for wasm32 (the ABI host is): on any other target the crate is empty, so workspace-wide
//! host builds still work.
#![cfg(target_arch = "wasm32")]

use api_auth_filter::glue::abi::AbiHost;
use api_auth_filter::glue::signatures::HostSignatures;
use api_auth_filter::jwt::foreign::{Delegation, Verdict};
use api_auth_filter::jwt::{jwk, Alg};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};
use serde_json::{json, Value};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

struct Root;

impl Context for Root {}

impl RootContext for Root {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe;

impl Context for Probe {}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn now_ns() -> u128 {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

fn raw(req: &Value) -> Value {
    use api_auth_filter::glue::Host;
    use api_auth_filter::jwt::foreign::{self, HostVerdict};
    let (Some(hash), Some(key)) = (req["hash"].as_str(), req["key"].as_str().and_then(unhex)) else { return json!({"error": "raw"}) };
    let verdicts: Vec<&str> = req["tests"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| Some((unhex(t["msg"].as_str()?)?, unhex(t["sig"].as_str()?)?))).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .map(|(msg, sig)| {
            let args = foreign::encode_arguments(hash, &key, sig, msg);
            match AbiHost.call_foreign(foreign::FUNCTION, &args).map(|r| foreign::decode_result(&r)) {
                Ok(HostVerdict::Valid) => "valid",
                Ok(HostVerdict::Invalid) => "invalid",
                _ => "error",
            }
        })
        .collect();
    json!({ "raw": verdicts })
}

fn answer(body: &[u8]) -> Value {
    let Ok(req) = serde_json::from_slice::<Value>(body) else { return json!({"error": "not JSON"}) };
    if req.get("raw").is_some() {
        return raw(&req["raw"]);
    }
    let Some(alg) = req["alg"].as_str().and_then(Alg::parse) else { return json!({"error": "alg"}) };
    let delegation = if req["via"] == "host" { Delegation { rsa: true, es256: true } } else { Delegation::NONE };
    let tests: Vec<(Vec<u8>, Vec<u8>)> = req["tests"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| Some((unhex(t["msg"].as_str()?)?, unhex(t["sig"].as_str()?)?))).collect())
        .unwrap_or_default();
    let Some(key) = jwk::parse_jwk(&req["jwk"]) else {
        return json!({"key": false, "verdicts": vec!["nokey"; tests.len()]});
    };
    let host = AbiHost;
    let check = HostSignatures { host: &host, delegation };
    let verdicts: Vec<String> = tests
        .iter()
        .map(|(msg, sig)| match check.check(&key.key, alg, msg, sig) {
            Verdict::Host(v) => format!("host:{v}"),
            Verdict::Fallback(v) => format!("fallback:{v}"),
            Verdict::Own(v) => format!("own:{v}"),
            Verdict::Refused => "refused".to_string(),
        })
        .collect();
    let mut out = json!({"key": true, "verdicts": verdicts});
    if let (Some(n), Some((msg, sig))) = (req["repeat"].as_u64(), tests.first()) {
        let start = now_ns();
        let mut accepted = 0u64;
        for _ in 0..n {
            accepted += u64::from(check.check(&key.key, alg, msg, sig).accepted());
        }
        out["ns"] = json!((now_ns() - start) as u64);
        out["accepted"] = json!(accepted);
    }
    out
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            let _ = hostcalls::send_http_response(400, vec![], Some(b"a body is needed"));
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten().unwrap_or_default();
        let out = serde_json::to_vec(&answer(&body)).unwrap_or_default();
        let _ = hostcalls::send_http_response(200, vec![("content-type", "application/json")], Some(&out));
        Action::Pause
    }
}
