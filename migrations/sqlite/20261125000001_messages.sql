-- Messages, their history, idempotency keys and webhook endpoints (embedded default: SQLite).

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    sender_id       TEXT NOT NULL REFERENCES users (id),
    recipient_id    TEXT NOT NULL REFERENCES users (id),
    channel         TEXT NOT NULL CHECK (channel IN ('inbox', 'webhook')),
    content_type    TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    -- The content, sealed with AES-256-GCM (store/crypto.rs): never stored in plaintext.
    key_id          TEXT NOT NULL,
    nonce           BLOB NOT NULL,
    content         BLOB NOT NULL,
    requested_kind  TEXT NOT NULL CHECK (requested_kind IN ('none', 'delay', 'at')),
    requested_ms    INTEGER,
    status          TEXT NOT NULL,
    -- The status before the last change: transitions set it in the same UPDATE, so the
    -- history records where a message came from without reading it first.
    previous_status TEXT,
    -- When the message is due: its planned delivery, or its next retry.
    deliver_at_ms   INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- The lease of the node delivering it: a commit must present this token.
    lease_token     TEXT,
    lease_until_ms  INTEGER,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    read_at_ms      INTEGER
);
CREATE INDEX messages_sent ON messages (tenant_id, sender_id, id);
CREATE INDEX messages_received ON messages (tenant_id, recipient_id, id);
CREATE INDEX messages_by_status ON messages (tenant_id, status, id);
-- What the schedule index is rebuilt from.
CREATE INDEX messages_pending ON messages (id) WHERE status IN ('scheduled', 'retrying', 'delivering');

CREATE TABLE message_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at_ms         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    from_status   TEXT,
    to_status     TEXT,
    attempt       INTEGER,
    result        TEXT NOT NULL,
    duration_ms   INTEGER,
    plugin_name   TEXT,
    plugin_digest TEXT
);
CREATE INDEX message_events_message ON message_events (message_id, id);

-- Idempotency-Key: the first response to a key, replayed for 24 hours.
CREATE TABLE idempotency_keys (
    tenant_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, key)
);

CREATE TABLE webhooks (
    user_id         TEXT PRIMARY KEY REFERENCES users (id),
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    url             TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    disabled_at_ms  INTEGER,
    disabled_reason TEXT
);

-- Signing secrets, sealed like message content. More than one while a secret rotates.
CREATE TABLE webhook_secrets (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES webhooks (user_id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    secret        BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER
);
CREATE INDEX webhook_secrets_user ON webhook_secrets (user_id);
