-- Status callbacks for senders (issue 16 §5): one endpoint per user, told of the statuses of
-- the messages they send. A callback itself is a message (a `webhook` message with the media
-- type `application/vnd.dms.callback+json`, which the API refuses on submit), so it is
-- delivered, retried and dead-lettered like any message; this table holds only the endpoint.
CREATE TABLE callbacks (
    user_id       TEXT PRIMARY KEY REFERENCES users (id),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    url           TEXT NOT NULL,
    -- The statuses that produce a callback: a JSON array of names (`delivered`, `read`, ...).
    events        TEXT NOT NULL,
    -- The signing secrets, newest first with their expiry, as one sealed JSON array
    -- (store/crypto.rs; the associated data is the tenant and `callback:<user_id>`).
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    secrets       BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
