-- Containment at the venue: what keygate does at an exchange when a freeze covers a venue
-- (lock the leaked sub-account key, sweep the sub-account's balances to the master, stop its
-- transfers out). One containment per venue and freeze; each step is a row written before it is
-- sent, so a restart or another instance carries on where it stopped and never repeats a step
-- the venue confirmed.

CREATE TABLE containments (
    id          INTEGER PRIMARY KEY NOT NULL,
    venue       TEXT   NOT NULL,
    freeze_id   BIGINT NOT NULL,
    started_ms  BIGINT NOT NULL,
    -- Set when every step is final (confirmed, or refused for good).
    done_ms     BIGINT
);
CREATE UNIQUE INDEX containments_venue_freeze ON containments (venue, freeze_id);

CREATE TABLE containment_steps (
    containment_id BIGINT NOT NULL,
    seq            BIGINT NOT NULL,
    -- lock-key, stop-transfers, sweep-round or sweep; params is its JSON (no secret).
    action         TEXT   NOT NULL,
    params         TEXT   NOT NULL,
    -- A sweep's client transfer id, as the venue is sent it.
    client_id      TEXT,
    -- planned, sending (sent or about to be: the outcome is not known), pending (accepted, not
    -- final), unknown, retry, confirmed or refused (final: nothing happened).
    state          TEXT   NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    last_error     TEXT,
    venue_ref      TEXT,
    -- Not to be tried again before this.
    next_ms        BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    PRIMARY KEY (containment_id, seq)
);
