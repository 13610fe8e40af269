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
use serde_json::Value;
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

/// The hash of one event's own content: `sha256("tasklog-event-v1\n" ||
/// canonical_json(envelope))`, the canonical bytes written straight into the
/// hash (the same bytes [`write_canonical`] gives for the envelope as a JSON
/// object, without building one).
pub fn content_hash(input: &HashInput<'_>) -> Vec<u8> {
    let m = input.metadata;
    let mut h = HashWriter(Sha256::new());
    h.put(b"tasklog-event-v1\n{\"actor_id\":");
    h.uuid(m.actor_id);
    h.put(b",\"causation_id\":");
    h.uuid(m.causation_id);
    h.put(b",\"correlation_id\":");
    h.uuid(Some(m.correlation_id));
    h.put(b",\"event_id\":");
    h.uuid(Some(input.event_id));
    h.put(b",\"event_type\":");
    h.string(input.event_type);
    h.put(b",\"occurred_at\":");
    h.string(&to_micros(m.occurred_at).to_rfc3339_opts(SecondsFormat::Micros, true));
    h.put(b",\"org_id\":");
    h.uuid(Some(m.org_id));
    h.put(b",\"payload\":");
    write_canonical_to(input.payload, &mut h);
    h.put(b",\"schema_version\":");
    h.put(input.schema_version.to_string().as_bytes());
    h.put(b",\"stream_id\":");
    h.string(input.stream_id);
    h.put(b"}");
    h.0.finalize().to_vec()
}

/// Canonical JSON written into a SHA-256 as it is produced.
struct HashWriter(Sha256);

impl HashWriter {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn uuid(&mut self, id: Option<Uuid>) {
        match id {
            Some(id) => {
                let mut buf = [0u8; 38];
                buf[0] = b'"';
                id.hyphenated().encode_lower(&mut buf[1..37]);
                buf[37] = b'"';
                self.put(&buf);
            }
            None => self.put(b"null"),
        }
    }
    fn string(&mut self, s: &str) {
        // serde_json's own escaping: the bytes must be exactly its.
        serde_json::to_writer(&mut *self, s).expect("writing to a hash cannot fail");
    }
}

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

/// The content hash of a stored event, from its row.
pub fn content_hash_of(e: &RecordedEvent) -> Vec<u8> {
    content_hash(&HashInput {
        event_id: e.event_id,
        stream_id: &e.stream_id,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        metadata: &e.metadata,
        payload: &e.payload,
    })
}

/// Recomputes the hash of a stored event.
pub fn recompute(e: &RecordedEvent) -> Vec<u8> {
    chain_hash(
        e.prev_hash.as_deref(),
        e.stream_version,
        &content_hash_of(e),
    )
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

/// Canonical JSON: keys sorted by their UTF-8 bytes, no insignificant space;
/// strings and numbers as serde_json writes them.
pub fn write_canonical(v: &Value, out: &mut String) {
    let mut bytes = Vec::new();
    write_canonical_to(v, &mut bytes);
    out.push_str(std::str::from_utf8(&bytes).expect("JSON is UTF-8"));
}

fn write_canonical_to(v: &Value, out: &mut impl std::io::Write) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.write_all(b"{").expect("writing JSON");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",").expect("writing JSON");
                }
                serde_json::to_writer(&mut *out, k).expect("writing JSON");
                out.write_all(b":").expect("writing JSON");
                write_canonical_to(v, out);
            }
            out.write_all(b"}").expect("writing JSON");
        }
        Value::Array(items) => {
            out.write_all(b"[").expect("writing JSON");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",").expect("writing JSON");
                }
                write_canonical_to(item, out);
            }
            out.write_all(b"]").expect("writing JSON");
        }
        scalar => serde_json::to_writer(out, scalar).expect("writing JSON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let mut out = String::new();
        write_canonical(
            &json!({"b": 1, "a": {"d": [1, {"z": 0, "y": null}], "c": "x"}}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":{"c":"x","d":[1,{"y":null,"z":0}]},"b":1}"#);
    }

    /// The recipe as docs/audit.md states it: the envelope as a JSON object,
    /// written canonically, after the scheme's name.
    fn content_hash_by_the_recipe(input: &HashInput<'_>) -> Vec<u8> {
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

    #[test]
    fn the_content_hash_is_the_recipes_for_floats_large_integers_escapes_and_non_ascii() {
        let metadata = EventMetadata {
            org_id: Uuid::now_v7(),
            actor_id: None,
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            occurred_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
        };
        let payloads = [
            json!({}),
            json!({"float": 0.1, "neg": -1.5e-7, "big": 1e300, "whole": 3.0}),
            json!({"max": u64::MAX, "min": i64::MIN, "zero": 0}),
            json!({"esc": "quote \" backslash \\ tab \t nl \n nul \u{0} del \u{7f} slash /"}),
            json!({"text": "Grüße, 東京, emoji 🦀, RTL עברית", "ключ": ["é", {"ß": null}]}),
            json!({"b": 1, "a": [true, false, null], "A": {"z": {}, "y": []}, "é": 1, "e": 2}),
        ];
        for payload in &payloads {
            for stream_id in ["task-1", "weird \"stream\" ü"] {
                let input = HashInput {
                    event_id: Uuid::now_v7(),
                    stream_id,
                    event_type: "TaskCreated",
                    schema_version: 3,
                    metadata: &metadata,
                    payload,
                };
                assert_eq!(
                    content_hash(&input),
                    content_hash_by_the_recipe(&input),
                    "{payload}"
                );
            }
        }
    }
}
