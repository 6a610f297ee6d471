//! The Istio manifests in envoy/istio/ stay honest: the WasmPlugin carries example 003 and the
//! webhook EnvoyFilter example 001, each changed only in the JWKS cluster, which must be the name
//! Istio generates for the ServiceEntry and DestinationRule beside them; both configurations
//! compile with the filter's own parser; the Istio and Envoy settings the filter relies on
//! (phase, fail-closed, allow_on_headers_stop_iteration, buffer limit) are there.

mod common;

use std::path::PathBuf;

use api_auth_filter::config::{Config, KeySource};
use serde::Deserialize;
use serde_json::Value;

fn istio_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy/istio")
}

fn read(name: &str) -> String {
    let path = istio_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of a file, as JSON values.
fn docs(name: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(&read(name))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// The cluster Istio generates for the host's ServiceEntry port on which the DestinationRule
/// originates TLS: `outbound|<port>|<subset>|<host>` (istio pilot/pkg/model BuildSubsetKey),
/// with no subset.
fn istio_cluster(docs: &[Value], host: &str) -> String {
    let se = docs
        .iter()
        .find(|d| d["kind"] == "ServiceEntry" && d["spec"]["hosts"].as_array().is_some_and(|h| h.iter().any(|h| h == host)))
        .unwrap_or_else(|| panic!("a ServiceEntry for {host}"));
    assert_eq!(se["apiVersion"], "networking.istio.io/v1");
    assert_eq!(se["spec"]["location"], "MESH_EXTERNAL");
    assert_eq!(se["spec"]["resolution"], "DNS");
    let dr = docs
        .iter()
        .find(|d| d["kind"] == "DestinationRule" && d["spec"]["host"] == host)
        .unwrap_or_else(|| panic!("a DestinationRule for {host}"));
    assert_eq!(dr["metadata"]["namespace"], se["metadata"]["namespace"], "{host}: DestinationRule beside its ServiceEntry");
    let tls: Vec<&Value> = dr["spec"]["trafficPolicy"]["portLevelSettings"]
        .as_array()
        .expect("port-level TLS settings")
        .iter()
        .filter(|p| p["tls"]["mode"] == "SIMPLE")
        .collect();
    assert_eq!(tls.len(), 1, "{host}: TLS originated on one port");
    let port = tls[0]["port"]["number"].as_u64().expect("port number");
    assert_eq!(tls[0]["tls"]["sni"], host, "{host}: SNI");
    assert!(
        se["spec"]["ports"].as_array().expect("ports").iter().any(|p| p["number"].as_u64() == Some(port)),
        "{host}: the ServiceEntry declares port {port}"
    );
    format!("outbound|{port}||{host}")
}

/// The value at `providers.<name>.jwks.remote.cluster`.
fn jwks_cluster<'a>(config: &'a mut Value, provider: &str) -> &'a mut Value {
    &mut config["providers"][provider]["jwks"]["remote"]["cluster"]
}

/// Checks the compiled configuration fetches its JWKS from `cluster` with a real Host header.
fn assert_remote_jwks(cfg: &Config, cluster: &str) {
    let remotes: Vec<_> = cfg
        .providers
        .iter()
        .filter_map(|p| match &p.keys {
            KeySource::Remote(r) => Some(r),
            KeySource::Inline(_) => None,
        })
        .collect();
    assert_eq!(remotes.len(), 1);
    assert_eq!(remotes[0].cluster, cluster);
    assert!(!remotes[0].authority.contains('|'), "authority set, not defaulted to the cluster name");
}

#[test]
fn wasmplugin_is_example_003_with_the_istio_jwks_cluster() {
    let example = common::example("003");
    let plugin = docs("wasmplugin.yaml");
    let wp = one(&plugin, "WasmPlugin");
    assert_eq!(wp["apiVersion"], "extensions.istio.io/v1alpha1");
    let spec = &wp["spec"];
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_RELOAD", "a crashed VM is replaced, never opened");
    assert!(spec["url"].as_str().is_some_and(|u| u.starts_with("oci://")), "an OCI image URL");
    assert!(spec["imagePullPolicy"].is_string());
    assert!(spec["selector"]["matchLabels"].is_object());
    assert_eq!(spec["match"], serde_json::json!([{ "mode": "SERVER" }]), "inbound traffic only");

    let cluster = istio_cluster(&docs("jwks-egress.yaml"), "your-app.clerk.accounts.dev");
    assert_eq!(cluster, "outbound|443||your-app.clerk.accounts.dev");
    let mut config = spec["pluginConfig"].clone();
    assert_eq!(*jwks_cluster(&mut config, "clerk"), cluster, "pluginConfig names the Istio cluster");

    let cfg = Config::from_json(&serde_json::to_vec(&config).unwrap()).unwrap_or_else(|e| panic!("pluginConfig: {e}"));
    assert_remote_jwks(&cfg, &cluster);

    // A WasmPlugin cannot hold headers (allow_on_headers_stop_iteration): no route of it may
    // need to (webhook, mcp), or such requests would hang.
    let routes = config["routes"].as_array().expect("routes");
    assert!(routes.iter().all(|r| r.get("mcp").is_none() && r.get("webhook").is_none()), "no route holds headers");
    // Put the example's cluster back and its MCP judging: then it is example 003, exactly.
    *jwks_cluster(&mut config, "clerk") = example["providers"]["clerk"]["jwks"]["remote"]["cluster"].clone();
    let mut example = example;
    let mcp_routes: Vec<usize> = example["routes"].as_array().expect("routes").iter().enumerate().filter(|(_, r)| r.get("mcp").is_some()).map(|(i, _)| i).collect();
    assert_eq!(mcp_routes.len(), 1, "example 003 judges MCP on one route");
    for i in mcp_routes {
        example["routes"][i].as_object_mut().expect("route").remove("mcp");
    }
    assert_eq!(config, example, "pluginConfig is example 003 but for the JWKS cluster and MCP judging");
}

#[test]
fn webhook_envoyfilter_is_example_001_with_stop_iteration_and_room_for_bodies() {
    let example = common::example("001");
    let file = docs("webhooks-envoyfilter.yaml");
    let ef = one(&file, "EnvoyFilter");
    let patches = ef["spec"]["configPatches"].as_array().expect("configPatches");
    let patch = |apply_to: &str| {
        let found: Vec<&Value> = patches.iter().filter(|p| p["applyTo"] == apply_to).collect();
        assert_eq!(found.len(), 1, "one {apply_to} patch");
        found[0]
    };
    let context = &patches[0]["match"]["context"];
    assert!(patches.iter().all(|p| &p["match"]["context"] == context), "one context for every patch");

    let ext = patch("EXTENSION_CONFIG");
    assert_eq!(ext["patch"]["operation"], "ADD", "Istio applies only ADD to extension configs");
    let name = &ext["patch"]["value"]["name"];
    let wasm = &ext["patch"]["value"]["typed_config"];
    assert_eq!(wasm["@type"], "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
    let pc = &wasm["config"];
    assert_eq!(pc["allow_on_headers_stop_iteration"], true);
    assert_eq!(pc["failure_policy"], "FAIL_RELOAD", "a crashed VM is replaced, never opened");
    let uri = &pc["vm_config"]["code"]["remote"]["http_uri"]["uri"];
    assert_eq!(*uri, one(&docs("wasmplugin.yaml"), "WasmPlugin")["spec"]["url"], "the same image as the WasmPlugin");
    assert_eq!(pc["configuration"]["@type"], "type.googleapis.com/google.protobuf.StringValue");

    let filter = patch("HTTP_FILTER");
    assert_eq!(filter["patch"]["operation"], "INSERT_FIRST");
    assert_eq!(filter["patch"]["value"]["name"], *name, "the HTTP filter refers to the extension config");
    let types = &filter["patch"]["value"]["config_discovery"]["type_urls"];
    assert_eq!(*types, serde_json::json!([wasm["@type"]]));

    let mut config: Value = serde_json::from_str(pc["configuration"]["value"].as_str().expect("configuration string")).expect("configuration is JSON");
    let cluster = istio_cluster(&file, "causeflow.clerk.accounts.dev");
    assert_eq!(*jwks_cluster(&mut config, "clerk"), cluster, "configuration names the Istio cluster");

    // Secrets come only from the variables the VM is given.
    let host_env: Vec<&str> = pc["vm_config"]["environment_variables"]["host_env_keys"]
        .as_array()
        .expect("host_env_keys")
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let env = |name: &str| host_env.contains(&name).then(|| "test-secret".to_string());
    let cfg = Config::from_json_with_env(&serde_json::to_vec(&config).unwrap(), &env).unwrap_or_else(|e| panic!("configuration: {e}"));
    assert_remote_jwks(&cfg, &cluster);

    let largest = cfg.webhooks.iter().map(|(_, w)| w.max_body_bytes).max().expect("the configuration has webhooks");
    let limit = patch("LISTENER")["patch"]["value"]["per_connection_buffer_limit_bytes"].as_u64().expect("buffer limit");
    assert!(limit > largest, "per_connection_buffer_limit_bytes {limit} must exceed max_body_bytes {largest}");

    *jwks_cluster(&mut config, "clerk") = example["providers"]["clerk"]["jwks"]["remote"]["cluster"].clone();
    assert_eq!(config, example, "the configuration is example 001 but for the JWKS cluster");
}

#[test]
fn key_service_example_names_the_cluster_its_service_entry_makes() {
    let text = read("key-service.yaml");
    let cluster = istio_cluster(&docs("key-service.yaml"), "keys.example.com");
    // The JSON shown in the file's comment (its indented comment lines) is what users copy.
    let snippet: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("#   ")).collect();
    let config: Value = serde_json::from_str(&format!("{{{}}}", snippet.join("\n"))).expect("the comment's snippet is JSON");
    let cfg = Config::from_json(&serde_json::to_vec(&config).unwrap()).unwrap_or_else(|e| panic!("snippet: {e}"));
    let keys = cfg.api_keys.expect("api_keys");
    for service in [keys.lookup.expect("lookup"), keys.usage_report.expect("usage_report")] {
        assert_eq!(service.cluster, cluster);
        assert_eq!(service.authority, "keys.example.com");
    }
}
