//! The key store: one table on SQLite or PostgreSQL through sqlx's Any driver, so that both run
//! the same queries (runtime-bound, `$1` placeholders, which both dialects read) and the same
//! migrations. Keys are held only as SHA-256 digests.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};

use crate::keys;

/// A stored key, never the key itself.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub sha256: String,
    pub prefix: String,
    pub name: Option<String>,
    pub status: String,
    pub scopes: Vec<String>,
    pub permissions: Vec<String>,
    pub organization: Option<String>,
    pub workspaces: Vec<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Entry {
    /// The lookup answer: exactly the fields of an `api_keys.keys[]` entry (the filter refuses
    /// unknown fields), absent optional ones left out.
    pub fn filter_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("sha256".into(), json!(self.sha256));
        m.insert("status".into(), json!(self.status));
        if let Some(t) = self.expires_at {
            m.insert("expires_at".into(), json!(keys::rfc3339(t)));
        }
        m.insert("permissions".into(), json!(self.permissions));
        m.insert("scopes".into(), json!(self.scopes));
        if let Some(o) = &self.organization {
            m.insert("organization".into(), json!(o));
        }
        m.insert("workspaces".into(), json!(self.workspaces));
        if let Some(n) = &self.name {
            m.insert("name".into(), json!(n));
        }
        Value::Object(m)
    }

    /// What the admin API and the CLI show: everything but the digest (which the lookup takes,
    /// so a listing never hands out what it needs).
    pub fn admin_json(&self) -> Value {
        json!({
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "status": self.status,
            "scopes": self.scopes,
            "permissions": self.permissions,
            "organization": self.organization,
            "workspaces": self.workspaces,
            "expires_at": self.expires_at.map(keys::rfc3339),
            "created_at": keys::rfc3339(self.created_at),
            "last_used_at": self.last_used_at.map(keys::rfc3339),
        })
    }
}

/// What a new key holds: the admin API's request body and the CLI's flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub prefix: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    pub organization: Option<String>,
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// RFC 3339 or Unix seconds.
    pub expires_at: Option<Value>,
}

/// A request the store refuses before touching the database.
#[derive(Debug)]
pub struct Invalid(pub String);

pub const MAX_LIST: usize = 100;
pub const MAX_NAME: usize = 200;

/// Scopes, permissions, organisations and workspaces are identifiers: letters, digits and
/// `._:*/@+-`, at most 200 characters. Anything else (quotes, spaces, control characters) is a
/// mistake or an attack, and is refused rather than stored.
fn identifier(what: &str, s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty() && s.len() <= MAX_NAME && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:*/@+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!("{what}: want 1 to {MAX_NAME} letters, digits or ._:*/@+-")))
    }
}

fn identifiers(what: &str, v: &[String]) -> Result<(), Invalid> {
    if v.len() > MAX_LIST {
        return Err(Invalid(format!("{what}: at most {MAX_LIST} entries")));
    }
    v.iter().try_for_each(|s| identifier(what, s))
}

/// A key prefix: what the filter's `api_keys.prefixes` lists; letters, digits, `_` and `-`.
pub fn valid_prefix(p: &str) -> bool {
    !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl NewKey {
    /// Checks every field; the prefix against `prefixes` (the first is the default).
    fn validate(&self, prefixes: &[String]) -> Result<(String, Option<i64>), Invalid> {
        let prefix = match &self.prefix {
            Some(p) if prefixes.iter().any(|q| q == p) => p.clone(),
            Some(_) => return Err(Invalid(format!("prefix: want one of {}", prefixes.join(", ")))),
            None => prefixes.first().cloned().ok_or_else(|| Invalid("prefix: none configured".into()))?,
        };
        if let Some(n) = &self.name {
            if n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(char::is_control) {
                return Err(Invalid(format!("name: want 1 to {MAX_NAME} characters, no control characters")));
            }
        }
        identifiers("scopes", &self.scopes)?;
        identifiers("permissions", &self.permissions)?;
        identifiers("workspaces", &self.workspaces)?;
        if let Some(o) = &self.organization {
            identifier("organization", o)?;
        }
        let expires_at = match &self.expires_at {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(keys::parse_time(s).ok_or_else(|| Invalid("expires_at: want RFC 3339 or Unix seconds".into()))?),
            Some(Value::Number(n)) => Some(n.as_i64().filter(|t| (0..=253_402_300_799).contains(t)).ok_or_else(|| Invalid("expires_at: want RFC 3339 or Unix seconds".into()))?),
            Some(_) => return Err(Invalid("expires_at: want RFC 3339 or Unix seconds".into())),
        };
        if let Some(t) = expires_at {
            if !(0..=253_402_300_799).contains(&t) {
                return Err(Invalid("expires_at: out of range".into()));
            }
        }
        Ok((prefix, expires_at))
    }
}

/// The files of keyservice/migrations/, in the binary: (version, description, SQL), as
/// `sqlx::migrate!` would embed them (the same SHA-384 checksums in `_sqlx_migrations`, so a
/// database migrated either way is the same). Built from sqlx's public `MigrationSource`
/// instead of the macro: the macro needs sqlx's `macros` feature, whose proc-macro crate
/// compiles the whole sqlx stack a second time, SQLite's C included, for every build (see the
/// commit). A test checks that this list is the directory.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "api keys", include_str!("../migrations/0001_api_keys.sql"))];

#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async {
            Ok(MIGRATIONS.iter().map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, Cow::Borrowed(*sql), false)).collect())
        })
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

/// A database URL from what the user gave: `postgres://` and `sqlite:` URLs as they are, any
/// other text as the path of a SQLite file, created when missing.
pub fn database_url(db: &str) -> String {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") || db.starts_with("sqlite:") {
        db.to_string()
    } else {
        format!("sqlite://{db}?mode=rwc")
    }
}

const COLUMNS: &str = "id, sha256, prefix, name, status, scopes, permissions, organization, workspaces, expires_at, created_at, last_used_at";

fn list_column(row: &AnyRow, name: &str) -> Result<Vec<String>, sqlx::Error> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn entry(row: &AnyRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        id: row.try_get("id")?,
        sha256: row.try_get("sha256")?,
        prefix: row.try_get("prefix")?,
        name: row.try_get("name")?,
        status: row.try_get("status")?,
        scopes: list_column(row, "scopes")?,
        permissions: list_column(row, "permissions")?,
        organization: row.try_get("organization")?,
        workspaces: list_column(row, "workspaces")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl Store {
    /// Connects and brings the schema up to date. SQLite runs in WAL mode (readers never wait
    /// for the writer) with `synchronous = FULL`: a write the service acknowledged survives a
    /// crash of the process and of the machine.
    pub async fn open(db: &str, max_connections: u32) -> Result<Store, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;").await?;
                    }
                    Ok(())
                })
            })
            .connect(&database_url(db))
            .await?;
        Migrator::new(Embedded).await?.run(&pool).await?;
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates a key: its one showing, and the entry stored for it.
    pub async fn create(&self, new: &NewKey, prefixes: &[String], now: i64) -> Result<Result<(String, Entry), Invalid>, sqlx::Error> {
        let (prefix, expires_at) = match new.validate(prefixes) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let key = keys::generate(&prefix);
        let entry = Entry {
            id: format!("key_{}", keys::random_base62(20)),
            sha256: keys::sha256_hex(key.as_bytes()),
            prefix,
            name: new.name.clone(),
            status: "active".into(),
            scopes: new.scopes.clone(),
            permissions: new.permissions.clone(),
            organization: new.organization.clone(),
            workspaces: new.workspaces.clone(),
            expires_at,
            created_at: now,
            last_used_at: None,
        };
        let list = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO api_keys (id, sha256, prefix, name, status, scopes, permissions, organization, workspaces, expires_at, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)",
        )
        .bind(&entry.id)
        .bind(&entry.sha256)
        .bind(&entry.prefix)
        .bind(entry.name.clone())
        .bind(&entry.status)
        .bind(list(&entry.scopes))
        .bind(list(&entry.permissions))
        .bind(entry.organization.clone())
        .bind(list(&entry.workspaces))
        .bind(entry.expires_at)
        .bind(entry.created_at)
        .execute(&self.pool)
        .await?;
        Ok(Ok((key, entry)))
    }

    /// The entry of a digest: the lookup's only query, by the unique index.
    pub async fn by_digest(&self, digest: &str) -> Result<Option<Entry>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE sha256 = $1")).bind(digest).fetch_optional(&self.pool).await?;
        row.as_ref().map(entry).transpose()
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<Entry>, sqlx::Error> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(entry).transpose()
    }

    pub async fn list(&self) -> Result<Vec<Entry>, sqlx::Error> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id")).fetch_all(&self.pool).await?;
        rows.iter().map(entry).collect()
    }

    /// Sets the status (`revoked`, `expired`); the entry after, `None` for an unknown id.
    pub async fn set_status(&self, id: &str, status: &str) -> Result<Option<Entry>, sqlx::Error> {
        let done = sqlx::query("UPDATE api_keys SET status = $1 WHERE id = $2").bind(status).bind(id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.by_id(id).await
    }

    /// Whether a key was there to delete.
    pub async fn delete(&self, id: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a batch of last uses in one transaction. `last_used_at` only moves forward: an
    /// older report (a late batch, another Envoy's, another replica's) never moves it back, and
    /// the comparison is in the UPDATE itself, so concurrent writers cannot race past it.
    /// Unknown ids are ignored. The number of keys moved.
    pub async fn record_usage(&self, uses: &[(String, i64)]) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut moved = 0;
        for (id, at) in uses {
            let done = sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)")
                .bind(*at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            moved += done.rows_affected();
        }
        tx.commit().await?;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    /// Every file of migrations/ is embedded, in order, with its text; nothing else is.
    #[test]
    fn the_embedded_migrations_are_the_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<(i64, String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let stem = name.strip_suffix(".sql")?;
                let (v, d) = stem.split_once('_')?;
                Some((v.parse().ok()?, d.replace('_', " "), std::fs::read_to_string(e.path()).ok()?))
            })
            .collect();
        files.sort();
        let embedded: Vec<(i64, String, String)> = super::MIGRATIONS.iter().map(|(v, d, s)| (*v, d.to_string(), s.to_string())).collect();
        assert_eq!(files, embedded);
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), files.len(), "a file in migrations/ that is not <version>_<name>.sql");
    }
}
