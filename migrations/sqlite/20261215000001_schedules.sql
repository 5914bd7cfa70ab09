-- Recurring schedules: a cron pattern in a time zone and a message template; each occurrence
-- becomes an ordinary message.

CREATE TABLE schedules (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    -- The user who created it: the sender of its messages.
    owner_id        TEXT NOT NULL,
    cron            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    -- The message template; content sealed like message content (record: the schedule id).
    -- Whom each occurrence is for: one user, or each member of a group (a fan-out).
    recipient_id    TEXT,
    group_id        TEXT,
    -- The flow-control key of its messages, when the template names one.
    flow_key        TEXT,
    channel         TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    nonce           BLOB NOT NULL,
    content         BLOB NOT NULL,
    starts_at_ms    INTEGER,
    ends_at_ms      INTEGER,
    max_runs        INTEGER,
    missed          TEXT NOT NULL CHECK (missed IN ('skip', 'once')),
    state           TEXT NOT NULL CHECK (state IN ('active', 'paused', 'finished')),
    runs            INTEGER NOT NULL,
    -- The next occurrence not yet created; set only while active.
    next_at_ms      INTEGER,
    -- When to create that occurrence: ahead of it by the lead (a minute, or one period of a
    -- pattern that recurs sooner). The runner's index.
    due_at_ms       INTEGER,
    last_run_at_ms  INTEGER,
    last_error      TEXT,
    -- Bumped by every change: the runner's compare-and-set reads it with next_at_ms.
    revision        INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    CHECK ((recipient_id IS NULL) <> (group_id IS NULL))
);
CREATE INDEX schedules_due ON schedules (due_at_ms) WHERE due_at_ms IS NOT NULL;
CREATE INDEX schedules_tenant ON schedules (tenant_id, id);

-- One row per occurrence created: the database's guard that an occurrence makes one message,
-- and the link from a message to its schedule.
CREATE TABLE schedule_runs (
    schedule_id    TEXT NOT NULL,
    occurrence_ms  INTEGER NOT NULL,
    tenant_id      TEXT NOT NULL,
    -- The occurrence's message; for a group, its first member's (the fan-out names the rest).
    message_id     TEXT NOT NULL,
    fan_out_id     TEXT,
    PRIMARY KEY (schedule_id, occurrence_ms)
);
CREATE INDEX schedule_runs_message ON schedule_runs (message_id);
CREATE INDEX schedule_runs_fan_out ON schedule_runs (fan_out_id) WHERE fan_out_id IS NOT NULL;
