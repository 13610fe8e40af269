//! What the auditor API answers with.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::Value;
use tasklog_domain::{AuditTrail, Inbox, Organization, Project, TagCatalog, Task};
use tasklog_event_store::export::ExportedEvent;
use tasklog_event_store::RecordedEvent;
use uuid::Uuid;

/// One stored event with its whole envelope and hashes: exactly an event
/// line of the export (`tasklog-export-v1`) without its `"line"` field, so
/// an auditor's tools read both alike.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct LoggedEvent(pub ExportedEvent);

impl From<RecordedEvent> for LoggedEvent {
    fn from(e: RecordedEvent) -> Self {
        Self(e.into())
    }
}

impl JsonSchema for LoggedEvent {
    fn schema_name() -> Cow<'static, str> {
        "LoggedEvent".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        Envelope::json_schema(generator)
    }
}

/// How [`LoggedEvent`] (an [`ExportedEvent`]) is written, for the documents.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(
    description = "One stored event with its whole envelope and hashes, as an event \
                          line of the export (`tasklog-export-v1`) writes it."
)]
struct Envelope {
    event_id: Uuid,
    /// `<kind>-<uuid>`, e.g. `task-…`.
    stream_id: String,
    /// 1, 2, 3… within the stream.
    stream_version: u64,
    /// Its place in the organization's log, `<commit>.<event>`.
    #[schemars(pattern(r"^[0-9]+\.[0-9]+$"))]
    position: String,
    event_type: String,
    schema_version: u16,
    /// UTC, six fractional digits.
    occurred_at: DateTime<Utc>,
    /// UTC, six fractional digits.
    recorded_at: DateTime<Utc>,
    org_id: Uuid,
    actor_id: Option<Uuid>,
    correlation_id: Uuid,
    causation_id: Option<Uuid>,
    /// The stored JSON.
    payload: Value,
    /// The stream's previous event's `hash`, lowercase hex; `null` for version 1.
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    prev_hash: Option<String>,
    /// `sha256(prev_hash || int64_be(stream_version) || content_hash)`,
    /// lowercase hex (see docs/audit.md).
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    hash: String,
}

/// A page of a list, oldest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor after this page's last item, for the next page; `null`
    /// when the page is empty. An empty page means nothing more is there
    /// yet: the log only grows, so the cursor you hold, asked again later,
    /// yields what was appended since.
    pub next_cursor: Option<String>,
}

/// An aggregate's state as of a point, rebuilt by the domain's own `evolve`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AsOf {
    pub stream: String,
    /// The point asked for (`at`), as understood.
    pub at: String,
    /// How many of the stream's events were applied (0: none yet).
    pub version: u64,
    /// The position of the last event applied; `null` when none was.
    pub position: Option<String>,
    /// The state after them; `null` before the stream's first event.
    #[schemars(with = "Option<State>")]
    pub state: Option<Value>,
}

/// The state of one aggregate, by its stream's kind (the domain's own
/// state types, serialized as they are).
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(untagged)]
enum State {
    Task(Task),
    Project(Project),
    Organization(Organization),
    TagCatalog(TagCatalog),
    Inbox(Inbox),
    AuditTrail(AuditTrail),
}

/// What changed between two points of a stream, event by event.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Diff {
    pub stream: String,
    pub from: Bound,
    pub to: Bound,
    /// Every event after `from` up to `to`, oldest first, with the fields
    /// of the state it changed.
    pub changes: Vec<Change>,
}

/// One end of a [`Diff`].
#[derive(Debug, Serialize, JsonSchema)]
pub struct Bound {
    /// The point asked for, as understood.
    pub at: String,
    /// Events applied up to it.
    pub version: u64,
    /// The position of the last of them; `null` when none.
    pub position: Option<String>,
}

/// One event of a [`Diff`]: who did what, and what it changed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Change {
    pub event_id: Uuid,
    pub event_type: String,
    pub stream_version: u64,
    pub position: String,
    /// Who: the event's actor.
    pub actor_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// The fields of the state it changed, by path (`title`,
    /// `members.<user>.role`), each with its value before and after
    /// (`null`: absent).
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub from: Value,
    pub to: Value,
}
