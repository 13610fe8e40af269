-- The event store: one append-only table. Global order for readers is
-- (transaction_id, global_position): a reader only takes rows whose
-- transaction id is below the oldest transaction still running, so a
-- transaction that took a lower position but commits later is never skipped
-- (see event-store/src/postgres.rs).

-- The application's role may read and append events, never change them.
DO $$
BEGIN
    CREATE ROLE tasklog_app LOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL; -- roles are cluster-wide; parallel test databases race here
END
$$;

CREATE TABLE events (
    global_position bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    org_id          uuid        NOT NULL,
    actor_id        uuid,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    payload         jsonb       NOT NULL,
    prev_hash       bytea,
    hash            bytea       NOT NULL,
    CONSTRAINT events_event_id_unique UNIQUE (event_id),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

-- The order every global-log reader uses.
CREATE INDEX events_log_order ON events (transaction_id, global_position);

CREATE FUNCTION events_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

GRANT USAGE ON SCHEMA public TO tasklog_app;
REVOKE ALL ON events FROM PUBLIC;
GRANT SELECT, INSERT ON events TO tasklog_app;
GRANT USAGE ON SEQUENCE events_global_position_seq TO tasklog_app;
-- Tables created by later migrations (read models, idempotency keys) are the
-- application's to change.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tasklog_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO tasklog_app;
