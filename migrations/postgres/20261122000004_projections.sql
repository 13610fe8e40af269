-- Bookkeeping of the projectors (projectors/). Each projection's tables live in
-- a schema of their own per generation (rm_<projection>_g<N>, created by the
-- projector from migrations/projections/<projection>.sql); the query API reads
-- them through views in schema `read`, which a rebuild re-points in one
-- transaction when the new generation has caught up.

CREATE SCHEMA read;

-- Which generation of each projection serves reads.
CREATE TABLE projections (
    name              text    PRIMARY KEY,
    active_generation integer NOT NULL
);

-- Where each generation of a projection is in the global log. Updated in the
-- same transaction as the read model, only if it still holds what the writer
-- read (compare and set): no event is applied twice, even by two writers.
CREATE TABLE projection_checkpoints (
    projection     text        NOT NULL,
    generation     integer     NOT NULL,
    commit_id      bigint      NOT NULL DEFAULT 0,
    event_position bigint      NOT NULL DEFAULT 0,
    events_applied bigint      NOT NULL DEFAULT 0,
    last_event_at  timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, generation)
);

-- Events a projection could not apply after its retries; it moved on.
CREATE TABLE projection_dead_letters (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection     text        NOT NULL,
    event_id       uuid        NOT NULL,
    commit_id      bigint      NOT NULL,
    event_position bigint      NOT NULL,
    event_type     text        NOT NULL,
    error          text        NOT NULL,
    attempts       integer     NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (projection, event_id)
);

-- The application role builds read models: it creates generation schemas and
-- owns the views in `read`.
DO $$
BEGIN
    EXECUTE format('GRANT CREATE ON DATABASE %I TO tasklog_app', current_database());
END
$$;
GRANT USAGE, CREATE ON SCHEMA read TO tasklog_app;
