-- Usernames compared in one form (issue 13): `username_key` is the name's Unicode
-- compatibility caseless form (NFKC, case-folded), `username_skeleton` the UTS #39
-- confusable skeleton of that. Both are unique among live users, so `Admin` cannot sit beside
-- `admin`, nor Cyrillic `асе` beside Latin `ace`. The application computes them (SQL cannot
-- normalize Unicode on both backends): for new users when it creates them, and for the users
-- this migration finds, at the next start (`Store::fill_username_keys`). Two existing users
-- whose names now compare equal keep working: the older one gets the key, the other keeps
-- NULL and still logs in by its exact name (see `CREDENTIALS`).
ALTER TABLE users ADD COLUMN username_key TEXT;
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
CREATE UNIQUE INDEX users_username_key ON users (username_key) WHERE deleted_at_ms IS NULL;
CREATE UNIQUE INDEX users_username_skeleton ON users (username_skeleton)
    WHERE deleted_at_ms IS NULL;
