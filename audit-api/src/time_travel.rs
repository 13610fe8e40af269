//! Time travel: an aggregate's state at a point of its history, rebuilt by
//! replaying its stored events through the domain's own `evolve` (never
//! read from a read model), and what each event between two points changed.

use serde::Serialize;
use serde_json::Value;
use tasklog_domain::{
    decode_event_ref, Aggregate, AuditTrail, Inbox, Organization, Project, TagCatalog, Task,
};
use tasklog_event_store::RecordedEvent;
use tasklog_http::ApiError;

use crate::params::Point;
use crate::views::FieldChange;

/// How many of `events` (a stream's, in version order) lie at or before
/// `point`: the longest prefix, so the state is one the aggregate had.
pub fn version_at(events: &[RecordedEvent], point: Point) -> usize {
    events
        .iter()
        .take_while(|e| match point {
            Point::Time(t) => e.metadata.occurred_at <= t,
            Point::Position(p) => e.position <= p,
        })
        .count()
}

/// The states of the stream of kind `kind` after `from` of `events`, then
/// after each further event up to `to` (`to - from + 1` states), as JSON.
pub fn states(
    kind: &str,
    events: &[RecordedEvent],
    from: usize,
    to: usize,
) -> Result<Vec<Value>, ApiError> {
    match kind {
        Task::CATEGORY => fold::<Task>(events, from, to),
        Project::CATEGORY => fold::<Project>(events, from, to),
        Organization::CATEGORY => fold::<Organization>(events, from, to),
        TagCatalog::CATEGORY => fold::<TagCatalog>(events, from, to),
        Inbox::CATEGORY => fold::<Inbox>(events, from, to),
        AuditTrail::CATEGORY => fold::<AuditTrail>(events, from, to),
        other => Err(ApiError::Internal(anyhow::anyhow!(
            "no aggregate of kind {other}"
        ))),
    }
}

fn fold<A: Aggregate + Serialize>(
    events: &[RecordedEvent],
    from: usize,
    to: usize,
) -> Result<Vec<Value>, ApiError> {
    let mut state = A::default();
    let mut out = Vec::with_capacity(to - from + 1);
    for (i, e) in events[..to].iter().enumerate() {
        if i >= from {
            out.push(to_json(&state)?);
        }
        let event = decode_event_ref::<A::Event>(&e.event_type, &e.payload).map_err(|err| {
            ApiError::Internal(anyhow::anyhow!(
                "event {} does not decode: {err}",
                e.event_id
            ))
        })?;
        state = state.evolve(&event);
    }
    out.push(to_json(&state)?);
    Ok(out)
}

fn to_json<T: Serialize>(state: &T) -> Result<Value, ApiError> {
    serde_json::to_value(state).map_err(|e| ApiError::Internal(e.into()))
}

/// The leaves that differ between `old` and `new`, by dotted path; objects
/// are compared key by key, anything else as a whole.
pub fn changed_fields(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    compare("", old, new, &mut out);
    out
}

fn compare(path: &str, old: &Value, new: &Value, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let field = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let absent = Value::Null;
                compare(
                    &field,
                    a.get(key).unwrap_or(&absent),
                    b.get(key).unwrap_or(&absent),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(FieldChange {
            field: path.to_owned(),
            from: a.clone(),
            to: b.clone(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn changed_fields_name_nested_leaves_and_absent_ones_as_null() {
        let old = json!({"title": "a", "members": {"u1": {"role": "viewer"}}, "tags": [1]});
        let new = json!({"title": "b", "members": {"u1": {"role": "auditor"}, "u2": {"role": "admin"}}, "tags": [1]});
        let f = |field: &str, from: Value, to: Value| FieldChange {
            field: field.into(),
            from,
            to,
        };
        assert_eq!(
            changed_fields(&old, &new),
            [
                f("members.u1.role", json!("viewer"), json!("auditor")),
                f("members.u2", Value::Null, json!({"role": "admin"})),
                f("title", json!("a"), json!("b")),
            ]
        );
        assert!(changed_fields(&old, &old).is_empty());
    }
}
