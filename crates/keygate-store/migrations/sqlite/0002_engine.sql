-- keygate store, version 2: the decision engine's state and the audit log.
-- Keep in step with migrations/postgres/0002_engine.sql: same tables, same columns.

-- Bots and services. `venues`, `actions` and `tags` are JSON arrays of names.
CREATE TABLE clients (
    name       TEXT    PRIMARY KEY NOT NULL,
    venues     TEXT    NOT NULL,
    actions    TEXT    NOT NULL,
    tags       TEXT    NOT NULL,
    enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);

-- Tokens, stored only as a hash of their secret.
CREATE TABLE tokens (
    id          TEXT    PRIMARY KEY NOT NULL,
    client      TEXT    NOT NULL REFERENCES clients (name),
    secret_hash TEXT    NOT NULL,
    venues      TEXT    NOT NULL,
    actions     TEXT    NOT NULL,
    cidrs       TEXT    NOT NULL,
    issued_ms   INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL,
    revoked_ms  INTEGER
);
CREATE INDEX tokens_client ON tokens (client);

-- The address book. A removed entry keeps its row (and its history in the audit log).
CREATE TABLE destinations (
    id             INTEGER PRIMARY KEY NOT NULL,
    venue          TEXT    NOT NULL,
    asset          TEXT    NOT NULL,
    address        TEXT    NOT NULL,
    label          TEXT    NOT NULL,
    added_ms       INTEGER NOT NULL,
    added_by       TEXT    NOT NULL,
    usable_from_ms INTEGER NOT NULL,
    approved_ms    INTEGER,
    approved_by    TEXT,
    removed_ms     INTEGER
);
CREATE UNIQUE INDEX destinations_live ON destinations (venue, asset, address) WHERE removed_ms IS NULL;

-- Observed prices in USD per unit (decimal text), set by `keygate price set` or a feed.
CREATE TABLE prices (
    asset    TEXT    PRIMARY KEY NOT NULL,
    usd      TEXT    NOT NULL,
    as_of_ms INTEGER NOT NULL,
    set_by   TEXT    NOT NULL
);

-- The head of the audit hash chain: one row, locked by every append.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT    NOT NULL,
    at_ms INTEGER NOT NULL
);
INSERT INTO audit_head (id, seq, hash, at_ms)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

-- The audit log. `entry` is the canonical JSON of the entry; `hash` covers `prev_hash` and it.
-- The mv_ columns repeat an allowed decision's debit (also inside `entry`) so that the limits
-- can be rebuilt with one indexed query; `keygate audit verify` checks they agree.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0),
    at_ms        INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    entry        TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL,
    mv_client    TEXT,
    mv_venue     TEXT,
    mv_asset     TEXT,
    mv_action    TEXT,
    mv_amount    TEXT,
    mv_usd_cents INTEGER CHECK (mv_usd_cents >= 0)
);
CREATE INDEX audit_log_moves ON audit_log (at_ms) WHERE mv_usd_cents IS NOT NULL;

-- Signed checkpoints of the chain.
CREATE TABLE audit_checkpoints (
    seq        INTEGER PRIMARY KEY NOT NULL,
    hash       TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    public_key TEXT    NOT NULL,
    signature  TEXT    NOT NULL
);
