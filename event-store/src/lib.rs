//! The event store, backend-neutral: the trait every backend implements, the
//! envelope it stores, positions, errors, the signal that appends happened,
//! the per-stream hash chain, and the contract suite every backend passes.
//! Backends live in crates of their own (`tasklog-event-store-postgres`).
//!
//! Promises every backend keeps (checked by the [`contract`] suite):
//! - an append states its expected stream version; a mismatch is
//!   [`StoreError::Conflict`], never a lost update;
//! - re-appending event ids that are already stored returns the original
//!   [`AppendResult`] and stores nothing twice;
//! - the global log is read in [`LogPosition`] order and a reader never skips
//!   an event that commits after it read past it;
//! - a [`LogPosition`] is both a reader's checkpoint and the consistency token
//!   a command returns.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod export;
pub mod hash;
pub mod merkle;
pub mod seal;
mod signal;
pub mod verify;

pub use signal::{AppendSignal, Appends};

/// What the writer believes the stream's current version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds (still ordered and unique).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version (versions start at 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// The expectation for a stream whose last known version is `version` (0: none).
    pub fn from_version(version: u64) -> Self {
        if version == 0 {
            Self::NoStream
        } else {
            Self::Exact(version)
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// A place in the global log, in the order readers see it.
///
/// PostgreSQL: (`transaction id`, `global position`); EventStoreDB: (`commit`,
/// `prepare`). Compared lexicographically. Its text form `"{commit}.{event}"`
/// is the consistency token clients get back from commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPosition {
    pub commit: u64,
    pub event: u64,
}

impl LogPosition {
    /// Before the first event.
    pub const START: LogPosition = LogPosition {
        commit: 0,
        event: 0,
    };
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.commit, self.event)
    }
}

/// A text that is not a `"{commit}.{event}"` position.
#[derive(Debug, thiserror::Error)]
#[error("not a log position (expected \"<commit>.<event>\")")]
pub struct InvalidPosition;

impl FromStr for LogPosition {
    type Err = InvalidPosition;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (c, e) = s.split_once('.').ok_or(InvalidPosition)?;
        Ok(Self {
            commit: c.parse().map_err(|_| InvalidPosition)?,
            event: e.parse().map_err(|_| InvalidPosition)?,
        })
    }
}

impl Serialize for LogPosition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogPosition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who and why, stored with every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub org_id: Uuid,
    pub actor_id: Option<Uuid>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// Stored with microsecond precision.
    pub occurred_at: DateTime<Utc>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// UUID v7; appending an id that is already stored is idempotent.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    /// The payload's personal fields, as JSON Pointers (`/title`): a v2 hash
    /// commits to each through a salted hash, so it can be erased later.
    pub personal: &'static [&'static str],
}

/// An event as stored, with its envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_version: u64,
    pub position: LogPosition,
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at: DateTime<Utc>,
    #[serde(flatten)]
    pub metadata: EventMetadata,
    pub payload: serde_json::Value,
    /// Hash of the stream's previous event (`None` for its first).
    #[serde(with = "hex_opt")]
    pub prev_hash: Option<Vec<u8>>,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
    /// How `hash` was computed (rows keep the scheme they were written with).
    #[serde(default)]
    pub hash_scheme: hash::HashScheme,
    /// The salts of the personal fields a v2 hash commits to. Read only where
    /// hashes are checked (verify, export); empty elsewhere.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub salts: hash::Salts,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AppendResult {
    /// The stream's version after the append (its last event's version).
    pub stream_version: u64,
    /// Position of the first and last event appended.
    pub first_position: LogPosition,
    pub last_position: LogPosition,
    /// True when every event id was already stored: nothing was appended.
    pub deduplicated: bool,
}

/// One stream's part of an atomic append to several streams.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// An open transaction that holds global-log readers back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenTransaction {
    /// Who holds it, in the backend's words (PostgreSQL: its server process
    /// and state), for an operator to find it.
    pub holder: String,
    pub age_seconds: f64,
}

/// How far readers can safely read, and what holds them back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HighWaterMark {
    /// The last event a reader can take now without any risk of skipping one.
    pub safe: Option<LogPosition>,
    /// The last committed event (it may not be safe to read yet).
    pub head: Option<LogPosition>,
    /// Committed events readers must wait for (the "lag" behind head),
    /// counted up to a bound of the backend's (PostgreSQL: 10,000).
    pub held_back_events: u64,
    /// The oldest open transaction, which readers wait for while it runs.
    pub oldest_open_transaction: Option<OpenTransaction>,
}

/// A page of the global log.
#[derive(Debug, Clone, Default)]
pub struct LogPage {
    pub events: Vec<RecordedEvent>,
    /// Committed events after the page are not yet safe to read: an open
    /// transaction may still add events before them.
    pub held_back: bool,
}

/// The events of the log after a position, for operators' lag figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Committed events after the position (held back ones too).
    pub events: u64,
    /// When the oldest of them was recorded.
    pub oldest_recorded_at: Option<DateTime<Utc>>,
}

/// Errors of every backend. Callers decide on the kind, never on the
/// backend's own error type: `Unavailable` is worth a retry (HTTP 503),
/// `Backend` is a bug or a refusal (500).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the expected version: somebody else appended first.
    #[error("stream {stream} expected {expected}, but it is at {actual:?}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    /// An event id is already stored, but not as the same append.
    #[error("event {0} is already stored elsewhere")]
    DuplicateEventId(Uuid),
    /// A stored event could not be read back.
    #[error("stored event is corrupt: {0}")]
    Corrupt(String),
    /// The backend is out of reach (a lost or refused connection, an
    /// exhausted pool, a server restarting or full): retry shortly.
    #[error("event store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend failed otherwise (a refused statement, a bug).
    #[error("event store backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The event store. Stream ids are `"{category}-{uuid}"`.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if it is at `expected`, atomically.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Appends to several streams at once, each at its own expected version:
    /// all of them or none (a command that touches two aggregates is accepted
    /// or rejected as a whole). A conflict on any stream stores nothing and
    /// names that stream. Re-sending an append whose event ids are all stored
    /// returns the original results, as [`Self::append`] does.
    ///
    /// A part without events only checks its stream: the append happens
    /// only while that stream is at its expected version (a decision that
    /// rests on another aggregate's state, such as a membership), and its
    /// result is that version. At least one part has events.
    async fn append_all(&self, appends: Vec<StreamAppend>)
        -> Result<Vec<AppendResult>, StoreError>;

    /// The stream's events with version >= `from_version`, in order.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Several streams at once, each from its own version, in the order
    /// asked (one round trip where the backend allows it).
    async fn read_streams(
        &self,
        streams: &[(String, u64)],
    ) -> Result<Vec<Vec<RecordedEvent>>, StoreError> {
        let mut out = Vec::with_capacity(streams.len());
        for (s, from_version) in streams {
            out.push(self.read_stream(s, *from_version).await?);
        }
        Ok(out)
    }

    /// Up to `limit` events of the global log after `after`, in log order.
    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`Self::read_all`], and whether committed events wait behind an open
    /// transaction. A live reader that is held back looks again soon: no
    /// announcement comes when such a transaction ends.
    async fn read_page(&self, after: LogPosition, limit: usize) -> Result<LogPage, StoreError> {
        Ok(LogPage {
            events: self.read_all(after, limit).await?,
            held_back: false,
        })
    }

    /// Every event after `after`: catches up, then follows live appends.
    fn subscribe_all(
        &self,
        after: LogPosition,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>>;

    /// Wakes its holder after appends commit, from any process (see
    /// [`Appends`]). A live reader reads until it is caught up, then waits on
    /// it, with a fallback look of its own for what announces nothing.
    fn appends(&self) -> Appends;

    /// Where readers stand against the head of the log.
    async fn high_water_mark(&self) -> Result<HighWaterMark, StoreError>;

    /// How many committed events follow `after`, and since when the oldest
    /// has waited (a projection's lag, for operators).
    async fn backlog(&self, after: LogPosition) -> Result<Backlog, StoreError>;

    /// Roughly how many events the log holds, cheaply (an upper bound is
    /// fine: it sizes progress bars).
    async fn estimated_len(&self) -> Result<u64, StoreError>;

    /// One event by id.
    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError>;
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| hex::decode(h).map_err(serde::de::Error::custom))
            .transpose()
    }
}
