//! hash-key, sign-webhook, mint-token, jwks and demo-issuer, and the help of every command.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{ok, run, run_with, TempDir};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

#[test]
fn hash_key_known_digest() {
    let out = ok(&["hash-key", "cm_example_llm_only"]);
    assert_eq!(out.stdout, "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a\n");
    assert_eq!(out.stderr, "");
    // From standard input: the first line, without its line ending.
    for input in [&b"cm_example_llm_only\n"[..], b"cm_example_llm_only\r\nignored", b"cm_example_llm_only"] {
        let out = run_with(&["hash-key", "-"], Some(input), &[]);
        assert_eq!(out.stdout, "702ce15cea74f7ca360a308b04e329e510812dcfd4d05bd29b0c60f44c06d68a\n");
    }
    assert_eq!(run(&["hash-key"]).code, 2);
    assert_eq!(run(&["hash-key", "a", "b"]).code, 2);
    assert_eq!(run_with(&["hash-key", "-"], Some(b"\n"), &[]).code, 1);
}

/// The README's demo keys hash to the digests of the example tables, by key id.
#[test]
fn hash_key_matches_the_example_tables() {
    let rows = [
        ("002", "key_all", "cm_example_all_services"),
        ("002", "key_bots_ro", "cm_example_bots_reader"),
        ("002", "key_revoked", "cm_example_revoked"),
        ("003", "key_full", "cf_ak_example_full_access"),
        ("003", "key_old", "cf_ak_example_expired"),
        ("004", "tok_ws1", "wsk_example_workspace_one"),
        ("001", "key_webhooks", "cflo_live_sk_EXAMPLE_01HX9VTPQR3KF8MZ"),
    ];
    for (example, id, key) in rows {
        let (_, doc) = common::example(example);
        let entry = doc["api_keys"]["keys"].as_array().unwrap().iter().find(|k| k["id"] == id).unwrap();
        assert_eq!(ok(&["hash-key", key]).stdout.trim_end(), entry["sha256"].as_str().unwrap(), "{example} {id}");
    }
}

fn hmac(secret: &str, message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

#[test]
fn sign_webhook_matches_an_hmac_computed_here() {
    let dir = TempDir::new();
    let body = br#"{"event":"incident.created","incidentId":"inc_01HX9VT"}"#;
    let file = dir.write("body.json", body);
    let secret = "whsec_your_webhook_secret";
    let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();

    let out = ok(&["sign-webhook", "--secret", secret, &file]);
    assert_eq!(out.stdout, format!("sha256={}\n", hex(hmac(secret, body))));
    // Contract 001's known answer, for good measure.
    assert_eq!(out.stdout, "sha256=a5af0c939461c09e5354613bd7ecb7a2736d8c0db9a81cc943a57dac5f6a52c0\n");

    let out = ok(&["sign-webhook", "--secret", secret, "--timestamp", "1700000000", &file]);
    let mut signed = b"1700000000.".to_vec();
    signed.extend_from_slice(body);
    assert_eq!(out.stdout, format!("sha256={}\n", hex(hmac(secret, &signed))));

    let out = ok(&["sign-webhook", "--secret=other", "--prefix", "v1=", "--encoding", "base64", &file]);
    assert_eq!(out.stdout, format!("v1={}\n", STANDARD.encode(hmac("other", body))));

    let out = run_with(&["sign-webhook", "--secret-env", "HOOK_SECRET_FOR_TEST", "-"], Some(b""), &[("HOOK_SECRET_FOR_TEST", Some(secret))]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, format!("sha256={}\n", hex(hmac(secret, b""))));
    assert!(!out.all().contains(secret));

    let out = ok(&["sign-webhook", "--secret", secret, "--timestamp", "now", &file]);
    let ts = out.stderr.strip_prefix("timestamp: ").and_then(|s| s.trim().parse::<i64>().ok()).expect("timestamp on stderr");
    assert!((ts - common::unix_now()).abs() < 60);
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(body);
    assert_eq!(out.stdout, format!("sha256={}\n", hex(hmac(secret, &signed))));

    for args in [
        vec!["sign-webhook", &file],
        vec!["sign-webhook", "--secret", secret],
        vec!["sign-webhook", "--secret", secret, "--encoding", "b32", &file],
        vec!["sign-webhook", "--secret", secret, "--timestamp", "12:00", &file],
    ] {
        assert_eq!(run(&args).code, 2, "{args:?}");
    }
    assert_eq!(run(&["sign-webhook", "--secret", secret, "/nonexistent"]).code, 1);
    assert_eq!(run_with(&["sign-webhook", "--secret-env", "UNSET_FOR_TEST", &file], None, &[("UNSET_FOR_TEST", None)]).code, 1);
}

/// Signed by sign-webhook, verified by the filter's own code (explain --body), with timestamps.
#[test]
fn sign_webhook_round_trip_through_the_filter() {
    let (cfg, _) = common::example("004");
    let dir = TempDir::new();
    let file = dir.write("body.json", br#"{"id":"evt_1"}"#);
    let sig = ok(&["sign-webhook", "--secret", "whsec_4", "--timestamp", "1790000000", &file]).stdout;
    let explain = |now: &str| {
        ok(&[
            "explain", "--json", "--env", "WEBHOOK_SECRET=whsec_4", "--now", now, &cfg, "POST", "/v1/webhooks/provider",
            "-H", &format!("x-signature: {}", sig.trim()), "-H", "x-signature-timestamp: 1790000000", "--body", &file,
        ])
        .json()
    };
    let r = explain("1790000100");
    assert_eq!(r["decision"], "allow", "{r}");
    assert_eq!(r["webhook"]["signature"], "valid");
    // Outside the 300 s window.
    let r = explain("1790000400");
    assert_eq!((r["decision"].as_str(), r["reason"].as_str()), (Some("deny"), Some("signature_invalid")), "{r}");
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

#[test]
fn mint_token_claims_and_key_file() {
    let dir = TempDir::new();
    let key = dir.path("demo/key.pem");
    let out = ok(&[
        "mint-token", "--key", &key, "--iss", "https://issuer.test", "--sub", "user_1", "--aud", "a1", "--aud", "a2", "--org", "org_9",
        "--claims", r#"{"scope":"bots:read","o":{"rol":"admin"},"sub":"user_2"}"#, "--ttl", "120",
    ]);
    assert!(out.stderr.contains("generated a demo signing key (local testing only)"), "{}", out.stderr);
    let token = out.stdout.trim_end();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode_part(parts[0]);
    let claims = decode_part(parts[1]);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "https://issuer.test");
    assert_eq!(claims["sub"], "user_2", "--claims wins");
    assert_eq!(claims["aud"], json!(["a1", "a2"]));
    assert_eq!(claims["org_id"], "org_9");
    assert_eq!(claims["o"], json!({"rol": "admin"}));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 120);
    assert!((claims["iat"].as_i64().unwrap() - common::unix_now()).abs() < 60);

    // The key stays private and is reused: the same kid, no second generation.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = ok(&["mint-token", "--key", &key]);
    assert_eq!(again.stderr, "");
    assert_eq!(decode_part(again.stdout.split('.').next().unwrap())["kid"], header["kid"]);
    let jwks: Value = serde_json::from_str(&ok(&["jwks", "--key", &key]).stdout).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(jwks["keys"][0].get("d").is_none(), "a JWKS never holds the private key");
    let custom = ok(&["jwks", "--key", &key, "--kid", "k-2"]).stdout;
    assert!(custom.contains(r#""kid":"k-2""#));

    let expired = decode_part(ok(&["mint-token", "--key", &key, "--ttl", "-600"]).stdout.split('.').nth(1).unwrap());
    assert!(expired["exp"].as_i64().unwrap() < common::unix_now() - 500);
    assert!(expired["iat"].as_i64().unwrap() < expired["exp"].as_i64().unwrap());

    let bad = dir.write("bad.pem", "not a key");
    let out = run(&["mint-token", "--key", &bad]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("is not an RSA private key in PEM form"), "{}", out.stderr);
    assert!(!out.all().contains("not a key"));
    for args in [vec!["mint-token", "--key", &key, "--claims", "[1]"], vec!["mint-token", "--key", &key, "--ttl", "soon"], vec!["mint-token", "extra"]] {
        assert_eq!(run(&args).code, 2, "{args:?}");
    }
}

/// A token from mint-token, explained with the demo key's JWKS: the real signature check.
#[test]
fn mint_token_and_explain_round_trip() {
    let dir = TempDir::new();
    let key = dir.path("key.pem");
    let other = dir.path("other.pem");
    let jwks = dir.write("jwks.json", ok(&["jwks", "--key", &key]).stdout);
    let cfg = dir.write(
        "config.json",
        json!({
            "providers": {
                "demo": { "issuer": "https://demo-issuer.local", "algorithms": ["RS256"], "audiences": ["api"],
                          "jwks": { "remote": { "cluster": "demo_issuer", "path": "/.well-known/jwks.json" } } },
                "other": { "issuer": "https://other.test", "algorithms": ["RS256"],
                           "jwks": { "remote": { "cluster": "other_jwks", "path": "/jwks" } } }
            },
            "routes": [
                { "match": { "prefix": "/me" }, "auth": { "credentials": ["jwt"], "organization": true, "scopes": ["me:read"] } }
            ],
            "forward": { "headers": { "x-user": "subject", "x-org": "organization", "x-email": "claim:email" } }
        })
        .to_string(),
    );
    let mint = |key: &str, extra: &[&str]| -> String {
        let mut args = vec!["mint-token", "--key", key, "--aud", "api", "--org", "org_1", "--claims", r#"{"scope":"me:read","email":"a@b.test"}"#];
        args.extend_from_slice(extra);
        ok(&args).stdout.trim_end().to_string()
    };
    let explain = |token: &str, extra: &[&str]| -> Value {
        let auth = format!("Authorization: Bearer {token}");
        let mut args = vec!["explain", "--json", &cfg, "GET", "/me", "-H", &auth];
        args.extend_from_slice(extra);
        let out = ok(&args);
        assert!(!out.all().contains(token), "the token was echoed");
        out.json()
    };

    let token = mint(&key, &[]);
    let r = explain(&token, &["--jwks", &jwks]);
    assert_eq!(r["decision"], "allow", "{r}");
    assert_eq!(r["principal"]["kind"], "jwt");
    assert_eq!(r["principal"]["provider"], "demo");
    assert_eq!(r["principal"]["subject"], "user_demo");
    assert_eq!(r["upstream"]["remove"], json!(["authorization"]));
    assert_eq!(r["upstream"]["set"], json!([["x-email", "a@b.test"], ["x-org", "org_1"], ["x-user", "user_demo"]]));
    assert_eq!(r["request"]["headers"], json!([["authorization", "<redacted>"]]));
    // Named form: only that provider gets the keys.
    assert_eq!(explain(&token, &["--jwks", &format!("demo={jwks}")])["decision"], "allow");
    let r = explain(&token, &["--jwks", &format!("other={jwks}")]);
    assert_eq!(r["decision"], "wait", "{r}");
    assert_eq!(r["wait"]["jwks"]["provider"], "demo");
    // No keys at all: Envoy would wait for the remote JWKS.
    assert_eq!(explain(&token, &[])["decision"], "wait");

    let deny = |r: &Value, reason: &str| {
        assert_eq!((r["decision"].as_str(), r["reason"].as_str()), (Some("deny"), Some(reason)), "{r}");
        assert_eq!(r["status"], if reason == "insufficient_scope" || reason == "organization_required" { 403 } else { 401 });
    };
    deny(&explain(&mint(&key, &["--ttl", "-600"]), &["--jwks", &jwks]), "token_expired");
    // Signed by another key with the same kid: the signature does not verify.
    let kid = decode_part(token.split('.').next().unwrap())["kid"].as_str().unwrap().to_string();
    deny(&explain(&mint(&other, &["--kid", &kid]), &["--jwks", &jwks]), "token_invalid");
    deny(&explain(&mint(&key, &["--iss", "https://elsewhere.test"]), &["--jwks", &jwks]), "issuer_unknown");
    deny(&explain(&mint(&key, &["--claims", r#"{"aud":"not-api"}"#]), &["--jwks", &jwks]), "audience_mismatch");
    deny(&explain(&mint(&key, &["--claims", r#"{"scope":"other"}"#]), &["--jwks", &jwks]), "insufficient_scope");
    deny(&explain(&mint(&key, &["--claims", r#"{"org_id":null}"#]), &["--jwks", &jwks]), "organization_required");
    // The --now clock: the same token, an hour and more later.
    deny(&explain(&token, &["--jwks", &jwks, "--now", &(common::unix_now() + 3600 + 61).to_string()]), "token_expired");

    let body = explain(&mint(&key, &["--ttl", "-600"]), &["--jwks", &jwks]);
    assert_eq!(body["body"], r#"{"detail":"Could not validate credentials"}"#);
    assert_eq!(body["headers"], json!([["content-type", "application/json"], ["www-authenticate", "Bearer error=\"invalid_token\""]]));
}

#[test]
fn explain_replays_an_introspection_answer_for_an_opaque_token() {
    let dir = TempDir::new();
    let cfg = dir.write(
        "config.json",
        json!({
            "providers": { "idp": {
                "issuer": "https://idp.test/oidc", "algorithms": ["RS256"], "audiences": ["https://api.test/"],
                "jwks": { "discovery": { "cluster": "idp" } },
                "introspection": { "cluster": "idp", "path": "/oidc/token/introspection", "client_id": "filter",
                                   "client_secret": { "env": "IDP_SECRET" } }
            } },
            "routes": [ { "match": { "prefix": "/api" }, "auth": { "credentials": ["opaque"], "scopes": ["read"] } } ],
            "forward": { "headers": { "x-user": "subject", "x-kind": "kind" } }
        })
        .to_string(),
    );
    let now = common::unix_now();
    let token = "opaque_token_value_42";
    let explain = |answer: Option<Value>| -> Value {
        let auth = format!("Authorization: Bearer {token}");
        let mut args = vec!["explain", "--json", "--env", "IDP_SECRET=s3cret-value", &cfg, "GET", "/api/x", "-H", &auth];
        let file;
        if let Some(a) = answer {
            file = dir.write("answer.json", a.to_string());
            args.extend(["--introspection", file.as_str()]);
        }
        let out = ok(&args);
        assert!(!out.all().contains(token) && !out.all().contains("s3cret-value"), "a token or the secret was echoed");
        out.json()
    };
    let r = explain(None);
    assert_eq!(r["decision"], "wait", "{r}");
    assert_eq!(r["wait"]["introspection"], json!({ "provider": "idp", "cluster": "idp", "path": "/oidc/token/introspection" }));
    let good = json!({ "active": true, "client_id": "agent", "scope": "read write", "aud": "https://api.test/", "exp": now + 600 });
    let r = explain(Some(good.clone()));
    assert_eq!(r["decision"], "allow", "{r}");
    assert_eq!((r["principal"]["kind"].as_str(), r["principal"]["subject"].as_str()), (Some("opaque"), Some("agent")));
    assert_eq!(r["upstream"]["set"], json!([["x-kind", "opaque"], ["x-user", "agent"]]));
    for (answer, reason) in [
        (json!({ "active": false }), "token_invalid"),
        (json!({ "active": true, "client_id": "agent", "scope": "write", "aud": "https://api.test/", "exp": now + 600 }), "insufficient_scope"),
        (json!({ "active": true, "client_id": "agent", "scope": "read", "aud": "https://other.test/", "exp": now + 600 }), "audience_mismatch"),
        (json!({ "active": true, "client_id": "agent", "scope": "read", "aud": "https://api.test/", "exp": now - 600 }), "token_expired"),
        (json!({ "no": "answer" }), "keys_unavailable"),
    ] {
        let r = explain(Some(answer));
        assert_eq!((r["decision"].as_str(), r["reason"].as_str()), (Some("deny"), Some(reason)), "{r}");
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `api-auth demo-issuer --port 0` with `args`; the guard stops it, the line is the
/// JWKS URL it printed once listening.
fn demo_issuer(args: &[&str]) -> (Kill, String) {
    let mut child = Command::new(common::bin())
        .args(["demo-issuer", "--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo-issuer");
    let stdout = child.stdout.take().unwrap();
    let guard = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("URL line");
    (guard, line)
}

#[test]
fn demo_issuer_serves_the_demo_jwks() {
    let dir = TempDir::new();
    let key = dir.path("key.pem");
    let (_guard, line) = demo_issuer(&["--key", &key, "--iss", "https://demo.test"]);
    let url = line.trim();
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/.well-known/jwks.json"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));

    let (status, body) = http_get(port, "/.well-known/jwks.json");
    assert_eq!(status, 200);
    let served: Value = serde_json::from_str(&body).unwrap();
    let printed: Value = serde_json::from_str(&ok(&["jwks", "--key", &key]).stdout).unwrap();
    assert_eq!(served, printed);
    let (status, body) = http_get(port, "/.well-known/openid-configuration?x=1");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"issuer": "https://demo.test", "jwks_uri": url}));
    assert_eq!(http_get(port, "/other").0, 404);

    // Keep-alive, as Envoy's connection pool uses it: two requests on one connection.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for _ in 0..2 {
        write!(s, "GET /.well-known/jwks.json HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), printed);
    }
}

fn http_post(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// `--keys FILE`: the key-service protocol of `api_keys.lookup` (200 and the entry, 404).
#[test]
fn demo_issuer_answers_key_lookups() {
    let dir = TempDir::new();
    let key = dir.path("key.pem");
    let digest = ok(&["hash-key", "cm_demo_from_key_service"]).stdout.trim().to_string();
    let entry = json!({ "id": "key_service_demo", "sha256": digest, "status": "active", "permissions": ["llm"], "scopes": ["bots:read"] });
    let keys = dir.write("keys.json", json!([entry]).to_string().as_bytes());
    let (_guard, line) = demo_issuer(&["--key", &key, "--keys", &keys]);
    let port: u16 = line.trim().strip_prefix("http://127.0.0.1:").and_then(|r| r.split('/').next()).and_then(|p| p.parse().ok()).expect("port");

    let (status, body) = http_post(port, "/v1/keys/lookup", &json!({ "sha256": digest }).to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), entry);
    // Upper-case hex names the same digest.
    assert_eq!(http_post(port, "/v1/keys/lookup", &json!({ "sha256": digest.to_uppercase() }).to_string()).0, 200);
    let unknown = ok(&["hash-key", "cm_not_in_the_service"]).stdout.trim().to_string();
    let (status, body) = http_post(port, "/v1/keys/lookup", &json!({ "sha256": unknown }).to_string());
    assert_eq!((status, body.as_str()), (404, r#"{"detail":"Not found"}"#));
    assert_eq!(http_post(port, "/v1/keys/lookup", "not json").0, 400);
    assert_eq!(http_post(port, "/v1/keys/lookup", "{}").0, 400);
    // The JWKS is still served beside it.
    assert_eq!(http_get(port, "/.well-known/jwks.json").0, 200);

    // A file that is not an array of entries with digests is refused at start.
    for bad in [r#"{"sha256":"x"}"#, r#"[{"id":"a"}]"#, r#"[{"id":"a","sha256":"abc"}]"#] {
        let file = dir.write("bad.json", bad.as_bytes());
        assert_eq!(run(&["demo-issuer", "--port", "0", "--key", &key, "--keys", &file]).code, 1, "{bad}");
    }
}

#[test]
fn every_command_has_help_and_usage_errors_exit_2() {
    let commands = ["check", "explain", "hash-key", "sign-webhook", "mint-token", "jwks", "demo-issuer"];
    for c in commands {
        let out = ok(&[c, "--help"]);
        assert!(out.stdout.starts_with(&format!("Usage: api-auth {c}")), "{c}: {}", out.stdout);
        assert_eq!(ok(&["help", c]).stdout, out.stdout);
        assert_eq!(ok(&[c, "-h"]).stdout, out.stdout);
        let bad = run(&[c, "--no-such-option"]);
        assert_eq!(bad.code, 2, "{c}");
        assert!(bad.stderr.contains(&format!("Try `api-auth {c} --help`.")), "{c}: {}", bad.stderr);
    }
    for c in ["mint-token", "jwks", "demo-issuer"] {
        assert!(ok(&[c, "--help"]).stdout.contains("FOR LOCAL TESTING ONLY"), "{c}");
    }
    let top = ok(&["--help"]).stdout;
    for c in commands {
        assert!(top.contains(c), "{c}");
    }
    assert_eq!(run(&[]).code, 2);
    assert_eq!(run(&["frobnicate"]).code, 2);
    assert_eq!(run(&["help", "frobnicate"]).code, 2);
}
