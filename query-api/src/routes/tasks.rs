//! A project's task list (filtered, sorted, keyset-paginated), a task's
//! detail, and its activity.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{Postgres, QueryBuilder, Row};
use tasklog_command_api::auth::Caller;
use tasklog_command_api::error::ApiError;
use tasklog_command_api::extract::AppPath;
use uuid::Uuid;

use crate::consistency::{Consistency, Projection};
use crate::cursor;
use crate::error::{bad_param, QueryError};
use crate::params::{date_in_range, time_in_range, Params};
use crate::routes::projects::project_row;
use crate::views::{tagged, Comment, Page, TagDetail, Task, TaskDetail, TASK_COLUMNS};
use crate::QueryState;

const READS: &[Projection] = &[Projection::Directory, Projection::Tasks];

const PRIORITIES: &[&str] = &["none", "low", "medium", "high", "urgent"];

pub fn router() -> Router<QueryState> {
    Router::new()
        .route("/v1/orgs/{org}/projects/{project}/tasks", get(list))
        .route("/v1/orgs/{org}/tasks/{task}", get(detail))
        .route("/v1/orgs/{org}/tasks/{task}/activity", get(activity))
}

/// What a task list is ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortKey {
    Created,
    Updated,
    Priority,
    /// Tasks without a due date come last in either direction.
    Due,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sort {
    key: SortKey,
    descending: bool,
}

impl Sort {
    fn parse(value: Option<&str>) -> Result<Self, QueryError> {
        let value = value.unwrap_or("created");
        let (descending, name) = match value.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, value),
        };
        let key = match name {
            "created" => SortKey::Created,
            "updated" => SortKey::Updated,
            "priority" => SortKey::Priority,
            "due" => SortKey::Due,
            _ => {
                return Err(bad_param(
                    "sort",
                    "must be one of created, -created, updated, -updated, priority, \
                     -priority, due, -due",
                ))
            }
        };
        Ok(Self { key, descending })
    }

    fn name(self) -> String {
        let name = match self.key {
            SortKey::Created => "created",
            SortKey::Updated => "updated",
            SortKey::Priority => "priority",
            SortKey::Due => "due",
        };
        if self.descending {
            format!("-{name}")
        } else {
            name.to_owned()
        }
    }

    /// The row's value of the sort key, as the cursor carries it.
    fn key_of(self, task: &Task) -> Value {
        match self.key {
            SortKey::Created => json!(task.created_at),
            SortKey::Updated => json!(task.updated_at),
            SortKey::Priority => json!(task.priority_rank),
            SortKey::Due => json!(task.due_date),
        }
    }

    fn cursor_after(self, task: &Task) -> String {
        cursor::encode(&(self.name(), self.key_of(task), task.id))
    }

    /// `AND <the rows after the cursor>`: a row comparison on (key, task_id),
    /// split by hand for `due` because NULL dates do not compare.
    fn push_after(
        self,
        qb: &mut QueryBuilder<'_, Postgres>,
        encoded: &str,
    ) -> Result<(), QueryError> {
        let (sort, key, id): (String, Value, Uuid) = cursor::decode(encoded)?;
        if sort != self.name() {
            return Err(bad_param(
                "cursor",
                format!(
                    "this cursor belongs to sort={sort}, not sort={}",
                    self.name()
                ),
            ));
        }
        let invalid = || bad_param("cursor", "not a cursor this endpoint returned");
        let op = if self.descending { " < " } else { " > " };
        let row_after = |qb: &mut QueryBuilder<'_, Postgres>, column: &str| {
            qb.push(format!(" AND ({column}, t.task_id){op}("));
        };
        match self.key {
            SortKey::Created | SortKey::Updated => {
                let at: DateTime<Utc> = serde_json::from_value(key)
                    .ok()
                    .filter(|at| time_in_range(*at))
                    .ok_or_else(invalid)?;
                let column = if self.key == SortKey::Created {
                    "t.created_at"
                } else {
                    "t.updated_at"
                };
                row_after(qb, column);
                qb.push_bind(at).push(", ").push_bind(id).push(")");
            }
            SortKey::Priority => {
                let rank: i16 = serde_json::from_value(key).map_err(|_| invalid())?;
                row_after(qb, "t.priority_rank");
                qb.push_bind(rank).push(", ").push_bind(id).push(")");
            }
            SortKey::Due => {
                let due: Option<NaiveDate> = serde_json::from_value(key)
                    .ok()
                    .filter(|due: &Option<NaiveDate>| due.is_none_or(date_in_range))
                    .ok_or_else(invalid)?;
                match due {
                    Some(due) => {
                        qb.push(format!(" AND (t.due_date{op}"))
                            .push_bind(due)
                            .push(" OR (t.due_date = ")
                            .push_bind(due)
                            .push(format!(" AND t.task_id{op}"))
                            .push_bind(id)
                            .push(") OR t.due_date IS NULL)");
                    }
                    None => {
                        qb.push(format!(" AND t.due_date IS NULL AND t.task_id{op}"))
                            .push_bind(id);
                    }
                }
            }
        }
        Ok(())
    }

    fn order_by(self) -> String {
        let dir = if self.descending { "DESC" } else { "ASC" };
        match self.key {
            SortKey::Created => format!(" ORDER BY t.created_at {dir}, t.task_id {dir}"),
            SortKey::Updated => format!(" ORDER BY t.updated_at {dir}, t.task_id {dir}"),
            SortKey::Priority => format!(" ORDER BY t.priority_rank {dir}, t.task_id {dir}"),
            SortKey::Due => format!(" ORDER BY t.due_date {dir} NULLS LAST, t.task_id {dir}"),
        }
    }
}

/// `assignee=<uuid>` or `assignee=none`.
fn assignee_filter(params: &Params) -> Result<Option<Option<Uuid>>, QueryError> {
    match params.one("assignee")? {
        None => Ok(None),
        Some("none") => Ok(Some(None)),
        Some(v) => Uuid::parse_str(v)
            .map(|u| Some(Some(u)))
            .map_err(|_| bad_param("assignee", "must be a UUID or none")),
    }
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org, project = %project))]
async fn list(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath((org, project)): AppPath<(Uuid, Uuid)>,
    consistency: Consistency,
    params: Params,
) -> Result<Json<Page<Task>>, QueryError> {
    params.only(&[
        "status",
        "assignee",
        "tag",
        "priority",
        "due_before",
        "due_after",
        "q",
        "archived",
        "sort",
        "limit",
        "cursor",
    ])?;
    let statuses: Vec<String> = params
        .list("status")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let priorities: Vec<String> = params
        .list("priority")
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(p) = priorities
        .iter()
        .find(|p| !PRIORITIES.contains(&p.as_str()))
    {
        return Err(bad_param(
            "priority",
            format!("{p} is not one of {}", PRIORITIES.join(", ")),
        ));
    }
    let assignee = assignee_filter(&params)?;
    let tag = params.uuid("tag")?;
    let due_before = params.date("due_before")?;
    let due_after = params.date("due_after")?;
    let text = params.one("q")?.map(str::to_owned);
    let archived = params.bool("archived", false)?;
    let sort = Sort::parse(params.one("sort")?)?;
    let limit = params.limit()?;
    let after = params.one("cursor")?;

    state.admit(&caller, org, consistency, READS).await?;
    project_row(&state, org, project).await?;

    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {TASK_COLUMNS} FROM read.tasks t WHERE t.org_id = "
    ));
    qb.push_bind(org)
        .push(" AND t.project_id = ")
        .push_bind(project)
        .push(" AND t.archived = ")
        .push_bind(archived);
    if !statuses.is_empty() {
        qb.push(" AND t.status = ANY(")
            .push_bind(statuses)
            .push(")");
    }
    if !priorities.is_empty() {
        qb.push(" AND t.priority = ANY(")
            .push_bind(priorities)
            .push(")");
    }
    match assignee {
        None => {}
        Some(None) => {
            qb.push(" AND t.assignee IS NULL");
        }
        Some(Some(user)) => {
            qb.push(" AND t.assignee = ").push_bind(user);
        }
    }
    if let Some(tag) = tag {
        qb.push(" AND t.tags @> ").push_bind(vec![tag]);
    }
    if let Some(d) = due_before {
        qb.push(" AND t.due_date < ").push_bind(d);
    }
    if let Some(d) = due_after {
        qb.push(" AND t.due_date > ").push_bind(d);
    }
    if let Some(text) = text {
        qb.push(" AND t.search @@ plainto_tsquery('simple', ")
            .push_bind(text)
            .push(")");
    }
    if let Some(after) = after {
        sort.push_after(&mut qb, after)?;
    }
    qb.push(sort.order_by())
        .push(" LIMIT ")
        .push_bind(i64::from(limit) + 1);

    let rows = qb.build().fetch_all(&state.pool).await?;
    let mut items = rows
        .iter()
        .map(Task::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|t| sort.cursor_after(t))
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org, task = %task))]
async fn detail(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath((org, task)): AppPath<(Uuid, Uuid)>,
    consistency: Consistency,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, QueryError> {
    params.only(&[])?;
    state.admit(&caller, org, consistency, READS).await?;
    let row = sqlx::query(&format!(
        "SELECT {TASK_COLUMNS} FROM read.tasks t WHERE t.task_id = $1 AND t.org_id = $2"
    ))
    .bind(task)
    .bind(org)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound("task".into()))?;
    let task = Task::from_row(&row)?;
    let comments = sqlx::query(
        "SELECT comment_id, author, body, mentions, created_at, edited_at
           FROM read.comments
          WHERE task_id = $1 AND org_id = $2 AND NOT deleted
          ORDER BY created_at, comment_id",
    )
    .bind(task.id)
    .bind(org)
    .fetch_all(&state.pool)
    .await?
    .iter()
    .map(|r| {
        Ok(Comment {
            id: r.try_get("comment_id")?,
            author: r.try_get("author")?,
            body: r.try_get("body")?,
            mentions: r.try_get("mentions")?,
            created_at: r.try_get("created_at")?,
            edited_at: r.try_get("edited_at")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let tag_details = sqlx::query_as::<_, (Uuid, String, Option<String>)>(
        "SELECT tag_id, name, color FROM read.tags
          WHERE tag_id = ANY($1) AND org_id = $2
          ORDER BY name, tag_id",
    )
    .bind(&task.tags)
    .bind(org)
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .map(|(id, name, color)| TagDetail { id, name, color })
    .collect();
    let version = task.version;
    let body = TaskDetail {
        task,
        comments,
        tag_details,
    };
    Ok(tagged(&headers, version, body))
}

/// One event in a task's history.
#[derive(Serialize, Debug)]
struct ActivityItem {
    event_id: Uuid,
    event_type: String,
    actor: Option<Uuid>,
    occurred_at: DateTime<Utc>,
    data: Value,
}

/// A task's history, oldest first.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org, task = %task))]
async fn activity(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath((org, task)): AppPath<(Uuid, Uuid)>,
    consistency: Consistency,
    params: Params,
) -> Result<Json<Page<ActivityItem>>, QueryError> {
    params.only(&["limit", "cursor"])?;
    let limit = params.limit()?;
    let after: Option<(i64, i64)> = params.one("cursor")?.map(cursor::decode).transpose()?;
    if after.is_some_and(|(commit, event)| commit < 0 || event < 0) {
        return Err(bad_param("cursor", "not a cursor this endpoint returned"));
    }
    state
        .admit(&caller, org, consistency, &[Projection::Activity])
        .await?;
    // Every task's history starts with its creation, so no rows means no such task here.
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM read.activity WHERE task_id = $1 AND org_id = $2)",
    )
    .bind(task)
    .bind(org)
    .fetch_one(&state.pool)
    .await?;
    if !known {
        return Err(ApiError::NotFound("task".into()).into());
    }
    let (commit, event) = after.unwrap_or((-1, -1));
    let rows = sqlx::query(
        "SELECT event_id, event_type, actor, occurred_at, data, commit_id, event_position
           FROM read.activity
          WHERE task_id = $1 AND org_id = $2 AND (commit_id, event_position) > ($3, $4)
          ORDER BY commit_id, event_position
          LIMIT $5",
    )
    .bind(task)
    .bind(org)
    .bind(commit)
    .bind(event)
    .bind(i64::from(limit) + 1)
    .fetch_all(&state.pool)
    .await?;
    let more = rows.len() > limit as usize;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next_cursor = match rows.last() {
        Some(last) if more => Some(cursor::encode(&(
            last.try_get::<i64, _>("commit_id")?,
            last.try_get::<i64, _>("event_position")?,
        ))),
        _ => None,
    };
    let items = rows
        .iter()
        .map(|r| {
            Ok(ActivityItem {
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("event_type")?,
                actor: r.try_get("actor")?,
                occurred_at: r.try_get("occurred_at")?,
                data: r.try_get("data")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(Page { items, next_cursor }))
}
