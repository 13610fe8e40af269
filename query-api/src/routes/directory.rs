//! The organization's tag catalog and members.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tasklog_command_api::auth::Caller;
use tasklog_command_api::extract::AppPath;
use uuid::Uuid;

use crate::consistency::{Consistency, Projection};
use crate::error::QueryError;
use crate::params::Params;
use crate::views::Items;
use crate::QueryState;

pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/v1/orgs/{org}/tags", get(tags))
        .route("/v1/orgs/{org}/members", get(members))
}

#[derive(Serialize, Debug)]
struct Tag {
    id: Uuid,
    name: String,
    color: Option<String>,
    /// Tasks carrying the tag.
    usage_count: i64,
}

/// Every tag, by name, with how many tasks carry it.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn tags(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    params: Params,
) -> Result<Json<Items<Tag>>, QueryError> {
    params.only(&[])?;
    state
        .admit(&caller, org, consistency, &[Projection::Tasks])
        .await?;
    let rows: Vec<(Uuid, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT t.tag_id, t.name, t.color, COALESCE(u.tasks, 0)
           FROM read.tags t
           LEFT JOIN read.tag_usage u ON u.org_id = t.org_id AND u.tag_id = t.tag_id
          WHERE t.org_id = $1
          ORDER BY t.name, t.tag_id",
    )
    .bind(org)
    .fetch_all(&state.pool)
    .await?;
    let items = rows
        .into_iter()
        .map(|(id, name, color, usage_count)| Tag {
            id,
            name,
            color,
            usage_count,
        })
        .collect();
    Ok(Json(Items { items }))
}

#[derive(Serialize, Debug)]
struct Member {
    user_id: Uuid,
    handle: String,
    role: String,
    joined_at: DateTime<Utc>,
}

/// Every member, by handle.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn members(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    params: Params,
) -> Result<Json<Items<Member>>, QueryError> {
    params.only(&[])?;
    state.admit(&caller, org, consistency, &[]).await?;
    let rows: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT user_id, handle, role, joined_at
           FROM read.members
          WHERE org_id = $1
          ORDER BY handle, user_id",
    )
    .bind(org)
    .fetch_all(&state.pool)
    .await?;
    let items = rows
        .into_iter()
        .map(|(user_id, handle, role, joined_at)| Member {
            user_id,
            handle,
            role,
            joined_at,
        })
        .collect();
    Ok(Json(Items { items }))
}
