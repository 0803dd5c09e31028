-- Nonces held per signing address, allocated in the store: two keygate instances sharing a key
-- never sign two transfers at one nonce, and a nonce whose transaction may still be mined is
-- never given to another transfer. A nonce is taken in the same transaction that records the
-- signed transaction's hash and bytes, so every held nonce has a transaction keygate can send
-- again (a crash between signing and sending leaves nothing that can jam the address).

CREATE TABLE evm_nonces (
    from_address TEXT   NOT NULL,
    nonce        BIGINT NOT NULL,
    decision_id  BIGINT NOT NULL,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (from_address, nonce)
);

-- The signed bytes (a public, signed transaction: no secret), for sending the very same
-- transaction again when a node dropped it.
ALTER TABLE evm_tx_hashes ADD COLUMN raw TEXT;
-- What the node said when it was sent: signed (not answered yet: it may be out), accepted,
-- refused (refused outright: never in a pool) or unknown (no answer: it may be out). Rows from
-- before this migration are unknown, the safe reading.
ALTER TABLE evm_tx_hashes ADD COLUMN outcome TEXT NOT NULL DEFAULT 'unknown';
-- How many times the transaction was claimed for sending it again (healing, a status read): a
-- sender records a refusal only if nobody claimed it since, so a refusal and a copy sent from
-- elsewhere exclude each other.
ALTER TABLE evm_tx_hashes ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;

-- How many transactions a transfer has taken a nonce for: a status read may give up a transfer
-- left `signing` with nothing sent only if this did not move since it looked (compare-and-set),
-- and a sender that comes late finds it given up and sends nothing.
ALTER TABLE evm_transfers ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
