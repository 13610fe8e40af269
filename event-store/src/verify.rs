//! Verifying stored streams against their hash chain (each row by its own
//! scheme, `tasklog-event-v1` or `-v2`, see [`crate::hash`]), one stream at a time, in
//! constant memory: the rows of a stream go in by stored `stream_version`, the
//! findings come out naming the event that is wrong.
//!
//! Each row is first checked against its own stored hash:
//! `hash == chain_hash(prev_hash, stream_version, content_hash(row))`. A row
//! that passes is *in place*. A row that fails, but passes at another version,
//! was *moved* (its content is intact, its version is not the one it was
//! written with). A row that passes at no version was *altered* (its
//! envelope, payload or `prev_hash` changed, or it was forged). Then each row
//! in place is checked against the row stored before it: its `prev_hash` must
//! be that row's stored hash, and versions must be contiguous from 1.
//!
//! What this cannot see (seals will): a stream's tail removed, a whole stream
//! removed, a stream rewritten and re-hashed consistently.

use std::fmt;

use uuid::Uuid;

use crate::hash::{chain_hash, content_hash_of};
use crate::RecordedEvent;

/// One thing wrong with a stream, naming the event it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The event matches its stored hash at no version: its envelope (actor,
    /// time, ids, type), its payload or its `prev_hash` was edited after it
    /// was written, or its hash was forged.
    ContentChanged {
        stream: String,
        version: u64,
        event_id: Uuid,
    },
    /// `count` events from `event_id` on (at `version`) are intact but were
    /// written as versions `written_as..`: they were swapped or moved.
    Reordered {
        stream: String,
        version: u64,
        event_id: Uuid,
        written_as: u64,
        count: u64,
    },
    /// `count` events, versions `first_version..first_version + count`, are
    /// missing before `before` (now at `before_version`); the `renumbered`
    /// events from `before` on were moved down to close the gap (0: the gap
    /// was left).
    Removed {
        stream: String,
        first_version: u64,
        count: u64,
        before: Uuid,
        before_version: u64,
        renumbered: u64,
    },
    /// `event_id` at `version` was inserted into the stream: the
    /// `renumbered` events after it were written one version lower.
    Inserted {
        stream: String,
        version: u64,
        event_id: Uuid,
        renumbered: u64,
    },
    /// The event is intact, but does not link to the event stored before it
    /// (its `prev_hash` is not that event's hash): the event before it was
    /// replaced, or something was removed or inserted in a way the other
    /// findings do not name.
    ChainBroken {
        stream: String,
        version: u64,
        event_id: Uuid,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ContentChanged {
                stream,
                version,
                event_id,
            } => write!(
                f,
                "content changed: event {event_id} (stream {stream}, version {version}) does not match its stored hash"
            ),
            Self::Reordered {
                stream,
                version,
                event_id,
                written_as,
                count,
            } => write!(
                f,
                "reordered: event {event_id} (stream {stream}, version {version}) was written as version {written_as}{}",
                if *count > 1 {
                    format!(", and the {} events after it moved with it", count - 1)
                } else {
                    String::new()
                }
            ),
            Self::Removed {
                stream,
                first_version,
                count,
                before,
                before_version,
                renumbered,
            } => {
                let last = first_version + count - 1;
                let versions = if *count == 1 {
                    format!("version {first_version}")
                } else {
                    format!("versions {first_version}..={last}")
                };
                write!(
                    f,
                    "removed: stream {stream} lacks {versions}, before event {before} (version {before_version})"
                )?;
                if *renumbered > 0 {
                    write!(
                        f,
                        "; {renumbered} events from it on were renumbered to close the gap"
                    )?;
                }
                Ok(())
            }
            Self::Inserted {
                stream,
                version,
                event_id,
                renumbered,
            } => write!(
                f,
                "inserted: event {event_id} (stream {stream}, version {version}) was not written there; \
                 the {renumbered} events after it were renumbered"
            ),
            Self::ChainBroken {
                stream,
                version,
                event_id,
            } => write!(
                f,
                "chain broken: event {event_id} (stream {stream}, version {version}) does not link to the event before it"
            ),
        }
    }
}

/// Checks one stream whose events arrive in stored version order.
pub struct StreamVerifier {
    stream: String,
    /// The highest stored version: moved events are looked for up to one above.
    last_version: u64,
    prev: Option<Row>,
    run: Option<Run>,
    findings: Vec<Finding>,
    events: u64,
}

/// What is kept of the previous row.
struct Row {
    version: u64,
    event_id: Uuid,
    hash: Vec<u8>,
    state: State,
    /// Index of its `ContentChanged` finding, if it has one.
    finding: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InPlace,
    /// Intact when hashed at `version + offset`.
    Moved(i64),
    Altered,
}

/// Consecutive moved rows with the same offset, each linking to the one before.
struct Run {
    offset: i64,
    first_event: Uuid,
    first_version: u64,
    count: u64,
    /// The row stored just before the run: not moved itself, and its finding.
    before: Option<(Uuid, u64, Option<usize>)>,
}

impl StreamVerifier {
    /// `last_version`: the stream's highest stored version.
    pub fn new(stream: impl Into<String>, last_version: u64) -> Self {
        Self {
            stream: stream.into(),
            last_version,
            prev: None,
            run: None,
            findings: Vec::new(),
            events: 0,
        }
    }

    /// Events seen so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The stream's next event by stored version.
    pub fn push(&mut self, e: &RecordedEvent) {
        self.events += 1;
        let version = e.stream_version;
        let state = self.state_of(e);
        let links = e.prev_hash.as_deref() == self.prev.as_ref().map(|p| p.hash.as_slice());

        match state {
            State::Moved(offset)
                if self
                    .run
                    .as_ref()
                    .is_some_and(|r| r.offset == offset && links) =>
            {
                if let Some(run) = &mut self.run {
                    run.count += 1;
                }
            }
            State::Moved(offset) => {
                self.close_run(false);
                self.run = Some(Run {
                    offset,
                    first_event: e.event_id,
                    first_version: version,
                    count: 1,
                    before: self
                        .prev
                        .as_ref()
                        .filter(|p| !matches!(p.state, State::Moved(_)))
                        .map(|p| (p.event_id, p.version, p.finding)),
                });
            }
            _ => self.close_run(false),
        }

        let expected = self.prev.as_ref().map_or(1, |p| p.version + 1);
        let gap = version > expected;
        if gap {
            self.findings.push(Finding::Removed {
                stream: self.stream.clone(),
                first_version: expected,
                count: version - expected,
                before: e.event_id,
                before_version: version,
                renumbered: 0,
            });
        }

        let mut finding = None;
        match state {
            State::Altered => {
                finding = Some(self.findings.len());
                self.findings.push(Finding::ContentChanged {
                    stream: self.stream.clone(),
                    version,
                    event_id: e.event_id,
                });
            }
            // A moved event before this one explains a broken link, and so
            // does a gap.
            State::InPlace
                if !gap
                    && !links
                    && !self
                        .prev
                        .as_ref()
                        .is_some_and(|p| matches!(p.state, State::Moved(_))) =>
            {
                self.findings.push(Finding::ChainBroken {
                    stream: self.stream.clone(),
                    version,
                    event_id: e.event_id,
                });
            }
            _ => {}
        }

        self.prev = Some(Row {
            version,
            event_id: e.event_id,
            hash: e.hash.clone(),
            state,
            finding,
        });
    }

    /// The findings, once the stream's last event was pushed.
    pub fn finish(mut self) -> Vec<Finding> {
        self.close_run(true);
        self.findings
    }

    /// In place, moved (and by how much) or altered.
    fn state_of(&self, e: &RecordedEvent) -> State {
        let Ok(content) = content_hash_of(e) else {
            // Its scheme cannot hash it (a salt for a field it lacks).
            return State::Altered;
        };
        let intact_at = |v: u64| chain_hash(e.prev_hash.as_deref(), v, &content) == e.hash;
        let version = e.stream_version;
        if intact_at(version) {
            return State::InPlace;
        }
        // The offset of a run in progress first, then every version: moved
        // events are rare, their search may cost a stream's length.
        let predicted = self
            .run
            .as_ref()
            .and_then(|r| version.checked_add_signed(r.offset));
        predicted
            .into_iter()
            .chain(1..=self.last_version.max(version) + 1)
            .find(|&v| v != version && intact_at(v))
            .map_or(State::Altered, |v| State::Moved(v as i64 - version as i64))
    }

    /// Ends a run of moved events: the rest of the stream renumbered one up
    /// (an insertion before it) or down (a removal), or events reordered.
    fn close_run(&mut self, at_end: bool) {
        let Some(run) = self.run.take() else {
            return;
        };
        let finding = match (at_end, run.before, run.offset) {
            (true, Some((event_id, version, finding)), -1) => {
                let inserted = Finding::Inserted {
                    stream: self.stream.clone(),
                    version,
                    event_id,
                    renumbered: run.count,
                };
                if let Some(i) = finding {
                    self.findings[i] = inserted;
                    return;
                }
                inserted
            }
            (true, Some(_), offset) if offset > 0 => Finding::Removed {
                stream: self.stream.clone(),
                first_version: run.first_version,
                count: offset as u64,
                before: run.first_event,
                before_version: run.first_version,
                renumbered: run.count,
            },
            _ => Finding::Reordered {
                stream: self.stream.clone(),
                version: run.first_version,
                event_id: run.first_event,
                written_as: run.first_version.saturating_add_signed(run.offset),
                count: run.count,
            },
        };
        self.findings.push(finding);
    }
}

/// Verifies one whole stream, its events in stored version order.
pub fn verify_events(events: &[RecordedEvent]) -> Vec<Finding> {
    let Some(last) = events.last() else {
        return Vec::new();
    };
    let mut v = StreamVerifier::new(last.stream_id.clone(), last.stream_version);
    for e in events {
        v.push(e);
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;
    use crate::hash::recompute;
    use crate::{EventMetadata, LogPosition};

    const STREAM: &str = "task-0191b2c4-0000-7000-8000-000000000001";

    /// A stream of `n` events as the store writes them.
    fn written(n: u64) -> Vec<RecordedEvent> {
        let mut events: Vec<RecordedEvent> = Vec::new();
        for v in 1..=n {
            let mut e = RecordedEvent {
                event_id: Uuid::from_u128(v as u128),
                stream_id: STREAM.into(),
                stream_version: v,
                position: LogPosition {
                    commit: v,
                    event: v,
                },
                event_type: "TaskRenamed".into(),
                schema_version: 1,
                recorded_at: at(v),
                metadata: EventMetadata {
                    org_id: Uuid::from_u128(7),
                    actor_id: Some(Uuid::from_u128(8)),
                    correlation_id: Uuid::from_u128(100 + v as u128),
                    causation_id: None,
                    occurred_at: at(v),
                },
                payload: json!({ "title": format!("title {v}") }),
                prev_hash: events.last().map(|p| p.hash.clone()),
                hash: Vec::new(),
                hash_scheme: crate::hash::HashScheme::V1,
                salts: Default::default(),
            };
            e.hash = recompute(&e).unwrap();
            events.push(e);
        }
        events
    }

    fn at(v: u64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + v as i64, 0).unwrap()
    }

    fn id(v: u64) -> Uuid {
        Uuid::from_u128(v as u128)
    }

    /// The stored event of original version `v`.
    fn original(events: &[RecordedEvent], v: u64) -> usize {
        events.iter().position(|e| e.event_id == id(v)).unwrap()
    }

    #[test]
    fn an_untouched_stream_has_no_findings() {
        assert_eq!(verify_events(&written(6)), []);
    }

    #[test]
    fn an_edited_payload_names_the_edited_event() {
        let mut events = written(6);
        events[2].payload = json!({ "title": "something else" });
        assert_eq!(
            verify_events(&events),
            [Finding::ContentChanged {
                stream: STREAM.into(),
                version: 3,
                event_id: id(3),
            }]
        );
    }

    #[test]
    fn an_edited_actor_or_time_names_the_edited_event() {
        let mut actor = written(6);
        actor[3].metadata.actor_id = Some(Uuid::from_u128(9));
        let mut time = written(6);
        time[3].metadata.occurred_at = at(1);
        for events in [actor, time] {
            assert_eq!(
                verify_events(&events),
                [Finding::ContentChanged {
                    stream: STREAM.into(),
                    version: 4,
                    event_id: id(4),
                }]
            );
        }
    }

    #[test]
    fn an_event_removed_mid_stream_is_named_by_its_version_and_the_event_after_the_gap() {
        let mut events = written(6);
        events.remove(2);
        assert_eq!(
            verify_events(&events),
            [Finding::Removed {
                stream: STREAM.into(),
                first_version: 3,
                count: 1,
                before: id(4),
                before_version: 4,
                renumbered: 0,
            }]
        );
    }

    #[test]
    fn the_first_events_removed_leave_a_gap_from_version_one() {
        let mut events = written(6);
        events.drain(0..2);
        assert_eq!(
            verify_events(&events),
            [Finding::Removed {
                stream: STREAM.into(),
                first_version: 1,
                count: 2,
                before: id(3),
                before_version: 3,
                renumbered: 0,
            }]
        );
    }

    #[test]
    fn an_event_removed_and_the_rest_renumbered_is_one_removal() {
        let mut events = written(6);
        events.remove(2);
        for e in &mut events[2..] {
            e.stream_version -= 1;
        }
        assert_eq!(
            verify_events(&events),
            [Finding::Removed {
                stream: STREAM.into(),
                first_version: 3,
                count: 1,
                before: id(4),
                before_version: 3,
                renumbered: 3,
            }]
        );
    }

    #[test]
    fn two_swapped_events_are_each_named_with_the_version_they_were_written_as() {
        for (a, b) in [(2, 3), (2, 5), (5, 6), (1, 6)] {
            let mut events = written(6);
            events[a as usize - 1].stream_version = b;
            events[b as usize - 1].stream_version = a;
            events.sort_by_key(|e| e.stream_version);
            assert_eq!(
                verify_events(&events),
                [
                    Finding::Reordered {
                        stream: STREAM.into(),
                        version: a,
                        event_id: id(b),
                        written_as: b,
                        count: 1,
                    },
                    Finding::Reordered {
                        stream: STREAM.into(),
                        version: b,
                        event_id: id(a),
                        written_as: a,
                        count: 1,
                    }
                ],
                "versions {a} and {b} swapped"
            );
        }
    }

    /// A forger's event at `version`, linked to the event before it, with
    /// `hash` for a hash; the events from `version` on move one up.
    fn forge(events: &mut Vec<RecordedEvent>, version: u64, hash: Option<Vec<u8>>) -> Uuid {
        let i = original(events, version);
        let mut forged = events[i].clone();
        forged.event_id = Uuid::from_u128(666);
        forged.payload = json!({ "title": "forged" });
        forged.metadata.actor_id = Some(Uuid::from_u128(13));
        forged.hash = hash.unwrap_or_else(|| recompute(&forged).unwrap());
        for e in &mut events[i..] {
            e.stream_version += 1;
        }
        events.insert(i, forged);
        Uuid::from_u128(666)
    }

    #[test]
    fn a_forged_event_inserted_mid_stream_is_named_whatever_its_hash() {
        for hash in [Some(vec![0xab; 32]), None] {
            let mut events = written(6);
            let forged = forge(&mut events, 3, hash.clone());
            assert_eq!(
                verify_events(&events),
                [Finding::Inserted {
                    stream: STREAM.into(),
                    version: 3,
                    event_id: forged,
                    renumbered: 4,
                }],
                "a forged hash {hash:?}"
            );
        }
    }

    #[test]
    fn a_replaced_hash_breaks_the_link_of_the_next_event() {
        let mut events = written(6);
        events[2].payload = json!({ "title": "something else" });
        events[2].hash = recompute(&events[2]).unwrap();
        assert_eq!(
            verify_events(&events),
            [Finding::ChainBroken {
                stream: STREAM.into(),
                version: 4,
                event_id: id(4),
            }]
        );
    }

    #[test]
    fn a_first_event_rewritten_to_link_to_something_breaks_its_chain_and_the_next() {
        let mut events = written(3);
        events[0].prev_hash = Some(vec![0; 32]);
        events[0].hash = recompute(&events[0]).unwrap();
        assert_eq!(
            verify_events(&events),
            [1, 2].map(|v| Finding::ChainBroken {
                stream: STREAM.into(),
                version: v,
                event_id: id(v),
            })
        );
    }

    #[test]
    fn each_finding_reads_as_one_line_naming_the_event() {
        let line = Finding::ContentChanged {
            stream: STREAM.into(),
            version: 3,
            event_id: id(3),
        }
        .to_string();
        assert!(
            line.contains(&id(3).to_string()) && !line.contains('\n'),
            "{line}"
        );
    }
}
