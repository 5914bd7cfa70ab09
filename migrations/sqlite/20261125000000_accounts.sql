-- Tenants, users, sessions and refresh tokens (embedded default: SQLite).
-- Times are Unix milliseconds. Ids are prefixed text (ten_…, usr_…, ses_…).

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    username      TEXT NOT NULL,
    display_name  TEXT,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    -- Users are deleted softly: messages keep pointing at them.
    deleted_at_ms INTEGER
);
-- Usernames are unique on the server among live users, so login stays {username, password}.
CREATE UNIQUE INDEX users_username ON users (username) WHERE deleted_at_ms IS NULL;
CREATE INDEX users_tenant ON users (tenant_id, id);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    user_id         TEXT NOT NULL REFERENCES users (id),
    created_at_ms   INTEGER NOT NULL,
    last_used_at_ms INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    revoked_at_ms   INTEGER,
    revoked_reason  TEXT,
    user_agent      TEXT,
    ip              TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Every refresh token ever issued, by SHA-256: a used one presented again reveals a stolen
-- token, and revokes its whole session.
CREATE TABLE refresh_tokens (
    hash          TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions (id),
    created_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
