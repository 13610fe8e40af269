//! The caller's own notifications in an organization.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use tasklog_command_api::auth::Caller;
use tasklog_command_api::extract::AppPath;
use uuid::Uuid;

use crate::consistency::{Consistency, Projection};
use crate::cursor;
use crate::error::bad_param;
use crate::error::QueryError;
use crate::params::{time_in_range, Params};
use crate::views::Page;
use crate::QueryState;

pub fn router() -> Router<QueryState> {
    Router::new().route("/v1/orgs/{org}/me/notifications", get(list))
}

#[derive(Serialize, Debug)]
struct Notification {
    id: Uuid,
    /// `assigned` or `mentioned`.
    kind: String,
    task_id: Uuid,
    task_key: Option<String>,
    task_title: Option<String>,
    comment_id: Option<Uuid>,
    actor: Option<Uuid>,
    created_at: DateTime<Utc>,
    read: bool,
}

/// Newest first; `unread=true` leaves out the read ones.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn list(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    params: Params,
) -> Result<Json<Page<Notification>>, QueryError> {
    params.only(&["unread", "limit", "cursor"])?;
    let unread = params.bool("unread", false)?;
    let limit = params.limit()?;
    let after: Option<(DateTime<Utc>, Uuid)> =
        params.one("cursor")?.map(cursor::decode).transpose()?;
    if after.is_some_and(|(at, _)| !time_in_range(at)) {
        return Err(bad_param("cursor", "not a cursor this endpoint returned"));
    }
    state
        .admit(
            &caller,
            org,
            consistency,
            &[Projection::Notifications, Projection::Tasks],
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
                kind: r.try_get("kind")?,
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
