//! Tasklog's pure domain: commands, events, `decide` and `evolve` for every aggregate.
//!
//! Nothing here does I/O, reads the clock or makes ids: commands carry new ids and anything the
//! application looked up beforehand (membership, tag existence, the project's workflow).

mod audit;
mod error;
mod event;
mod inbox;
mod mentions;
mod org;
mod project;
pub mod schemas;
mod tags;
mod task;
mod workflow;

#[cfg(test)]
mod testing;

pub use audit::{AuditCommand, AuditEvent, AuditLogRead, AuditTrail};
pub use error::{DomainError, FieldError};
pub use event::{
    decode_event, decode_event_ref, encode_event, replay, stream_name, Aggregate, DomainEvent,
};
pub use inbox::{inbox_id, Inbox, InboxCommand, InboxEvent, NotificationRead};
pub use mentions::{mentioned_handles, validate_handle};
pub use org::{
    validate_project_key, Member, MemberAdded, MemberRemoved, MemberRoleChanged, OrgCommand,
    OrgEvent, Organization, OrganizationCreated, ProjectKeyRegistered, Role,
};
pub use project::{
    Project, ProjectArchived, ProjectCommand, ProjectCreated, ProjectEvent, ProjectRenamed,
    ProjectUnarchived, TaskNumberReserved,
};
pub use schemas::{all_event_types, event_schemas};
pub use tags::{TagCatalog, TagCommand, TagCreated, TagDef, TagDeleted, TagEvent, TagRenamed};
pub use task::{
    Comment, CommentAdded, CommentDeleted, CommentEdited, Priority, Task, TaskArchived,
    TaskAssigned, TaskCommand, TaskCreated, TaskDetailsEdited, TaskEvent, TaskStatusChanged,
    TaskTagAdded, TaskTagRemoved, TaskUnassigned,
};
pub use uuid::Uuid;
pub use workflow::{StatusCategory, StatusDef, Workflow};

/// Identifies a user (the subject of an authenticated caller).
pub type UserId = Uuid;
/// Identifies an organization; also the id of its tag catalog stream.
pub type OrgId = Uuid;
/// Identifies a project.
pub type ProjectId = Uuid;
/// Identifies a task.
pub type TaskId = Uuid;
/// Identifies a comment on a task.
pub type CommentId = Uuid;
/// Identifies a tag in an organization's catalog.
pub type TagId = Uuid;
