//! The per-stream hash chain: each event's hash covers its envelope, its
//! payload and the hash of the stream's previous event, so changing or
//! removing any stored event breaks every later hash of its stream.
//!
//! An auditor can recompute it from a stored row in any language:
//! `hash = sha256(prev_hash || stream_version (8 bytes, big-endian) ||
//! content_hash)` (`prev_hash` empty for a stream's first event). How
//! `content_hash` is computed is the row's [`HashScheme`]:
//! - `tasklog-event-v1` (events written before v2): `sha256("tasklog-event-v1\n"
//!   || canonical_json(envelope))`, keys sorted by UTF-8 bytes, strings and
//!   numbers as serde_json writes them;
//! - `tasklog-event-v2`: `sha256("tasklog-event-v2\n" || JCS(envelope))`
//!   (RFC 8785), where each personal field of the payload is replaced by its
//!   salted commitment `{"$commit": hex(sha256(salt || JCS(value)))}`, so
//!   that erasing the value and its salt later leaves the hash verifiable.
//!
//! The writer computes `content_hash`; the database chains it in the append.

use std::collections::BTreeMap;
use std::fmt;

use canon_json::CanonicalFormatter;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
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

/// How an event's content hash was computed; stored with the event, so
/// rows keep the scheme they were written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum HashScheme {
    /// Keys sorted by UTF-8 bytes, numbers as serde_json writes them. Rows
    /// without a scheme (exports made before v2) are v1.
    #[default]
    #[serde(rename = "tasklog-event-v1")]
    V1,
    /// RFC 8785 (JCS), personal fields committed to through salted hashes.
    #[serde(rename = "tasklog-event-v2")]
    V2,
}

impl HashScheme {
    /// The scheme new events are written with.
    pub const CURRENT: HashScheme = HashScheme::V2;

    /// As stored in the `hash_scheme` column.
    pub fn code(self) -> i16 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The name, which is also the first line of the hashed text.
    pub fn name(self) -> &'static str {
        match self {
            Self::V1 => "tasklog-event-v1",
            Self::V2 => "tasklog-event-v2",
        }
    }
}

impl fmt::Display for HashScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A random 32-byte salt for one personal field, kept apart from the event
/// (`event_salts`) so that it can be destroyed with the value it hides.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Salt(pub [u8; 32]);

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt({})", hex::encode(self.0))
    }
}

impl Serialize for Salt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Salt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&text, &mut bytes).map_err(serde::de::Error::custom)?;
        Ok(Salt(bytes))
    }
}

/// An event's salts by the JSON Pointer (RFC 6901) of the personal field
/// each one commits to, e.g. `/title`. Empty for v1 events and for events
/// without personal fields.
pub type Salts = BTreeMap<String, Salt>;

/// Why a v2 content hash cannot be computed from a row.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("the payload has no field {0} for its salt")]
    MissingField(String),
    #[error("the payload is not canonical JSON: {0}")]
    NotCanonical(String),
}

/// The commitment to one personal value: `sha256(salt || JCS(value))`.
pub fn commitment(salt: &Salt, value: &Value) -> Result<[u8; 32], CommitError> {
    let mut h = HashWriter(Sha256::new());
    h.put(&salt.0);
    write_jcs(value, &mut h)?;
    Ok(h.0.finalize().into())
}

/// The marker an erasure leaves in place of a personal value:
/// `{"$erased": "<commitment hex>"}`, hashed as `{"$commit": …}`.
pub const ERASED: &str = "$erased";
const COMMIT: &str = "$commit";

/// The payload as v2 hashes it: each salted field replaced by its
/// commitment, each erased field by the commitment it left.
pub fn committed_payload<'a>(
    payload: &'a Value,
    salts: &Salts,
) -> Result<std::borrow::Cow<'a, Value>, CommitError> {
    exact_as_double(payload)?;
    let erased = has_erased_marker(payload);
    if salts.is_empty() && !erased {
        return Ok(std::borrow::Cow::Borrowed(payload));
    }
    let mut committed = payload.clone();
    if erased {
        replace_erased_markers(&mut committed);
    }
    for (path, salt) in salts {
        let field = committed
            .pointer_mut(path)
            .ok_or_else(|| CommitError::MissingField(path.clone()))?;
        let c = commitment(salt, field)?;
        *field = serde_json::json!({ COMMIT: hex::encode(c) });
    }
    Ok(std::borrow::Cow::Owned(committed))
}

/// Integers beyond ±2^53 are refused: RFC 8785 writes numbers as doubles,
/// so implementations disagree on them (some round, `canon-json` does not),
/// and a rounded one would let two values share a hash. No payload of
/// Tasklog's holds one; a large id belongs in a string.
const MAX_EXACT: u64 = 1 << 53;

fn exact_as_double(v: &Value) -> Result<(), CommitError> {
    match v {
        Value::Number(n) => {
            let exact = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_EXACT,
                (None, Some(i)) => i.unsigned_abs() <= MAX_EXACT,
                (None, None) => true, // a float: JCS writes it exactly
            };
            if exact {
                Ok(())
            } else {
                Err(CommitError::NotCanonical(format!(
                    "the integer {n} is beyond ±2^53, where RFC 8785 implementations disagree"
                )))
            }
        }
        Value::Object(map) => map.values().try_for_each(exact_as_double),
        Value::Array(items) => items.iter().try_for_each(exact_as_double),
        _ => Ok(()),
    }
}

fn erased_commitment(v: &Value) -> Option<&str> {
    match v {
        Value::Object(map) if map.len() == 1 => map.get(ERASED)?.as_str(),
        _ => None,
    }
}

fn has_erased_marker(v: &Value) -> bool {
    match v {
        Value::Object(map) => erased_commitment(v).is_some() || map.values().any(has_erased_marker),
        Value::Array(items) => items.iter().any(has_erased_marker),
        _ => false,
    }
}

fn replace_erased_markers(v: &mut Value) {
    if let Some(c) = erased_commitment(v) {
        *v = serde_json::json!({ COMMIT: c });
        return;
    }
    match v {
        Value::Object(map) => map.values_mut().for_each(replace_erased_markers),
        Value::Array(items) => items.iter_mut().for_each(replace_erased_markers),
        _ => {}
    }
}

/// `sha256("tasklog-event-v2\n" || JCS(envelope))`, the payload's personal
/// fields replaced by their commitments (see [`committed_payload`]).
pub fn content_hash_v2(input: &HashInput<'_>, salts: &Salts) -> Result<Vec<u8>, CommitError> {
    let m = input.metadata;
    let mut h = HashWriter(Sha256::new());
    // The envelope's ten keys are ASCII, so their JCS order (UTF-16 units)
    // is this byte order; every value is written by the JCS writer. Laid
    // out here, the payload is not buffered a second time for sorting.
    // (Tests check the bytes against a whole-envelope JCS of another crate.)
    h.put(b"tasklog-event-v2\n{\"actor_id\":");
    write_jcs(&m.actor_id, &mut h)?;
    h.put(b",\"causation_id\":");
    write_jcs(&m.causation_id, &mut h)?;
    h.put(b",\"correlation_id\":");
    write_jcs(&m.correlation_id, &mut h)?;
    h.put(b",\"event_id\":");
    write_jcs(&input.event_id, &mut h)?;
    h.put(b",\"event_type\":");
    write_jcs(input.event_type, &mut h)?;
    h.put(b",\"occurred_at\":");
    let occurred_at = to_micros(m.occurred_at).to_rfc3339_opts(SecondsFormat::Micros, true);
    write_jcs(&occurred_at, &mut h)?;
    h.put(b",\"org_id\":");
    write_jcs(&m.org_id, &mut h)?;
    h.put(b",\"payload\":");
    write_committed_payload(input.payload, salts, &mut h)?;
    h.put(b",\"schema_version\":");
    write_jcs(&input.schema_version, &mut h)?;
    h.put(b",\"stream_id\":");
    write_jcs(input.stream_id, &mut h)?;
    h.put(b"}");
    Ok(h.0.finalize().to_vec())
}

/// JCS of [`committed_payload`]: without copying the payload when its
/// salted fields are top-level ones (Tasklog's personal fields are) and
/// nothing in it is erased.
fn write_committed_payload(
    payload: &Value,
    salts: &Salts,
    out: &mut HashWriter,
) -> Result<(), CommitError> {
    let Value::Object(map) = payload else {
        return write_jcs(&*committed_payload(payload, salts)?, out);
    };
    if salts.keys().any(|p| top_level(p).is_none()) || has_erased_marker(payload) {
        return write_jcs(&*committed_payload(payload, salts)?, out);
    }
    exact_as_double(payload)?;
    let mut commits = BTreeMap::new();
    for (path, salt) in salts {
        let key = top_level(path).expect("checked above");
        let value = map
            .get(key)
            .ok_or_else(|| CommitError::MissingField(path.clone()))?;
        commits.insert(key, hex::encode(commitment(salt, value)?));
    }
    write_jcs(&WithCommitments { map, commits }, out)
}

/// The key a JSON Pointer names when it names a top-level one.
fn top_level(path: &str) -> Option<&str> {
    path.strip_prefix('/')
        .filter(|key| !key.contains(['/', '~']))
}

/// A payload object whose listed keys are written as their commitments.
struct WithCommitments<'a> {
    map: &'a serde_json::Map<String, Value>,
    commits: BTreeMap<&'a str, String>,
}

impl Serialize for WithCommitments<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = s.serialize_map(Some(self.map.len()))?;
        for (key, value) in self.map {
            match self.commits.get(key.as_str()) {
                Some(c) => out.serialize_entry(key, &Commit { commit: c })?,
                None => out.serialize_entry(key, value)?,
            }
        }
        out.end()
    }
}

#[derive(Serialize)]
struct Commit<'a> {
    #[serde(rename = "$commit")]
    commit: &'a str,
}

/// RFC 8785 canonical JSON, by the `canon-json` crate.
fn write_jcs<T: Serialize + ?Sized>(
    value: &T,
    out: &mut impl std::io::Write,
) -> Result<(), CommitError> {
    let mut ser = serde_json::Serializer::with_formatter(out, CanonicalFormatter::new());
    value
        .serialize(&mut ser)
        .map_err(|e| CommitError::NotCanonical(e.to_string()))
}

/// RFC 8785 canonical JSON of `value`, as text: what v2 hashes.
pub fn jcs_string<T: Serialize + ?Sized>(value: &T) -> Result<String, CommitError> {
    let mut out = Vec::new();
    write_jcs(value, &mut out)?;
    String::from_utf8(out).map_err(|e| CommitError::NotCanonical(e.to_string()))
}

/// Fresh random salts for the given personal fields of a payload (those it
/// holds; a field that is absent or null has nothing to hide).
pub fn fresh_salts(payload: &Value, personal: &[&str]) -> Salts {
    salts_with(payload, personal, |_| {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).expect("the OS random source is available");
        Salt(salt)
    })
}

/// Salts for the given personal fields of a payload (those present and not
/// null), each drawn by `draw` from its pointer.
pub fn salts_with(payload: &Value, personal: &[&str], mut draw: impl FnMut(&str) -> Salt) -> Salts {
    personal
        .iter()
        .filter(|path| payload.pointer(path).is_some_and(|v| !v.is_null()))
        .map(|path| (path.to_string(), draw(path)))
        .collect()
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

/// The content hash of a stored event, from its row, by its own scheme.
pub fn content_hash_of(e: &RecordedEvent) -> Result<Vec<u8>, CommitError> {
    let input = HashInput {
        event_id: e.event_id,
        stream_id: &e.stream_id,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        metadata: &e.metadata,
        payload: &e.payload,
    };
    match e.hash_scheme {
        HashScheme::V1 => Ok(content_hash(&input)),
        HashScheme::V2 => content_hash_v2(&input, &e.salts),
    }
}

/// Recomputes the hash of a stored event (`None`: its content cannot be
/// hashed by its scheme, e.g. a salt for a field it lacks).
pub fn recompute(e: &RecordedEvent) -> Option<Vec<u8>> {
    let content = content_hash_of(e).ok()?;
    Some(chain_hash(
        e.prev_hash.as_deref(),
        e.stream_version,
        &content,
    ))
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
        if recompute(e).as_ref() != Some(&e.hash) {
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

    /// The envelope as docs/audit.md states it: a JSON object of ten keys.
    fn envelope_by_the_recipe(input: &HashInput<'_>, payload: &Value) -> Value {
        let m = input.metadata;
        json!({
            "event_id": input.event_id,
            "stream_id": input.stream_id,
            "event_type": input.event_type,
            "schema_version": input.schema_version,
            "occurred_at": to_micros(m.occurred_at).to_rfc3339_opts(SecondsFormat::Micros, true),
            "org_id": m.org_id,
            "actor_id": m.actor_id,
            "correlation_id": m.correlation_id,
            "causation_id": m.causation_id,
            "payload": payload,
        })
    }

    /// The recipe as docs/audit.md states it: the envelope as a JSON object,
    /// written canonically, after the scheme's name.
    fn content_hash_by_the_recipe(input: &HashInput<'_>) -> Vec<u8> {
        let envelope = envelope_by_the_recipe(input, input.payload);
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

    /// v2's recipe with a second, independent RFC 8785 implementation: the
    /// envelope as a JSON object, the payload's salted fields replaced by
    /// `{"$commit": hex(sha256(salt || JCS(value)))}`.
    fn content_hash_v2_by_the_recipe(input: &HashInput<'_>, salts: &Salts) -> Vec<u8> {
        let jcs = |v: &Value| serde_json_canonicalizer::to_vec(v).unwrap();
        let mut payload = input.payload.clone();
        for (path, salt) in salts {
            let field = payload.pointer_mut(path).unwrap();
            let c = Sha256::new()
                .chain_update(salt.0)
                .chain_update(jcs(field))
                .finalize();
            *field = json!({ "$commit": hex::encode(c) });
        }
        let envelope = envelope_by_the_recipe(input, &payload);
        let mut text = b"tasklog-event-v2\n".to_vec();
        text.extend(jcs(&envelope));
        Sha256::digest(&text).to_vec()
    }

    fn tricky_payloads() -> Vec<Value> {
        vec![
            json!({}),
            json!({"float": 0.1, "neg": -1.5e-7, "big": 1e300, "whole": 3.0, "tiny": 5e-324}),
            json!({"max_safe": 9_007_199_254_740_991_u64, "min": -9_007_199_254_740_991_i64, "zero": 0}),
            json!({"esc": "quote \" backslash \\ tab \t nl \n nul \u{0} del \u{7f} slash / ls \u{2028}"}),
            json!({"text": "Grüße, 東京, emoji 🦀, RTL עברית", "ключ": ["é", {"ß": null}]}),
            // UTF-16 order (RFC 8785 3.2.3): U+1F600 sorts before U+E000 and U+FB01.
            json!({"\u{e000}": 1, "😀": 2, "\u{fb01}": 3, "a": 4, "é": 5, "e": 6}),
        ]
    }

    fn metadata() -> EventMetadata {
        EventMetadata {
            org_id: Uuid::now_v7(),
            actor_id: None,
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            occurred_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
        }
    }

    #[test]
    fn the_v2_content_hash_is_rfc_8785_for_floats_large_integers_escapes_and_non_ascii() {
        let metadata = metadata();
        for payload in &tricky_payloads() {
            let input = HashInput {
                event_id: Uuid::now_v7(),
                stream_id: "weird \"stream\" ü",
                event_type: "TaskCreated",
                schema_version: 3,
                metadata: &metadata,
                payload,
            };
            // Top-level fields, and a nested one (written by another path).
            let salts = fresh_salts(payload, &["/text", "/esc", "/float", "/absent", "/ключ/0"]);
            assert_eq!(
                content_hash_v2(&input, &salts).unwrap(),
                content_hash_v2_by_the_recipe(&input, &salts),
                "{payload}"
            );
        }
    }

    #[test]
    fn jcs_writes_numbers_and_orders_keys_as_rfc_8785_does() {
        let text = jcs_string(&json!({
            "\u{e000}": 1, "😀": 2, "a": [0.1, 1e300, 3.0, -1.5e-7, 1e21, 1e-7, -0.0]
        }))
        .unwrap();
        assert_eq!(
            text,
            "{\"a\":[0.1,1e+300,3,-1.5e-7,1e+21,1e-7,0],\"😀\":2,\"\u{e000}\":1}"
        );
    }

    #[test]
    fn a_v2_hash_commits_to_a_personal_field_through_its_salt() {
        let metadata = metadata();
        let payload = json!({"title": "Prüfbericht \"Q4\"", "number": 7});
        let input = |payload| HashInput {
            event_id: Uuid::from_u128(1),
            stream_id: "task-1",
            event_type: "TaskCreated",
            schema_version: 1,
            metadata: &metadata,
            payload,
        };
        let salts = fresh_salts(&payload, &["/title"]);
        assert_eq!(salts.len(), 1);
        let hash = content_hash_v2(&input(&payload), &salts).unwrap();
        // Another salt, another value: another hash.
        let other = fresh_salts(&payload, &["/title"]);
        assert_ne!(content_hash_v2(&input(&payload), &other).unwrap(), hash);
        let edited = json!({"title": "Prüfbericht \"Q5\"", "number": 7});
        assert_ne!(content_hash_v2(&input(&edited), &salts).unwrap(), hash);
        // Without its salt the field is hashed in the clear: no match either.
        assert_ne!(
            content_hash_v2(&input(&payload), &Salts::new()).unwrap(),
            hash
        );
        // A salt for a field the payload lacks cannot be hashed at all.
        let gone = json!({"number": 7});
        assert_eq!(
            content_hash_v2(&input(&gone), &salts),
            Err(CommitError::MissingField("/title".into()))
        );
    }

    #[test]
    fn erasing_a_v2_personal_field_and_its_salt_keeps_the_hash() {
        let metadata = metadata();
        let payload = json!({"body": "call Anna at 555-0100", "mentions": []});
        let salts = fresh_salts(&payload, &["/body"]);
        let input = |payload| HashInput {
            event_id: Uuid::from_u128(2),
            stream_id: "task-2",
            event_type: "CommentAdded",
            schema_version: 1,
            metadata: &metadata,
            payload,
        };
        let hash = content_hash_v2(&input(&payload), &salts).unwrap();
        let c = commitment(&salts["/body"], &payload["body"]).unwrap();
        let erased = json!({"body": {ERASED: hex::encode(c)}, "mentions": []});
        assert_eq!(
            content_hash_v2(&input(&erased), &Salts::new()).unwrap(),
            hash
        );
        // A wrong commitment left behind does not pass for an erasure.
        let forged = json!({"body": {ERASED: hex::encode([0u8; 32])}, "mentions": []});
        assert_ne!(
            content_hash_v2(&input(&forged), &Salts::new()).unwrap(),
            hash
        );
    }

    #[test]
    fn a_v2_hash_refuses_integers_beyond_2_to_the_53() {
        let metadata = metadata();
        for (payload, ok) in [
            (json!({"n": 9_007_199_254_740_992_u64}), true),
            (json!({"n": -9_007_199_254_740_992_i64}), true),
            (json!({"n": 9_007_199_254_740_993_u64}), false),
            (json!({"deep": [{"n": u64::MAX}]}), false),
            (json!({"n": 1e300}), true),
        ] {
            let input = HashInput {
                event_id: Uuid::from_u128(3),
                stream_id: "task-3",
                event_type: "TaskCreated",
                schema_version: 1,
                metadata: &metadata,
                payload: &payload,
            };
            let hashed = content_hash_v2(&input, &Salts::new());
            assert_eq!(hashed.is_ok(), ok, "{payload}: {hashed:?}");
        }
    }

    #[test]
    fn a_null_or_absent_personal_field_gets_no_salt() {
        let salts = fresh_salts(&json!({"a": null, "b": "x"}), &["/a", "/b", "/c"]);
        assert_eq!(salts.keys().collect::<Vec<_>>(), ["/b"]);
    }

    /// docs/audit.md's worked example of v2: these inputs give the values
    /// the page shows.
    #[test]
    fn the_documented_v2_example_is_what_the_writer_hashes() {
        let id =
            |n: &str| Uuid::parse_str(&format!("0192f5a0-0000-7000-8000-0000000000{n}")).unwrap();
        let metadata = EventMetadata {
            org_id: id("a1"),
            actor_id: Some(id("a2")),
            correlation_id: id("c3"),
            causation_id: None,
            occurred_at: "2026-11-30T12:00:00.123456Z".parse().unwrap(),
        };
        let payload = json!({ "title": "Prüfbericht \"Q4\"", "task_id": id("b1") });
        let stream_id = format!("task-{}", id("b1"));
        let input = HashInput {
            event_id: id("e1"),
            stream_id: &stream_id,
            event_type: "TaskRenamed",
            schema_version: 1,
            metadata: &metadata,
            payload: &payload,
        };
        let salt = Salt(std::array::from_fn(|i| i as u8));
        let salts = Salts::from([("/title".to_owned(), salt)]);
        let commit = hex::encode(commitment(&salt, &payload["title"]).unwrap());
        let committed = committed_payload(&payload, &salts).unwrap();
        let canonical = jcs_string(&json!({
            "event_id": input.event_id, "stream_id": stream_id, "event_type": "TaskRenamed",
            "schema_version": 1, "occurred_at": "2026-11-30T12:00:00.123456Z",
            "org_id": metadata.org_id, "actor_id": metadata.actor_id,
            "correlation_id": metadata.correlation_id, "causation_id": null,
            "payload": &*committed,
        }))
        .unwrap();
        let content = content_hash_v2(&input, &salts).unwrap();
        assert_eq!(
            content,
            Sha256::digest(format!("tasklog-event-v2\n{canonical}")).to_vec()
        );
        let hash = hex::encode(chain_hash(None, 1, &content));
        let docs = include_str!("../../docs/audit.md");
        for (what, value) in [
            ("commitment", commit),
            ("canonical envelope", canonical.clone()),
            ("its length", format!("{} bytes of UTF-8", canonical.len())),
            ("content hash", hex::encode(&content)),
            ("hash", hash),
        ] {
            assert!(
                docs.contains(&value),
                "docs/audit.md shows the {what}: {value}"
            );
        }
    }
}
