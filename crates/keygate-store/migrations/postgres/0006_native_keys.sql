-- keygate store, version 6: exchange-native API keys for clients.
-- Keep in step with migrations/sqlite/0006_native_keys.sql: same tables, same columns.

-- A token is a bearer token (its secret stored as a hash) or a native key (its secret sealed
-- in native_keys: the gateway needs the secret itself to check an HMAC signature).
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'bearer' CHECK (kind IN ('bearer', 'native'));

-- The sealed secret (and OKX passphrase) of a native key, as the vault seals credentials: the
-- ciphertext under a data key, the data key wrapped by the master key whose id is `key_id`,
-- both bound to the token id and its client.
CREATE TABLE native_keys (
    token_id    TEXT PRIMARY KEY NOT NULL REFERENCES tokens (id),
    client      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL
);
