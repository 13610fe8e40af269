//! The per-stream hash chain: each event's hash covers its envelope, its
//! payload and the hash of the stream's previous event, so changing or
//! removing any stored event breaks every later hash of its stream.
//!
//! An auditor can recompute it from a stored row in any language:
//! `hash = sha256(prev_hash || stream_version (8 bytes, big-endian) ||
//! content_hash)` (`prev_hash` empty for a stream's first event), where `content_hash =
//! sha256("tasklog-event-v1\n" || canonical_json(envelope))` and canonical
//! JSON has its object keys sorted and no whitespace. The writer computes
//! `content_hash`; the database chains it in the append itself.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{EventMetadata, RecordedEvent};

/// The fields an event's hash covers.
pub struct HashInput<'a> {
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub event_type: &'a str,
    pub schema_version: u16,
    pub metadata: &'a EventMetadata,
    pub payload: &'a Value,
}

/// Timestamps are hashed and stored with microsecond precision (PostgreSQL's).
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The hash of one event's own content.
pub fn content_hash(input: &HashInput<'_>) -> Vec<u8> {
    let m = input.metadata;
    let envelope = json!({
        "event_id": input.event_id,
        "stream_id": input.stream_id,
        "event_type": input.event_type,
        "schema_version": input.schema_version,
        "occurred_at": to_micros(m.occurred_at).to_rfc3339_opts(SecondsFormat::Micros, true),
        "org_id": m.org_id,
        "actor_id": m.actor_id,
        "correlation_id": m.correlation_id,
        "causation_id": m.causation_id,
        "payload": input.payload,
    });
    let mut text = String::from("tasklog-event-v1\n");
    write_canonical(&envelope, &mut text);
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Links an event's content hash to the hash of the event before it.
pub fn chain_hash(prev_hash: Option<&[u8]>, stream_version: u64, content_hash: &[u8]) -> Vec<u8> {
    Sha256::new()
        .chain_update(prev_hash.unwrap_or_default())
        .chain_update(stream_version.to_be_bytes())
        .chain_update(content_hash)
        .finalize()
        .to_vec()
}

/// Recomputes the hash of a stored event.
pub fn recompute(e: &RecordedEvent) -> Vec<u8> {
    let content = content_hash(&HashInput {
        event_id: e.event_id,
        stream_id: &e.stream_id,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        metadata: &e.metadata,
        payload: &e.payload,
    });
    chain_hash(e.prev_hash.as_deref(), e.stream_version, &content)
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
