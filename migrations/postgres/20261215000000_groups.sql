-- Groups of a tenant's users, and fan-outs: one message per member of a group, sent in one
-- request (issue 16, part 4).

CREATE TABLE groups (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX groups_tenant ON groups (tenant_id, id);

-- A member is a live user of the group's tenant; deleting the user removes its rows here.
CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    added_at_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
-- The groups of a user (a deleted user leaves them).
CREATE INDEX group_members_user ON group_members (user_id);

-- One row per fan-out: who sent it to which group, and how many messages it created. The
-- group may be deleted since; the messages stay and keep the fan-out's id.
CREATE TABLE fan_outs (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    sender_id     TEXT NOT NULL,
    group_id      TEXT NOT NULL,
    count         BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX fan_outs_age ON fan_outs (created_at_ms);

-- The fan-out a message belongs to (none for a message sent to one recipient).
ALTER TABLE messages ADD COLUMN fan_out_id TEXT;
CREATE INDEX messages_fan_out ON messages (fan_out_id) WHERE fan_out_id IS NOT NULL;
