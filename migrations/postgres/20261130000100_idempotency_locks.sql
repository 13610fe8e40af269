-- Idempotency keys are held while their request runs by a session advisory
-- lock (freed at once when the process or its connection dies), no longer by
-- a lease in `locked_until`, which is kept but unused. Responses are stored as
-- the bytes sent: any body stores, so a key is never left unfinished because
-- its response could not be saved. `response_body` holds older responses.
ALTER TABLE idempotency_keys ADD COLUMN response_raw bytea;
