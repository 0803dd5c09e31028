-- The gateway: client request ids that must never repeat, and what reconciliation has seen in
-- each venue's withdrawal history.

CREATE TABLE request_ids (
    client      TEXT   NOT NULL,
    venue       TEXT   NOT NULL,
    request_id  TEXT   NOT NULL,
    decision_id BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (client, venue, request_id)
);

CREATE TABLE venue_withdrawals (
    venue       TEXT   NOT NULL,
    venue_id    TEXT   NOT NULL,
    -- The allowed decision it matched, or NULL when it matched none (an alarm was raised).
    decision_id BIGINT,
    -- The audit entry recording the match or the alarm.
    audit_id    BIGINT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    PRIMARY KEY (venue, venue_id)
);
CREATE UNIQUE INDEX venue_withdrawals_decision ON venue_withdrawals (decision_id);
