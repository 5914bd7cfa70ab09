-- The SQLite migration of this version adds partial indexes for the listings filtered by a
-- rare status (dead letters, cancelled). PostgreSQL gets none: an index whose condition names
-- `status` would make every status change of `message_states` a non-HOT update (new entries
-- in every index of the table), which the message core is shaped to avoid; there these
-- listings walk the tenant's index, as before. The version is kept so that both backends
-- stand at the same migrations (a backup restores across them only then).
SELECT 1;
