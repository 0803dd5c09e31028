-- A hold binds the exact request keygate would forward (method, path and every parameter as
-- keygate re-encodes them, before signing), not only its intent: approvers are shown it, and
-- the request carrying the hold out must be that one. From this migration on, intent_digest is
-- keygate_core::admit::hold_digest of the intent and request_text together.
--
-- Holds from before have no request_text: they bind no request and cannot be carried out (the
-- client sends the request again for a new hold). Holds set by a decision without a request
-- (not through the gateway or the transfer API) have none either.
ALTER TABLE holds ADD COLUMN request_text TEXT;
