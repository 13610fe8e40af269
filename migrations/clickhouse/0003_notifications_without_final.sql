-- notifications_daily read the whole `events` table with FINAL to find each
-- notification's first read and delivery: on 18.16 that merge was most of the
-- view's time (2.1 s over 10,000,000 events). Those figures are a count used
-- only as "> 0" and a minimum, which a row stored twice cannot change, so the
-- events are read without FINAL (the notifications themselves still are).
DROP TABLE IF EXISTS ${reporting}.notifications_daily ${on_cluster};

CREATE VIEW ${reporting}.notifications_daily ${on_cluster} AS
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
                FROM ${db}.events
                WHERE event_type IN ('NotificationRead', 'NotificationDelivered') AND notification_id IS NOT NULL
            )
            GROUP BY org_id, nid
        ) AS inbox_events USING (org_id, notification_id)
    )
    WHERE what = 0 OR (what = 1 AND has_read > 0) OR (what = 2 AND has_delivery > 0)
)
GROUP BY org_id, project_id, nd_day, kind;
