-- Projection `notifications`: each user's in-app notifications.
CREATE TABLE notifications (
    notification_id uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL,
    org_id          uuid        NOT NULL,
    kind            text        NOT NULL, -- assigned | mentioned
    task_id         uuid        NOT NULL,
    comment_id      uuid,
    actor           uuid,
    created_at      timestamptz NOT NULL,
    read_at         timestamptz
);
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC, notification_id);
