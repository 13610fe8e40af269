-- Projection `activity`: each task's history, one row per event, from the events alone.
CREATE TABLE activity (
    event_id       uuid        PRIMARY KEY,
    org_id         uuid        NOT NULL,
    task_id        uuid        NOT NULL,
    commit_id      bigint      NOT NULL,
    event_position bigint      NOT NULL,
    event_type     text        NOT NULL,
    actor          uuid,
    occurred_at    timestamptz NOT NULL,
    data           jsonb       NOT NULL
);
CREATE INDEX activity_task ON activity (task_id, commit_id, event_position);
