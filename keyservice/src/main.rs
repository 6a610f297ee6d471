//! `api-auth-keys`: the key service of api-auth-filter and its command line.
//!
//! The commands other than `serve` work on the database directly, not through the admin API:
//! whoever can open the database holds every key's record anyway, so going through HTTP would
//! add a client, a token to hand around and a running service to the first `create` without
//! adding a boundary. The admin API is for remote and automated use.

mod http;
mod keys;
mod store;

use std::process::ExitCode;
use std::sync::Arc;

use store::{NewKey, Store};

const HELP: &str = "\
Usage: api-auth-keys <command> [options]

The key service of api-auth-filter: answers the filter's `api_keys.lookup` (POST
/v1/keys/lookup) and `api_keys.usage_report` (POST /v1/keys/usage), with an admin API under
/admin/v1/keys. Keys are stored only as SHA-256 digests, on SQLite (one file, WAL) or
PostgreSQL.

Commands:
  serve                 run the service
  create                create a key and print it (on standard output, once: it cannot be
                        shown again); its entry goes to standard error
  list                  every key's entry, one JSON line each (never the key)
  show ID | revoke ID | expire ID | delete ID

Options:
  --db URL|FILE         postgres://... or sqlite:... URL, or a SQLite file (created when
                        missing); default $API_AUTH_KEYS_DB, else api-auth-keys.db
  --prefix P            (serve, create) a key prefix, as the filter's api_keys.prefixes lists
                        it; serve takes several, the first is the default; default
                        $API_AUTH_KEYS_PREFIXES (comma-separated)
  --listen ADDR         (serve) default 127.0.0.1:8090; the address is printed once bound
  --admin-listen ADDR   (serve) the admin API on a listener of its own (printed once bound);
                        --listen then serves the filter's two endpoints only
  --name N, --scope S, --permission P, --org O, --workspace W, --expires-at T
                        (create) the key's entry; --scope, --permission and --workspace repeat;
                        T is RFC 3339 (2027-01-31T00:00:00Z) or Unix seconds
  -h, --help            this text

Environment (serve):
  API_AUTH_KEYS_ADMIN_TOKEN     required, at least 24 characters: the admin API's bearer token
  API_AUTH_KEYS_SERVICE_SECRET  optional: lookups and usage reports must then carry it in the
                                x-api-auth-keys-secret header (set by Envoy on the cluster)

Key format: <prefix><40 base62 characters from the OS CSPRNG><6 base62 digits of the CRC-32
of what precedes them>.
";

#[derive(Default)]
struct Opts {
    db: Option<String>,
    prefixes: Vec<String>,
    listen: Option<String>,
    admin_listen: Option<String>,
    new: NewKey,
    id: Option<String>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        if !flag.starts_with("--") {
            if o.id.is_some() {
                return Err(format!("unexpected argument '{a}'"));
            }
            o.id = Some(a.clone());
            i += 1;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i).cloned().ok_or_else(|| format!("{flag} wants a value"))?
            }
        };
        match flag.as_str() {
            "--db" => o.db = Some(value),
            "--prefix" => o.prefixes.push(value),
            "--listen" => o.listen = Some(value),
            "--admin-listen" => o.admin_listen = Some(value),
            "--name" => o.new.name = Some(value),
            "--scope" => o.new.scopes.push(value),
            "--permission" => o.new.permissions.push(value),
            "--org" => o.new.organization = Some(value),
            "--workspace" => o.new.workspaces.push(value),
            "--expires-at" => o.new.expires_at = Some(serde_json::Value::String(value)),
            _ => return Err(format!("unknown option {flag} (see --help)")),
        }
        i += 1;
    }
    if o.prefixes.is_empty() {
        if let Ok(v) = std::env::var("API_AUTH_KEYS_PREFIXES") {
            o.prefixes = v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
        }
    }
    if let Some(bad) = o.prefixes.iter().find(|p| !store::valid_prefix(p)) {
        return Err(format!("--prefix '{bad}': want 1 to 32 letters, digits, _ or -"));
    }
    Ok(o)
}

/// The database for messages: a URL's password (`postgres://user:secret@host`) left out.
fn shown(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &db[..s], &db[at..]),
        _ => db.to_string(),
    }
}

fn db_of(o: &Opts) -> String {
    o.db.clone().or_else(|| std::env::var("API_AUTH_KEYS_DB").ok()).unwrap_or_else(|| "api-auth-keys.db".into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprint!("{HELP}");
        return ExitCode::from(2);
    };
    if matches!(cmd.as_str(), "-h" | "--help" | "help") || args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let opts = match parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("api-auth-keys: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("api-auth-keys: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cmd, opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-auth-keys: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: &str, o: Opts) -> Result<(), String> {
    let db = db_of(&o);
    let needs_id = matches!(cmd, "show" | "revoke" | "expire" | "delete");
    if needs_id != o.id.is_some() {
        return Err(if needs_id { format!("{cmd} wants a key id") } else { format!("{cmd}: unexpected argument") });
    }
    let id = o.id.clone().unwrap_or_default();
    if cmd == "serve" {
        return serve(&db, o).await;
    }
    if !matches!(cmd, "create" | "list" | "show" | "revoke" | "expire" | "delete") {
        return Err(format!("unknown command '{cmd}' (see --help)"));
    }
    let store = Store::open(&db, 1).await.map_err(|e| format!("{}: {e}", shown(&db)))?;
    let result = command(&store, cmd, &id, o).await;
    store.close().await;
    result
}

async fn command(store: &Store, cmd: &str, id: &str, o: Opts) -> Result<(), String> {
    let db_err = |e: sqlx::Error| format!("database: {e}");
    let not_found = || format!("no key with id '{id}'");
    match cmd {
        "create" => {
            let prefixes = match &o.new.prefix {
                Some(p) => vec![p.clone()],
                None => o.prefixes.clone(),
            };
            let (key, entry) = store.create(&o.new, &prefixes, keys::unix_now()).await.map_err(db_err)?.map_err(|e| e.0)?;
            println!("{key}");
            eprintln!("{}", entry.admin_json());
            eprintln!("api-auth-keys: the key above is shown once; only its SHA-256 is stored");
        }
        "list" => {
            for e in store.list().await.map_err(db_err)? {
                println!("{}", e.admin_json());
            }
        }
        "show" => println!("{}", store.by_id(id).await.map_err(db_err)?.ok_or_else(not_found)?.admin_json()),
        "revoke" | "expire" => {
            let status = if cmd == "revoke" { "revoked" } else { "expired" };
            println!("{}", store.set_status(id, status).await.map_err(db_err)?.ok_or_else(not_found)?.admin_json());
        }
        _ => {
            if !store.delete(id).await.map_err(db_err)? {
                return Err(not_found());
            }
            println!("deleted {id}");
        }
    }
    Ok(())
}

async fn serve(db: &str, o: Opts) -> Result<(), String> {
    let token = std::env::var("API_AUTH_KEYS_ADMIN_TOKEN").unwrap_or_default();
    if token.trim().len() < 24 {
        return Err("API_AUTH_KEYS_ADMIN_TOKEN must be set to at least 24 characters: the admin API is never served without its own authentication".into());
    }
    let secret = std::env::var("API_AUTH_KEYS_SERVICE_SECRET").ok().filter(|s| !s.is_empty());
    if o.prefixes.is_empty() {
        return Err("no key prefix: give --prefix (as the filter's api_keys.prefixes) or API_AUTH_KEYS_PREFIXES".into());
    }
    let store = Store::open(db, 16).await.map_err(|e| format!("{}: {e}", shown(db)))?;
    let app = Arc::new(http::App::new(store.clone(), token.trim(), secret.as_deref(), o.prefixes.clone()));
    let listen = o.listen.unwrap_or_else(|| "127.0.0.1:8090".into());
    let bind = |addr: String| async move {
        let l = tokio::net::TcpListener::bind(&addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let a = l.local_addr().map_err(|e| format!("no local address: {e}"))?;
        Ok::<_, String>((l, a))
    };
    let (listener, addr) = bind(listen).await?;
    let admin = match o.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    // The addresses on standard output, once bound: scripts and tests read the ports from them.
    println!("listening on http://{addr}");
    if let Some((_, a)) = &admin {
        println!("admin on http://{a}");
    }
    eprintln!("api-auth-keys: serving {} on {addr}, prefixes {}", if db.starts_with("postgres") { "PostgreSQL" } else { "SQLite" }, o.prefixes.join(", "));
    // SIGTERM or Ctrl-C ends both listeners (in-flight requests finish).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let part = if admin.is_some() { http::Part::Filter } else { http::Part::All };
    let main = axum::serve(listener, http::router(app.clone(), part)).with_graceful_shutdown(stopped(stop_rx.clone()));
    let served = match admin {
        Some((l, _)) => {
            let second = axum::serve(l, http::router(app, http::Part::Admin)).with_graceful_shutdown(stopped(stop_rx));
            let (a, b) = tokio::join!(main, second);
            a.and(b)
        }
        None => main.await,
    };
    store.close().await;
    served.map_err(|e| format!("serve: {e}"))
}
