//! A project's task list (filtered, sorted, keyset-paginated), a task's
//! detail, and its activity.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::{Postgres, QueryBuilder, Row};
use tasklog_domain::Priority;
use tasklog_http::query::{
    bad_param, blank_is_absent, date_in_range, time_in_range, FromParam, Limit, NoParams,
    PageParams, ParamDate, ParamUuid,
};
use tasklog_http::{query_param, Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use crate::consistency::{Consistency, ReadModel};
use crate::cursor;
use crate::openapi::read;
use crate::routes::projects::project_row;
use crate::views::{
    tagged, ActivityItem, Comment, Page, TagDetail, Task, TaskDetail, TASK_COLUMNS,
};
use crate::QueryState;

const READS: &[ReadModel] = &[ReadModel::Directory, ReadModel::Tasks];

pub fn routes(api: &mut Api<QueryState>) {
    read::<Page<Task>>(
        "/v1/orgs/{org}/projects/{project}/tasks",
        "listTasks",
        "tasks",
        "A project's tasks.",
    )
    .query::<TaskFilters>()
    .described("Filtered, sorted, keyset-paginated. An unknown parameter is 422.")
    .mount(api, list);
    read::<TaskDetail>(
        "/v1/orgs/{org}/tasks/{task}",
        "getTask",
        "tasks",
        "One task with its comments and tags.",
    )
    .etag()
    .mount(api, detail);
    read::<Page<ActivityItem>>(
        "/v1/orgs/{org}/tasks/{task}/activity",
        "getTaskActivity",
        "tasks",
        "A task's history, oldest first.",
    )
    .query::<PageParams>()
    .mount(api, activity);
}

/// The query parameters of a project's task list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskFilters {
    /// Only tasks in one of these statuses (comma-separated or repeated).
    #[serde(default)]
    #[schemars(example = &"todo")]
    status: Vec<String>,
    /// Only tasks assigned to this user, or `none` for unassigned ones.
    #[serde(default, deserialize_with = "blank_is_absent")]
    #[schemars(with = "Assignee", example = &"none")]
    assignee: Option<Assignee>,
    /// Only tasks carrying this tag.
    #[serde(default)]
    #[schemars(with = "ParamUuid", example = &"0190a0a0-0000-7000-8000-000000000000")]
    tag: Option<ParamUuid>,
    /// Only tasks of one of these priorities (comma-separated or repeated).
    #[serde(default)]
    #[schemars(example = &"high,urgent")]
    priority: Vec<Priority>,
    /// Only tasks due before this day (`YYYY-MM-DD`, a year from 0001 to 9999).
    #[serde(default)]
    #[schemars(with = "ParamDate", example = &"2030-01-31")]
    due_before: Option<ParamDate>,
    /// Only tasks due after this day (`YYYY-MM-DD`, a year from 0001 to 9999).
    #[serde(default)]
    #[schemars(with = "ParamDate", example = &"2020-01-01")]
    due_after: Option<ParamDate>,
    /// Full-text search in title and description.
    #[serde(default, deserialize_with = "blank_is_absent")]
    #[schemars(with = "String", example = &"login")]
    q: Option<String>,
    /// `true` lists the archived tasks instead.
    #[serde(default)]
    #[schemars(example = &"false")]
    archived: bool,
    /// The order; `-` for descending. Ties are broken by id. Tasks without a due date come last either way.
    #[serde(default, deserialize_with = "blank_is_absent")]
    #[schemars(with = "Sort", example = &"-priority")]
    sort: Option<Sort>,
    /// Items per page.
    #[serde(default)]
    #[schemars(example = &"10")]
    limit: Limit,
    /// The `next_cursor` of the previous page; opaque.
    #[serde(default, deserialize_with = "blank_is_absent")]
    #[schemars(with = "String")]
    cursor: Option<String>,
}

/// `assignee=<uuid>` or `assignee=none`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Assignee {
    Unassigned,
    User(Uuid),
}

impl FromParam for Assignee {
    fn expected() -> String {
        "must be a UUID or none".into()
    }
    fn from_param(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::Unassigned),
            v => Uuid::parse_str(v).ok().map(Self::User),
        }
    }
}
query_param!(Assignee, {
    "anyOf": [{ "type": "string", "format": "uuid" }, { "const": "none" }]
});

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

/// Every `sort` a task list takes.
const SORTS: [&str; 8] = [
    "created",
    "-created",
    "updated",
    "-updated",
    "priority",
    "-priority",
    "due",
    "-due",
];

impl Default for Sort {
    fn default() -> Self {
        Self {
            key: SortKey::Created,
            descending: false,
        }
    }
}

impl FromParam for Sort {
    fn expected() -> String {
        format!("must be one of {}", SORTS.join(", "))
    }
    fn from_param(value: &str) -> Option<Self> {
        let (descending, name) = match value.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, value),
        };
        let key = match name {
            "created" => SortKey::Created,
            "updated" => SortKey::Updated,
            "priority" => SortKey::Priority,
            "due" => SortKey::Due,
            _ => return None,
        };
        Some(Self { key, descending })
    }
}
query_param!(Sort, { "type": "string", "default": "created", "enum": SORTS });

impl Sort {
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

    /// The rows a list walks: `updated` walks `task_recency`, which keeps
    /// that order apart from `tasks` (see its DDL), and joins each task.
    /// The planner cannot know that every task of the project has its row
    /// there (it expects a few dozen matches of a few thousand), so without
    /// a filter it would join them all and sort: 20–70 ms for a project of
    /// 5,000 tasks, against under 1 ms when the join is fenced (`OFFSET 0`)
    /// into one lookup per task walked in order. A filter may match few
    /// tasks, which the planner sees: then it chooses.
    fn source(self, filtered: bool) -> &'static str {
        match (self.key, filtered) {
            (SortKey::Updated, false) => {
                "read.task_recency r CROSS JOIN LATERAL \
                 (SELECT * FROM read.tasks t WHERE t.task_id = r.task_id OFFSET 0) t"
            }
            (SortKey::Updated, true) => {
                "read.task_recency r JOIN read.tasks t ON t.task_id = r.task_id"
            }
            _ => "read.tasks t",
        }
    }

    /// The sort key's column and the tie-breaking id's, both of the table
    /// whose index gives the order.
    fn columns(self) -> (&'static str, &'static str) {
        match self.key {
            SortKey::Created => ("t.created_at", "t.task_id"),
            SortKey::Updated => ("r.updated_at", "r.task_id"),
            SortKey::Priority => ("t.priority_rank", "t.task_id"),
            SortKey::Due => ("t.due_date", "t.task_id"),
        }
    }

    /// `AND <the rows after the cursor>`: a row comparison on (key, task_id),
    /// split by hand for `due` because NULL dates do not compare.
    fn push_after(
        self,
        qb: &mut QueryBuilder<'_, Postgres>,
        encoded: &str,
    ) -> Result<(), ApiError> {
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
        let (column, id_column) = self.columns();
        let row_after = |qb: &mut QueryBuilder<'_, Postgres>| {
            qb.push(format!(" AND ({column}, {id_column}){op}("));
        };
        match self.key {
            SortKey::Created | SortKey::Updated => {
                let at: DateTime<Utc> = serde_json::from_value(key)
                    .ok()
                    .filter(|at| time_in_range(*at))
                    .ok_or_else(invalid)?;
                row_after(qb);
                qb.push_bind(at).push(", ").push_bind(id).push(")");
            }
            SortKey::Priority => {
                let rank: i16 = serde_json::from_value(key).map_err(|_| invalid())?;
                row_after(qb);
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
        let (column, id_column) = self.columns();
        let nulls = if self.key == SortKey::Due {
            " NULLS LAST"
        } else {
            ""
        };
        format!(" ORDER BY {column} {dir}{nulls}, {id_column} {dir}")
    }
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org, project = %project))]
async fn list(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath((org, project)): AppPath<(Uuid, Uuid)>,
    consistency: Consistency,
    Query(params): Query<TaskFilters>,
) -> Result<Json<Page<Task>>, ApiError> {
    let priorities: Vec<String> = params.priority.iter().map(priority_name).collect();
    let TaskFilters {
        status: statuses,
        assignee,
        tag,
        due_before,
        due_after,
        q: text,
        archived,
        sort,
        limit: Limit(limit),
        cursor: after,
        ..
    } = params;
    let sort = sort.unwrap_or_default();

    state.admit(&caller, org, consistency, READS).await?;
    project_row(&state, org, project).await?;

    let filtered = !statuses.is_empty()
        || !priorities.is_empty()
        || assignee.is_some()
        || tag.is_some()
        || due_before.is_some()
        || due_after.is_some()
        || text.is_some();
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {TASK_COLUMNS} FROM {} WHERE t.org_id = ",
        sort.source(filtered)
    ));
    qb.push_bind(org)
        .push(" AND t.project_id = ")
        .push_bind(project)
        .push(" AND t.archived = ")
        .push_bind(archived);
    if sort.key == SortKey::Updated {
        qb.push(" AND r.project_id = ").push_bind(project);
    }
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
        Some(Assignee::Unassigned) => {
            qb.push(" AND t.assignee IS NULL");
        }
        Some(Assignee::User(user)) => {
            qb.push(" AND t.assignee = ").push_bind(user);
        }
    }
    if let Some(ParamUuid(tag)) = tag {
        qb.push(" AND t.tags @> ").push_bind(vec![tag]);
    }
    if let Some(ParamDate(d)) = due_before {
        qb.push(" AND t.due_date < ").push_bind(d);
    }
    if let Some(ParamDate(d)) = due_after {
        qb.push(" AND t.due_date > ").push_bind(d);
    }
    if let Some(text) = text {
        qb.push(" AND t.search @@ plainto_tsquery('simple', ")
            .push_bind(text)
            .push(")");
    }
    if let Some(after) = &after {
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
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
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

/// A task's history, oldest first.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org, task = %task))]
async fn activity(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath((org, task)): AppPath<(Uuid, Uuid)>,
    consistency: Consistency,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<ActivityItem>>, ApiError> {
    let Limit(limit) = params.limit;
    let after: Option<(i64, i64)> = params.cursor.as_deref().map(cursor::decode).transpose()?;
    if after.is_some_and(|(commit, event)| commit < 0 || event < 0) {
        return Err(bad_param("cursor", "not a cursor this endpoint returned"));
    }
    state
        .admit(&caller, org, consistency, &[ReadModel::Activity])
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
        return Err(ApiError::NotFound("task".into()));
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

/// The name a read model stores a priority under (its JSON name).
fn priority_name(priority: &Priority) -> String {
    serde_json::to_value(priority)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
