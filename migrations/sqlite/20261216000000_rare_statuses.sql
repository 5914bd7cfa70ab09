-- The listings filtered by a rare status (the dead letters, the cancelled): the tenant's
-- messages in that status, newest first, as one index range, instead of a walk over every
-- message of the tenant until a page of them is found. Partial, one per status (SQLite uses a
-- partial index only when the query names its exact condition), so the writes that move a
-- message through its common statuses never touch them: only entering or leaving `dead` or
-- `cancelled` does. SQLite only: on PostgreSQL an index whose condition names `status` would
-- make every status change of `message_states` a non-HOT update (new entries in every index of
-- the table), which the message core is shaped to avoid; there these listings walk the
-- tenant's index, as before.
CREATE INDEX message_states_dead ON message_states (tenant_id, message_id) WHERE status = 'dead';
CREATE INDEX message_states_cancelled ON message_states (tenant_id, message_id)
    WHERE status = 'cancelled';
