//! What the query API answers with, and how read-model rows become it.

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::Row;
use tasklog_domain::{Priority, Role, StatusCategory};
use tasklog_http::ApiError;
use uuid::Uuid;

/// A domain enum from the name a read model stores it under.
pub fn parse_enum<T: DeserializeOwned>(name: &str) -> Result<T, sqlx::Error> {
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(name))
        .map_err(|e| sqlx::Error::Decode(format!("{name:?} in a read model: {e}").into()))
}

/// The columns of `read.tasks` a [`Task`] is read from (aliased `t`).
pub const TASK_COLUMNS: &str = "t.task_id, t.key, t.number, t.project_id, t.title, \
     t.description, t.status, t.status_category, t.priority, t.priority_rank, t.assignee, \
     t.due_date, t.tags, t.comment_count, t.archived, t.created_by, t.created_at, \
     t.updated_at, t.version";

/// A task as lists, boards and details show it.
#[derive(Serialize, schemars::JsonSchema, Clone, Debug)]
pub struct Task {
    pub id: Uuid,
    pub key: String,
    pub number: i64,
    pub project_id: Uuid,
    pub title: String,
    pub description: String,
    /// One of the project's workflow statuses.
    pub status: String,
    pub status_category: StatusCategory,
    pub priority: Priority,
    /// Sort key of `priority` (none 0 … urgent 4); cursors carry it.
    #[serde(skip)]
    pub priority_rank: i16,
    pub assignee: Option<Uuid>,
    pub due_date: Option<NaiveDate>,
    pub tags: Vec<Uuid>,
    pub comment_count: i32,
    pub archived: bool,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl Task {
    /// Reads a row selected with [`TASK_COLUMNS`].
    pub fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("task_id")?,
            key: row.try_get("key")?,
            number: row.try_get("number")?,
            project_id: row.try_get("project_id")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            status: row.try_get("status")?,
            status_category: parse_enum(row.try_get("status_category")?)?,
            priority: parse_enum(row.try_get("priority")?)?,
            priority_rank: row.try_get("priority_rank")?,
            assignee: row.try_get("assignee")?,
            due_date: row.try_get("due_date")?,
            tags: row.try_get("tags")?,
            comment_count: row.try_get("comment_count")?,
            archived: row.try_get("archived")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            version: row.try_get("version")?,
        })
    }
}

/// A project; `workflow` only in the detail.
#[derive(Serialize, schemars::JsonSchema, Clone, Debug)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub key: String,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    /// Non-archived tasks by status.
    pub task_counts: BTreeMap<String, i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<tasklog_domain::Workflow>,
}

impl Project {
    /// Reads a row of `read.projects` (without counts or workflow).
    pub fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("project_id")?,
            name: row.try_get("name")?,
            key: row.try_get("key")?,
            archived: row.try_get("archived")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            version: row.try_get("version")?,
            task_counts: BTreeMap::new(),
            workflow: None,
        })
    }
}

/// A comment in a task's detail.
#[derive(Serialize, schemars::JsonSchema, Clone, Debug)]
pub struct Comment {
    pub id: Uuid,
    pub author: Uuid,
    pub body: String,
    pub mentions: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
}

/// A tag as a task's detail names it.
#[derive(Serialize, schemars::JsonSchema, Clone, Debug)]
pub struct TagDetail {
    pub id: Uuid,
    pub name: String,
    /// `#rrggbb`
    pub color: Option<String>,
}

/// A tag of the organization's catalog.
#[derive(Serialize, JsonSchema, Debug)]
pub struct Tag {
    pub id: Uuid,
    pub name: String,
    /// `#rrggbb`
    pub color: Option<String>,
    /// Tasks carrying the tag.
    pub usage_count: i64,
}

/// A member of the organization.
#[derive(Serialize, JsonSchema, Debug)]
pub struct Member {
    pub user_id: Uuid,
    pub handle: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// Why a notification was sent.
#[derive(Serialize, serde::Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The task was assigned to the recipient.
    Assigned,
    /// A comment mentioned the recipient.
    Mentioned,
}

/// One of the caller's notifications.
#[derive(Serialize, JsonSchema, Debug)]
pub struct Notification {
    pub id: Uuid,
    pub kind: NotificationKind,
    pub task_id: Uuid,
    pub task_key: Option<String>,
    pub task_title: Option<String>,
    pub comment_id: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub read: bool,
}

/// A project's board: one column per workflow status, in workflow order.
#[derive(Serialize, JsonSchema, Debug)]
pub struct Board {
    pub columns: Vec<Column>,
}

/// One status of a board.
#[derive(Serialize, JsonSchema, Debug)]
pub struct Column {
    pub status: String,
    pub category: StatusCategory,
    /// Non-archived tasks in this status, of which `tasks` shows the first 100.
    pub total: i64,
    pub tasks: Vec<Task>,
}

/// One event in a task's history.
#[derive(Serialize, JsonSchema, Debug)]
pub struct ActivityItem {
    pub event_id: Uuid,
    pub event_type: String,
    pub actor: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// The event's payload, as its schema in `schemas/events/` describes it;
    /// but once a comment is deleted, its `CommentAdded` and `CommentEdited`
    /// lose `body` and `mentions` and say `"redacted": true`.
    pub data: serde_json::Value,
}

/// A task with its comments and tags spelled out.
#[derive(Serialize, schemars::JsonSchema, Debug)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    pub comments: Vec<Comment>,
    pub tag_details: Vec<TagDetail>,
}

/// One page of a list.
#[derive(Serialize, schemars::JsonSchema, Debug)]
#[schemars(rename = "{T}Page")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A whole (unpaginated) list.
#[derive(Serialize, schemars::JsonSchema, Debug)]
#[schemars(rename = "{T}List")]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// A report of one project over a range of days.
#[derive(Serialize, JsonSchema, Debug)]
#[schemars(rename = "{R}Report")]
pub struct RangeReport<R> {
    pub project: Uuid,
    /// The first day asked for (`YYYY-MM-DD`).
    pub from: NaiveDate,
    /// The last day asked for (`YYYY-MM-DD`).
    pub to: NaiveDate,
    pub rows: Vec<R>,
}

/// Tasks in one status at the end of one UTC day (`cumulative_flow_daily`);
/// every day from the project's first task to today, for every status the
/// project has used, zeros included.
#[derive(Serialize, JsonSchema, Debug)]
pub struct CumulativeFlowRow {
    pub day: NaiveDate,
    pub status: String,
    pub category: StatusCategory,
    /// Tasks in that status at 24:00 UTC that day.
    pub tasks: u64,
}

/// Tasks completed in one week and their lead and cycle times
/// (`cycle_time_weekly`): exact percentiles, in whole seconds.
#[derive(Serialize, JsonSchema, Debug)]
pub struct CycleTimeRow {
    /// The Monday that starts the week.
    pub week: NaiveDate,
    /// Tasks whose current completion falls in the week.
    pub completed: u64,
    pub lead_time_p50_seconds: i64,
    pub lead_time_p85_seconds: i64,
    pub lead_time_p95_seconds: i64,
    /// Of those, the tasks that were ever started (the cycle-time samples).
    pub cycle_samples: u64,
    /// Null when `cycle_samples` is 0.
    pub cycle_time_p50_seconds: Option<i64>,
    /// Null when `cycle_samples` is 0.
    pub cycle_time_p85_seconds: Option<i64>,
    /// Null when `cycle_samples` is 0.
    pub cycle_time_p95_seconds: Option<i64>,
}

/// Tasks completed in one week by one assignee (`throughput_weekly`).
#[derive(Serialize, JsonSchema, Debug)]
pub struct ThroughputRow {
    /// The Monday that starts the week.
    pub week: NaiveDate,
    /// The assignee at completion; null for unassigned tasks.
    pub assignee: Option<Uuid>,
    pub completed: u64,
}

/// What happened to a project's tasks on one UTC day
/// (`created_vs_resolved_daily`); every day from the project's first task
/// to today.
#[derive(Serialize, JsonSchema, Debug)]
pub struct CreatedVsResolvedRow {
    pub day: NaiveDate,
    pub created: u64,
    /// Tasks whose current completion falls on the day.
    pub completed: u64,
    /// Tasks whose current cancellation falls on the day.
    pub cancelled: u64,
    /// Status changes out of a completed or cancelled status that day.
    pub reopened: u64,
    pub archived: u64,
}

/// The open work of a project or a whole organization now
/// (`workload_current`).
#[derive(Serialize, JsonSchema, Debug)]
pub struct WorkloadReport {
    /// The project asked for; null for the whole organization.
    pub project: Option<Uuid>,
    pub rows: Vec<WorkloadRow>,
}

/// Open tasks (not completed, cancelled or archived) of one project, assignee
/// and status.
#[derive(Serialize, JsonSchema, Debug)]
pub struct WorkloadRow {
    pub project: Uuid,
    /// The current assignee; null for unassigned tasks.
    pub assignee: Option<Uuid>,
    pub status: String,
    pub category: StatusCategory,
    pub open_tasks: u64,
    /// Of those, the tasks due before today (UTC).
    pub overdue_tasks: u64,
}

/// `body` with a strong `ETag: "<version>-<digest>"`, or 304 when
/// `If-None-Match` names it already. The digest is of the serialized body,
/// so the tag changes whenever the body does, also when something the body
/// shows changes without the resource's version (a tag renamed, a task
/// counted); the version leads so that `If-Match` can take it.
pub fn tagged<T: Serialize>(request: &HeaderMap, version: i64, body: T) -> Response {
    let json = match serde_json::to_vec(&body) {
        Ok(json) => json,
        Err(e) => return ApiError::Internal(e.into()).into_response(),
    };
    let etag = etag(version, &json);
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // If-None-Match compares weakly (RFC 9110 §13.1.2).
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `"<version>-<first 16 bytes of sha256(json), hex>"`.
fn etag(version: i64, json: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(json);
    let mut tag = format!("\"{version}-");
    for b in &digest[..16] {
        let _ = write!(tag, "{b:02x}");
    }
    tag.push('"');
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etag_changes_with_the_body_and_leads_with_the_version() {
        let a = etag(3, br#"{"name":"bug"}"#);
        let b = etag(3, br#"{"name":"defect"}"#);
        assert_ne!(a, b);
        assert_eq!(a, etag(3, br#"{"name":"bug"}"#));
        assert!(a.starts_with("\"3-") && a.ends_with('"') && a.len() == 2 + 2 + 32);
    }
}
