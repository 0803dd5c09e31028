-- Held decisions waiting for approvals. A quorum marks one approved; the client then sends the
-- same request again with the header x-keygate-hold, and that one decision may use it once.

CREATE TABLE holds (
    decision_id   BIGINT PRIMARY KEY,
    client        TEXT   NOT NULL,
    venue         TEXT   NOT NULL,
    -- SHA-256 of the held intent's canonical JSON (without token and source address).
    intent_digest TEXT   NOT NULL,
    request_id    TEXT,
    expires_ms    BIGINT NOT NULL,
    approved_ms   BIGINT,
    executed_ms   BIGINT,
    executed_by   BIGINT
);
