-- EVM transfers (keygate-chain): what keygate signed for each allowed transfer decision, every
-- transaction hash it signed for it (recorded before the transaction is sent, so the watcher
-- never meets a hash of keygate's it does not know), and the client's reference for retries.

CREATE TABLE evm_transfers (
    decision_id  BIGINT PRIMARY KEY NOT NULL,
    venue        TEXT   NOT NULL,
    client       TEXT   NOT NULL,
    client_ref   TEXT   NOT NULL,
    asset        TEXT   NOT NULL,
    amount       TEXT   NOT NULL,
    destination  TEXT   NOT NULL,
    from_address TEXT   NOT NULL,
    -- The hash last sent (NULL until one was accepted by the node).
    tx_hash      TEXT,
    nonce        BIGINT,
    -- signing, sent, unsent (the node refused or could not be reached; nothing is pending).
    state        TEXT   NOT NULL,
    error        TEXT,
    at_ms        BIGINT NOT NULL
);
CREATE UNIQUE INDEX evm_transfers_ref ON evm_transfers (client, venue, client_ref);

CREATE TABLE evm_tx_hashes (
    tx_hash     TEXT   PRIMARY KEY NOT NULL,
    decision_id BIGINT NOT NULL,
    nonce       BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL
);
CREATE INDEX evm_tx_hashes_decision ON evm_tx_hashes (decision_id);
