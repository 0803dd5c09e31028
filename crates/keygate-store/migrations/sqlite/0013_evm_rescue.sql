-- Rescue on chain: when a treasury's key is used outside keygate (an unapproved outflow, a
-- pending transaction keygate did not sign, a freeze covering the venue), keygate sweeps the
-- treasury to the venue's rescue address at the treasury's next nonces. One open rescue per
-- venue; each signed transaction (a nonce and a rung of its fee ladder) is a row written before
-- it is sent, so a restart or another instance sends the same bytes again and never signs a
-- second sweep at another nonce.

CREATE TABLE evm_rescues (
    id           INTEGER PRIMARY KEY NOT NULL,
    venue        TEXT   NOT NULL,
    from_address TEXT   NOT NULL,
    rescue_to    TEXT   NOT NULL,
    reason       TEXT   NOT NULL,
    started_ms   BIGINT NOT NULL,
    -- Set when every nonce it signed at is mined (by it or by another transaction) and
    -- nothing is left to sweep; outcome says how it ended.
    done_ms      BIGINT,
    outcome      TEXT
);
-- At most one open rescue per venue.
CREATE UNIQUE INDEX evm_rescues_open ON evm_rescues (venue) WHERE done_ms IS NULL;

CREATE TABLE evm_rescue_txs (
    rescue_id BIGINT NOT NULL,
    nonce     BIGINT NOT NULL,
    -- 0 for the first transaction at the nonce; each fee bump is the next rung.
    rung      BIGINT NOT NULL,
    -- ETH or a token symbol, and its amount in integer units (decimal text).
    asset     TEXT   NOT NULL,
    units     TEXT   NOT NULL,
    gas       BIGINT NOT NULL,
    -- Wei, decimal text.
    max_fee   TEXT   NOT NULL,
    tip       TEXT   NOT NULL,
    tx_hash   TEXT   NOT NULL,
    -- The signed bytes, hex without 0x.
    raw       TEXT   NOT NULL,
    -- The node's newest block when it was signed (a rung is bumped once a newer block is out).
    block     BIGINT NOT NULL,
    -- signed (recorded, maybe not sent), sent (a node took it), unknown (no clear answer),
    -- refused (every node refused it), mined (this transaction is in a block), replaced (another
    -- rung of ours is), lost (another transaction used the nonce).
    state     TEXT   NOT NULL,
    at_ms     BIGINT NOT NULL,
    PRIMARY KEY (rescue_id, nonce, rung)
);
CREATE UNIQUE INDEX evm_rescue_txs_hash ON evm_rescue_txs (tx_hash);
