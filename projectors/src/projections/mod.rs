//! The projections. Each applies a batch of events inside the runner's
//! transaction, whose search_path is its generation's schema.
//!
//! A batch is folded in memory first (the rows it touches are read once,
//! changed event by event, and written back once), so a batch costs a few
//! set-based statements instead of one per event: the same result as
//! applying its events one at a time, which the tests check.

mod activity;
mod directory;
mod notifications;
mod tasks;

pub use activity::Activity;
pub use directory::Directory;
pub use notifications::{notices, notification_id, Notice, Notifications};
pub use tasks::Tasks;

use serde::Serialize;
use tasklog_domain::{decode_event_ref, DomainEvent, Priority};
use tasklog_event_store::RecordedEvent;
use uuid::Uuid;

use crate::ApplyError;

/// The stream's category and aggregate id (`task-<uuid>` → ("task", uuid)).
fn stream_parts(e: &RecordedEvent) -> Result<(&str, Uuid), ApplyError> {
    let (category, id) = e
        .stream_id
        .split_once('-')
        .ok_or_else(|| ApplyError::Failed(format!("stream {} has no category", e.stream_id)))?;
    let id = id
        .parse()
        .map_err(|_| ApplyError::Failed(format!("stream {} has no uuid", e.stream_id)))?;
    Ok((category, id))
}

fn decode<E: DomainEvent>(e: &RecordedEvent) -> Result<E, ApplyError> {
    Ok(decode_event_ref::<E>(&e.event_type, &e.payload)?)
}

/// An enum's wire name (`Role::Admin` → "admin").
fn name_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn priority_rank(p: Priority) -> i16 {
    match p {
        Priority::None => 0,
        Priority::Low => 1,
        Priority::Medium => 2,
        Priority::High => 3,
        Priority::Urgent => 4,
    }
}

/// A uuid array as a PostgreSQL array literal (`{a,b}`): arrays of arrays
/// cannot go through UNNEST, so they travel as text and are cast back.
fn uuid_array_literal(ids: &[Uuid]) -> String {
    let mut s = String::with_capacity(2 + ids.len() * 37);
    s.push('{');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_array_literal_lists_its_ids_in_braces() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(uuid_array_literal(&[]), "{}");
        assert_eq!(
            uuid_array_literal(&[a, b]),
            format!("{{{a},{b}}}"),
            "comma-separated, no spaces"
        );
    }
}
