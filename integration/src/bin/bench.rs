//! `make bench`: requests per second of the filter beside Envoy without it, in one run, on
//! loopback, with wrk and Envoy --concurrency 1. Ratios, never assertions.

use std::process::Command;
use std::time::Duration;

use api_auth_integration::*;
use serde_json::json;

fn wrk(port: u16, path: &str, headers: &[(&str, String)], seconds: u32) -> (f64, String, String) {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", "-c16", &format!("-d{seconds}s"), "--latency"]);
    for (n, v) in headers {
        cmd.arg("-H").arg(format!("{n}: {v}"));
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let out = cmd.output().expect("wrk (make wrk installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0);
    let pct = |p: &str| text.lines().find_map(|l| l.trim().strip_prefix(p).map(|v| v.trim().to_string())).unwrap_or_default();
    let non2xx = text.lines().find(|l| l.contains("Non-2xx")).map(|l| l.trim().to_string());
    if let Some(n) = non2xx {
        eprintln!("  warning: {n}");
    }
    (rps, pct("50%"), pct("99%"))
}

fn main() {
    let seconds: u32 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let cfg = example("000").expect("../shared/design/examples/000-session-jwt-org.json");
    let issuer = Issuer::new(&["k1"]);
    let jwks = Server::mock(Canned::json(200, &issuer.jwks(&[])));
    let upstream = Server::echo();
    let now = unix_now();
    let token = issuer.token("k1", &json!({ "iss": "https://clerk.cf0.example", "sub": "user_1", "org_id": "org_1", "iat": now, "exp": now + 3600 }));
    let auth = vec![("Authorization", format!("Bearer {token}"))];

    let mut rows = Vec::new();
    {
        let envoy = Envoy::start(EnvoyOpts::new(cfg.clone(), upstream.port()).without_filter());
        let r = wrk(envoy.port(), "/api/projects", &auth, seconds);
        rows.push(("Envoy, no auth filter", r));
    }
    {
        let envoy = Envoy::start(EnvoyOpts::new(cfg, upstream.port()).cluster("clerk_jwks", jwks.port()));
        // Let the first JWKS fetch land before measuring.
        for _ in 0..50 {
            if envoy.send(&Req::get("/api/projects").bearer(&token)).status == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        rows.push(("api-auth-filter, one RS256 token repeated", wrk(envoy.port(), "/api/projects", &auth, seconds)));
        rows.push(("api-auth-filter, public route", wrk(envoy.port(), "/health", &[], seconds)));
    }
    let base = rows[0].1 .0.max(1.0);
    println!("| setup (wrk -t1 -c16, {seconds} s, Envoy --concurrency 1) | requests/s | p50 | p99 | ratio to no filter |");
    println!("|---|---|---|---|---|");
    for (name, (rps, p50, p99)) in &rows {
        println!("| {name} | {rps:.0} | {p50} | {p99} | {:.3} |", rps / base);
    }
}
