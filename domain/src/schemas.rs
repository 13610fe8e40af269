//! JSON schemas of every event payload, for the committed `schemas/` directory.

use crate::{AuditEvent, InboxEvent, OrgEvent, ProjectEvent, TagEvent, TaskEvent};

/// `(event type, schema version, schema of its data payload)` for every event, sorted by type.
pub fn event_schemas() -> Vec<(&'static str, u16, schemars::Schema)> {
    let mut schemas: Vec<_> = [
        OrgEvent::schemas(),
        ProjectEvent::schemas(),
        TaskEvent::schemas(),
        TagEvent::schemas(),
        InboxEvent::schemas(),
        AuditEvent::schemas(),
    ]
    .into_iter()
    .flatten()
    .collect();
    schemas.sort_by_key(|(event_type, _, _)| *event_type);
    schemas
}

/// Every published event type name, sorted.
pub fn all_event_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = [
        OrgEvent::EVENT_TYPES,
        ProjectEvent::EVENT_TYPES,
        TaskEvent::EVENT_TYPES,
        TagEvent::EVENT_TYPES,
        InboxEvent::EVENT_TYPES,
        AuditEvent::EVENT_TYPES,
    ]
    .concat();
    types.sort_unstable();
    types
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_one_schema_per_event_type_sorted_by_name() {
        let names: Vec<_> = event_schemas().iter().map(|(name, _, _)| *name).collect();
        assert_eq!(names, all_event_types());
        assert_eq!(names.len(), 26);
        let mut distinct = names.clone();
        distinct.dedup();
        assert_eq!(distinct, names);
    }

    #[test]
    fn each_schema_describes_its_event_struct() {
        for (name, version, schema) in event_schemas() {
            assert_eq!(version, 1);
            assert_eq!(schema.get("title").and_then(|t| t.as_str()), Some(name));
            assert_eq!(schema.get("type").and_then(|t| t.as_str()), Some("object"));
        }
    }

    #[test]
    fn schemas_list_the_payload_fields() {
        let (_, _, schema) = event_schemas()
            .into_iter()
            .find(|(name, _, _)| *name == "TaskStatusChanged")
            .unwrap();
        let properties = schema.get("properties").unwrap().as_object().unwrap();
        let mut fields: Vec<_> = properties.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["from", "from_category", "to", "to_category"]);
    }

    /// Free-text string fields that are not personal data: keys, statuses,
    /// names of an organization's own things, what an audit read recorded.
    const NOT_PERSONAL: &[(&str, &str)] = &[
        ("AuditLogRead", "operation"),
        ("AuditLogRead", "path"),
        ("AuditLogRead", "query"),
        ("AuditLogRead", "stream"),
        ("OrganizationCreated", "name"),
        ("ProjectCreated", "key"),
        ("ProjectCreated", "name"),
        ("ProjectKeyRegistered", "key"),
        ("ProjectRenamed", "from"),
        ("ProjectRenamed", "to"),
        ("TagCreated", "color"),
        ("TagCreated", "name"),
        ("TagRenamed", "from"),
        ("TagRenamed", "to"),
        ("TaskCreated", "key"),
        ("TaskCreated", "status"),
        ("TaskStatusChanged", "from"),
        ("TaskStatusChanged", "to"),
    ];

    /// Every string field of every event says whether it is personal
    /// (`x-personal`, committed to through a salted hash so it can be erased)
    /// or is listed above as not: a new one must be decided on.
    #[test]
    fn every_string_field_of_an_event_is_marked_personal_or_listed_as_not() {
        let mut undecided = Vec::new();
        for (event_type, _, schema) in event_schemas() {
            let properties = schema.get("properties").and_then(|p| p.as_object());
            for (field, property) in properties.into_iter().flatten() {
                let is_string = match property.get("type") {
                    Some(serde_json::Value::String(t)) => t == "string",
                    Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                    _ => false,
                };
                // Ids and dates (`format`: uuid, date) are not free text.
                let is_string = is_string && property.get("format").is_none();
                let personal = property.get("x-personal") == Some(&serde_json::Value::Bool(true));
                let listed = NOT_PERSONAL.contains(&(event_type, field.as_str()));
                assert!(!(personal && listed), "{event_type}.{field} is both");
                if is_string && !personal && !listed {
                    undecided.push(format!("{event_type}.{field}"));
                }
            }
        }
        assert!(undecided.is_empty(), "personal or not? {undecided:?}");
    }

    #[test]
    fn the_writer_commits_to_the_fields_the_schema_marks_personal() {
        use crate::{CommentAdded, DomainEvent, TaskEvent};
        let event = TaskEvent::CommentAdded(CommentAdded {
            comment_id: crate::Uuid::from_u128(1),
            author: crate::Uuid::from_u128(2),
            body: "hi".into(),
            mentions: vec![],
        });
        assert_eq!(event.personal_fields(), ["/body"]);
        let schema = serde_json::to_value(
            event_schemas()
                .into_iter()
                .find(|(t, _, _)| *t == "CommentAdded")
                .unwrap()
                .2,
        )
        .unwrap();
        assert_eq!(schema["properties"]["body"]["x-personal"], true);
    }
}
