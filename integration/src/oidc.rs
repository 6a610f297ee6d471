//! A real, OpenID Certified authorization server for the end-to-end tests (issue 22):
//! `oidc-provider` (npm, pinned by `integration/oidc/package-lock.json`, installed by
//! `make node-tools`) under Node, configured by `integration/oidc/server.mjs`: issuer
//! `http://127.0.0.1:<port>/oidc`, client-credentials tokens that are RFC 9068 JWTs (`typ:
//! at+jwt`) for [`RESOURCE_JWT`] and opaque for [`RESOURCE_OPAQUE`], [`RESOURCE_OTHER`] or no
//! resource, RFC 7662 introspection and RFC 7009 revocation; for the tests, ID tokens the server
//! signs ([`AuthServer::id_token`]) and a count of the calls it received ([`AuthServer::calls`]).
//! What the server answers, and why, is written at the top of server.mjs. Stopped on drop, also when a test panics; it also exits
//! by itself when the test process dies (its standard input closes).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::{repo_root, send, Req, Resp};

/// A client of the server: its `client_id` and `client_secret` (client_secret_basic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
}

/// The resource server (the filter): may introspect every token, gets none.
pub const RESOURCE_SERVER: Client = Client { id: "api-auth-filter", secret: "filter-secret" };
/// Gets tokens (scopes `read`, `tools:agents.deploy`) for any of the three resources or none.
pub const AGENT: Client = Client { id: "agent", secret: "agent-secret" };
/// Gets tokens (scope `read`) without a resource only.
pub const READER: Client = Client { id: "reader", secret: "reader-secret" };

/// Its tokens are JWT access tokens (RFC 9068), `aud` = this value.
pub const RESOURCE_JWT: &str = "https://api.example.test/";
/// Its tokens are opaque, introspected with `aud` = this value.
pub const RESOURCE_OPAQUE: &str = "https://opaque.example.test/";
/// Another opaque resource: a token for it is one for "another audience".
pub const RESOURCE_OTHER: &str = "https://other.example.test/";

/// The issuer's path (server.mjs's default `path`).
pub const ISSUER_PATH: &str = "/oidc";

fn oidc_dir() -> PathBuf {
    repo_root().join("integration/oidc")
}

/// An `application/x-www-form-urlencoded` body (every byte but the unreserved ones escaped).
pub fn form(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v))).collect::<Vec<_>>().join("&")
}

fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Authorization: Basic` for a client, its id and secret form-encoded first (RFC 6749 2.3.1).
pub fn basic(id: &str, secret: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("Basic {}", b64.encode(format!("{}:{}", form_escape(id), form_escape(secret))))
}

/// The running server. [`AuthServer::start`] for the default clients and resources.
pub struct AuthServer {
    child: Child,
    port: u16,
    issuer: String,
    resource_server: (String, String),
    log: PathBuf,
    /// Who got each token through [`AuthServer::client_credentials_token`], so that
    /// [`AuthServer::revoke`] can revoke it as that client (only it may, RFC 7009).
    issued: Mutex<HashMap<String, (String, String)>>,
}

impl AuthServer {
    /// The server with server.mjs's defaults (the constants above), on a free port.
    pub fn start() -> AuthServer {
        AuthServer::start_on(0, &json!({}))
    }

    /// With `config`'s fields in place of server.mjs's defaults (`path`, `scopes`, `ttl_s`,
    /// `keys_file`, `clients`, `resources`), on a free port.
    pub fn start_with(config: &Value) -> AuthServer {
        AuthServer::start_on(0, config)
    }

    /// On `port` (0: any free one, the server binds it and tells which).
    pub fn start_on(port: u16, config: &Value) -> AuthServer {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider/package.json").is_file(),
            "{} has no oidc-provider: run `make node-tools` (make test does)",
            dir.display()
        );
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("api-auth-oidc-{}-{n}.log", std::process::id()));
        let stderr = std::fs::File::create(&log).expect("create the server's log");
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("OIDC_BED_PORT", port.to_string())
            .env("OIDC_BED_CONFIG", config.to_string())
            // oidc-provider's `debug` output could print request parameters (tokens).
            .env_remove("DEBUG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start `node server.mjs` (is Node.js 20 or later on PATH?)");

        // The ready line, read off a thread so that a server that never prints cannot hang the
        // test; the thread then drains stdout until the server exits.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let ready = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
        let mut server = AuthServer {
            child,
            port: 0,
            issuer: String::new(),
            resource_server: resource_server_of(config),
            log,
            issued: Mutex::new(HashMap::new()),
        };
        let Some(ready) = ready.and_then(|l| serde_json::from_str::<Value>(&l).ok()) else {
            panic!("the authorization server did not start:\n{}", server.log_text());
        };
        server.port = ready["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("port in the ready line");
        server.issuer = ready["issuer"].as_str().expect("issuer in the ready line").to_string();
        server
    }

    /// `http://127.0.0.1:<port>/oidc`, exactly as the discovery document and tokens name it.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The issuer's path (`/oidc`): where discovery lives under, for a cluster's routes.
    pub fn issuer_path(&self) -> &str {
        let rest = self.issuer.strip_prefix("http://").unwrap_or(&self.issuer);
        rest.find('/').map_or("", |i| &rest[i..])
    }

    /// What the server wrote on stderr (warnings; never a token).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A GET of a path on the server's port (`/oidc/jwks`).
    pub fn get(&self, path: &str) -> Resp {
        send(self.port, &Req::get(path))
    }

    /// A form POST to an endpoint under the issuer (`/token`), as `client` with
    /// client_secret_basic.
    pub fn post_form(&self, endpoint: &str, id: &str, secret: &str, fields: &[(&str, &str)]) -> Resp {
        let req = Req::post(&format!("{}{endpoint}", self.issuer_path()))
            .header("authorization", basic(id, secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        send(self.port, &req)
    }

    /// `<issuer>/.well-known/openid-configuration`.
    pub fn discovery(&self) -> Value {
        let resp = self.get(&format!("{}/.well-known/openid-configuration", self.issuer_path()));
        assert_eq!(resp.status, 200, "discovery: {}", resp.text());
        resp.json()
    }

    /// The JWKS at the discovery document's `jwks_uri`.
    pub fn jwks(&self) -> Value {
        let uri = self.discovery()["jwks_uri"].as_str().expect("jwks_uri").to_string();
        let origin = format!("http://127.0.0.1:{}", self.port);
        let path = uri.strip_prefix(&origin).expect("jwks_uri on the issuer's origin");
        let resp = self.get(path);
        assert_eq!(resp.status, 200, "jwks: {}", resp.text());
        resp.json()
    }

    /// The token endpoint's whole answer to a client_credentials request: 200 with
    /// `access_token`, `expires_in`, `scope`, `token_type`, or an error (`invalid_scope`,
    /// `invalid_target`, `invalid_client`).
    pub fn client_credentials(&self, client: &str, secret: &str, scope: &str, resource: Option<&str>) -> Resp {
        let mut fields = vec![("grant_type", "client_credentials"), ("scope", scope)];
        if let Some(resource) = resource {
            fields.push(("resource", resource));
        }
        self.post_form("/token", client, secret, &fields)
    }

    /// An access token for `client` with these scopes (space-separated), for `resource` (a JWT
    /// for [`RESOURCE_JWT`]) or none (opaque). Panics with the server's error when refused.
    pub fn client_credentials_token(&self, client: &str, secret: &str, scope: &str, resource: Option<&str>) -> String {
        let resp = self.client_credentials(client, secret, scope, resource);
        assert_eq!(resp.status, 200, "client_credentials for {client}: {}", resp.text());
        let token = resp.json()["access_token"].as_str().expect("access_token").to_string();
        self.issued.lock().expect("lock").insert(token.clone(), (client.to_string(), secret.to_string()));
        token
    }

    /// The introspection answer for `token`, asked by the resource server (`{"active": false}`
    /// for an unknown, expired or revoked token). Panics on anything but 200 (a JWT is refused
    /// with 400 `unsupported_token_type`: see [`AuthServer::introspect_as`]).
    pub fn introspect(&self, token: &str) -> Value {
        let (id, secret) = self.resource_server.clone();
        let resp = self.introspect_as(&id, &secret, token);
        assert_eq!(resp.status, 200, "introspection: {}", resp.text());
        resp.json()
    }

    /// The introspection endpoint's whole answer, asked by any client.
    pub fn introspect_as(&self, client: &str, secret: &str, token: &str) -> Resp {
        self.post_form("/token/introspection", client, secret, &[("token", token), ("token_type_hint", "access_token")])
    }

    /// Revokes an opaque token that [`AuthServer::client_credentials_token`] issued, as the
    /// client it was issued to (the only one allowed to).
    pub fn revoke(&self, token: &str) {
        let (id, secret) = self.issued.lock().expect("lock").get(token).cloned().expect("a token issued through this AuthServer");
        let resp = self.revoke_as(&id, &secret, token);
        assert_eq!(resp.status, 200, "revocation: {}", resp.text());
    }

    /// The revocation endpoint's whole answer, asked by any client.
    pub fn revoke_as(&self, client: &str, secret: &str, token: &str) -> Resp {
        self.post_form("/token/revocation", client, secret, &[("token", token), ("token_type_hint", "access_token")])
    }

    /// A new RS256 key signs from now on; the old ones stay in the JWKS unless `retire`. The
    /// new key's `kid`. Opaque tokens already issued stay valid.
    pub fn rotate_keys(&self, retire: bool) -> String {
        let resp = send(self.port, &Req::post("/_bed/rotate").header("content-type", "application/json").body(json!({ "retire": retire }).to_string()));
        assert_eq!(resp.status, 200, "rotate: {}", resp.text());
        resp.json()["kid"].as_str().expect("kid").to_string()
    }

    /// An OpenID Connect ID token for `client` about `sub`, signed by the server itself
    /// (oidc-provider's IdToken model): iss, sub, aud = the client, iat, exp; no `typ` in its
    /// header. Never an access token: what a resource server must refuse as one.
    pub fn id_token(&self, client: &str, sub: &str) -> String {
        let body = json!({ "client_id": client, "sub": sub }).to_string();
        let resp = send(self.port, &Req::post("/_bed/id-token").header("content-type", "application/json").body(body));
        assert_eq!(resp.status, 200, "id-token: {}", resp.text());
        resp.json()["id_token"].as_str().expect("id_token").to_string()
    }

    /// How many requests the server has received for `endpoint` under the issuer
    /// (`"/token/introspection"`) with `method`, since it started: what the filter really
    /// called, whatever its own counters say.
    pub fn calls(&self, method: &str, endpoint: &str) -> u64 {
        let resp = send(self.port, &Req::get("/_bed/calls"));
        assert_eq!(resp.status, 200, "calls: {}", resp.text());
        resp.json()[format!("{method} {}{endpoint}", self.issuer_path())].as_u64().unwrap_or(0)
    }
}

/// The client marked `introspects` in `config`'s clients, else the default one.
fn resource_server_of(config: &Value) -> (String, String) {
    config["clients"]
        .as_array()
        .and_then(|clients| clients.iter().find(|c| c["introspects"] == true))
        .and_then(|c| Some((c["client_id"].as_str()?.to_string(), c["client_secret"].as_str()?.to_string())))
        .unwrap_or_else(|| (RESOURCE_SERVER.id.to_string(), RESOURCE_SERVER.secret.to_string()))
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The decoded header and payload of a compact JWS (no signature check).
pub fn jwt_parts(token: &str) -> Option<(Value, Value)> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&b64.decode(parts.next()?).ok()?).ok()?;
    let payload = serde_json::from_slice(&b64.decode(parts.next()?).ok()?).ok()?;
    (parts.count() == 1).then_some((header, payload))
}
