//! The organization's tag catalog and members.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use tasklog_http::query::NoParams;
use tasklog_http::{Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use crate::consistency::{Consistency, ReadModel};
use crate::openapi::read;
use crate::views::{parse_enum, Items, Member, Tag};
use crate::QueryState;

pub fn routes(api: &mut Api<QueryState>) {
    read::<Items<Tag>>(
        "/v1/orgs/{org}/tags",
        "listTags",
        "directory",
        "Every tag, by name, with how many tasks carry it.",
    )
    .mount(api, tags);
    read::<Items<Member>>(
        "/v1/orgs/{org}/members",
        "listMembers",
        "directory",
        "Every member, by handle.",
    )
    .mount(api, members);
}

/// Every tag, by name, with how many tasks carry it.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn tags(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    _: Query<NoParams>,
) -> Result<Json<Items<Tag>>, ApiError> {
    state
        .admit(&caller, org, consistency, &[ReadModel::Tasks])
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

/// Every member, by handle.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn members(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    _: Query<NoParams>,
) -> Result<Json<Items<Member>>, ApiError> {
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
        .map(|(user_id, handle, role, joined_at)| {
            Ok(Member {
                user_id,
                handle,
                role: parse_enum(&role)?,
                joined_at,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(Items { items }))
}
