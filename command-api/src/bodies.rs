//! Request bodies of every command. Unknown fields are rejected, so a typo
//! never silently does nothing. Their JSON Schemas are committed in `schemas/`.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use tasklog_domain::{Priority, Role};
use uuid::Uuid;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    pub name: String,
    /// The creator's handle in the organization; defaults to the token's `preferred_username`.
    #[serde(default)]
    pub owner_handle: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: Uuid,
    pub handle: String,
    pub role: Role,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeMemberRole {
    pub role: Role,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    /// Short uppercase key, e.g. `WEB`; task keys are `WEB-1`, `WEB-2`, ...
    pub key: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameProject {
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub due_date: Option<NaiveDate>,
}

/// Only the fields present change; `"due_date": null` clears the due date.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditTask {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<NaiveDate>")]
    pub due_date: Option<Option<NaiveDate>>,
}

/// `Some(value)` for a field that is present, even when it is `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `{"assignee": "<user id>"}` assigns, `{"assignee": null}` unassigns.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAssignee {
    pub assignee: Option<Uuid>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeStatus {
    pub status: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTaskTag {
    pub tag_id: Uuid,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddComment {
    /// Markdown text; `@handle` mentions of members notify them.
    pub body: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditComment {
    pub body: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTag {
    pub name: String,
    /// `#rrggbb`
    #[serde(default)]
    pub color: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTag {
    pub name: String,
}

/// Every command body with its schema, for `schemas/commands/`.
pub fn body_schemas() -> Vec<(&'static str, schemars::Schema)> {
    macro_rules! schemas {
        ($($t:ident),* $(,)?) => { vec![$((stringify!($t), schemars::schema_for!($t))),*] };
    }
    let mut all = schemas![
        CreateOrganization,
        AddMember,
        ChangeMemberRole,
        CreateProject,
        RenameProject,
        CreateTask,
        EditTask,
        SetAssignee,
        ChangeStatus,
        AddTaskTag,
        AddComment,
        EditComment,
        CreateTag,
        RenameTag,
    ];
    all.sort_by_key(|(name, _)| *name);
    all
}
