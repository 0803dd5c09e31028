-- keygate store, version 1: instance metadata and the credential vault's sealed rows.
-- Keep in step with migrations/sqlite/0001_credentials.sql: same tables, same columns.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- One row per credential version. Secrets are never stored here in plaintext: `ciphertext` is
-- sealed under a per-version data key, `wrapped_key` is that data key wrapped by the master key
-- whose id is `key_id`. Both are bound to (id, venue, kind, version).
CREATE TABLE credentials (
    id          TEXT   NOT NULL,
    version     BIGINT NOT NULL CHECK (version >= 1),
    venue       TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    status      TEXT   NOT NULL CHECK (status IN ('active', 'disabled')),
    fingerprint TEXT   NOT NULL,
    key_id      TEXT   NOT NULL,
    wrapped_key BYTEA  NOT NULL,
    ciphertext  BYTEA  NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);

-- At most one active version per credential.
CREATE UNIQUE INDEX credentials_one_active ON credentials (id) WHERE status = 'active';
CREATE INDEX credentials_venue ON credentials (venue);
