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
}
