-- The analytics store: typed tables the `analytics` projection writes.
--
-- Exactly once without transactions: every table is a ReplacingMergeTree
-- whose sorting key is the identity of what a row describes (an event's log
-- position, a task, a notification). A batch sent again after a crash writes
-- rows with the same keys and the same values, and the duplicates collapse
-- when parts merge; until then every reporting view reads with FINAL, so a
-- duplicate is never counted. Dimension rows carry the version of their
-- stream, so the newest state wins.
--
-- Placeholders, filled in by `tasklog migrate`: ${db} (the tables'
-- database), ${reporting} (the views'), ${on_cluster} (empty, or
-- `ON CLUSTER <name>`), ${replicated} (empty, or `Replicated` on a cluster).

CREATE DATABASE IF NOT EXISTS ${db} ${on_cluster};

-- One row per event of the global log, with the fields its type carries.
CREATE TABLE IF NOT EXISTS ${db}.events ${on_cluster} (
    commit_id UInt64,
    event_seq UInt64,
    event_id UUID,
    org_id UUID,
    project_id Nullable(UUID),
    task_id Nullable(UUID),
    stream_id String,
    stream_version UInt64,
    event_type String,
    schema_version UInt16,
    actor_id Nullable(UUID),
    occurred_at DateTime('UTC'),
    recorded_at DateTime('UTC'),
    status_from String,
    status_to String,
    category_from String,
    category_to String,
    assignee_id Nullable(UUID),
    previous_assignee_id Nullable(UUID),
    comment_id Nullable(UUID),
    author_id Nullable(UUID),
    mentions Array(UUID),
    tag_id Nullable(UUID),
    member_id Nullable(UUID),
    role String,
    title String,
    name String,
    priority String,
    due_date Nullable(Date),
    notification_id Nullable(UUID)
) ENGINE = ${replicated}ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (org_id, commit_id, event_seq);

-- One row per task status change, and one for the status a task is created
-- in (status_from = ''), with the time spent in the status it left.
CREATE TABLE IF NOT EXISTS ${db}.status_changes ${on_cluster} (
    org_id UUID,
    project_id UUID,
    task_id UUID,
    commit_id UInt64,
    event_seq UInt64,
    changed_at DateTime('UTC'),
    status_from String,
    status_to String,
    category_from String,
    category_to String,
    from_since DateTime('UTC'),
    seconds_in_from UInt32,
    reopened UInt8,
    assignee_id Nullable(UUID),
    actor_id Nullable(UUID)
) ENGINE = ${replicated}ReplacingMergeTree()
PARTITION BY toYYYYMM(changed_at)
ORDER BY (org_id, project_id, task_id, commit_id, event_seq);

-- Each task as it stands, one row per version (its stream's version).
CREATE TABLE IF NOT EXISTS ${db}.tasks ${on_cluster} (
    org_id UUID,
    project_id UUID,
    task_id UUID,
    number UInt64,
    task_key String,
    title String,
    priority String,
    due_date Nullable(Date),
    status String,
    category String,
    status_since DateTime('UTC'),
    assignee_id Nullable(UUID),
    created_at DateTime('UTC'),
    created_by Nullable(UUID),
    first_left_backlog_at Nullable(DateTime('UTC')),
    first_started_at Nullable(DateTime('UTC')),
    completed_at Nullable(DateTime('UTC')),
    completed_by_assignee_id Nullable(UUID),
    cancelled_at Nullable(DateTime('UTC')),
    times_reopened UInt32,
    archived UInt8,
    archived_at Nullable(DateTime('UTC')),
    version UInt64
) ENGINE = ${replicated}ReplacingMergeTree(version)
ORDER BY (org_id, project_id, task_id);

CREATE TABLE IF NOT EXISTS ${db}.projects ${on_cluster} (
    org_id UUID,
    project_id UUID,
    name String,
    project_key String,
    archived UInt8,
    created_at DateTime('UTC'),
    version UInt64
) ENGINE = ${replicated}ReplacingMergeTree(version)
ORDER BY (org_id, project_id);

CREATE TABLE IF NOT EXISTS ${db}.members ${on_cluster} (
    org_id UUID,
    user_id UUID,
    handle String,
    role String,
    removed UInt8,
    joined_at DateTime('UTC'),
    version UInt64
) ENGINE = ${replicated}ReplacingMergeTree(version)
ORDER BY (org_id, user_id);

CREATE TABLE IF NOT EXISTS ${db}.tags ${on_cluster} (
    org_id UUID,
    tag_id UUID,
    name String,
    color String,
    deleted UInt8,
    version UInt64
) ENGINE = ${replicated}ReplacingMergeTree(version)
ORDER BY (org_id, tag_id);

-- One row per in-app notification, by the same rules as the notifications
-- read model (the rule code is shared).
CREATE TABLE IF NOT EXISTS ${db}.notifications ${on_cluster} (
    org_id UUID,
    notification_id UUID,
    project_id Nullable(UUID),
    task_id UUID,
    user_id UUID,
    kind String,
    comment_id Nullable(UUID),
    actor_id Nullable(UUID),
    created_at DateTime('UTC')
) ENGINE = ${replicated}ReplacingMergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (org_id, notification_id);
