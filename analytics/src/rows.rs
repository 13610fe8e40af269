//! The rows of the analytics tables (`migrations/clickhouse/0001_tables.sql`),
//! one struct per table, named by column.

use chrono::{DateTime, NaiveDate, Utc};
use clickhouse::serde::chrono::{date, datetime};
use clickhouse::serde::{uuid as ch_uuid, uuid_vec};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `events`: one per event of the log.
#[derive(clickhouse::Row, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EventRow {
    pub commit_id: u64,
    pub event_seq: u64,
    #[serde(with = "ch_uuid")]
    pub event_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub org_id: Uuid,
    #[serde(with = "ch_uuid::option")]
    pub project_id: Option<Uuid>,
    #[serde(with = "ch_uuid::option")]
    pub task_id: Option<Uuid>,
    pub stream_id: String,
    pub stream_version: u64,
    pub event_type: String,
    pub schema_version: u16,
    #[serde(with = "ch_uuid::option")]
    pub actor_id: Option<Uuid>,
    #[serde(with = "datetime")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "datetime")]
    pub recorded_at: DateTime<Utc>,
    pub status_from: String,
    pub status_to: String,
    pub category_from: String,
    pub category_to: String,
    #[serde(with = "ch_uuid::option")]
    pub assignee_id: Option<Uuid>,
    #[serde(with = "ch_uuid::option")]
    pub previous_assignee_id: Option<Uuid>,
    #[serde(with = "ch_uuid::option")]
    pub comment_id: Option<Uuid>,
    #[serde(with = "ch_uuid::option")]
    pub author_id: Option<Uuid>,
    #[serde(with = "uuid_vec")]
    pub mentions: Vec<Uuid>,
    #[serde(with = "ch_uuid::option")]
    pub tag_id: Option<Uuid>,
    #[serde(with = "ch_uuid::option")]
    pub member_id: Option<Uuid>,
    pub role: String,
    pub title: String,
    pub name: String,
    pub priority: String,
    #[serde(with = "date::option")]
    pub due_date: Option<NaiveDate>,
    #[serde(with = "ch_uuid::option")]
    pub notification_id: Option<Uuid>,
}

/// `status_changes`: a task entering a status (at creation too).
#[derive(clickhouse::Row, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StatusChangeRow {
    #[serde(with = "ch_uuid")]
    pub org_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub project_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub task_id: Uuid,
    pub commit_id: u64,
    pub event_seq: u64,
    #[serde(with = "datetime")]
    pub changed_at: DateTime<Utc>,
    pub status_from: String,
    pub status_to: String,
    pub category_from: String,
    pub category_to: String,
    #[serde(with = "datetime")]
    pub from_since: DateTime<Utc>,
    pub seconds_in_from: u32,
    pub reopened: u8,
    #[serde(with = "ch_uuid::option")]
    pub assignee_id: Option<Uuid>,
    #[serde(with = "ch_uuid::option")]
    pub actor_id: Option<Uuid>,
}

/// `tasks`: a task as it stands after its stream's `version`.
#[derive(clickhouse::Row, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TaskRow {
    #[serde(with = "ch_uuid")]
    pub org_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub project_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub task_id: Uuid,
    pub number: u64,
    pub task_key: String,
    pub title: String,
    pub priority: String,
    #[serde(with = "date::option")]
    pub due_date: Option<NaiveDate>,
    pub status: String,
    pub category: String,
    #[serde(with = "datetime")]
    pub status_since: DateTime<Utc>,
    #[serde(with = "ch_uuid::option")]
    pub assignee_id: Option<Uuid>,
    #[serde(with = "datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ch_uuid::option")]
    pub created_by: Option<Uuid>,
    #[serde(with = "datetime::option")]
    pub first_left_backlog_at: Option<DateTime<Utc>>,
    #[serde(with = "datetime::option")]
    pub first_started_at: Option<DateTime<Utc>>,
    #[serde(with = "datetime::option")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(with = "ch_uuid::option")]
    pub completed_by_assignee_id: Option<Uuid>,
    #[serde(with = "datetime::option")]
    pub cancelled_at: Option<DateTime<Utc>>,
    pub times_reopened: u32,
    pub archived: u8,
    #[serde(with = "datetime::option")]
    pub archived_at: Option<DateTime<Utc>>,
    pub version: u64,
}

/// `projects`.
#[derive(clickhouse::Row, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProjectRow {
    #[serde(with = "ch_uuid")]
    pub org_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub project_id: Uuid,
    pub name: String,
    pub project_key: String,
    pub archived: u8,
    #[serde(with = "datetime")]
    pub created_at: DateTime<Utc>,
    pub version: u64,
}

/// `members`.
#[derive(clickhouse::Row, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MemberRow {
    #[serde(with = "ch_uuid")]
    pub org_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub user_id: Uuid,
    pub handle: String,
    pub role: String,
    pub removed: u8,
    #[serde(with = "datetime")]
    pub joined_at: DateTime<Utc>,
    pub version: u64,
}

/// `tags`.
#[derive(clickhouse::Row, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TagRow {
    #[serde(with = "ch_uuid")]
    pub org_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub tag_id: Uuid,
    pub name: String,
    pub color: String,
    pub deleted: u8,
    pub version: u64,
}

/// `notifications`.
#[derive(clickhouse::Row, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NotificationRow {
    #[serde(with = "ch_uuid")]
    pub org_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub notification_id: Uuid,
    #[serde(with = "ch_uuid::option")]
    pub project_id: Option<Uuid>,
    #[serde(with = "ch_uuid")]
    pub task_id: Uuid,
    #[serde(with = "ch_uuid")]
    pub user_id: Uuid,
    pub kind: String,
    #[serde(with = "ch_uuid::option")]
    pub comment_id: Option<Uuid>,
    #[serde(with = "ch_uuid::option")]
    pub actor_id: Option<Uuid>,
    #[serde(with = "datetime")]
    pub created_at: DateTime<Utc>,
}

/// Everything a batch writes, table by table.
#[derive(Default, Debug)]
pub struct Rows {
    pub events: Vec<EventRow>,
    pub status_changes: Vec<StatusChangeRow>,
    pub tasks: Vec<TaskRow>,
    pub projects: Vec<ProjectRow>,
    pub members: Vec<MemberRow>,
    pub tags: Vec<TagRow>,
    pub notifications: Vec<NotificationRow>,
}
