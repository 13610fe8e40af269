-- Idempotency-Key support for the command API. A retried request with the same
-- key gets the first response back and appends nothing. `seed` makes every id a
-- request draws (new aggregate ids, event ids) the same on a retry, so a retry
-- after a crash between the append and saving the response is deduplicated by
-- the event store's event-id idempotency.
CREATE TABLE idempotency_keys (
    org_scope       text        NOT NULL,
    caller_id       uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    fingerprint     bytea       NOT NULL,
    seed            uuid        NOT NULL,
    -- While a run holds the key, a duplicate waits; after, a retry may take over.
    locked_until    timestamptz NOT NULL,
    response_status smallint,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_scope, caller_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
