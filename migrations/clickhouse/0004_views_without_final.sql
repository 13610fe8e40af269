-- The reporting views without FINAL, so that a filter on org_id (and, where
-- it is a grouping key, project_id) reaches the tables' primary key.
--
-- ClickHouse 18.16 pushes a view's outer WHERE into the view's query
-- (enable_optimize_predicate_expression = 1, set in the users' profiles;
-- current releases do it by default) but never into a SELECT ... FINAL: with
-- FINAL, every view computed every organization's figures, then filtered
-- (1–6 s over 10,000,000 events). Here duplicates and old versions are folded
-- by GROUP BY on each table's sorting key instead, which the filter passes
-- through:
--
-- * ${db}.tasks_latest: per task, the row of the highest `version`
--   (argMax over a tuple: argMax on a Nullable column skips NULLs, and a
--   task unassigned later would keep its old assignee);
-- * ${db}.status_changes_unique, ${db}.events_unique: rows written twice
--   are identical, so one per key, any() of the rest.
--
-- The views' columns, rules and figures are those of 0002 and 0003
-- (docs/reporting.md); the JOINs of flow_efficiency and notifications_daily
-- became UNION ALL + GROUP BY, because 18.16 pushes a filter into the left
-- side of a JOIN only.

CREATE VIEW IF NOT EXISTS ${db}.tasks_latest ${on_cluster} AS
SELECT
    org_id,
    project_id,
    task_id,
    tupleElement(t, 1) AS number,
    tupleElement(t, 2) AS task_key,
    tupleElement(t, 3) AS title,
    tupleElement(t, 4) AS priority,
    tupleElement(t, 5) AS due_date,
    tupleElement(t, 6) AS status,
    tupleElement(t, 7) AS category,
    tupleElement(t, 8) AS status_since,
    tupleElement(t, 9) AS assignee_id,
    tupleElement(t, 10) AS created_at,
    tupleElement(t, 11) AS created_by,
    tupleElement(t, 12) AS first_left_backlog_at,
    tupleElement(t, 13) AS first_started_at,
    tupleElement(t, 14) AS completed_at,
    tupleElement(t, 15) AS completed_by_assignee_id,
    tupleElement(t, 16) AS cancelled_at,
    tupleElement(t, 17) AS times_reopened,
    tupleElement(t, 18) AS archived,
    tupleElement(t, 19) AS archived_at,
    latest_version AS version
FROM (
    SELECT
        org_id,
        project_id,
        task_id,
        argMax(tuple(number, task_key, title, priority, due_date, status, category, status_since,
            assignee_id, created_at, created_by, first_left_backlog_at, first_started_at,
            completed_at, completed_by_assignee_id, cancelled_at, times_reopened, archived,
            archived_at), version) AS t,
        max(version) AS latest_version
    FROM ${db}.tasks
    GROUP BY org_id, project_id, task_id
);

CREATE VIEW IF NOT EXISTS ${db}.status_changes_unique ${on_cluster} AS
SELECT
    org_id,
    project_id,
    task_id,
    commit_id,
    event_seq,
    any(changed_at) AS changed_at,
    any(status_from) AS status_from,
    any(status_to) AS status_to,
    any(category_from) AS category_from,
    any(category_to) AS category_to,
    any(from_since) AS from_since,
    any(seconds_in_from) AS seconds_in_from,
    any(reopened) AS reopened,
    any(assignee_id) AS assignee_id,
    any(actor_id) AS actor_id
FROM ${db}.status_changes
GROUP BY org_id, project_id, task_id, commit_id, event_seq;

-- project_id is a grouping key (one value per event) so that a project
-- filter passes through too.
CREATE VIEW IF NOT EXISTS ${db}.events_unique ${on_cluster} AS
SELECT
    org_id,
    project_id,
    commit_id,
    event_seq,
    any(event_id) AS event_id,
    any(task_id) AS task_id,
    any(stream_id) AS stream_id,
    any(stream_version) AS stream_version,
    any(event_type) AS event_type,
    any(schema_version) AS schema_version,
    any(actor_id) AS actor_id,
    any(occurred_at) AS occurred_at,
    any(recorded_at) AS recorded_at,
    any(status_from) AS status_from,
    any(status_to) AS status_to,
    any(category_from) AS category_from,
    any(category_to) AS category_to,
    any(assignee_id) AS assignee_id,
    any(previous_assignee_id) AS previous_assignee_id,
    any(comment_id) AS comment_id,
    any(author_id) AS author_id,
    any(mentions) AS mentions,
    any(tag_id) AS tag_id,
    any(member_id) AS member_id,
    any(role) AS role,
    any(title) AS title,
    any(name) AS name,
    any(priority) AS priority,
    any(due_date) AS due_date,
    any(notification_id) AS notification_id
FROM ${db}.events
GROUP BY org_id, project_id, commit_id, event_seq;

DROP TABLE IF EXISTS ${reporting}.cumulative_flow_daily ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.task_cycle ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.cycle_time_weekly ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.throughput_weekly ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.created_vs_resolved_daily ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.time_in_status ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.flow_efficiency ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.workload_current ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.comment_activity_daily ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.notifications_daily ${on_cluster};
DROP TABLE IF EXISTS ${reporting}.event_log ${on_cluster};

CREATE VIEW ${reporting}.cumulative_flow_daily ${on_cluster} AS
SELECT
    org_id,
    project_id,
    cf_day AS day,
    cf_status AS status,
    cf_category AS category,
    toUInt64(cf_tasks) AS tasks
FROM (
    SELECT
        org_id,
        project_id,
        cf_status,
        cf_category,
        arraySort(groupArray(step_day)) AS cf_days,
        arrayCumSum(arraySort((s, d) -> d, groupArray(day_delta), groupArray(step_day))) AS cf_counts
    FROM (
        SELECT org_id, project_id, cf_status, cf_category, step_day, sum(delta) AS day_delta
        FROM (
            SELECT org_id, project_id, status_to AS cf_status, category_to AS cf_category,
                toDate(changed_at) AS step_day, toInt64(1) AS delta
            FROM ${db}.status_changes_unique
            UNION ALL
            SELECT org_id, project_id, status_from AS cf_status, category_from AS cf_category,
                toDate(changed_at) AS step_day, toInt64(-1) AS delta
            FROM ${db}.status_changes_unique
            WHERE status_from != ''
            UNION ALL
            SELECT org_id, project_id, status AS cf_status, category AS cf_category,
                toDate(assumeNotNull(archived_at)) AS step_day, toInt64(-1) AS delta
            FROM ${db}.tasks_latest
            WHERE archived = 1 AND archived_at IS NOT NULL
            UNION ALL
            SELECT org_id, project_id,
                tupleElement(used, 1) AS cf_status, tupleElement(used, 2) AS cf_category,
                arrayJoin(arrayMap(i -> first_day + i,
                    range(toUInt32(greatest(toInt64(toDate(now(), 'UTC')) - toInt64(first_day) + 1, 0))))) AS step_day,
                toInt64(0) AS delta
            FROM (
                SELECT org_id, project_id, min(toDate(changed_at)) AS first_day,
                    groupUniqArray((status_to, category_to)) AS used_statuses
                FROM ${db}.status_changes
                GROUP BY org_id, project_id
            )
            ARRAY JOIN used_statuses AS used
        )
        GROUP BY org_id, project_id, cf_status, cf_category, step_day
    )
    GROUP BY org_id, project_id, cf_status, cf_category
)
ARRAY JOIN cf_days AS cf_day, cf_counts AS cf_tasks
WHERE cf_day <= toDate(now(), 'UTC');

CREATE VIEW ${reporting}.task_cycle ${on_cluster} AS
SELECT
    org_id,
    project_id,
    task_id,
    task_key,
    title,
    priority,
    status,
    category,
    created_at,
    first_left_backlog_at,
    first_started_at,
    completed_at,
    completed_by_assignee_id,
    cancelled_at,
    toInt64(completed_at) - toInt64(created_at) AS lead_time_seconds,
    toInt64(completed_at) - toInt64(first_started_at) AS cycle_time_seconds,
    times_reopened,
    assignee_id,
    due_date,
    archived,
    archived_at
FROM ${db}.tasks_latest;

CREATE VIEW ${reporting}.cycle_time_weekly ${on_cluster} AS
SELECT
    org_id,
    project_id,
    ct_week AS week,
    ct_completed AS completed,
    lead_q[1] AS lead_time_p50_seconds,
    lead_q[2] AS lead_time_p85_seconds,
    lead_q[3] AS lead_time_p95_seconds,
    ct_cycle_samples AS cycle_samples,
    if(ct_cycle_samples = 0, NULL, cycle_q[1]) AS cycle_time_p50_seconds,
    if(ct_cycle_samples = 0, NULL, cycle_q[2]) AS cycle_time_p85_seconds,
    if(ct_cycle_samples = 0, NULL, cycle_q[3]) AS cycle_time_p95_seconds
FROM (
    SELECT
        org_id,
        project_id,
        toMonday(done_at) AS ct_week,
        count() AS ct_completed,
        quantilesExact(0.5, 0.85, 0.95)(lead_s) AS lead_q,
        countIf(started = 1) AS ct_cycle_samples,
        quantilesExactIf(0.5, 0.85, 0.95)(cycle_s, started = 1) AS cycle_q
    FROM (
        SELECT
            org_id,
            project_id,
            assumeNotNull(completed_at) AS done_at,
            toInt64(assumeNotNull(completed_at)) - toInt64(created_at) AS lead_s,
            toUInt8(first_started_at IS NOT NULL) AS started,
            toInt64(assumeNotNull(completed_at)) - toInt64(ifNull(first_started_at, assumeNotNull(completed_at))) AS cycle_s
        FROM ${db}.tasks_latest
        WHERE completed_at IS NOT NULL
    )
    GROUP BY org_id, project_id, ct_week
);

CREATE VIEW ${reporting}.throughput_weekly ${on_cluster} AS
SELECT
    org_id,
    project_id,
    tp_week AS week,
    completed_by_assignee_id,
    count() AS completed
FROM (
    SELECT org_id, project_id, toMonday(assumeNotNull(completed_at)) AS tp_week, completed_by_assignee_id
    FROM ${db}.tasks_latest
    WHERE completed_at IS NOT NULL
)
GROUP BY org_id, project_id, tp_week, completed_by_assignee_id;

-- A task's creation, current completion, cancellation and archiving come
-- from one read of tasks_latest (one row per what, kept where it happened).
CREATE VIEW ${reporting}.created_vs_resolved_daily ${on_cluster} AS
SELECT
    org_id,
    project_id,
    cr_day AS day,
    sum(what = 1) AS created,
    sum(what = 2) AS completed,
    sum(what = 3) AS cancelled,
    sum(what = 4) AS reopened,
    sum(what = 5) AS archived
FROM (
    SELECT org_id, project_id, what,
        multiIf(what = 1, toDate(created_at),
            what = 2, toDate(assumeNotNull(completed_at)),
            what = 3, toDate(assumeNotNull(cancelled_at)),
            toDate(assumeNotNull(archived_at))) AS cr_day
    FROM (
        SELECT org_id, project_id, created_at, completed_at, cancelled_at, archived, archived_at,
            arrayJoin([1, 2, 3, 5]) AS what
        FROM ${db}.tasks_latest
    )
    WHERE what = 1
        OR (what = 2 AND completed_at IS NOT NULL)
        OR (what = 3 AND cancelled_at IS NOT NULL)
        OR (what = 5 AND archived = 1 AND archived_at IS NOT NULL)
    UNION ALL
    SELECT org_id, project_id, toUInt8(4) AS what, toDate(changed_at) AS cr_day
    FROM ${db}.status_changes_unique
    WHERE reopened = 1
    UNION ALL
    SELECT org_id, project_id, toUInt8(0) AS what,
        arrayJoin(arrayMap(i -> first_day + i,
            range(toUInt32(greatest(toInt64(toDate(now(), 'UTC')) - toInt64(first_day) + 1, 0))))) AS cr_day
    FROM (
        SELECT org_id, project_id, min(toDate(created_at)) AS first_day
        FROM ${db}.tasks
        GROUP BY org_id, project_id
    )
)
GROUP BY org_id, project_id, cr_day;

CREATE VIEW ${reporting}.time_in_status ${on_cluster} AS
SELECT
    org_id,
    project_id,
    ts_status AS status,
    ts_category AS category,
    countIf(finished = 1) AS finished_stays,
    sumIf(stay_seconds, finished = 1) AS finished_seconds,
    if(finished_stays = 0, NULL, finished_seconds / finished_stays) AS avg_finished_seconds,
    if(finished_stays = 0, NULL, quantileExactIf(0.5)(stay_seconds, finished = 1)) AS p50_finished_seconds,
    if(finished_stays = 0, NULL, quantileExactIf(0.85)(stay_seconds, finished = 1)) AS p85_finished_seconds,
    countIf(finished = 0) AS open_stays,
    sumIf(stay_seconds, finished = 0) AS open_seconds
FROM (
    SELECT org_id, project_id, status_from AS ts_status, category_from AS ts_category,
        toUInt64(seconds_in_from) AS stay_seconds, toUInt8(1) AS finished
    FROM ${db}.status_changes_unique
    WHERE status_from != ''
    UNION ALL
    SELECT org_id, project_id, status AS ts_status, category AS ts_category,
        toUInt64(greatest(toInt64(ifNull(archived_at, status_since)) - toInt64(status_since), 0)) AS stay_seconds,
        toUInt8(1) AS finished
    FROM ${db}.tasks_latest
    WHERE archived = 1
    UNION ALL
    SELECT org_id, project_id, status AS ts_status, category AS ts_category,
        toUInt64(greatest(toInt64(now()) - toInt64(status_since), 0)) AS stay_seconds,
        toUInt8(0) AS finished
    FROM ${db}.tasks_latest
    WHERE archived = 0
)
GROUP BY org_id, project_id, ts_status, ts_category;

-- Per task: its completion week and elapsed time (from tasks_latest, only
-- for completed tasks) and its finished stays in `started` statuses (from
-- status_changes), folded by one GROUP BY instead of a JOIN.
CREATE VIEW ${reporting}.flow_efficiency ${on_cluster} AS
SELECT
    org_id,
    project_id,
    fe_week AS week,
    count() AS completed,
    sum(active_s) AS started_seconds,
    sum(elapsed_s) AS elapsed_seconds,
    if(elapsed_seconds = 0, NULL, started_seconds / elapsed_seconds) AS flow_efficiency
FROM (
    SELECT
        org_id,
        project_id,
        task_id,
        max(is_completed) AS completed_task,
        max(part_week) AS fe_week,
        sum(part_elapsed) AS elapsed_s,
        sum(part_active) AS active_s
    FROM (
        SELECT
            org_id,
            project_id,
            task_id,
            toUInt8(1) AS is_completed,
            toMonday(assumeNotNull(completed_at)) AS part_week,
            toUInt64(greatest(toInt64(assumeNotNull(completed_at))
                - toInt64(ifNull(first_left_backlog_at, created_at)), 0)) AS part_elapsed,
            toUInt64(0) AS part_active
        FROM ${db}.tasks_latest
        WHERE completed_at IS NOT NULL
        UNION ALL
        SELECT
            org_id,
            project_id,
            task_id,
            toUInt8(0) AS is_completed,
            toDate(0) AS part_week,
            toUInt64(0) AS part_elapsed,
            toUInt64(seconds_in_from) AS part_active
        FROM ${db}.status_changes_unique
        WHERE category_from = 'started'
    )
    GROUP BY org_id, project_id, task_id
)
WHERE completed_task = 1
GROUP BY org_id, project_id, fe_week;

CREATE VIEW ${reporting}.workload_current ${on_cluster} AS
SELECT
    org_id,
    project_id,
    assignee_id,
    status,
    category,
    count() AS open_tasks,
    countIf(due_date IS NOT NULL AND assumeNotNull(due_date) < toDate(now(), 'UTC')) AS overdue_tasks
FROM ${db}.tasks_latest
WHERE archived = 0 AND category NOT IN ('completed', 'cancelled')
GROUP BY org_id, project_id, assignee_id, status, category;

CREATE VIEW ${reporting}.comment_activity_daily ${on_cluster} AS
SELECT
    org_id,
    ca_project AS project_id,
    ca_day AS day,
    countIf(event_type = 'CommentAdded') AS comments_added,
    countIf(event_type = 'CommentEdited') AS comments_edited,
    countIf(event_type = 'CommentDeleted') AS comments_deleted,
    sumIf(length(mentions), event_type = 'CommentAdded') AS mentions,
    uniqExactIf(assumeNotNull(author_id), event_type = 'CommentAdded' AND author_id IS NOT NULL) AS commenters
FROM (
    SELECT org_id, assumeNotNull(project_id) AS ca_project, toDate(occurred_at) AS ca_day,
        event_type, mentions, author_id
    FROM ${db}.events_unique
    WHERE event_type IN ('CommentAdded', 'CommentEdited', 'CommentDeleted') AND project_id IS NOT NULL
)
GROUP BY org_id, ca_project, ca_day;

-- Per notification: its own row (project, kind, creation) and its inbox
-- events' first read and first delivery, folded by one GROUP BY instead of
-- a JOIN. Read without dedup: per notification, a count used as "> 0", a
-- minimum and any() do not change when a row is stored twice.
CREATE VIEW ${reporting}.notifications_daily ${on_cluster} AS
SELECT
    org_id,
    n_project AS project_id,
    nd_day AS day,
    n_kind AS kind,
    sum(what = 0) AS created,
    sum(what = 1) AS read,
    sum(what = 2) AS delivered,
    if(delivered = 0, NULL, sumIf(delay_s, what = 2) / delivered) AS avg_delivery_delay_seconds
FROM (
    SELECT
        org_id,
        n_project,
        n_kind,
        what,
        multiIf(what = 0, toDate(n_created_at), what = 1, toDate(first_read_at), toDate(first_delivered_at)) AS nd_day,
        toInt64(first_delivered_at) - toInt64(n_created_at) AS delay_s
    FROM (
        SELECT
            org_id,
            n_project,
            n_kind,
            n_created_at,
            n_reads,
            first_read_at,
            n_deliveries,
            first_delivered_at,
            arrayJoin([0, 1, 2]) AS what
        FROM (
            SELECT
                org_id,
                notification_id,
                max(part = 0) AS has_notification,
                anyIf(part_project, part = 0) AS n_project,
                anyIf(part_kind, part = 0) AS n_kind,
                minIf(at, part = 0) AS n_created_at,
                countIf(part = 1) AS n_reads,
                minIf(at, part = 1) AS first_read_at,
                countIf(part = 2) AS n_deliveries,
                minIf(at, part = 2) AS first_delivered_at
            FROM (
                SELECT org_id, notification_id, toUInt8(0) AS part, project_id AS part_project,
                    kind AS part_kind, created_at AS at
                FROM ${db}.notifications
                UNION ALL
                SELECT org_id, assumeNotNull(notification_id) AS notification_id,
                    toUInt8(if(event_type = 'NotificationRead', 1, 2)) AS part,
                    CAST(NULL AS Nullable(UUID)) AS part_project, '' AS part_kind, occurred_at AS at
                FROM ${db}.events
                WHERE event_type IN ('NotificationRead', 'NotificationDelivered') AND notification_id IS NOT NULL
            )
            GROUP BY org_id, notification_id
        )
        WHERE has_notification = 1
    )
    WHERE what = 0 OR (what = 1 AND n_reads > 0) OR (what = 2 AND n_deliveries > 0)
)
GROUP BY org_id, n_project, nd_day, n_kind;

CREATE VIEW ${reporting}.event_log ${on_cluster} AS
SELECT
    org_id,
    project_id,
    task_id,
    commit_id,
    event_seq,
    event_id,
    stream_id,
    stream_version,
    event_type,
    schema_version,
    actor_id,
    occurred_at,
    recorded_at,
    status_from,
    status_to,
    category_from,
    category_to,
    assignee_id,
    previous_assignee_id,
    comment_id,
    author_id,
    mentions,
    tag_id,
    member_id,
    role,
    title,
    name,
    priority,
    due_date,
    notification_id
FROM ${db}.events_unique;
