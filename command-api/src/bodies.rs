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
    /// 1 to 100 characters as sent, not blank.
    #[schemars(length(min = 1, max = 100), pattern(r"\S"))]
    pub name: String,
    /// The creator's handle in the organization; defaults to the token's `preferred_username`.
    #[serde(default)]
    #[schemars(pattern(r"^\s*[A-Za-z0-9_.-]{1,39}\s*$"))]
    pub owner_handle: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: Uuid,
    /// `[a-z0-9_.-]{1,39}`, lowercased.
    #[schemars(pattern(r"^\s*[A-Za-z0-9_.-]{1,39}\s*$"))]
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
    /// 1 to 100 characters as sent, not blank.
    #[schemars(length(min = 1, max = 100), pattern(r"\S"))]
    pub name: String,
    /// Short uppercase key, e.g. `WEB`; task keys are `WEB-1`, `WEB-2`, ...
    #[schemars(pattern(r"^\s*[A-Z][A-Z0-9]{1,9}\s*$"))]
    pub key: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameProject {
    /// 1 to 100 characters as sent, not blank.
    #[schemars(length(min = 1, max = 100), pattern(r"\S"))]
    pub name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// 1 to 200 characters as sent, not blank.
    #[schemars(length(min = 1, max = 200), pattern(r"\S"))]
    pub title: String,
    /// At most 10,000 characters.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: String,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub due_date: Option<Date>,
}

/// Only the fields present change; `"due_date": null` clears the due date.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditTask {
    /// 1 to 200 characters as sent, not blank.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200), pattern(r"\S"))]
    pub title: Option<String>,
    /// At most 10,000 characters.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub description: Option<String>,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<Date>")]
    pub due_date: Option<Option<Date>>,
}

/// A calendar date written `YYYY-MM-DD`, years 0001 to 9999: what JSON
/// Schema's `format: date` (RFC 3339 `full-date`) allows and what every
/// client and PostgreSQL read the same way. chrono alone also takes
/// `2024-1-1`, `+99999-01-01` and `-0001-01-01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let well_formed = text.len() == 10
            && text.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                _ => c.is_ascii_digit(),
            })
            && !text.starts_with("0000");
        well_formed
            .then(|| NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok())
            .flatten()
            .map(Date)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a date written YYYY-MM-DD with a year from 0001 to 9999"
                ))
            })
    }
}

impl JsonSchema for Date {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Date".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date",
            "pattern": "^([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
            "description": "YYYY-MM-DD, years 0001 to 9999"
        })
    }
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
    /// Markdown text, 1 to 10,000 characters, not blank; `@handle` mentions of members notify them.
    #[schemars(length(min = 1, max = 10000), pattern(r"\S"))]
    pub body: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditComment {
    /// Markdown text, 1 to 10,000 characters, not blank.
    #[schemars(length(min = 1, max = 10000), pattern(r"\S"))]
    pub body: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTag {
    /// 1 to 50 characters as sent, not blank.
    #[schemars(length(min = 1, max = 50), pattern(r"\S"))]
    pub name: String,
    /// `#rrggbb`
    #[serde(default)]
    #[schemars(pattern(r"^\s*#[0-9A-Fa-f]{6}\s*$"))]
    pub color: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTag {
    /// 1 to 50 characters as sent, not blank.
    #[schemars(length(min = 1, max = 50), pattern(r"\S"))]
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
