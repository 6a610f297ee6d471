-- One table for both stores: the SQL here is the common subset of SQLite and PostgreSQL
-- (TEXT, BIGINT Unix seconds, lists as JSON text), so one set of migrations serves both.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    -- SHA-256 of the key, 64 lower-case hex digits: the only form of the key that is stored.
    sha256       TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    name         TEXT,
    status       TEXT NOT NULL CHECK (status IN ('active', 'revoked', 'expired')),
    scopes       TEXT NOT NULL,
    permissions  TEXT NOT NULL,
    organization TEXT,
    workspaces   TEXT NOT NULL,
    expires_at   BIGINT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
