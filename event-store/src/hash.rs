//! The per-stream hash chain: each event's hash covers its envelope, its
//! payload and the hash of the stream's previous event, so changing or
//! removing any stored event breaks every later hash of its stream.
//!
//! The hashed bytes are a canonical JSON text (object keys sorted, no
//! whitespace), so an auditor can recompute them from a stored row in any
//! language: `sha256("tasklog-event-v1\n" || canonical_json(envelope))`, where
//! the envelope holds `prev_hash` as lowercase hex (or null).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{EventMetadata, RecordedEvent};

/// The fields an event's hash covers.
pub struct HashInput<'a> {
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u16,
    pub metadata: &'a EventMetadata,
    pub payload: &'a Value,
    pub prev_hash: Option<&'a [u8]>,
}

/// Timestamps are hashed and stored with microsecond precision (PostgreSQL's).
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The hash of one event.
pub fn event_hash(input: &HashInput<'_>) -> Vec<u8> {
    let m = input.metadata;
    let envelope = json!({
        "event_id": input.event_id,
        "stream_id": input.stream_id,
        "stream_version": input.stream_version,
        "event_type": input.event_type,
        "schema_version": input.schema_version,
        "occurred_at": to_micros(m.occurred_at).to_rfc3339_opts(SecondsFormat::Micros, true),
        "org_id": m.org_id,
        "actor_id": m.actor_id,
        "correlation_id": m.correlation_id,
        "causation_id": m.causation_id,
        "payload": input.payload,
        "prev_hash": input.prev_hash.map(hex::encode),
    });
    let mut text = String::from("tasklog-event-v1\n");
    write_canonical(&envelope, &mut text);
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Recomputes the hash of a stored event.
pub fn recompute(e: &RecordedEvent) -> Vec<u8> {
    event_hash(&HashInput {
        event_id: e.event_id,
        stream_id: &e.stream_id,
        stream_version: e.stream_version,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        metadata: &e.metadata,
        payload: &e.payload,
        prev_hash: e.prev_hash.as_deref(),
    })
}

/// Where a stream's chain breaks.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("event at version {0} does not match its hash")]
    HashMismatch(u64),
    #[error("event at version {0} does not point at the previous event's hash")]
    BrokenLink(u64),
    #[error("version {found} follows version {previous}: an event is missing")]
    Gap { previous: u64, found: u64 },
}

/// Checks one whole stream, read from its first event.
pub fn verify_stream(events: &[RecordedEvent]) -> Result<(), ChainError> {
    let mut prev: Option<&RecordedEvent> = None;
    for e in events {
        let expected_version = prev.map_or(1, |p| p.stream_version + 1);
        if e.stream_version != expected_version {
            return Err(ChainError::Gap {
                previous: expected_version - 1,
                found: e.stream_version,
            });
        }
        if e.prev_hash.as_deref() != prev.map(|p| p.hash.as_slice()) {
            return Err(ChainError::BrokenLink(e.stream_version));
        }
        if recompute(e) != e.hash {
            return Err(ChainError::HashMismatch(e.stream_version));
        }
        prev = Some(e);
    }
    Ok(())
}

/// Canonical JSON: keys sorted by their UTF-8 bytes, no insignificant space.
pub fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let mut out = String::new();
        write_canonical(
            &json!({"b": 1, "a": {"d": [1, {"z": 0, "y": null}], "c": "x"}}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":{"c":"x","d":[1,{"y":null,"z":0}]},"b":1}"#);
    }
}
