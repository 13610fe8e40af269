-- Reporting views over the analytics store, for analysts (docs/reporting.md).
--
-- Every view reads the tables with FINAL, so a row the projector wrote twice
-- (a batch sent again after a crash) is counted once even before the parts
-- merge. Every view has `org_id` and `project_id` to filter on. Times are
-- UTC, days are UTC days, weeks start on Monday (toMonday).
--
-- The SQL must run on ClickHouse 18.16 and on current releases: no window
-- functions, no WITH ... AS (SELECT ...), JOINs written ANY LEFT JOIN ...
-- USING, an alias never named like a column of the same SELECT, right-hand
-- columns of a LEFT JOIN read through ifNull (join_use_nulls may be on).
--
-- Placeholders, filled in by `tasklog migrate`: ${db} (the tables'
-- database), ${reporting} (the views'), ${on_cluster} (empty, or
-- `ON CLUSTER <name>`), ${replicated} (unused here).

CREATE DATABASE IF NOT EXISTS ${reporting} ${on_cluster};

-- Tasks in each status at the end of each UTC day, every day from the
-- project's first task to today, with a zero row for every status the project
-- has used. A task entering and leaving a status the same day is not counted
-- that day. An archived task counts up to the day before its archive day.
-- Built from +1/-1 steps per (status, day), summed cumulatively.
CREATE VIEW IF NOT EXISTS ${reporting}.cumulative_flow_daily ${on_cluster} AS
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
            FROM ${db}.status_changes FINAL
            UNION ALL
            SELECT org_id, project_id, status_from AS cf_status, category_from AS cf_category,
                toDate(changed_at) AS step_day, toInt64(-1) AS delta
            FROM ${db}.status_changes FINAL
            WHERE status_from != ''
            UNION ALL
            SELECT org_id, project_id, status AS cf_status, category AS cf_category,
                toDate(assumeNotNull(archived_at)) AS step_day, toInt64(-1) AS delta
            FROM ${db}.tasks FINAL
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
                FROM ${db}.status_changes FINAL
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

-- One row per task: its current state and its lead and cycle times.
-- lead_time_seconds = completed_at - created_at, cycle_time_seconds =
-- completed_at - first_started_at, both NULL unless the task is completed now
-- (cycle also NULL when it never entered a `started` status).
CREATE VIEW IF NOT EXISTS ${reporting}.task_cycle ${on_cluster} AS
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
FROM ${db}.tasks FINAL;

-- Per project and week of completion (the task's current completion): tasks
-- completed and exact percentiles of lead and cycle time. Cycle-time
-- percentiles cover only the tasks that were ever started (cycle_samples),
-- NULL when there are none.
CREATE VIEW IF NOT EXISTS ${reporting}.cycle_time_weekly ${on_cluster} AS
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
        FROM ${db}.tasks FINAL
        WHERE completed_at IS NOT NULL
    )
    GROUP BY org_id, project_id, ct_week
);

-- Tasks completed per week, per project and per assignee at completion
-- (NULL = unassigned): each task counts once, in the week of its last
-- completion, and only while it is still completed.
CREATE VIEW IF NOT EXISTS ${reporting}.throughput_weekly ${on_cluster} AS
SELECT
    org_id,
    project_id,
    tp_week AS week,
    completed_by_assignee_id,
    count() AS completed
FROM (
    SELECT org_id, project_id, toMonday(assumeNotNull(completed_at)) AS tp_week, completed_by_assignee_id
    FROM ${db}.tasks FINAL
    WHERE completed_at IS NOT NULL
)
GROUP BY org_id, project_id, tp_week, completed_by_assignee_id;

-- Per project and UTC day, every day from the project's first task to today:
-- tasks created, tasks whose current completion (or cancellation) falls that
-- day, reopenings that day (status changes out of completed/cancelled), and
-- tasks archived that day.
CREATE VIEW IF NOT EXISTS ${reporting}.created_vs_resolved_daily ${on_cluster} AS
SELECT
    org_id,
    project_id,
    cr_day AS day,
    sum(n_created) AS created,
    sum(n_completed) AS completed,
    sum(n_cancelled) AS cancelled,
    sum(n_reopened) AS reopened,
    sum(n_archived) AS archived
FROM (
    SELECT org_id, project_id, toDate(created_at) AS cr_day,
        toUInt64(1) AS n_created, toUInt64(0) AS n_completed, toUInt64(0) AS n_cancelled,
        toUInt64(0) AS n_reopened, toUInt64(0) AS n_archived
    FROM ${db}.tasks FINAL
    UNION ALL
    SELECT org_id, project_id, toDate(assumeNotNull(completed_at)) AS cr_day,
        toUInt64(0) AS n_created, toUInt64(1) AS n_completed, toUInt64(0) AS n_cancelled,
        toUInt64(0) AS n_reopened, toUInt64(0) AS n_archived
    FROM ${db}.tasks FINAL
    WHERE completed_at IS NOT NULL
    UNION ALL
    SELECT org_id, project_id, toDate(assumeNotNull(cancelled_at)) AS cr_day,
        toUInt64(0) AS n_created, toUInt64(0) AS n_completed, toUInt64(1) AS n_cancelled,
        toUInt64(0) AS n_reopened, toUInt64(0) AS n_archived
    FROM ${db}.tasks FINAL
    WHERE cancelled_at IS NOT NULL
    UNION ALL
    SELECT org_id, project_id, toDate(assumeNotNull(archived_at)) AS cr_day,
        toUInt64(0) AS n_created, toUInt64(0) AS n_completed, toUInt64(0) AS n_cancelled,
        toUInt64(0) AS n_reopened, toUInt64(1) AS n_archived
    FROM ${db}.tasks FINAL
    WHERE archived = 1 AND archived_at IS NOT NULL
    UNION ALL
    SELECT org_id, project_id, toDate(changed_at) AS cr_day,
        toUInt64(0) AS n_created, toUInt64(0) AS n_completed, toUInt64(0) AS n_cancelled,
        toUInt64(1) AS n_reopened, toUInt64(0) AS n_archived
    FROM ${db}.status_changes FINAL
    WHERE reopened = 1
    UNION ALL
    SELECT org_id, project_id,
        arrayJoin(arrayMap(i -> first_day + i,
            range(toUInt32(greatest(toInt64(toDate(now(), 'UTC')) - toInt64(first_day) + 1, 0))))) AS cr_day,
        toUInt64(0) AS n_created, toUInt64(0) AS n_completed, toUInt64(0) AS n_cancelled,
        toUInt64(0) AS n_reopened, toUInt64(0) AS n_archived
    FROM (
        SELECT org_id, project_id, min(toDate(created_at)) AS first_day
        FROM ${db}.tasks FINAL
        GROUP BY org_id, project_id
    )
)
GROUP BY org_id, project_id, cr_day;

-- Per project and status: stays that ended (the task left the status, or
-- was archived in it: an archived task's last stay ends at archived_at) and
-- stays still open as of now() (tasks resting in completed or cancelled
-- statuses included).
CREATE VIEW IF NOT EXISTS ${reporting}.time_in_status ${on_cluster} AS
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
    FROM ${db}.status_changes FINAL
    WHERE status_from != ''
    UNION ALL
    SELECT org_id, project_id, status AS ts_status, category AS ts_category,
        toUInt64(greatest(toInt64(ifNull(archived_at, status_since)) - toInt64(status_since), 0)) AS stay_seconds,
        toUInt8(1) AS finished
    FROM ${db}.tasks FINAL
    WHERE archived = 1
    UNION ALL
    SELECT org_id, project_id, status AS ts_status, category AS ts_category,
        toUInt64(greatest(toInt64(now()) - toInt64(status_since), 0)) AS stay_seconds,
        toUInt8(0) AS finished
    FROM ${db}.tasks FINAL
    WHERE archived = 0
)
GROUP BY org_id, project_id, ts_status, ts_category;

-- Flow efficiency of completed tasks, per project and week of completion:
-- time in `started` statuses / time from first leaving the backlog to the
-- (last) completion. Sum started_seconds and elapsed_seconds over weeks for
-- a longer period, and do not average flow_efficiency.
CREATE VIEW IF NOT EXISTS ${reporting}.flow_efficiency ${on_cluster} AS
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
        fe_week,
        elapsed_s,
        toUInt64(ifNull(started_sum, 0)) AS active_s
    FROM (
        SELECT
            org_id,
            project_id,
            task_id,
            toMonday(assumeNotNull(completed_at)) AS fe_week,
            toUInt64(greatest(toInt64(assumeNotNull(completed_at))
                - toInt64(ifNull(first_left_backlog_at, created_at)), 0)) AS elapsed_s
        FROM ${db}.tasks FINAL
        WHERE completed_at IS NOT NULL
    ) AS completed_tasks
    ANY LEFT JOIN (
        SELECT org_id, project_id, task_id, sum(toUInt64(seconds_in_from)) AS started_sum
        FROM ${db}.status_changes FINAL
        WHERE category_from = 'started'
        GROUP BY org_id, project_id, task_id
    ) AS started_stays USING (org_id, project_id, task_id)
)
GROUP BY org_id, project_id, fe_week;

-- Open work now: tasks not completed, not cancelled and not archived, per
-- assignee (NULL = unassigned) and status, with those past their due date
-- (due_date before today, UTC).
CREATE VIEW IF NOT EXISTS ${reporting}.workload_current ${on_cluster} AS
SELECT
    org_id,
    project_id,
    assignee_id,
    status,
    category,
    count() AS open_tasks,
    countIf(due_date IS NOT NULL AND assumeNotNull(due_date) < toDate(now(), 'UTC')) AS overdue_tasks
FROM ${db}.tasks FINAL
WHERE archived = 0 AND category NOT IN ('completed', 'cancelled')
GROUP BY org_id, project_id, assignee_id, status, category;

-- Per project and UTC day of the event: comments added, edited and deleted
-- (on the day deleted), mentions (of added comments only) and distinct
-- authors of added comments.
CREATE VIEW IF NOT EXISTS ${reporting}.comment_activity_daily ${on_cluster} AS
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
    FROM ${db}.events FINAL
    WHERE event_type IN ('CommentAdded', 'CommentEdited', 'CommentDeleted') AND project_id IS NOT NULL
)
GROUP BY org_id, ca_project, ca_day;

-- Per org, project (NULL for a notification without one), UTC day and kind:
-- notifications created that day, first read that day, first delivered that
-- day and the mean delay from creation to first delivery of those.
CREATE VIEW IF NOT EXISTS ${reporting}.notifications_daily ${on_cluster} AS
SELECT
    org_id,
    project_id,
    nd_day AS day,
    kind,
    sum(what = 0) AS created,
    sum(what = 1) AS read,
    sum(what = 2) AS delivered,
    if(delivered = 0, NULL, sumIf(delay_s, what = 2) / delivered) AS avg_delivery_delay_seconds
FROM (
    SELECT
        org_id,
        project_id,
        kind,
        what,
        multiIf(what = 0, toDate(created_at), what = 1, toDate(read_at), toDate(delivered_at)) AS nd_day,
        toInt64(delivered_at) - toInt64(created_at) AS delay_s
    FROM (
        SELECT org_id, project_id, kind, created_at,
            ifNull(n_reads, 0) AS has_read, ifNull(first_read_at, created_at) AS read_at,
            ifNull(n_deliveries, 0) AS has_delivery, ifNull(first_delivered_at, created_at) AS delivered_at,
            arrayJoin([0, 1, 2]) AS what
        FROM (
            SELECT org_id, notification_id, project_id, kind, created_at
            FROM ${db}.notifications FINAL
        ) AS created_notifications
        ANY LEFT JOIN (
            SELECT
                org_id,
                nid AS notification_id,
                countIf(event_type = 'NotificationRead') AS n_reads,
                minIf(occurred_at, event_type = 'NotificationRead') AS first_read_at,
                countIf(event_type = 'NotificationDelivered') AS n_deliveries,
                minIf(occurred_at, event_type = 'NotificationDelivered') AS first_delivered_at
            FROM (
                SELECT org_id, assumeNotNull(notification_id) AS nid, event_type, occurred_at
                FROM ${db}.events FINAL
                WHERE event_type IN ('NotificationRead', 'NotificationDelivered') AND notification_id IS NOT NULL
            )
            GROUP BY org_id, nid
        ) AS inbox_events USING (org_id, notification_id)
    )
    WHERE what = 0 OR (what = 1 AND has_read > 0) OR (what = 2 AND has_delivery > 0)
)
GROUP BY org_id, project_id, nd_day, kind;

-- Every event of the log with its flattened fields (project_id is NULL for
-- organization, membership, tag and inbox events).
CREATE VIEW IF NOT EXISTS ${reporting}.event_log ${on_cluster} AS
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
FROM ${db}.events FINAL;
