//! The filter's decision timed inside V8, without Envoy: built for wasm32-wasip1 and run by
//! node's WASI (tests/wasm-runner.mjs), so that what `make bench` reports per operation is what the same
//! code costs in Envoy's V8, without the host calls and the network around it.
//!
//! Input (the file named by the first argument, else stdin): `{"config": {..}, "now": unix_s, "iterations": n, "workloads": [{"name", "method",
//! "path", "auth": ["Bearer ..", ..], "cache": bool}]}`; stdout: one JSON line per workload
//! with nanoseconds per decision and what was decided.

use std::io::Read;
use std::time::Instant;

use api_auth_filter::config::Config;
use api_auth_filter::engine::{self, Decision, Env, NoCache, Request, VerifiedCache};
use api_auth_filter::token_cache::TokenCache;
use serde_json::{json, Value};

fn outcome(d: &Decision) -> String {
    match d {
        Decision::Allow(_) => "allow".into(),
        Decision::Deny(d) => format!("deny:{}", d.denial.reason.as_str()),
        Decision::Wait(_) => "wait".into(),
        Decision::Respond(_) => "respond".into(),
    }
}

/// ns per call of `f`, over `n` calls.
fn time(n: usize, mut f: impl FnMut() -> bool) -> f64 {
    let mut ok = 0usize;
    let start = Instant::now();
    for _ in 0..n {
        ok += usize::from(f());
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    std::hint::black_box(ok);
    ns
}

/// The steps of one token's check, each timed alone.
fn steps(token: &str, cfg: &Config, n: usize) {
    use api_auth_filter::jwt;
    let Ok(decoded) = jwt::decode(token) else { return };
    let Ok(claims) = decoded.claims() else { return };
    let rows = [
        ("step: sha256 of the token (cache key)", time(n, || engine::token_digest(token)[0] == 0)),
        ("step: decode (split, base64, header JSON)", time(n, || jwt::decode(token).is_ok())),
        ("step: claims JSON", time(n, || decoded.claims().is_ok())),
        ("step: claim rules", time(n, || cfg.providers.first().is_some_and(|p| jwt::validate_claims(&claims, &p.rules, 0).is_ok()))),
    ];
    for (name, ns) in rows {
        println!("{}", json!({ "name": name, "ns_per_decision": ns.round(), "outcome": "-" }));
    }
    if let (Some(p), Some(keys)) = (cfg.providers.first(), engine::inline_keys(cfg).first().and_then(|k| k.keys.clone())) {
        let ns = time(n.min(200), || jwt::verify_signature(&decoded, &keys, &p.algorithms).is_ok());
        println!("{}", json!({ "name": "step: signature", "ns_per_decision": ns.round(), "outcome": "-" }));
    }
}

fn main() {
    let mut input = String::new();
    let read = match std::env::args().nth(1) {
        Some(path) => std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut input)),
        None => std::io::stdin().read_to_string(&mut input),
    };
    if let Err(e) = read {
        eprintln!("core-bench: cannot read the input: {e}");
        std::process::exit(2);
    }
    let spec: Value = serde_json::from_str(&input).unwrap_or_else(|e| {
        eprintln!("core-bench: stdin is not JSON: {e}");
        std::process::exit(2)
    });
    let config_bytes = spec["config"].to_string();
    let cfg = Config::from_json(config_bytes.as_bytes()).unwrap_or_else(|e| {
        eprintln!("core-bench: configuration refused: {e}");
        std::process::exit(2)
    });
    let now = spec["now"].as_i64().unwrap_or(0);
    let iterations = spec["iterations"].as_u64().unwrap_or(1000) as usize;
    let keys = engine::inline_keys(&cfg);
    let empty = Vec::new();
    for w in spec["workloads"].as_array().unwrap_or(&empty) {
        let name = w["name"].as_str().unwrap_or("?");
        let method = w["method"].as_str().unwrap_or("GET");
        let path = w["path"].as_str().unwrap_or("/");
        let requests: Vec<Vec<(String, Vec<u8>)>> = {
            let auth: Vec<&str> = w["auth"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let base = |a: Option<&str>| {
                let mut h = vec![
                    (":method".to_string(), method.as_bytes().to_vec()),
                    (":path".to_string(), path.as_bytes().to_vec()),
                    (":authority".to_string(), b"bench".to_vec()),
                    ("user-agent".to_string(), b"core-bench".to_vec()),
                    ("x-request-id".to_string(), b"8f2c6f2e-5b7e-4a57-9d9b-1f0d2b7e9a11".to_vec()),
                ];
                if let Some(a) = a {
                    h.push(("authorization".to_string(), a.as_bytes().to_vec()));
                }
                h
            };
            if auth.is_empty() { vec![base(None)] } else { auth.iter().map(|a| base(Some(a))).collect() }
        };
        // The filter reads headers in place from the host's buffer: views, as there.
        let requests: Vec<Vec<(&str, &[u8])>> = requests.iter().map(|h| api_auth_filter::credentials::view(h)).collect();
        let cache = TokenCache::new(8192);
        let no_cache = NoCache;
        let verified: &dyn VerifiedCache = if w["cache"].as_bool().unwrap_or(false) { &cache } else { &no_cache };
        let env = Env { now, keys: &keys, random: [7; 16], key_lookup: &engine::no_lookup, introspection: &api_auth_filter::engine::no_introspection, verified, signatures: &api_auth_filter::jwt::OwnCode };
        // One warm-up pass: V8 compiles, caches fill as they would in a running filter.
        let mut last = String::new();
        for h in requests.iter().take(iterations.min(requests.len())) {
            last = outcome(&engine::decide(&cfg, &Request { method, path, headers: h }, &env));
        }
        let start = Instant::now();
        for i in 0..iterations {
            let h = &requests[i % requests.len()];
            let d = engine::decide(&cfg, &Request { method, path, headers: h }, &env);
            if i == 0 {
                last = outcome(&d);
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
        println!("{}", json!({ "name": name, "ns_per_decision": ns.round(), "outcome": last }));
    }
    if let Some(token) = spec["workloads"][0]["auth"][0].as_str().and_then(|a| a.strip_prefix("Bearer ")) {
        steps(token, &cfg, iterations);
    }
}
