-- keygate store, version 14: the native-key signatures already accepted, shared by every
-- instance on this store and kept across restarts.
-- Keep in step with migrations/postgres/0014_native_signatures.sql: same tables, same columns.

-- One row per accepted signed request: `digest` is the hex SHA-256 of the key id and the
-- signature's decoded MAC (the signature covers the request), `until_ms` when it may be
-- forgotten (past the longest time window a venue accepts). Inserted only if absent (or
-- expired), so two instances given the same captured request accept it once; rows past
-- `until_ms` are deleted now and then.
CREATE TABLE native_signatures (
    digest   TEXT PRIMARY KEY NOT NULL,
    until_ms BIGINT NOT NULL
);
CREATE INDEX native_signatures_until ON native_signatures (until_ms);
