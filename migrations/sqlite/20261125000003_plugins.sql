-- Tenants' own plugins and their hook bindings.

-- An uploaded component. The bytes live here, so every node (and a restart) can load it; each
-- node keeps compiled code in its plugin cache, keyed by digest.
CREATE TABLE plugins (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    name            TEXT NOT NULL,
    version         TEXT,
    world           TEXT NOT NULL CHECK (world IN ('validator', 'delay-policy', 'channel')),
    -- SHA-256 of the component, hex.
    digest          TEXT NOT NULL,
    size            INTEGER NOT NULL,
    component       BLOB NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    -- Set when the plugin failed too often in a row; its hooks use the built-in default.
    disabled_at_ms  INTEGER,
    disabled_reason TEXT,
    UNIQUE (tenant_id, digest)
);

-- Which plugin serves each hook of a tenant: `validators` (a chain, by position),
-- `delay-policy` and `channels/<name>` (position 0). No row: the built-in default.
CREATE TABLE hook_bindings (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    hook          TEXT NOT NULL,
    position      INTEGER NOT NULL,
    plugin_id     TEXT NOT NULL REFERENCES plugins (id),
    -- The binding as JSON: config, allowed_hosts, limits.
    binding       TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, hook, position)
);
CREATE INDEX hook_bindings_plugin ON hook_bindings (plugin_id);
