-- The message core at rate (issue 14): what changes on every delivery attempt moves out of
-- `messages`, history is one row per step, feed events refer to messages, and the queue keeps
-- its counts as statuses change.

-- What never changes after a submit stays in `messages` (parties, content, metadata): an
-- attempt never rewrites it. What does change lives here, one narrow row per message with no
-- index but its key. The row carries its tenant so guarded updates need no join. No foreign
-- key: the store deletes a message's rows together.
CREATE TABLE message_states (
    message_id      TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    status          TEXT NOT NULL,
    -- When the message is due: its planned delivery, or its next retry.
    deliver_at_ms   INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- The lease of the node delivering it: a commit must present this token.
    lease_token     TEXT,
    lease_until_ms  INTEGER,
    updated_at_ms   INTEGER NOT NULL,
    delivered_at_ms INTEGER,
    read_at_ms      INTEGER
);

INSERT INTO message_states (message_id, tenant_id, status, deliver_at_ms, attempts, last_error,
    lease_token, lease_until_ms, updated_at_ms, delivered_at_ms, read_at_ms)
SELECT id, tenant_id, status, deliver_at_ms, attempts, last_error, lease_token, lease_until_ms,
    updated_at_ms, delivered_at_ms, read_at_ms
FROM messages;

DROP INDEX messages_by_status;
DROP INDEX messages_pending;
ALTER TABLE messages DROP COLUMN status;
ALTER TABLE messages DROP COLUMN previous_status;
ALTER TABLE messages DROP COLUMN deliver_at_ms;
ALTER TABLE messages DROP COLUMN attempts;
ALTER TABLE messages DROP COLUMN last_error;
ALTER TABLE messages DROP COLUMN lease_token;
ALTER TABLE messages DROP COLUMN lease_until_ms;
ALTER TABLE messages DROP COLUMN updated_at_ms;
ALTER TABLE messages DROP COLUMN delivered_at_ms;
ALTER TABLE messages DROP COLUMN read_at_ms;
-- A tenant's messages, newest first (the admins' listing, retention).
CREATE INDEX messages_tenant ON messages (tenant_id, id);

-- One row per step of a message's life (its submit, each delivery attempt, each requested
-- change) instead of one per decision: `steps` holds the step's entries (decisions,
-- transitions, the attempt) as a JSON array, in order; the other columns summarize the step.
-- Rows written before this migration have no `steps` and are one entry each.
ALTER TABLE message_events ADD COLUMN steps TEXT;

-- A feed event about a message's delivery refers to the message instead of sealing a second
-- copy of its content: its stored body leaves the content out, and reading puts it back.
ALTER TABLE feed_events ADD COLUMN message_id TEXT;

-- Messages per tenant and status, kept as statuses change (a scrape reads these rows instead
-- of counting every message). A count is the sum of its shards (SQLite has one writer, so it
-- writes shard 0 only).
CREATE TABLE message_counts (
    tenant_id TEXT NOT NULL,
    status    TEXT NOT NULL,
    shard     INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, status, shard)
);
INSERT INTO message_counts (tenant_id, status, shard, count)
SELECT tenant_id, status, 0, COUNT(*) FROM message_states GROUP BY tenant_id, status;

-- Idempotency keys are pruned by age.
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at_ms);
