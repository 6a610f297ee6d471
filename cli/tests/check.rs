//! `api-auth check`: the example configurations load, broken ones are refused with the path of
//! the field at fault and exit 1, and nothing of the document is printed.

mod common;

use common::{ok, run, run_with, TempDir};
use serde_json::{json, Value};

/// Every 64-hex string of a document: digests that must never be printed.
fn digests(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| digests(x, out)),
        Value::Object(m) => m.values().for_each(|x| digests(x, out)),
        _ => {}
    }
}

#[test]
fn every_example_config_passes() {
    let examples = common::examples();
    assert!(examples.len() >= 6, "expected the five contract examples and the demo");
    for (path, doc) in examples {
        let p = path.to_string_lossy().into_owned();
        let out = ok(&["check", "--any-env", &p]);
        assert!(out.stdout.starts_with(&format!("{p}: OK: ")), "{}", out.stdout);
        assert_eq!(out.stdout.lines().count(), 1, "one summary line: {}", out.stdout);
        let routes = doc["routes"].as_array().map_or(0, Vec::len);
        assert!(out.stdout.contains(&format!("{routes} route")), "{}", out.stdout);
        let mut ds = Vec::new();
        digests(&doc, &mut ds);
        for d in ds {
            assert!(!out.all().contains(&d), "{p}: a digest was printed");
        }
    }
}

#[test]
fn summary_of_contract_002() {
    let (p, _) = common::example("002");
    let out = ok(&["check", &p]);
    assert_eq!(out.stdout, format!("{p}: OK: 17 routes (0 public), 1 provider (dashboard: inline JWKS), 4 API keys, 0 webhooks\n"));
    // The inline HS256 secret of the dashboard provider stays in the file.
    assert!(!out.all().contains("c2Vzc2lvbi1zaWduaW5n"));
    assert_eq!(out.stderr, "");
}

#[test]
fn webhook_secrets_come_from_the_vm_environment() {
    let (p, _) = common::example("001");
    let var = "CAUSEFLOW_WEBHOOK_SECRET";
    let missing = run_with(&["check", &p], None, &[(var, None)]);
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr,
        format!("api-auth: {p}: webhooks.inbound.secrets[0].env: environment variable {var} is not set in the wasm VM\n")
    );
    assert_eq!(missing.stdout, "");
    let from_process = run_with(&["check", &p], None, &[(var, Some("whsec_from_process_env"))]);
    assert_eq!(from_process.code, 0, "{}", from_process.stderr);
    assert!(from_process.stdout.ends_with(": OK: 4 routes (1 public), 1 provider (clerk: JWKS from cluster clerk_jwks), 1 API key, 1 webhook\n"));
    assert!(!from_process.all().contains("whsec_from_process_env"));
    let from_flag = run_with(&["check", "--env", &format!("{var}=whsec_from_flag"), &p], None, &[(var, None)]);
    assert_eq!(from_flag.code, 0, "{}", from_flag.stderr);
    assert!(!from_flag.all().contains("whsec_from_flag"));
}

fn route(m: Value, auth: Value) -> Value {
    json!({ "match": m, "auth": auth })
}

#[test]
fn broken_configs_name_the_field_and_exit_1() {
    let dir = TempDir::new();
    let scopes = json!({ "routes": [
        route(json!({ "path": "/a" }), json!("none")),
        route(json!({ "path": "/b" }), json!({ "scopes": ["b:read"] })),
        route(json!({ "path": "/c" }), json!({ "scopes": ["c:read"] })),
        route(json!({ "prefix": "/" }), json!({ "scopes": ["", "x"] })),
    ]});
    // Written out where the message gives a column: serialisation order must not move it.
    let typo = r#"{"routes": [{"match": {"path": "/x"}, "auth": {"permisions": ["llm"]}}]}"#;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("scopes", scopes, "routes[3].auth.scopes[0]: a requirement must be a non-empty name without '*'"),
        (
            "typo",
            json!(typo),
            "routes[0].auth.permisions: unknown field `permisions`, expected one of `credentials`, `providers`, `permissions`, `scopes`, `roles`, `organization`, `workspace` at line 1 column 59",
        ),
        (
            "provider",
            json!({ "routes": [ route(json!({ "path": "/x" }), json!("none")), route(json!({ "path": "/y" }), json!({ "providers": ["nope"] })) ] }),
            "routes[1].auth.providers[0]: unknown provider 'nope'",
        ),
        (
            "digest",
            json!({ "api_keys": { "prefixes": ["cm_"], "keys": [
                { "id": "a", "sha256": common::sha256_hex(b"cm_a") },
                { "id": "b", "sha256": "not-a-digest" } ] } }),
            "api_keys.keys[1].sha256: must be 64 hex digits (SHA-256 of the key)",
        ),
        (
            "template",
            json!({ "routes": [ route(json!({ "template": "/t/{tool}" }), json!({ "scopes": ["tools:{other}"] })) ] }),
            "routes[0].auth.scopes[0]: {other} is not a variable of the route's template",
        ),
        (
            "algorithm",
            json!({ "providers": { "p": { "issuer": "https://i", "algorithms": ["none"], "jwks": { "inline": { "keys": [] } } } } }),
            "providers.p.algorithms[0]: not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)",
        ),
    ];
    for (name, doc, want) in cases {
        let text = doc.as_str().map_or_else(|| doc.to_string(), str::to_string);
        let file = dir.write(&format!("{name}.json"), text);
        let out = run(&["check", &file]);
        assert_eq!(out.code, 1, "{name}: {}", out.stderr);
        assert_eq!(out.stderr, format!("api-auth: {file}: {want}\n"), "{name}");
        assert_eq!(out.stdout, "", "{name}");
    }
}

#[test]
fn values_in_the_wrong_place_are_not_echoed() {
    let secret = "whsec_do_not_print_me";
    let docs = [
        (json!({ "unmatched": secret }), "unmatched: unknown variant, expected `deny` or `allow`"),
        (json!({ "webhooks": { "w": { "secrets": [{ "value": "s" }], "encoding": secret } } }), "webhooks.w.encoding: must be \"hex\" or \"base64\""),
        (json!({ "routes": [ { "match": { "path": "/x" }, "auth": secret } ] }), "routes[0].auth"),
    ];
    for (doc, want) in docs {
        let out = run_with(&["check", "-"], Some(&serde_json::to_vec(&doc).unwrap()), &[]);
        assert_eq!(out.code, 1);
        assert!(out.stderr.starts_with(&format!("api-auth: <stdin>: {want}")), "{}", out.stderr);
        assert!(!out.all().contains(secret), "{}", out.stderr);
    }
}

#[test]
fn unreadable_input_and_usage_errors() {
    let out = run(&["check", "/nonexistent/config.json"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("api-auth: cannot read /nonexistent/config.json: "), "{}", out.stderr);
    let out = run_with(&["check", "-"], Some(b"{\"routes\": ["), &[]);
    assert_eq!((out.code, out.stderr.as_str()), (1, "api-auth: <stdin>: routes: EOF while parsing a list at line 1 column 12\n"));
    for args in [&["check"][..], &["check", "a.json", "b.json"], &["check", "--bogus", "a.json"]] {
        let out = run(args);
        assert_eq!(out.code, 2, "{args:?}");
        assert!(out.stderr.contains("Try `api-auth check --help`."), "{}", out.stderr);
    }
}

/// The configuration `make run` loads (embedded in envoy/envoy.yaml) compiles, with the demo
/// issuer's provider, the contract 002 keys, the demo key service and the demo webhook (its
/// secret from the VM environment, as run-demo.sh passes it).
#[test]
fn the_demo_config_in_envoy_yaml_passes() {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/envoy.yaml")).expect("envoy.yaml");
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "value: |").skip(1).peekable();
    let indent = lines.peek().map(|l| l.len() - l.trim_start().len()).expect("a configuration block");
    let block: Vec<&str> = lines.take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent).collect();
    let doc = block.iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n");
    let out = run_with(&["check", "-"], Some(doc.as_bytes()), &[("DEMO_WEBHOOK_SECRET", None)]);
    assert_eq!(out.code, 1, "the webhook secret is required: {}", out.stdout);
    assert!(out.stderr.contains("webhooks.demo.secrets[0].env: environment variable DEMO_WEBHOOK_SECRET is not set"), "{}", out.stderr);
    let out = run_with(&["check", "--env", "DEMO_WEBHOOK_SECRET=whsec_demo_local_testing_only", "-"], Some(doc.as_bytes()), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "<stdin>: OK: 19 routes (1 public), 1 provider (demo: JWKS from cluster demo_issuer), 4 API keys + key service, 1 webhook\n");
}

#[test]
fn a_bound_route_followed_by_something_weaker_is_warned_about() {
    let dir = TempDir::new();
    let admin = json!({ "match": { "route_name": "admin-api" }, "auth": { "roles": ["admin"] } });
    let cases = [
        // A public catch-all after the bound route.
        (json!({ "routes": [admin.clone(), { "match": { "prefix": "/" }, "auth": "none" }] }), vec!["routes[0] is bound to the router, and routes[1] after it"]),
        // A catch-all without the role.
        (json!({ "routes": [admin.clone(), { "match": { "prefix": "/" }, "auth": {} }] }), vec!["routes[1] after it"]),
        // unmatched: allow.
        (json!({ "routes": [admin.clone()], "unmatched": "allow" }), vec!["unmatched is \"allow\""]),
        // As strong a catch-all, or a narrower weaker route: nothing to say.
        (json!({ "routes": [admin.clone(), { "match": { "prefix": "/" }, "auth": { "roles": ["admin"] } }] }), vec![]),
        (json!({ "routes": [admin.clone(), { "match": { "prefix": "/public" }, "auth": "none" }] }), vec![]),
    ];
    for (i, (doc, want)) in cases.into_iter().enumerate() {
        let mut doc = doc;
        doc["providers"] = json!({ "idp": { "issuer": "https://idp.example", "algorithms": ["RS256"], "jwks": { "remote": { "cluster": "idp", "path": "/jwks" } } } });
        let p = dir.write(&format!("bound{i}.json"), doc.to_string());
        let out = ok(&["check", &p]);
        let warnings: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("warning: ")).collect();
        assert_eq!(warnings.len(), want.len(), "case {i}: {}", out.stdout);
        for (w, text) in warnings.iter().zip(want) {
            assert!(w.contains(text), "case {i}: {w}");
        }
    }
}
