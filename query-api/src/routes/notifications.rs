//! The caller's own notifications in an organization.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use sqlx::Row;
use tasklog_http::query::{bad_param, blank_is_absent, time_in_range, Limit};
use tasklog_http::{Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use crate::consistency::{Consistency, ReadModel};
use crate::cursor;
use crate::openapi::read;
use crate::views::{parse_enum, Notification, Page};
use crate::QueryState;

pub fn routes(api: &mut Api<QueryState>) {
    read::<Page<Notification>>(
        "/v1/orgs/{org}/me/notifications",
        "listNotifications",
        "notifications",
        "The caller's notifications, newest first.",
    )
    .query::<NotificationParams>()
    .mount(api, list);
}

/// The query parameters of the caller's notifications.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NotificationParams {
    /// `true` leaves out the read ones.
    #[serde(default)]
    #[schemars(example = &"true")]
    unread: bool,
    /// Items per page.
    #[serde(default)]
    #[schemars(example = &"10")]
    limit: Limit,
    /// The `next_cursor` of the previous page; opaque.
    #[serde(default, deserialize_with = "blank_is_absent")]
    #[schemars(with = "String")]
    cursor: Option<String>,
}

/// Newest first; `unread=true` leaves out the read ones.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn list(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    Query(params): Query<NotificationParams>,
) -> Result<Json<Page<Notification>>, ApiError> {
    let unread = params.unread;
    let Limit(limit) = params.limit;
    let after: Option<(DateTime<Utc>, Uuid)> =
        params.cursor.as_deref().map(cursor::decode).transpose()?;
    if after.is_some_and(|(at, _)| !time_in_range(at)) {
        return Err(bad_param("cursor", "not a cursor this endpoint returned"));
    }
    state
        .admit(
            &caller,
            org,
            consistency,
            &[ReadModel::Notifications, ReadModel::Tasks],
        )
        .await?;
    let rows = sqlx::query(
        "SELECT n.notification_id, n.kind, n.task_id, t.key AS task_key,
                t.title AS task_title, n.comment_id, n.actor, n.created_at,
                n.read_at IS NOT NULL AS read
           FROM read.notifications n
           LEFT JOIN read.tasks t ON t.task_id = n.task_id AND t.org_id = n.org_id
          WHERE n.user_id = $1 AND n.org_id = $2
            AND (NOT $3 OR n.read_at IS NULL)
            AND ($4::timestamptz IS NULL OR (n.created_at, n.notification_id) < ($4, $5))
          ORDER BY n.created_at DESC, n.notification_id DESC
          LIMIT $6",
    )
    .bind(caller.user_id)
    .bind(org)
    .bind(unread)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.pool)
    .await?;
    let mut items = rows
        .iter()
        .map(|r| {
            Ok(Notification {
                id: r.try_get("notification_id")?,
                kind: parse_enum(r.try_get("kind")?)?,
                task_id: r.try_get("task_id")?,
                task_key: r.try_get("task_key")?,
                task_title: r.try_get("task_title")?,
                comment_id: r.try_get("comment_id")?,
                actor: r.try_get("actor")?,
                created_at: r.try_get("created_at")?,
                read: r.try_get("read")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|n| cursor::encode(&(n.created_at, n.id)))
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}
