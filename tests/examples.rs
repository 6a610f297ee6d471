//! The configurations in `examples/` load with the filter's own parser: the five contract
//! examples and `demo.json`, which must stay the configuration `make run` gives Envoy
//! (embedded in `envoy/envoy.yaml`). The design copies in `../shared`, when present, are the
//! same bytes.

mod common;

use std::path::PathBuf;

use api_auth_filter::config::Config;
use serde::Deserialize;
use serde_json::Value;

const CONTRACT_EXAMPLES: [&str; 5] = [
    "000-session-jwt-org.json",
    "001-tenant-jwt-webhooks.json",
    "002-inference-keys.json",
    "003-scoped-keys-mcp.json",
    "004-workspace-tokens.json",
];

fn compile(name: &str, value: &Value) -> Config {
    let bytes = serde_json::to_vec(value).unwrap();
    // Webhook secrets come from the VM's environment; any name resolves here.
    Config::from_json_with_env(&bytes, &|_| Some("test-secret".into())).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_example_compiles() {
    let examples = common::examples();
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    let mut want: Vec<&str> = CONTRACT_EXAMPLES.to_vec();
    want.push("demo.json");
    assert_eq!(names, want, "examples/ holds the five contract examples and the demo");
    for (name, value) in &examples {
        let cfg = compile(name, value);
        assert!(!cfg.routes.is_empty(), "{name}");
    }
}

/// The text under `value: |` of the wasm filter's `configuration` in envoy/envoy.yaml.
fn embedded_demo_config() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy/envoy.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml = Value::deserialize(serde_norway::Deserializer::from_str(&text)).unwrap_or_else(|e| panic!("envoy.yaml: {e}"));
    let mut found = Vec::new();
    find_wasm_configurations(&yaml, &mut found);
    assert_eq!(found.len(), 1, "envoy/envoy.yaml: one wasm filter configuration");
    serde_json::from_str(&found[0]).unwrap_or_else(|e| panic!("envoy.yaml: the filter configuration is not JSON: {e}"))
}

fn find_wasm_configurations(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let c = &map.get("configuration");
            if let Some(Value::String(s)) = c.and_then(|c| c.get("value")) {
                if c.and_then(|c| c.get("@type")).and_then(Value::as_str).is_some_and(|t| t.ends_with("StringValue")) {
                    out.push(s.clone());
                }
            }
            map.values().for_each(|x| find_wasm_configurations(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| find_wasm_configurations(x, out)),
        _ => {}
    }
}

#[test]
fn demo_json_is_the_configuration_make_run_uses() {
    let demo = common::example("demo");
    assert_eq!(embedded_demo_config(), demo, "examples/demo.json differs from the configuration embedded in envoy/envoy.yaml");
    let cfg = compile("demo.json", &demo);
    assert_eq!(cfg.providers.len(), 1, "the demo issuer");
    assert!(cfg.api_keys.is_some(), "the contract 002 keys");
}
