-- Users' event feeds (real-time): what /ws and Socket.IO push live and replay from a cursor.

-- The last cursor handed out per user. Appending locks the user's row, so a user's cursors are
-- committed in order and without gaps.
CREATE TABLE feed_heads (
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    last_cursor BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE feed_events (
    tenant_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    cursor_no BIGINT NOT NULL,
    at_ms     BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    -- The event's JSON, sealed like message content (a message event carries the content).
    key_id    TEXT NOT NULL,
    nonce     BLOB NOT NULL,
    body      BLOB NOT NULL,
    PRIMARY KEY (tenant_id, user_id, cursor_no)
);
-- What retention prunes by.
CREATE INDEX feed_events_age ON feed_events (at_ms);
