//! What the auditor API answers with.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::Value;
use tasklog_domain::{AuditTrail, Inbox, Organization, Project, TagCatalog, Task};
use tasklog_event_store::export::ExportedEvent;
use tasklog_event_store::seal::{ConsistencyProof, InclusionProof, SignedTreeHead};
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
                          line of the export (`tasklog-export-v2`) writes it."
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
    /// How `hash` was computed (docs/audit.md).
    hash_scheme: HashSchemeName,
    /// v2 only: the salt of each personal field the hash commits to, by
    /// JSON Pointer (`/title`), lowercase hex; absent when there are none
    /// or when the listing does not carry them (the export always does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salts: Option<std::collections::BTreeMap<String, SaltHex>>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
enum HashSchemeName {
    #[serde(rename = "tasklog-event-v1")]
    V1,
    #[serde(rename = "tasklog-event-v2")]
    V2,
}

#[derive(JsonSchema)]
#[schemars(transparent)]
#[allow(dead_code)]
struct SaltHex(#[schemars(pattern(r"^[0-9a-f]{64}$"))] String);

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

/// Implements `JsonSchema` for a wrapper serialized as its inner seal type,
/// with the schema of the document-only struct that spells it out.
macro_rules! seal_schema {
    ($wrapper:ident, $doc:ident, $name:literal) => {
        impl JsonSchema for $wrapper {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(generator: &mut SchemaGenerator) -> Schema {
                $doc::json_schema(generator)
            }
        }
    };
}

/// A signed tree head, exactly as the sealer published it.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Head(pub SignedTreeHead);
seal_schema!(Head, HeadDoc, "SignedTreeHead");

/// An inclusion proof, exactly as `tasklog audit prove` writes it.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Inclusion(pub InclusionProof);
seal_schema!(Inclusion, InclusionDoc, "InclusionProof");

/// A consistency proof, exactly as `tasklog audit prove-consistency` writes it.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Consistency(pub ConsistencyProof);
seal_schema!(Consistency, ConsistencyDoc, "ConsistencyProof");

/// How a [`Head`] is written, for the documents.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(
    description = "A signed tree head (docs/audit.md, \"Seals\"): the RFC 6962 Merkle tree \
                   over the first `tree_size` events of the whole log, signed with Ed25519; \
                   check it with the public key alone (`tasklog audit verify-head`)."
)]
struct HeadDoc {
    /// `tasklog-tree-head-v1`.
    format: String,
    /// Events (leaves) in the tree: of every organization.
    tree_size: u64,
    /// The tree's root, lowercase hex.
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    root_hash: String,
    /// The log position of the last leaf, `<commit>.<event>`.
    #[schemars(pattern(r"^[0-9]+\.[0-9]+$"))]
    last_position: String,
    /// When it was signed, UTC, six fractional digits.
    sealed_at: DateTime<Utc>,
    /// Ed25519 over the head's signed bytes, lowercase hex.
    #[schemars(pattern(r"^[0-9a-f]{128}$"))]
    signature: String,
}

/// How an [`Inclusion`] is written, for the documents.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(
    description = "Proves that an event is leaf `leaf_index` of the tree a signed head names \
                   (`tasklog audit verify-inclusion` checks it offline)."
)]
struct InclusionDoc {
    /// `tasklog-inclusion-proof-v1`.
    format: String,
    head: HeadDoc,
    leaf_index: u64,
    event_id: Uuid,
    /// `<commit>.<event>`.
    #[schemars(pattern(r"^[0-9]+\.[0-9]+$"))]
    position: String,
    /// The leaf data: the event's stored chain `hash`, lowercase hex.
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    event_hash: String,
    /// RFC 6962 `PATH`, from the leaf's sibling up, lowercase hex each.
    path: Vec<String>,
}

/// How a [`Consistency`] is written, for the documents.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(
    description = "Proves that the tree of the older head is a prefix of the newer one's \
                   (`tasklog audit verify-consistency` checks it offline)."
)]
struct ConsistencyDoc {
    /// `tasklog-consistency-proof-v1`.
    format: String,
    from: HeadDoc,
    to: HeadDoc,
    /// RFC 6962 `PROOF(from, D[to])`, lowercase hex each.
    path: Vec<String>,
}
