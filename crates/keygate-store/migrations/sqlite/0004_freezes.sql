-- Freezes, and the signed approvals that lift them.

CREATE TABLE freezes (
    id          INTEGER PRIMARY KEY NOT NULL,
    scope       TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    set_by      TEXT   NOT NULL,
    set_ms      BIGINT NOT NULL,
    -- Set when a quorum lifts it; NULL while it holds.
    lifted_ms   BIGINT,
    lifted_by   TEXT
);
CREATE INDEX freezes_active ON freezes (id) WHERE lifted_ms IS NULL;

-- One approval per approver and subject (a second one replaces the first, so it counts once).
CREATE TABLE approvals (
    subject     TEXT   NOT NULL,
    approver    TEXT   NOT NULL,
    signature   TEXT   NOT NULL,
    expires_ms  BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (subject, approver)
);
