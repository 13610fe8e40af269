//! The auditor API's query parameters and path segments, checked at the
//! edge: a value that names nothing the log can hold (an unknown kind or
//! event type, a stream id of another shape, a time out of range) is
//! refused before the database is asked.

use chrono::{DateTime, Utc};
use tasklog_domain::{
    all_event_types, Aggregate, AuditTrail, Inbox, Organization, Project, TagCatalog, Task,
};
use tasklog_event_store::LogPosition;
use tasklog_http::query::{FromParam, ParamTime};
use tasklog_http::{query_param, ApiError};
use uuid::Uuid;

/// Every stream category (aggregate kind) of the log.
pub const KINDS: [&str; 6] = [
    Organization::CATEGORY,
    Project::CATEGORY,
    Task::CATEGORY,
    TagCatalog::CATEGORY,
    Inbox::CATEGORY,
    AuditTrail::CATEGORY,
];

/// An aggregate kind: the category of its streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind(pub &'static str);

impl FromParam for Kind {
    fn expected() -> String {
        format!("must be one of {}", KINDS.join(", "))
    }
    fn from_param(value: &str) -> Option<Self> {
        KINDS.iter().copied().find(|k| *k == value).map(Self)
    }
}
query_param!(Kind, { "type": "string", "enum": KINDS });

/// An event type the domain publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventType(pub &'static str);

impl FromParam for EventType {
    fn expected() -> String {
        "must be an event type (see schemas/events)".into()
    }
    fn from_param(value: &str) -> Option<Self> {
        all_event_types()
            .into_iter()
            .find(|t| *t == value)
            .map(Self)
    }
}
query_param!(EventType, { "type": "string", "enum": all_event_types() });

/// A stream id, `<kind>-<uuid>` (the uuid lowercase and hyphenated, as
/// streams are named).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamId(pub String);

/// What a stream id looks like, for the documents.
pub const STREAM_PATTERN: &str =
    "^(org|project|task|tags|inbox|audit)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

impl StreamId {
    pub fn parse(value: &str) -> Option<Self> {
        let (kind, id) = value.split_once('-')?;
        let canonical = Uuid::try_parse(id).ok()?.hyphenated().to_string() == id;
        (KINDS.contains(&kind) && canonical).then(|| Self(value.to_owned()))
    }

    /// Its kind (the category).
    pub fn kind(&self) -> &str {
        self.0.split_once('-').map_or("", |(kind, _)| kind)
    }
}

impl FromParam for StreamId {
    fn expected() -> String {
        format!(
            "must be a stream id, <kind>-<uuid> with a kind of {}",
            KINDS.join(", ")
        )
    }
    fn from_param(value: &str) -> Option<Self> {
        Self::parse(value)
    }
}
query_param!(StreamId, {
    "type": "string", "pattern": STREAM_PATTERN, "maxLength": 44,
    "example": "task-0192f5a0-0000-7000-8000-0000000000b1"
});

/// A point in a stream's history: a time (RFC 3339) or a log position
/// (`<commit>.<event>`, as events and consistency tokens show them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Time(DateTime<Utc>),
    Position(LogPosition),
}

const POSITION_PATTERN: &str = "^[0-9]{1,19}\\.[0-9]{1,19}$";

impl FromParam for Point {
    fn expected() -> String {
        "must be a log position <commit>.<event> or an RFC 3339 time with an offset, with a year from 0001 to 9999".into()
    }
    fn from_param(value: &str) -> Option<Self> {
        let digits = |s: &str| (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        match value.split_once('.') {
            Some((commit, event)) if digits(commit) && digits(event) => {
                value.parse().ok().map(Self::Position)
            }
            _ => ParamTime::from_param(value).map(|ParamTime(t)| Self::Time(t)),
        }
    }
}
query_param!(Point, {
    "anyOf": [
        { "type": "string", "format": "date-time" },
        { "type": "string", "pattern": POSITION_PATTERN }
    ],
    "example": "2026-11-30T12:00:00Z"
});

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Time(t) => f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            Self::Position(p) => p.fmt(f),
        }
    }
}

/// The size of a signed tree head: 1 to PostgreSQL's `bigint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeSize(pub u64);

impl FromParam for TreeSize {
    fn expected() -> String {
        "must be a tree size, a whole number from 1 to 9223372036854775807".into()
    }
    fn from_param(value: &str) -> Option<Self> {
        Some(value)
            .filter(|v| (1..=19).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| (1..=i64::MAX as u64).contains(n))
            .map(Self)
    }
}
query_param!(TreeSize, { "type": "integer", "minimum": 1, "maximum": 9223372036854775807_i64, "example": 1000 });

/// A log position alone, `<commit>.<event>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position(pub LogPosition);

impl FromParam for Position {
    fn expected() -> String {
        "must be a log position <commit>.<event>".into()
    }
    fn from_param(value: &str) -> Option<Self> {
        match Point::from_param(value) {
            Some(Point::Position(p)) => Some(Self(p)),
            _ => None,
        }
    }
}
query_param!(Position, { "type": "string", "pattern": POSITION_PATTERN, "example": "1483065.12" });

/// A query parameter a route needs, read as optional so that only a
/// caller let in learns it is missing.
pub fn required<T>(name: &str, value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| tasklog_http::query::bad_param(name, "is required"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_stream_pattern_names_every_kind() {
        assert!(STREAM_PATTERN.starts_with(&format!("^({})-", KINDS.join("|"))));
        let id = Uuid::now_v7();
        for kind in KINDS {
            assert_eq!(
                StreamId::parse(&format!("{kind}-{id}")).unwrap().kind(),
                kind
            );
        }
        for bad in [
            format!("widget-{id}"),
            format!("task-{}", id.simple()),
            format!("task-{}", id.to_string().to_uppercase()),
            format!("task{id}"),
            "task-".to_owned(),
        ] {
            assert!(StreamId::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_point_is_a_position_or_a_time() {
        assert_eq!(
            Point::from_param("12.3"),
            Some(Point::Position(LogPosition {
                commit: 12,
                event: 3
            }))
        );
        assert!(matches!(
            Point::from_param("2026-11-30T12:00:00Z"),
            Some(Point::Time(_))
        ));
        for bad in [
            "1.2.3",
            "12.",
            "0000-01-01T00:00:00Z",
            "2026-11-30",
            "99999999999999999999.1",
        ] {
            assert_eq!(Point::from_param(bad), None, "{bad}");
        }
    }
}
