-- Flow control per key (issue 16 §1). A message may carry its own flow key; without one its
-- key is derived when it is delivered (the recipient's webhook endpoint, or the recipient).
ALTER TABLE messages ADD COLUMN flow_key TEXT;

-- A tenant's limits per key pattern: an exact key, a prefix ending in `*`, or `*` alone
-- (the tenant-wide default). `rate` deliveries per `period_seconds`, `parallelism` in
-- flight at once, `ordering` 'fifo' (one at a time in due order, a retrying message holding
-- the key) or 'any'; at least one of them is set.
CREATE TABLE flow_limits (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    pattern        TEXT NOT NULL,
    rate           BIGINT,
    period_seconds BIGINT,
    ordering       TEXT NOT NULL DEFAULT 'any',
    parallelism    BIGINT,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, pattern)
);
