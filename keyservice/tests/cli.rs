//! The key service's command line on a SQLite file: create (the key shown once, on standard
//! output, with its prefix and checksum), list and show (never the key), revoke, expire, delete;
//! what the command line writes is what the running service answers the filter.

mod common;

use std::process::{Command, Output};

use common::{temp_dir, Service, PREFIX};
use serde_json::Value;
use sha2::Digest;

fn keys(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_api-auth-keys"))
        .args(args)
        .args(["--db", db])
        .env_remove("API_AUTH_KEYS_DB")
        .env_remove("API_AUTH_KEYS_PREFIXES")
        .output()
        .expect("run api-auth-keys")
}

fn ok(db: &str, args: &[&str]) -> (String, String) {
    let out = keys(db, args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

fn entry(line: &str) -> Value {
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("not an entry: {e}"))
}

fn sha256_hex(b: &[u8]) -> String {
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn the_command_line_manages_keys_the_service_then_answers_for() {
    let dir = temp_dir("cli");
    let db = dir.join("keys.db").display().to_string();
    let (key, made) = ok(&db, &["create", "--prefix", PREFIX, "--name", "ci", "--scope", "tools:agents.*", "--org", "org_1"]);
    let key = key.trim().to_string();
    // <prefix><40 base62><6 base62 checksum>
    assert!(key.starts_with(PREFIX) && key.len() == PREFIX.len() + 46, "the key's shape");
    assert!(key[PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric()));
    let made = entry(made.lines().next().expect("the entry on standard error"));
    let id = made["id"].as_str().expect("an id").to_string();
    assert_eq!((made["status"].as_str(), made["organization"].as_str()), (Some("active"), Some("org_1")));
    assert_eq!(made["scopes"], serde_json::json!(["tools:agents.*"]));

    // list and show: the entry, never the key.
    let (listed, _) = ok(&db, &["list"]);
    assert_eq!(listed.lines().count(), 1);
    assert_eq!(entry(listed.lines().next().unwrap())["id"], id.as_str());
    let (shown, _) = ok(&db, &["show", &id]);
    assert_eq!(entry(&shown)["id"], id.as_str());
    for text in [&listed, &shown] {
        assert!(!text.contains(&key[PREFIX.len()..]), "the key was shown again");
    }
    let file = std::fs::read(&db).expect("the SQLite file");
    assert!(!file.windows(key.len()).any(|w| w == key.as_bytes()), "the key is stored");

    // The service answers the filter for what the command line made.
    let lookup = |svc: &Service| svc.lookup(&format!("{{\"sha256\":\"{}\"}}", sha256_hex(key.as_bytes())));
    {
        let svc = Service::start(&db);
        let resp = lookup(&svc);
        assert_eq!(resp.status, 200);
        assert_eq!((resp.json()["id"].as_str(), resp.json()["status"].as_str()), (Some(id.as_str()), Some("active")));
    }
    for (cmd, status) in [("revoke", "revoked"), ("expire", "expired")] {
        let (out, _) = ok(&db, &[cmd, &id]);
        assert_eq!(entry(&out)["status"], status, "{cmd}");
        let svc = Service::start(&db);
        assert_eq!(lookup(&svc).json()["status"], status, "{cmd}: the service's answer");
    }
    let (out, _) = ok(&db, &["delete", &id]);
    assert_eq!(out.trim(), format!("deleted {id}"));
    let svc = Service::start(&db);
    assert_eq!(lookup(&svc).status, 404, "deleted: unknown to the service");
    drop(svc);
    let gone = keys(&db, &["show", &id]);
    assert!(!gone.status.success() && String::from_utf8_lossy(&gone.stderr).contains("no key with id"));
    assert!(ok(&db, &["list"]).0.trim().is_empty());
    // A command without its id is refused, nothing done.
    let bad = keys(&db, &["revoke"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("revoke wants a key id"));
}
