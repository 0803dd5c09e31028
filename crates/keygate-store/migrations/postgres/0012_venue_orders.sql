-- Each order a venue's order history shows, judged once: matched to the allowed trade decision
-- keygate forwarded it for, or an unapproved action (the key used around keygate).

CREATE TABLE venue_orders (
    venue       TEXT   NOT NULL,
    venue_id    TEXT   NOT NULL,
    -- The allowed decision it matched, or NULL when it matched none (an alarm was raised).
    decision_id BIGINT,
    -- The audit entry recording the match or the alarm.
    audit_id    BIGINT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    PRIMARY KEY (venue, venue_id)
);
CREATE UNIQUE INDEX venue_orders_decision ON venue_orders (decision_id);
