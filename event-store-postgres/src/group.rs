//! Group commit: appends that arrive while others are being written share one
//! statement, one transaction and one WAL flush.
//!
//! PostgreSQL spends a one-event append mostly on the commit's flush, not on
//! the row: on a small machine it takes ten rows per transaction four to five
//! times faster than one (`../shared/bench/pg-insert-baseline.sh`). So appends
//! queue here, and a dispatcher writes whatever is queued when one of its
//! [`Grouping::in_flight`] slots is free, as one `append_batch` statement
//! (`migrations/postgres/…_append_batch.sql`). There is no timer: an append
//! that finds a slot free goes out alone at once, so a quiet store adds no
//! latency, and under load the groups grow by themselves (the "smart
//! batching" of LMAX's disruptor, or Kafka's producer with `linger.ms=0`).
//!
//! Each unit (one caller's append, to one stream or several) keeps its own
//! answer: a unit at the wrong version, or whose event ids are stored already,
//! stores nothing and is answered alone while the others append. What the
//! statement's checks cannot see (another process inserting the same version
//! or event id at the same moment) fails the statement as a whole; then every
//! unit goes back to its caller unanswered, and the caller appends it on its
//! own, the way it would without grouping.

use std::sync::Arc;

use sqlx::postgres::PgPool;
use sqlx::Row;
use tasklog_event_store::{AppendResult, LogPosition, StoreError, StreamAppend};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{checked, expected_arg, EventColumns};

/// How appends are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouping {
    /// Groups written at once, each on a connection of the pool. One makes
    /// the largest groups, but then appends wait for each flush in turn; two
    /// let the next group gather and check while one flushes. Through the
    /// HTTP API on 2 cores (`TASKLOG_APPEND_SLOTS`, `scripts/bench-http.sh`,
    /// interleaved rounds, 2026-12-01) one slot gave as many or more
    /// commands/s than two at 1, 8 and 32 connections, with the command API
    /// alone and with every projector running, and PostgreSQL spent less
    /// CPU per command (larger groups); three and four gave fewer. The
    /// store-level throughput bench, which had favoured two, shows no
    /// difference beyond its noise when the two are interleaved (32 writers:
    /// 7,285–10,847 appends/s with one, 7,660–9,988 with two).
    pub in_flight: usize,
    /// Units in one group at most.
    pub max_units: usize,
    /// Events in one group at most (a unit is never split; a large one goes
    /// alone).
    pub max_events: usize,
}

impl Default for Grouping {
    fn default() -> Self {
        Self {
            in_flight: 1,
            max_units: 256,
            max_events: 2_000,
        }
    }
}

/// What became of one unit of a group.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupOutcome {
    /// Every part appended: one result per part, in order.
    Appended(Vec<AppendResult>),
    /// Part `part` was not at its expected version: nothing of the unit was stored.
    WrongVersion { part: usize, actual: Option<u64> },
    /// An event id of the unit is stored already: nothing of the unit was stored.
    EventIdTaken,
}

/// Writes `units` with one `append_batch` statement on `executor`: one
/// transaction unless the executor is in one already. An error means nothing
/// of any unit was stored (the statement failed as a whole).
pub async fn append_group<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    units: &[&[StreamAppend]],
) -> Result<Vec<GroupOutcome>, sqlx::Error> {
    let parts: usize = units.iter().map(|u| u.len()).sum();
    let events: usize = units
        .iter()
        .flat_map(|u| u.iter())
        .map(|p| p.events.len())
        .sum();
    let mut unit_of = Vec::with_capacity(parts);
    let mut streams = Vec::with_capacity(parts);
    let mut expected = Vec::with_capacity(parts);
    let mut counts = Vec::with_capacity(parts);
    let mut columns = EventColumns::with_capacity(events);
    for (u, unit) in units.iter().enumerate() {
        for part in unit.iter() {
            unit_of.push(u as i32);
            streams.push(part.stream.as_str());
            expected.push(expected_arg(part.expected));
            counts.push(part.events.len() as i32);
            columns.push(&part.stream, &part.events)?;
        }
    }
    let query = sqlx::query(
        "SELECT o_unit, o_part, o_status, o_commit, o_position, o_version FROM append_batch(\
         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&unit_of)
    .bind(&streams)
    .bind(&expected)
    .bind(&counts);
    let rows = columns.bind(query).fetch_all(executor).await?;

    // A part that only checks a version appends nothing: its result is that version.
    let mut outcomes: Vec<GroupOutcome> = units
        .iter()
        .map(|unit| GroupOutcome::Appended(unit.iter().map(|p| checked(p.expected)).collect()))
        .collect();
    for row in &rows {
        let unit: i32 = row.try_get("o_unit")?;
        let part: i32 = row.try_get("o_part")?;
        let status: i16 = row.try_get("o_status")?;
        let version: Option<i64> = row.try_get("o_version")?;
        let outcome = outcomes
            .get_mut(unit as usize)
            .ok_or_else(|| sqlx::Error::Protocol(format!("append_batch named unit {unit}")))?;
        match status {
            0 => {
                let position = LogPosition {
                    commit: row.try_get::<i64, _>("o_commit")? as u64,
                    event: row.try_get::<i64, _>("o_position")? as u64,
                };
                let GroupOutcome::Appended(results) = outcome else {
                    continue;
                };
                let result = results.get_mut(part as usize).ok_or_else(|| {
                    sqlx::Error::Protocol(format!("append_batch named part {part}"))
                })?;
                if result.first_position == LogPosition::START {
                    result.first_position = position;
                }
                result.first_position = result.first_position.min(position);
                result.last_position = result.last_position.max(position);
                result.stream_version = result.stream_version.max(version.unwrap_or(0) as u64);
            }
            1 => {
                *outcome = GroupOutcome::WrongVersion {
                    part: part as usize,
                    actual: version.filter(|v| *v > 0).map(|v| v as u64),
                }
            }
            _ => *outcome = GroupOutcome::EventIdTaken,
        }
    }
    Ok(outcomes)
}

/// A unit waiting for its group, and where its answer goes.
struct Pending {
    unit: Vec<StreamAppend>,
    reply: oneshot::Sender<(Vec<StreamAppend>, Option<GroupOutcome>)>,
}

impl Pending {
    fn events(&self) -> usize {
        self.unit.iter().map(|p| p.events.len()).sum()
    }
}

/// The queue of a store's appends and the task that writes them in groups.
pub(crate) struct Groups {
    queue: mpsc::Sender<Pending>,
}

impl Groups {
    /// Starts the dispatcher (on the current Tokio runtime); it ends when the
    /// store and every clone of it are gone.
    pub(crate) fn start(pool: PgPool, grouping: Grouping) -> Self {
        let (queue, pending) = mpsc::channel(grouping.max_units.max(1) * 4);
        tokio::spawn(dispatch(pool, pending, grouping));
        Self { queue }
    }

    /// Appends `unit` in the next group. The unit comes back with its outcome,
    /// or with none when its group failed as a whole (nothing of it stored):
    /// then the caller appends it on its own.
    pub(crate) async fn append(
        &self,
        unit: Vec<StreamAppend>,
    ) -> Result<(Vec<StreamAppend>, Option<GroupOutcome>), StoreError> {
        let (reply, answer) = oneshot::channel();
        if let Err(refused) = self.queue.send(Pending { unit, reply }).await {
            return Ok((refused.0.unit, None));
        }
        // The dispatcher dropped the unit: only when its runtime shuts down,
        // maybe after the group was written.
        answer.await.map_err(|_| {
            StoreError::Unavailable("the append's group was dropped unanswered".into())
        })
    }
}

/// Takes whatever is queued whenever a slot is free, and writes it as one group.
async fn dispatch(pool: PgPool, mut pending: mpsc::Receiver<Pending>, grouping: Grouping) {
    let slots = Arc::new(Semaphore::new(grouping.in_flight.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = pending.recv().await else {
            return;
        };
        let mut events = first.events();
        let mut group = vec![first];
        while group.len() < grouping.max_units && events < grouping.max_events {
            let Ok(next) = pending.try_recv() else {
                break;
            };
            events += next.events();
            group.push(next);
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            write(&pool, group).await;
            drop(slot);
        });
    }
}

async fn write(pool: &PgPool, mut group: Vec<Pending>) {
    // Groups written at once take the streams' locks in one order (a stable
    // sort keeps arrival order within a stream): two groups that share two
    // streams then wait for each other instead of deadlocking.
    group.sort_by(|a, b| first_stream(a).cmp(first_stream(b)));
    let units: Vec<&[StreamAppend]> = group.iter().map(|p| p.unit.as_slice()).collect();
    let outcomes = match append_group(pool, &units).await {
        Ok(outcomes) => outcomes.into_iter().map(Some).collect(),
        Err(e) => {
            tracing::debug!(error = %e, units = group.len(),
                "a group of appends failed as a whole; each is appended on its own");
            vec![None; group.len()]
        }
    };
    for (p, outcome) in group.into_iter().zip(outcomes) {
        // A caller that went away no longer needs its answer.
        let _ = p.reply.send((p.unit, outcome));
    }
}

fn first_stream(p: &Pending) -> &str {
    p.unit.first().map_or("", |part| part.stream.as_str())
}
