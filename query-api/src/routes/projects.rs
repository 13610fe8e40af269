//! Projects with their task counts, and a project's board.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use sqlx::postgres::PgRow;
use sqlx::Row;
use tasklog_http::query::NoParams;
use tasklog_http::{Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use crate::consistency::{Consistency, ReadModel};
use crate::openapi::read;
use crate::views::{parse_enum, tagged, Board, Column, Items, Project, Task, TASK_COLUMNS};
use crate::QueryState;

const READS: &[ReadModel] = &[ReadModel::Directory, ReadModel::Tasks];

/// Tasks shown per board column at most.
pub const BOARD_COLUMN_LIMIT: i64 = 100;

pub fn routes(api: &mut Api<QueryState>) {
    read::<Items<Project>>(
        "/v1/orgs/{org}/projects",
        "listProjects",
        "projects",
        "Every project, oldest first, with its task counts by status.",
    )
    .mount(api, list);
    read::<Project>(
        "/v1/orgs/{org}/projects/{project}",
        "getProject",
        "projects",
        "One project.",
    )
    .etag()
    .described("With the project's workflow.")
    .mount(api, detail);
    read::<Board>(
        "/v1/orgs/{org}/projects/{project}/board",
        "getBoard",
        "projects",
        "A project's board.",
    )
    .described(
        "Non-archived tasks by status, in workflow order; within a column, most urgent \
         first, then oldest first; at most 100 per column.",
    )
    .mount(api, board);
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn list(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    consistency: Consistency,
    _: Query<NoParams>,
) -> Result<Json<Items<Project>>, ApiError> {
    state.admit(&caller, org, consistency, READS).await?;
    let rows = sqlx::query(
        "SELECT project_id, name, key, archived, created_at, updated_at, version
           FROM read.projects
          WHERE org_id = $1
          ORDER BY created_at, project_id",
    )
    .bind(org)
    .fetch_all(&state.pool)
    .await?;
    let mut projects = rows
        .iter()
        .map(Project::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let counts: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT project_id, status, count(*)
           FROM read.tasks
          WHERE org_id = $1 AND NOT archived
          GROUP BY project_id, status",
    )
    .bind(org)
    .fetch_all(&state.pool)
    .await?;
    for (project_id, status, n) in counts {
        if let Some(p) = projects.iter_mut().find(|p| p.id == project_id) {
            p.task_counts.insert(status, n);
        }
    }
    Ok(Json(Items { items: projects }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org, project = %project))]
async fn detail(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath((org, project)): AppPath<(Uuid, Uuid)>,
    consistency: Consistency,
    headers: HeaderMap,
    _: Query<NoParams>,
) -> Result<Response, ApiError> {
    state.admit(&caller, org, consistency, READS).await?;
    let row = project_row(&state, org, project).await?;
    let mut view = Project::from_row(&row)?;
    let workflow: sqlx::types::Json<tasklog_domain::Workflow> = row.try_get("workflow")?;
    view.workflow = Some(workflow.0);
    view.task_counts = task_counts(&state, project).await?;
    Ok(tagged(&headers, view.version, view))
}

/// The project's row (with its workflow), or 404 when it is not in `org`.
pub async fn project_row(state: &QueryState, org: Uuid, project: Uuid) -> Result<PgRow, ApiError> {
    sqlx::query(
        "SELECT project_id, name, key, archived, workflow, created_at, updated_at, version
           FROM read.projects
          WHERE project_id = $1 AND org_id = $2",
    )
    .bind(project)
    .bind(org)
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound("project".into()))
}

async fn task_counts(state: &QueryState, project: Uuid) -> Result<BTreeMap<String, i64>, ApiError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM read.tasks
          WHERE project_id = $1 AND NOT archived
          GROUP BY status",
    )
    .bind(project)
    .fetch_all(&state.pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The project's non-archived tasks by status, in workflow order; within a
/// column, most urgent first, then oldest first.
#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org, project = %project))]
async fn board(
    State(state): State<QueryState>,
    caller: Caller,
    AppPath((org, project)): AppPath<(Uuid, Uuid)>,
    consistency: Consistency,
    _: Query<NoParams>,
) -> Result<Json<Board>, ApiError> {
    state.admit(&caller, org, consistency, READS).await?;
    let row = project_row(&state, org, project).await?;
    let workflow: serde_json::Value = row.try_get("workflow")?;
    let mut columns = Vec::new();
    for s in workflow["statuses"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(status) = s["name"].as_str() else {
            continue;
        };
        columns.push(Column {
            status: status.to_owned(),
            category: parse_enum(s["category"].as_str().unwrap_or_default())?,
            total: 0,
            tasks: Vec::new(),
        });
    }
    let rows = sqlx::query(&format!(
        "SELECT * FROM (
             SELECT {TASK_COLUMNS},
                    row_number() OVER w AS place,
                    count(*) OVER (PARTITION BY t.status) AS total
               FROM read.tasks t
              WHERE t.project_id = $1 AND t.org_id = $2 AND NOT t.archived
             WINDOW w AS (PARTITION BY t.status
                          ORDER BY t.priority_rank DESC, t.created_at, t.task_id)
         ) ranked
         WHERE place <= $3
         ORDER BY status, place"
    ))
    .bind(project)
    .bind(org)
    .bind(BOARD_COLUMN_LIMIT)
    .fetch_all(&state.pool)
    .await?;
    for row in &rows {
        let task = Task::from_row(row)?;
        let total: i64 = row.try_get("total")?;
        let i = match columns.iter().position(|c| c.status == task.status) {
            Some(i) => i,
            // A status the workflow no longer has still shows, after the others.
            None => {
                columns.push(Column {
                    status: task.status.clone(),
                    category: task.status_category,
                    total: 0,
                    tasks: Vec::new(),
                });
                columns.len() - 1
            }
        };
        columns[i].total = total;
        columns[i].tasks.push(task);
    }
    Ok(Json(Board { columns }))
}
