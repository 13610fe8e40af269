//! The export format `tasklog-export-v1`: an organization's history as
//! NDJSON (one JSON object per line), with everything needed to verify it
//! offline, and the verifier of such a file.
//!
//! A file is a [`ExportLine::Header`] line, the organization's events as
//! [`ExportLine::Event`] lines grouped by stream (streams in stream id order,
//! each stream's events by `stream_version`), and a last
//! [`ExportLine::Trailer`] line with the counts. Each line says what it is in
//! its `"line"` field. The format is described field by field in
//! `docs/audit.md`.
//!
//! [`ExportVerifier`] checks a file line by line: each stream's events go
//! through the same [`StreamVerifier`] as the database's rows (content hash
//! recomputed, chain, versions), and the file itself must be whole (a header
//! first, a trailer last whose counts match, every line readable, every event
//! of the header's organization).

use std::fmt;
use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hash::{HashScheme, Salts};
use crate::verify::{Finding, StreamVerifier};
use crate::{EventMetadata, LogPosition, RecordedEvent};

/// The `format` of the header line: v2 names each event's hash scheme and
/// carries its salts.
pub const FORMAT: &str = "tasklog-export-v2";
/// Exports made before the v2 scheme: every event is `tasklog-event-v1`,
/// which the header says once.
pub const FORMAT_V1: &str = "tasklog-export-v1";

/// One line of an export file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum ExportLine {
    Header(ExportHeader),
    Event(Box<ExportedEvent>),
    Trailer(ExportTrailer),
}

/// The first line: what the file is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// [`FORMAT`].
    pub format: String,
    /// The organization whose events follow.
    pub org: Uuid,
    /// When the export's snapshot of the store was taken.
    #[serde(with = "micros")]
    pub exported_at: DateTime<Utc>,
    /// Only in [`FORMAT_V1`] files: `tasklog-event-v1`, the scheme of
    /// every event in them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_scheme: Option<String>,
}

impl ExportHeader {
    pub fn new(org: Uuid, exported_at: DateTime<Utc>) -> Self {
        Self {
            format: FORMAT.into(),
            org,
            exported_at,
            hash_scheme: None,
        }
    }
}

/// The last line: what the file holds, so that a cut file shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportTrailer {
    pub streams: u64,
    pub events: u64,
}

/// One stored event with its whole envelope and hashes, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedEvent {
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_version: u64,
    /// Its place in the global log, `"{commit}.{event}"` (PostgreSQL: the
    /// transaction id and `global_position`).
    pub position: LogPosition,
    pub event_type: String,
    pub schema_version: u16,
    #[serde(with = "micros")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "micros")]
    pub recorded_at: DateTime<Utc>,
    pub org_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub payload: serde_json::Value,
    /// The stream's previous event's hash, lowercase hex; `null` for version 1.
    #[serde(with = "crate::hex_opt")]
    pub prev_hash: Option<Vec<u8>>,
    /// Lowercase hex.
    #[serde(with = "crate::hex_bytes")]
    pub hash: Vec<u8>,
    /// How `hash` was computed (absent in [`FORMAT_V1`] files: v1).
    #[serde(default)]
    pub hash_scheme: HashScheme,
    /// The salts of the personal fields a v2 hash commits to, by JSON
    /// Pointer (absent when there are none).
    #[serde(default, skip_serializing_if = "Salts::is_empty")]
    pub salts: Salts,
}

impl From<RecordedEvent> for ExportedEvent {
    fn from(e: RecordedEvent) -> Self {
        Self {
            event_id: e.event_id,
            stream_id: e.stream_id,
            stream_version: e.stream_version,
            position: e.position,
            event_type: e.event_type,
            schema_version: e.schema_version,
            occurred_at: e.metadata.occurred_at,
            recorded_at: e.recorded_at,
            org_id: e.metadata.org_id,
            actor_id: e.metadata.actor_id,
            correlation_id: e.metadata.correlation_id,
            causation_id: e.metadata.causation_id,
            payload: e.payload,
            prev_hash: e.prev_hash,
            hash: e.hash,
            hash_scheme: e.hash_scheme,
            salts: e.salts,
        }
    }
}

impl From<ExportedEvent> for RecordedEvent {
    fn from(e: ExportedEvent) -> Self {
        Self {
            event_id: e.event_id,
            stream_id: e.stream_id,
            stream_version: e.stream_version,
            position: e.position,
            event_type: e.event_type,
            schema_version: e.schema_version,
            recorded_at: e.recorded_at,
            metadata: EventMetadata {
                org_id: e.org_id,
                actor_id: e.actor_id,
                correlation_id: e.correlation_id,
                causation_id: e.causation_id,
                occurred_at: e.occurred_at,
            },
            payload: e.payload,
            prev_hash: e.prev_hash,
            hash: e.hash,
            hash_scheme: e.hash_scheme,
            salts: e.salts,
        }
    }
}

/// Times as stored: UTC, RFC 3339 with exactly six fractional digits and `Z`.
pub(crate) mod micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Something wrong with an export file, naming where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportFinding {
    /// A stream's events do not verify (see [`Finding`]).
    Stream(Finding),
    /// The file does not start with a header line.
    NoHeader,
    /// The file ends without a trailer line: it was cut (or its end removed).
    NoTrailer { lines: u64 },
    /// The trailer's counts are not what the file holds.
    CountsDiffer {
        trailer: ExportTrailer,
        found: ExportTrailer,
    },
    /// A line that is not a line of the format (a cut or edited line).
    Unreadable { line: u64, error: String },
    /// A header after the first line, or anything after the trailer.
    OutOfPlace { line: u64 },
    /// An event of another organization than the header's.
    OtherOrganization {
        line: u64,
        event_id: Uuid,
        org_id: Uuid,
    },
}

impl From<Finding> for ExportFinding {
    fn from(f: Finding) -> Self {
        Self::Stream(f)
    }
}

impl fmt::Display for ExportFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream(finding) => finding.fmt(f),
            Self::NoHeader => f.write_str("no header: the first line is not an export header"),
            Self::NoTrailer { lines } => write!(
                f,
                "truncated: the file ends after line {lines} without its trailer line"
            ),
            Self::CountsDiffer { trailer, found } => write!(
                f,
                "counts differ: the trailer announces {} streams, {} events; the file holds {} streams, {} events",
                trailer.streams, trailer.events, found.streams, found.events
            ),
            Self::Unreadable { line, error } => {
                write!(f, "unreadable: line {line} is not an export line ({error})")
            }
            Self::OutOfPlace { line } => write!(
                f,
                "out of place: line {line} is a header after the first line, or follows the trailer"
            ),
            Self::OtherOrganization {
                line,
                event_id,
                org_id,
            } => write!(
                f,
                "other organization: event {event_id} (line {line}) is of organization {org_id}, not the header's"
            ),
        }
    }
}

/// Why a file could not be checked at all (as opposed to a finding).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the export could not be read")]
    Io(#[from] std::io::Error),
    #[error("the export's format is {0:?}; this verifier knows {FORMAT:?} and {FORMAT_V1:?}")]
    UnknownFormat(String),
    #[error("the export's hash scheme is {0:?}; a {FORMAT_V1:?} file holds only tasklog-event-v1")]
    UnknownHashScheme(String),
}

/// What a verification went over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub streams: u64,
    pub events: u64,
    pub findings: u64,
}

/// Checks an export file pushed line by line. Holds one stream's events at a
/// time: [`StreamVerifier`] needs a stream's last version before its first
/// event, which a file read once only tells at the stream's end.
#[derive(Default)]
pub struct ExportVerifier {
    lines: u64,
    org: Option<Uuid>,
    trailer: Option<ExportTrailer>,
    stream: Vec<RecordedEvent>,
    found: ExportTrailer,
    findings: u64,
}

impl ExportVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The file's next line (without its line break).
    pub fn push_line(
        &mut self,
        text: &str,
        on_finding: &mut impl FnMut(&ExportFinding),
    ) -> Result<(), ExportError> {
        self.lines += 1;
        let line = self.lines;
        let parsed = serde_json::from_str::<ExportLine>(text);
        if line == 1 && !matches!(parsed, Ok(ExportLine::Header(_))) {
            self.report(ExportFinding::NoHeader, on_finding);
        }
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                let error = e.to_string();
                self.report(ExportFinding::Unreadable { line, error }, on_finding);
                return Ok(());
            }
        };
        if self.trailer.is_some() {
            self.report(ExportFinding::OutOfPlace { line }, on_finding);
            return Ok(());
        }
        match parsed {
            ExportLine::Header(header) if line == 1 => {
                let v1 = HashScheme::V1.name();
                match (header.format.as_str(), header.hash_scheme.as_deref()) {
                    (FORMAT, None) => {}
                    (FORMAT_V1, Some(scheme)) if scheme == v1 => {}
                    (FORMAT | FORMAT_V1, Some(scheme)) => {
                        return Err(ExportError::UnknownHashScheme(scheme.to_owned()))
                    }
                    _ => return Err(ExportError::UnknownFormat(header.format)),
                }
                self.org = Some(header.org);
            }
            ExportLine::Header(_) => self.report(ExportFinding::OutOfPlace { line }, on_finding),
            ExportLine::Event(event) => {
                if self.org.is_some_and(|org| org != event.org_id) {
                    let finding = ExportFinding::OtherOrganization {
                        line,
                        event_id: event.event_id,
                        org_id: event.org_id,
                    };
                    self.report(finding, on_finding);
                }
                if self
                    .stream
                    .last()
                    .is_some_and(|last| last.stream_id != event.stream_id)
                {
                    self.finish_stream(on_finding);
                }
                self.found.events += 1;
                self.stream.push((*event).into());
            }
            ExportLine::Trailer(trailer) => {
                self.finish_stream(on_finding);
                self.trailer = Some(trailer);
            }
        }
        Ok(())
    }

    /// After the file's last line.
    pub fn finish(mut self, on_finding: &mut impl FnMut(&ExportFinding)) -> ExportSummary {
        self.finish_stream(on_finding);
        match self.trailer {
            None => {
                let lines = self.lines;
                self.report(ExportFinding::NoTrailer { lines }, on_finding);
            }
            Some(trailer) if trailer != self.found => {
                let found = self.found;
                self.report(ExportFinding::CountsDiffer { trailer, found }, on_finding);
            }
            Some(_) => {}
        }
        ExportSummary {
            streams: self.found.streams,
            events: self.found.events,
            findings: self.findings,
        }
    }

    fn finish_stream(&mut self, on_finding: &mut impl FnMut(&ExportFinding)) {
        let Some(last) = self.stream.last() else {
            return;
        };
        let mut verifier = StreamVerifier::new(last.stream_id.clone(), last.stream_version);
        for e in self.stream.drain(..) {
            verifier.push(&e);
        }
        self.found.streams += 1;
        for finding in verifier.finish() {
            self.report(finding.into(), on_finding);
        }
    }

    fn report(&mut self, finding: ExportFinding, on_finding: &mut impl FnMut(&ExportFinding)) {
        self.findings += 1;
        on_finding(&finding);
    }
}

/// Verifies a whole export read from `reader`, calling `on_finding` for each
/// finding as it is made.
pub fn verify_export(
    reader: impl BufRead,
    mut on_finding: impl FnMut(&ExportFinding),
) -> Result<ExportSummary, ExportError> {
    let mut verifier = ExportVerifier::new();
    for line in reader.lines() {
        verifier.push_line(&line?, &mut on_finding)?;
    }
    Ok(verifier.finish(&mut on_finding))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hash::{chain_hash, content_hash, HashInput};

    const ORG: Uuid = Uuid::from_u128(0xa1);

    /// A stream of `n` correctly chained events.
    fn stream(name: &str, n: u64) -> Vec<ExportedEvent> {
        let mut prev: Option<Vec<u8>> = None;
        (1..=n)
            .map(|v| {
                let metadata = EventMetadata {
                    org_id: ORG,
                    actor_id: Some(Uuid::from_u128(0xa2)),
                    correlation_id: Uuid::from_u128(0xc0 + v as u128),
                    causation_id: None,
                    occurred_at: "2026-11-30T12:00:00.123456Z".parse().unwrap(),
                };
                let event_id = Uuid::from_u128(0xe000 + v as u128);
                let payload = json!({ "title": format!("Prüfbericht {v}") });
                let content = content_hash(&HashInput {
                    event_id,
                    stream_id: name,
                    event_type: "TaskRenamed",
                    schema_version: 1,
                    metadata: &metadata,
                    payload: &payload,
                });
                let hash = chain_hash(prev.as_deref(), v, &content);
                let e = RecordedEvent {
                    event_id,
                    stream_id: name.into(),
                    stream_version: v,
                    position: LogPosition {
                        commit: 7,
                        event: v,
                    },
                    event_type: "TaskRenamed".into(),
                    schema_version: 1,
                    recorded_at: metadata.occurred_at,
                    metadata,
                    payload,
                    prev_hash: prev.replace(hash.clone()),
                    hash,
                    hash_scheme: HashScheme::V1,
                    salts: Salts::new(),
                };
                e.into()
            })
            .collect()
    }

    fn file(events: &[ExportedEvent], trailer: Option<ExportTrailer>) -> Vec<String> {
        let header = ExportLine::Header(ExportHeader::new(
            ORG,
            "2026-12-01T00:00:00Z".parse().unwrap(),
        ));
        std::iter::once(header)
            .chain(
                events
                    .iter()
                    .cloned()
                    .map(|e| ExportLine::Event(Box::new(e))),
            )
            .chain(trailer.map(ExportLine::Trailer))
            .map(|l| serde_json::to_string(&l).unwrap())
            .collect()
    }

    fn check(lines: &[String]) -> (Vec<ExportFinding>, ExportSummary) {
        let mut findings = Vec::new();
        let summary =
            verify_export(lines.join("\n").as_bytes(), |f| findings.push(f.clone())).unwrap();
        (findings, summary)
    }

    fn two_streams() -> Vec<ExportedEvent> {
        let mut events = stream("task-a", 3);
        events.extend(stream("task-b", 2));
        events
    }

    const WHOLE: ExportTrailer = ExportTrailer {
        streams: 2,
        events: 5,
    };

    #[test]
    fn an_event_line_keeps_the_stored_times_and_hex_hashes() {
        let line = serde_json::to_value(ExportLine::Event(Box::new(stream("task-a", 2).remove(1))))
            .unwrap();
        assert_eq!(line["line"], "event");
        assert_eq!(line["occurred_at"], "2026-11-30T12:00:00.123456Z");
        assert_eq!(line["position"], "7.2");
        assert_eq!(line["prev_hash"].as_str().unwrap().len(), 64);
        assert!(line["hash"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn a_whole_export_verifies_without_findings() {
        let (findings, summary) = check(&file(&two_streams(), Some(WHOLE)));
        assert_eq!(findings, []);
        assert_eq!(
            summary,
            ExportSummary {
                streams: 2,
                events: 5,
                findings: 0
            }
        );
    }

    #[test]
    fn an_edited_payload_is_named_as_changed_content() {
        let mut events = two_streams();
        events[1].payload = json!({ "title": "edited" });
        let (findings, _) = check(&file(&events, Some(WHOLE)));
        assert_eq!(
            findings,
            [ExportFinding::Stream(Finding::ContentChanged {
                stream: "task-a".into(),
                version: 2,
                event_id: events[1].event_id,
            })]
        );
    }

    #[test]
    fn a_file_without_its_trailer_is_truncated() {
        let (findings, _) = check(&file(&two_streams(), None));
        assert_eq!(findings, [ExportFinding::NoTrailer { lines: 6 }]);
    }

    #[test]
    fn a_line_cut_in_the_middle_is_unreadable_and_the_file_truncated() {
        let mut lines = file(&two_streams(), None);
        let last = lines.last_mut().unwrap();
        last.truncate(last.len() / 2);
        let (findings, summary) = check(&lines);
        assert!(matches!(
            findings[0],
            ExportFinding::Unreadable { line: 6, .. }
        ));
        assert_eq!(findings[1], ExportFinding::NoTrailer { lines: 6 });
        assert_eq!(summary.events, 4);
    }

    #[test]
    fn a_removed_line_is_named_and_the_counts_differ() {
        let mut events = two_streams();
        let after = events.remove(1);
        let (findings, _) = check(&file(&events, Some(WHOLE)));
        assert_eq!(
            findings,
            [
                ExportFinding::Stream(Finding::Removed {
                    stream: "task-a".into(),
                    first_version: 2,
                    count: 1,
                    before: events[1].event_id,
                    before_version: 3,
                    renumbered: 0,
                }),
                ExportFinding::CountsDiffer {
                    trailer: WHOLE,
                    found: ExportTrailer {
                        streams: 2,
                        events: 4
                    },
                },
            ],
            "{after:?} removed"
        );
    }

    #[test]
    fn an_event_of_another_organization_is_named() {
        let mut events = two_streams();
        events[4].org_id = Uuid::from_u128(0xb1);
        let (findings, _) = check(&file(&events, Some(WHOLE)));
        assert_eq!(
            findings[0],
            ExportFinding::OtherOrganization {
                line: 6,
                event_id: events[4].event_id,
                org_id: Uuid::from_u128(0xb1),
            }
        );
    }

    #[test]
    fn a_file_of_another_format_cannot_be_checked() {
        let mut lines = file(&two_streams(), Some(WHOLE));
        lines[0] = lines[0].replace(FORMAT, "tasklog-export-v9");
        let result = verify_export(lines.join("\n").as_bytes(), |_| {});
        assert!(matches!(result, Err(ExportError::UnknownFormat(_))));
    }
}
