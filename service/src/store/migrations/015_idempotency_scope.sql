-- An Idempotency-Key belongs to the caller that sent it: the scoped token, or the bootstrap
-- API_TOKEN as a scope of its own. Globally unique keys let a token of one area reuse another
-- area's key and be answered with that area's message, sending nothing. The fingerprint (SHA-256
-- of the request) tells a retry from a different request that reuses the key.
-- Keys stored before keep a null scope: no new request matches them.
ALTER TABLE messages
  ADD COLUMN idempotency_scope text,
  ADD COLUMN idempotency_fingerprint bytea;
ALTER TABLE messages DROP CONSTRAINT messages_idempotency_key_key;
CREATE UNIQUE INDEX messages_idempotency ON messages (idempotency_scope, idempotency_key) WHERE idempotency_key IS NOT NULL;
