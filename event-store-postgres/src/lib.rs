//! The PostgreSQL backend of the event store: one `events` table (see
//! `migrations/postgres`), built by [`PgEventStore::open`].
//!
//! Global order is (`transaction_id`, `global_position`). A sequence value is
//! taken at INSERT but seen only at COMMIT, so a plain `global_position >
//! checkpoint` reader can pass over a transaction that commits late. Readers
//! here only take rows whose transaction id is below the oldest transaction
//! still running (`pg_snapshot_xmin`): every such transaction has finished,
//! so nothing can appear behind a reader later (Emmett's answer). Writers to
//! different streams share no lock; the cost is that any long transaction
//! holds readers back, which [`HighWaterMark`] makes visible.
//!
//! One kind of transaction is not waited for: those of projector sessions,
//! which log in as [`PROJECTOR_ROLE`], a role without the right to insert
//! events (and a trigger refuses them too). Every
//! projector's batch holds a transaction id while it writes its read model;
//! waiting for them would make each projection trail the others' batches,
//! and no announcement comes when they commit.
//!
//! Appends are announced on [`CHANNEL`] after they commit (`NOTIFY`), and
//! [`EventStore::appends`] hears them through one `LISTEN` connection per
//! store: both tasks start when first needed, not when the store is built.

pub mod audit;
pub mod bulk;
pub mod export;
pub mod group;
pub mod org_log;
pub mod seals;

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::postgres::{PgListener, PgPool, PgRow};
use sqlx::{Connection, PgConnection, Row};
use tasklog_event_store::hash::{
    content_hash_v2, fresh_salts, to_micros, HashInput, HashScheme, Salts,
};
use tasklog_event_store::{
    AppendResult, AppendSignal, Appends, Backlog, EventMetadata, EventStore, ExpectedVersion,
    HighWaterMark, LogPage, LogPosition, NewEvent, OpenTransaction, RecordedEvent, StoreError,
    StreamAppend,
};
use tokio::sync::Notify;
use uuid::Uuid;

pub use group::Grouping;
use group::{GroupOutcome, Groups};

/// The channel appends are announced on (after commit, coalesced).
pub const CHANNEL: &str = "tasklog_events";

/// How often a live subscriber looks again when nothing was announced: it
/// covers a rolled-back or unrelated long transaction that held it back.
const SUBSCRIBE_FALLBACK_POLL: Duration = Duration::from_millis(500);
const SUBSCRIBE_BATCH: usize = 500;

/// The role projector sessions log in as: it may read events, never insert
/// them, so readers of the log need not wait for its open transactions.
/// [`projector_pool`] makes such sessions.
pub const PROJECTOR_ROLE: &str = "tasklog_projector";

/// The `application_name` of projector sessions, for people reading
/// `pg_stat_activity`; it decides nothing (anyone can set it).
pub const PROJECTOR_SESSION: &str = "tasklog-projector";

/// The log's horizon, as an SQL expression: events of transactions below it
/// are all visible to the statement's snapshot. It is the oldest transaction
/// running at the snapshot that may append events. Transactions of sessions
/// that logged in as the projector or the sealer role (neither may append)
/// are skipped only when the activity table names them (one that finished
/// meanwhile is not named and still counts: the horizon is only ever too
/// low, never too high). The login role (`usesysid`) is fixed for a
/// session's life, unlike `current_user` or `application_name`.
/// `backend_xid` is a 32-bit xid, hence the modulo.
const HORIZON: &str = "(SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot())) \
    FROM pg_snapshot_xip(pg_current_snapshot()) AS x \
    WHERE x::text::bigint % 4294967296 NOT IN ( \
        SELECT backend_xid::text::bigint FROM pg_stat_get_activity(NULL) \
        WHERE usesysid IN (SELECT oid FROM pg_roles \
                           WHERE rolname IN ('tasklog_projector', 'tasklog_sealer')) \
          AND backend_xid IS NOT NULL))";

/// [`HighWaterMark::held_back_events`] counts up to this many.
pub const HELD_BACK_COUNTED: u64 = 10_000;

macro_rules! event_columns {
    () => {
        "SELECT event_id, stream_id, stream_version, \
         transaction_id::text::bigint AS commit, global_position, event_type, schema_version, \
         occurred_at, recorded_at, org_id, actor_id, correlation_id, causation_id, payload, \
         prev_hash, hash, hash_scheme"
    };
}

const SELECT_EVENT: &str = concat!(event_columns!(), " FROM events");

/// Events with the salts of their personal fields (`hash::Salts`): for the
/// paths that check or hand out hashes (verify, export), not for readers.
const SELECT_EVENT_WITH_SALTS: &str = concat!(
    event_columns!(),
    ", salts FROM events LEFT JOIN event_salts USING (event_id)"
);

/// PostgreSQL event store. Cheap to clone; clones share their background
/// tasks.
#[derive(Clone)]
pub struct PgEventStore {
    pool: PgPool,
    /// Wakes the task that announces appends; started at the first append.
    announcer: Arc<OnceLock<Arc<Notify>>>,
    /// The first handle of the signal the listener task bumps; started at
    /// the first [`EventStore::appends`].
    appends: Arc<OnceLock<Appends>>,
    /// How appends are grouped into shared transactions (`None`: each alone).
    grouping: Option<Grouping>,
    /// The queue of appends and its dispatcher; started at the first append.
    groups: Arc<OnceLock<Groups>>,
}

/// What a grouped append came to.
enum Grouped {
    /// Appended (or found appended by an earlier try): one result per part.
    Done(Vec<AppendResult>),
    /// Not answered: the caller appends it alone.
    Unanswered(Vec<StreamAppend>),
}

/// Why an append inside a caller's transaction did not happen.
#[derive(Debug)]
pub enum AppendOutcome {
    Appended(AppendResult),
    /// The stream is not at the expected version (the transaction is still usable).
    WrongVersion {
        actual: Option<u64>,
    },
}

impl PgEventStore {
    /// The event store on `pool`'s database (migrated with
    /// `migrations/postgres`). Starts nothing: the task that announces
    /// appends starts at the first append, the one that listens for them at
    /// the first [`EventStore::appends`] (both need a Tokio runtime then),
    /// and both end with the pool (the listener also once nobody holds the
    /// store or a handle of its signal). Appends are grouped ([`group`]) with
    /// the default [`Grouping`]; its dispatcher starts at the first append.
    pub fn open(pool: PgPool) -> Arc<dyn EventStore> {
        Self::open_with(pool, Some(Grouping::default()))
    }

    /// [`Self::open`], grouping appends as `grouping` says (`None`: every
    /// append in a transaction of its own).
    pub fn open_with(pool: PgPool, grouping: Option<Grouping>) -> Arc<dyn EventStore> {
        Arc::new(Self {
            pool,
            announcer: Arc::default(),
            appends: Arc::default(),
            grouping,
            groups: Arc::default(),
        })
    }

    /// Appends `unit` (all of its parts or none) in a group with others.
    /// Gives it back unanswered when grouping is off or its group failed as
    /// a whole: then it is the caller's to append alone.
    async fn append_grouped(&self, unit: Vec<StreamAppend>) -> Result<Grouped, StoreError> {
        let Some(grouping) = self.grouping else {
            return Ok(Grouped::Unanswered(unit));
        };
        let groups = self
            .groups
            .get_or_init(|| Groups::start(self.pool.clone(), grouping));
        let (unit, outcome) = groups.append(unit).await?;
        match outcome {
            None => Ok(Grouped::Unanswered(unit)),
            Some(GroupOutcome::Appended(results)) => {
                self.announce();
                Ok(Grouped::Done(results))
            }
            // A retried append finds the stream moved on, or its ids stored, by itself.
            Some(GroupOutcome::WrongVersion { part, actual }) => {
                match self.all_already_appended(&unit).await? {
                    Some(original) => Ok(Grouped::Done(original)),
                    None => Err(StoreError::Conflict {
                        stream: unit[part].stream.clone(),
                        expected: unit[part].expected,
                        actual,
                    }),
                }
            }
            Some(GroupOutcome::EventIdTaken) => match self.all_already_appended(&unit).await? {
                Some(original) => Ok(Grouped::Done(original)),
                None => Ok(Grouped::Unanswered(unit)),
            },
        }
    }

    /// Tells other processes (and this one's listener) that appends committed.
    fn announce(&self) {
        self.announcer
            .get_or_init(|| {
                let appended = Arc::new(Notify::new());
                tokio::spawn(announce_appends(self.pool.clone(), appended.clone()));
                appended
            })
            .notify_one();
    }

    /// Appends inside the caller's transaction, without committing. Public so
    /// tests (and future same-transaction writers) can hold an append open.
    /// A unique violation aborts the caller's transaction and comes back as
    /// an error.
    pub async fn append_in(
        conn: &mut PgConnection,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendOutcome, sqlx::Error> {
        run_append(&mut *conn, stream, expected, events).await
    }

    /// The original result when every one of `events` is already stored in
    /// `stream` as one append; `None` when none is stored.
    async fn already_appended(
        &self,
        stream: &str,
        events: &[NewEvent],
    ) -> Result<Option<AppendResult>, StoreError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let rows = sqlx::query(&format!("{SELECT_EVENT} WHERE event_id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let stored: Vec<RecordedEvent> = rows.iter().map(decode_row).collect::<Result<_, _>>()?;
        if stored.len() != events.len() || stored.iter().any(|e| e.stream_id != stream) {
            return Err(StoreError::DuplicateEventId(stored[0].event_id));
        }
        Ok(Some(AppendResult {
            stream_version: stored.iter().map(|e| e.stream_version).max().unwrap_or(0),
            first_position: stored.iter().map(|e| e.position).min().unwrap_or_default(),
            last_position: stored.iter().map(|e| e.position).max().unwrap_or_default(),
            deduplicated: true,
        }))
    }
}

#[async_trait]
impl EventStore for PgEventStore {
    #[tracing::instrument(skip(self, events), fields(events = events.len()))]
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        if events.is_empty() {
            return Err(StoreError::Corrupt(
                "an append needs at least one event".into(),
            ));
        }
        let unit = vec![StreamAppend {
            stream: stream.to_owned(),
            expected,
            events,
        }];
        let events = match self.append_grouped(unit).await? {
            Grouped::Done(mut results) => return Ok(results.remove(0)),
            Grouped::Unanswered(mut unit) => unit.remove(0).events,
        };
        // Alone. `Any` may race another writer to the same next version; retry it.
        for _ in 0..5 {
            // One statement, so one round trip and no explicit transaction.
            match run_append(&self.pool, stream, expected, &events).await {
                Ok(AppendOutcome::Appended(result)) => {
                    self.announce();
                    return Ok(result);
                }
                Ok(AppendOutcome::WrongVersion { actual }) => {
                    // A retried append finds the stream moved on by itself.
                    return match self.already_appended(stream, &events).await? {
                        Some(original) => Ok(original),
                        None => Err(StoreError::Conflict {
                            stream: stream.to_owned(),
                            expected,
                            actual,
                        }),
                    };
                }
                Err(e) => {
                    let Some(constraint) = unique_violation(&e) else {
                        return Err(store_error(e));
                    };
                    if constraint == "events_event_id_unique" {
                        if let Some(original) = self.already_appended(stream, &events).await? {
                            return Ok(original);
                        }
                        continue;
                    }
                    if expected != ExpectedVersion::Any {
                        let actual = self.read_head(stream).await?;
                        return Err(StoreError::Conflict {
                            stream: stream.to_owned(),
                            expected,
                            actual,
                        });
                    }
                }
            }
        }
        Err(StoreError::Conflict {
            stream: stream.to_owned(),
            expected,
            actual: self.read_head(stream).await?,
        })
    }

    #[tracing::instrument(skip_all, fields(streams = appends.len()))]
    async fn append_all(
        &self,
        mut appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        if appends.iter().all(|a| a.events.is_empty()) {
            return Err(StoreError::Corrupt(
                "an append needs at least one event".into(),
            ));
        }
        if appends.len() == 1 {
            let a = appends.remove(0);
            return Ok(vec![self.append(&a.stream, a.expected, a.events).await?]);
        }
        let appends = match self.append_grouped(appends).await? {
            Grouped::Done(results) => return Ok(results),
            Grouped::Unanswered(appends) => appends,
        };
        // Alone. `Any` may race another writer to the same next version; retry it.
        for _ in 0..5 {
            let mut tx = self.pool.begin().await.map_err(store_error)?;
            let mut results = Vec::with_capacity(appends.len());
            let mut failed = None;
            for a in &appends {
                match run_append(&mut *tx, &a.stream, a.expected, &a.events).await {
                    Ok(AppendOutcome::Appended(r)) => results.push(r),
                    Ok(AppendOutcome::WrongVersion { actual }) => {
                        failed = Some(Failed::Version(a, actual));
                        break;
                    }
                    Err(e) => match unique_violation(&e) {
                        Some(c) if c == "events_event_id_unique" => {
                            failed = Some(Failed::EventId);
                            break;
                        }
                        Some(_) => {
                            failed = Some(Failed::VersionRace(a));
                            break;
                        }
                        None => return Err(store_error(e)),
                    },
                }
            }
            let Some(failed) = failed else {
                tx.commit().await.map_err(store_error)?;
                self.announce();
                return Ok(results);
            };
            tx.rollback().await.map_err(store_error)?;
            // A retried append finds its own events stored already.
            if let Some(original) = self.all_already_appended(&appends).await? {
                return Ok(original);
            }
            match failed {
                Failed::Version(a, actual) => {
                    return Err(StoreError::Conflict {
                        stream: a.stream.clone(),
                        expected: a.expected,
                        actual,
                    })
                }
                Failed::VersionRace(a) if a.expected != ExpectedVersion::Any => {
                    return Err(StoreError::Conflict {
                        stream: a.stream.clone(),
                        expected: a.expected,
                        actual: self.read_head(&a.stream).await?,
                    })
                }
                Failed::VersionRace(_) | Failed::EventId => continue,
            }
        }
        let first = &appends[0];
        Err(StoreError::Conflict {
            stream: first.stream.clone(),
            expected: first.expected,
            actual: self.read_head(&first.stream).await?,
        })
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_EVENT} WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version"
        ))
        .bind(stream)
        .bind(from_version as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        decode_rows(&rows)
    }

    async fn read_streams(
        &self,
        streams: &[(String, u64)],
    ) -> Result<Vec<Vec<RecordedEvent>>, StoreError> {
        let names: Vec<&str> = streams.iter().map(|(s, _)| s.as_str()).collect();
        let froms: Vec<i64> = streams.iter().map(|(_, v)| *v as i64).collect();
        let rows = sqlx::query(&format!(
            "{SELECT_EVENT} JOIN unnest($1::text[], $2::bigint[]) AS wanted(s, v) \
               ON stream_id = wanted.s AND stream_version >= wanted.v \
             ORDER BY stream_id, stream_version"
        ))
        .bind(&names)
        .bind(&froms)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let mut out: Vec<Vec<RecordedEvent>> = vec![Vec::new(); streams.len()];
        for row in &rows {
            let e = decode_row(row)?;
            if let Some(i) = streams.iter().position(|(s, _)| *s == e.stream_id) {
                out[i].push(e);
            }
        }
        Ok(out)
    }

    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_EVENT} WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
               AND transaction_id < {HORIZON} \
             ORDER BY transaction_id, global_position LIMIT $3"
        ))
        .bind(after.commit.to_string())
        .bind(after.event as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        decode_rows(&rows)
    }

    async fn read_page(&self, after: LogPosition, limit: usize) -> Result<LogPage, StoreError> {
        // One row even when the page is empty: it carries `held_back`, which
        // the newest visible event answers (one step down the index).
        let rows = sqlx::query(&format!(
            "WITH h AS MATERIALIZED (SELECT {HORIZON} AS horizon) \
             SELECT coalesce((SELECT max(transaction_id) FROM events) >= (SELECT horizon FROM h), \
                             false) AS held_back, e.* \
             FROM h LEFT JOIN LATERAL ( \
                 {SELECT_EVENT} WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
                   AND transaction_id < h.horizon \
                 ORDER BY transaction_id, global_position LIMIT $3) AS e ON true \
             ORDER BY e.commit, e.global_position"
        ))
        .bind(after.commit.to_string())
        .bind(after.event as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        let held_back = match rows.first() {
            Some(row) => row.try_get("held_back").map_err(store_error)?,
            None => false,
        };
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let event_id: Option<Uuid> = row.try_get("event_id").map_err(store_error)?;
            if event_id.is_some() {
                events.push(decode_row(row)?);
            }
        }
        Ok(LogPage { events, held_back })
    }

    fn subscribe_all(
        &self,
        after: LogPosition,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        struct State {
            store: PgEventStore,
            appends: Appends,
            buffer: VecDeque<RecordedEvent>,
            position: LogPosition,
        }
        let state = State {
            store: self.clone(),
            // Taken before the first read, so no announcement falls between.
            appends: self.appends(),
            buffer: VecDeque::new(),
            position: after,
        };
        stream::unfold(state, |mut s| async move {
            loop {
                if let Some(e) = s.buffer.pop_front() {
                    s.position = e.position;
                    return Some((Ok(e), s));
                }
                match s.store.read_all(s.position, SUBSCRIBE_BATCH).await {
                    Ok(batch) if !batch.is_empty() => s.buffer.extend(batch),
                    Ok(_) => {
                        let _ =
                            tokio::time::timeout(SUBSCRIBE_FALLBACK_POLL, s.appends.next()).await;
                    }
                    Err(e) => return Some((Err(e), s)),
                }
            }
        })
        .boxed()
    }

    fn appends(&self) -> Appends {
        self.appends
            .get_or_init(|| {
                let (signal, appends) = AppendSignal::channel();
                tokio::spawn(listen(self.pool.clone(), signal));
                appends
            })
            .fresh()
    }

    async fn high_water_mark(&self) -> Result<HighWaterMark, StoreError> {
        let row = sqlx::query(&format!(
            // The held-back count stops at HELD_BACK_COUNTED: with a cap of
            // a million, the planner expected that many rows behind an
            // unknown bound and scanned the whole log (210 ms on 2.4M events).
            // `< (SELECT xmin FROM snap)`, not a join with `snap`: as a
            // parameter the bound is one step down the index; joined, the
            // planner scanned and sorted the whole log (0.7 s on 1M events).
            "WITH snap AS MATERIALIZED (SELECT {HORIZON} AS xmin) \
             SELECT safe.c AS safe_commit, safe.p AS safe_event, \
                    head.c AS head_commit, head.p AS head_event, \
               (SELECT count(*) FROM (SELECT FROM events WHERE transaction_id >= (SELECT xmin FROM snap) \
                  ORDER BY transaction_id LIMIT {HELD_BACK_COUNTED}) AS held) AS held_back \
             FROM (SELECT 1) AS one \
             LEFT JOIN (SELECT transaction_id::text::bigint AS c, global_position AS p FROM events \
                  WHERE transaction_id < (SELECT xmin FROM snap) \
                  ORDER BY transaction_id DESC, global_position DESC LIMIT 1) AS safe ON true \
             LEFT JOIN (SELECT transaction_id::text::bigint AS c, global_position AS p FROM events \
                  ORDER BY transaction_id DESC, global_position DESC LIMIT 1) AS head ON true"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        let pos = |c: Option<i64>, e: Option<i64>| match (c, e) {
            (Some(c), Some(e)) => Some(LogPosition {
                commit: c as u64,
                event: e as u64,
            }),
            _ => None,
        };
        let oldest = sqlx::query(&format!(
            // tasklog_open_transactions(): pg_stat_activity as its owner sees
            // it (the application role cannot see others' xact_start).
            "SELECT pid, age_seconds AS age, state FROM tasklog_open_transactions() \
             WHERE usename IS DISTINCT FROM '{PROJECTOR_ROLE}' \
             ORDER BY age(backend_xid) DESC LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .map(|r| {
            let pid: i32 = r.get("pid");
            let state: Option<String> = r.get("state");
            OpenTransaction {
                holder: match state {
                    Some(state) => format!("server process {pid} ({state})"),
                    None => format!("server process {pid}"),
                },
                age_seconds: r.get::<Option<f64>, _>("age").unwrap_or(0.0),
            }
        });
        Ok(HighWaterMark {
            safe: pos(row.get("safe_commit"), row.get("safe_event")),
            head: pos(row.get("head_commit"), row.get("head_event")),
            held_back_events: row.get::<i64, _>("held_back") as u64,
            oldest_open_transaction: oldest,
        })
    }

    async fn backlog(&self, after: LogPosition) -> Result<Backlog, StoreError> {
        let (events, oldest_recorded_at): (i64, Option<chrono::DateTime<chrono::Utc>>) =
            sqlx::query_as(
                "SELECT count(*), min(recorded_at) FROM events \
                 WHERE (transaction_id, global_position) > ($1::text::xid8, $2)",
            )
            .bind(after.commit.to_string())
            .bind(after.event as i64)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(Backlog {
            events: events as u64,
            oldest_recorded_at,
        })
    }

    async fn estimated_len(&self) -> Result<u64, StoreError> {
        // The span of positions: two index steps instead of counting every
        // event (a rolled-back append leaves a gap, hence an upper bound).
        let span: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(global_position) - min(global_position) + 1, 0) FROM events",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(span as u64)
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_EVENT} WHERE event_id = $1"))
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.as_ref().map(decode_row).transpose()
    }
}

/// Why one part of a multi-stream append failed.
enum Failed<'a> {
    Version(&'a StreamAppend, Option<u64>),
    VersionRace(&'a StreamAppend),
    EventId,
}

impl PgEventStore {
    /// The original results when every part of `appends` is stored already;
    /// `None` when none is; an error when only some are.
    async fn all_already_appended(
        &self,
        appends: &[StreamAppend],
    ) -> Result<Option<Vec<AppendResult>>, StoreError> {
        let mut found = Vec::with_capacity(appends.len());
        for a in appends.iter().filter(|a| !a.events.is_empty()) {
            found.push(self.already_appended(&a.stream, &a.events).await?);
        }
        if found.iter().all(Option::is_none) {
            return Ok(None);
        }
        let Some(mut found) = found.into_iter().collect::<Option<Vec<_>>>() else {
            let first = appends.iter().flat_map(|a| &a.events).next();
            return Err(StoreError::DuplicateEventId(
                first.map(|e| e.event_id).unwrap_or_default(),
            ));
        };
        // A part that only checked a version stored nothing to find: it held then.
        let mut found = found.drain(..);
        Ok(Some(
            appends
                .iter()
                .map(|a| match a.events.is_empty() {
                    false => found.next().unwrap_or_else(|| checked(a.expected)),
                    true => AppendResult {
                        deduplicated: true,
                        ..checked(a.expected)
                    },
                })
                .collect(),
        ))
    }

    async fn read_head(&self, stream: &str) -> Result<Option<u64>, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
                .bind(stream)
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(v.map(|v| v as u64))
    }
}

/// A pool of projector sessions to the database of `pool`, with its own
/// `size` connections: they log in as [`PROJECTOR_ROLE`] (with the password of
/// `pool`'s user, if it has one).
/// The pool's other options (acquire timeout, the check of idle connections)
/// are `pool`'s.
pub fn projector_pool(pool: &PgPool, size: u32) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .username(PROJECTOR_ROLE)
        .application_name(PROJECTOR_SESSION);
    pool.options()
        .clone()
        .max_connections(size)
        .min_connections(0)
        .connect_lazy_with(options)
}

/// Announces appends on [`CHANNEL`] after they commit. One NOTIFY covers every
/// append that happened while the previous one was being sent: NOTIFY takes a
/// cluster-wide lock at commit, so it stays out of the append transactions.
/// It has a connection of its own, opened at the first append: under load
/// every pooled connection is busy appending, and an announcement queued
/// behind them would hold every live reader back.
async fn announce_appends(pool: PgPool, appended: Arc<Notify>) {
    let mut conn: Option<PgConnection> = None;
    let closed = pool.close_event();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            _ = appended.notified() => {}
            _ = &mut closed => return,
        }
        let sent = match conn.as_mut() {
            Some(c) => announce(c).await,
            None => match PgConnection::connect_with(&pool.connect_options()).await {
                Ok(c) => announce(conn.insert(c)).await,
                Err(e) => Err(e),
            },
        };
        if let Err(e) = sent {
            conn = None;
            tracing::warn!(error = %e, "could not announce appended events; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
            appended.notify_one();
        }
    }
}

/// Hears [`CHANNEL`] on one `LISTEN` connection (each listening connection is
/// woken by every announcement, so a process needs one) and passes it on to
/// every handle of `signal`; also when it (re)connects, as announcements may
/// have been lost meanwhile. Ends when the pool closes or nobody hears it.
async fn listen(pool: PgPool, signal: AppendSignal) {
    while !signal.is_unheard() && !pool.is_closed() {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for appends; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Whatever came while not listening: look.
        signal.announce();
        loop {
            tokio::select! {
                got = listener.try_recv() => match got {
                    Ok(Some(_)) => {
                        while listener.next_buffered().is_some() {}
                        signal.announce();
                    }
                    Ok(None) => {
                        // Reconnected by itself: announcements may be lost.
                        signal.announce();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the append listener; reconnecting");
                        break;
                    }
                },
                _ = signal.unheard() => return,
            }
        }
    }
}

async fn announce(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(conn)
        .await
        .map(|_| ())
}

/// The events of an append as the columns `append_events` and
/// `append_batch` take: one array per column, and each event's content hash
/// (the version is chained in by the database, which alone knows it for
/// `Any`).
#[derive(Default)]
pub(crate) struct EventColumns<'a> {
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schemas: Vec<i32>,
    occurred: Vec<chrono::DateTime<chrono::Utc>>,
    orgs: Vec<Uuid>,
    actors: Vec<Option<Uuid>>,
    correlations: Vec<Uuid>,
    causations: Vec<Option<Uuid>>,
    payloads: Vec<sqlx::types::Json<&'a serde_json::Value>>,
    hashes: Vec<Vec<u8>>,
    salts: Vec<Option<sqlx::types::Json<Salts>>>,
}

impl<'a> EventColumns<'a> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            schemas: Vec::with_capacity(n),
            occurred: Vec::with_capacity(n),
            orgs: Vec::with_capacity(n),
            actors: Vec::with_capacity(n),
            correlations: Vec::with_capacity(n),
            causations: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            salts: Vec::with_capacity(n),
        }
    }

    /// Adds `events` of `stream`, hashed with fresh salts for their personal fields.
    pub(crate) fn push(&mut self, stream: &str, events: &'a [NewEvent]) -> Result<(), sqlx::Error> {
        for e in events {
            let metadata = EventMetadata {
                occurred_at: to_micros(e.metadata.occurred_at),
                ..e.metadata.clone()
            };
            let event_salts = fresh_salts(&e.payload, e.personal);
            let content = content_hash_v2(
                &HashInput {
                    event_id: e.event_id,
                    stream_id: stream,
                    event_type: &e.event_type,
                    schema_version: e.schema_version,
                    metadata: &metadata,
                    payload: &e.payload,
                },
                &event_salts,
            )
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            self.hashes.push(content);
            self.salts
                .push((!event_salts.is_empty()).then_some(sqlx::types::Json(event_salts)));
            self.ids.push(e.event_id);
            self.types.push(&e.event_type);
            self.schemas.push(i32::from(e.schema_version));
            self.occurred.push(metadata.occurred_at);
            self.orgs.push(metadata.org_id);
            self.actors.push(metadata.actor_id);
            self.correlations.push(metadata.correlation_id);
            self.causations.push(metadata.causation_id);
            self.payloads.push(sqlx::types::Json(&e.payload));
        }
        Ok(())
    }

    /// Binds the columns in the order both functions take them, the hash
    /// scheme and the salts last.
    pub(crate) fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.schemas)
            .bind(&self.occurred)
            .bind(&self.orgs)
            .bind(&self.actors)
            .bind(&self.correlations)
            .bind(&self.causations)
            .bind(&self.payloads)
            .bind(&self.hashes)
            .bind(HashScheme::V2.code())
            .bind(&self.salts)
    }
}

/// An expected version as `append_events` and `append_batch` take it.
pub(crate) fn expected_arg(expected: ExpectedVersion) -> i64 {
    match expected {
        ExpectedVersion::Any => -1,
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(v) => v as i64,
    }
}

/// Runs `append_events` (see the migration): checks the expected version,
/// chains the hashes and inserts, in one statement.
async fn run_append<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendOutcome, sqlx::Error> {
    let mut columns = EventColumns::with_capacity(events.len());
    columns.push(stream, events)?;
    let query = sqlx::query(
        "SELECT o_commit, o_position, o_version, o_conflict FROM append_events(\
         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(stream)
    .bind(expected_arg(expected));
    let rows: Vec<(Option<i64>, Option<i64>, i64, bool)> = columns
        .bind(query)
        .fetch_all(executor)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    if let Some((_, _, actual, true)) = rows.first() {
        return Ok(AppendOutcome::WrongVersion {
            actual: (*actual > 0).then_some(*actual as u64),
        });
    }
    let positions: Vec<LogPosition> = rows
        .iter()
        .filter_map(|(c, p, _, _)| {
            Some(LogPosition {
                commit: (*c)? as u64,
                event: (*p)? as u64,
            })
        })
        .collect();
    if positions.is_empty() {
        return Ok(AppendOutcome::Appended(checked(expected)));
    }
    Ok(AppendOutcome::Appended(AppendResult {
        stream_version: rows.iter().map(|r| r.2 as u64).max().unwrap_or(0),
        first_position: positions.iter().min().copied().unwrap_or_default(),
        last_position: positions.iter().max().copied().unwrap_or_default(),
        deduplicated: false,
    }))
}

/// The result of a part that only checked its stream's version.
pub(crate) fn checked(expected: ExpectedVersion) -> AppendResult {
    AppendResult {
        stream_version: match expected {
            ExpectedVersion::Exact(v) => v,
            ExpectedVersion::NoStream | ExpectedVersion::Any => 0,
        },
        first_position: LogPosition::START,
        last_position: LogPosition::START,
        deduplicated: false,
    }
}

/// True when `e` says the database is out of reach rather than that the
/// statement is wrong: a lost or refused connection, an exhausted or closed
/// pool, or a server that is shutting down, starting up or full (SQLSTATE
/// class 08, 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect
/// now, 53300 too many connections). A routine restart shows all of these.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The store's error for a database error: [`StoreError::Unavailable`] when
/// the database is out of reach ([`is_unavailable`]), else `Backend`.
pub fn store_error(e: sqlx::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            db.constraint().map(str::to_owned)
        }
        _ => None,
    }
}

/// Every row's event. Sized up front: a log page is 20,000 events in a
/// rebuild, and growing the vector as it fills copied each event ~once more.
fn decode_rows(rows: &[PgRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        events.push(decode_row(row)?);
    }
    Ok(events)
}

fn decode_row(r: &PgRow) -> Result<RecordedEvent, StoreError> {
    let schema_version: i32 = r.try_get("schema_version").map_err(store_error)?;
    let schema_version = u16::try_from(schema_version)
        .map_err(|_| StoreError::Corrupt(format!("schema version {schema_version}")))?;
    decode_envelope(r, schema_version).map_err(store_error)
}

fn decode_envelope(r: &PgRow, schema_version: u16) -> Result<RecordedEvent, sqlx::Error> {
    let commit: i64 = r.try_get("commit")?;
    let position: i64 = r.try_get("global_position")?;
    Ok(RecordedEvent {
        event_id: r.try_get("event_id")?,
        stream_id: r.try_get("stream_id")?,
        stream_version: r.try_get::<i64, _>("stream_version")? as u64,
        position: LogPosition {
            commit: commit as u64,
            event: position as u64,
        },
        event_type: r.try_get("event_type")?,
        schema_version,
        recorded_at: r.try_get("recorded_at")?,
        metadata: EventMetadata {
            org_id: r.try_get("org_id")?,
            actor_id: r.try_get("actor_id")?,
            correlation_id: r.try_get("correlation_id")?,
            causation_id: r.try_get("causation_id")?,
            occurred_at: r.try_get("occurred_at")?,
        },
        payload: r.try_get("payload")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
        hash_scheme: {
            let code: i16 = r.try_get("hash_scheme")?;
            HashScheme::from_code(code)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown hash scheme {code}").into()))?
        },
        // Only the queries that check or hand out hashes read salts; asking
        // the others for the column would build an error per row.
        salts: if r.columns().iter().any(|c| sqlx::Column::name(c) == "salts") {
            r.try_get::<Option<sqlx::types::Json<Salts>>, _>("salts")?
                .map(|s| s.0)
                .unwrap_or_default()
        } else {
            Salts::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The roles are spelled out in SQL: the readers' horizon, the
    /// migrations that create them and the trigger that keeps projector
    /// sessions from appending.
    #[test]
    fn the_horizon_and_the_migrations_name_the_same_projector_and_sealer_roles() {
        let migration = include_str!("../../migrations/postgres/20261130000001_projector_role.sql");
        let quoted = format!("'{PROJECTOR_ROLE}'");
        let sealer = seals::SEALER_ROLE;
        assert!(HORIZON.contains(&format!("rolname IN ({quoted}, '{sealer}')")));
        assert!(migration.contains(&format!("CREATE ROLE {PROJECTOR_ROLE} LOGIN")));
        assert!(migration.contains(&format!("session_user = {quoted}")));
        let seals = include_str!("../../migrations/postgres/20261201000100_seals.sql");
        assert!(seals.contains(&format!("CREATE ROLE {sealer} LOGIN")));
    }
}
