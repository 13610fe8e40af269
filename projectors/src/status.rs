//! Operator views and actions: status, rebuild, parked events.

use std::sync::Arc;

use sqlx::PgPool;
use sqlx::Row;
use tasklog_event_store::{EventStore, LogPosition};
use uuid::Uuid;

use crate::generation::{self, schema};
use crate::{ApplyError, Projection, Projector, ProjectorConfig, ProjectorError};

/// One projection's standing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub generation: Option<i32>,
    pub checkpoint: Option<String>,
    pub events_applied: i64,
    /// Events in the log the projection has not applied yet.
    pub lag_events: i64,
    /// How long the oldest of those has waited.
    pub lag_seconds: f64,
    pub parked: i64,
}

/// Every projection's standing.
pub async fn status(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let mut out = Vec::new();
    for p in crate::all() {
        let row: Option<(i32, i64, i64, i64)> = sqlx::query_as(
            "SELECT p.active_generation, c.commit_id, c.event_position, c.events_applied \
             FROM projections p JOIN projection_checkpoints c \
               ON c.projection = p.name AND c.generation = p.active_generation \
             WHERE p.name = $1",
        )
        .bind(p.name())
        .fetch_optional(pool)
        .await?;
        let (commit, event) = row.map(|r| (r.1, r.2)).unwrap_or((0, 0));
        let (lag_events, lag_seconds): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(recorded_at))::float8 FROM events \
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2)",
        )
        .bind(commit.to_string())
        .bind(event)
        .fetch_one(pool)
        .await?;
        let parked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projection_dead_letters WHERE projection = $1",
        )
        .bind(p.name())
        .fetch_one(pool)
        .await?;
        out.push(ProjectionStatus {
            name: p.name().to_owned(),
            generation: row.map(|r| r.0),
            checkpoint: row.map(|r| {
                LogPosition {
                    commit: r.1 as u64,
                    event: r.2 as u64,
                }
                .to_string()
            }),
            events_applied: row.map_or(0, |r| r.3),
            lag_events,
            lag_seconds: lag_seconds.unwrap_or(0.0),
            parked,
        });
    }
    Ok(out)
}

/// Events per transaction of a rebuild: large, so that most of a task's
/// events fold in memory into one row write.
pub const REBUILD_BATCH: usize = 20_000;

/// How a rebuild is going.
#[derive(Debug, Clone, Copy)]
pub struct RebuildProgress {
    pub applied: u64,
    /// Events in the log when the rebuild started.
    pub total: u64,
}

/// Replays the whole log into a new generation while the active one keeps
/// serving, then points the views at it in one transaction and drops the old.
pub async fn rebuild(
    pool: &PgPool,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    batch_size: usize,
    progress: impl Fn(RebuildProgress),
) -> Result<i32, ProjectorError> {
    let name = projection.name();
    let old = generation::ensure_active(pool, projection.as_ref()).await?;
    let started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?;
    let newest: i32 = sqlx::query_scalar(
        "SELECT coalesce(max(generation), 0) FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await?;
    let new = newest.max(old) + 1;
    let mut tx = pool.begin().await?;
    // Bulk-load without secondary indexes; they are built once, at the end.
    generation::create_tables_in(&mut tx, projection.as_ref(), new, true).await?;
    tx.commit().await?;

    // For the progress bar only: the span of positions (two index steps; a
    // rolled-back append leaves a gap) instead of counting every event.
    let total: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(global_position) - min(global_position) + 1, 0) FROM events",
    )
    .fetch_one(pool)
    .await?;
    // The whole log as of now: wait out transactions that hold readers back.
    let target = store.high_water_mark().await?.head.unwrap_or_default();
    let config = ProjectorConfig {
        batch_size,
        ..ProjectorConfig::default()
    };
    let projector = Projector::new(pool.clone(), store, projection.clone(), config);
    let mut applied = 0u64;
    let total = total as u64;
    catch_up(&projector, new, target, total, &mut applied, &progress).await?;
    generation::create_indexes(pool, projection.as_ref(), new).await?;
    // Events that came while indexing.
    let head = projector_head(pool).await?;
    catch_up(&projector, new, head, total, &mut applied, &progress).await?;

    let mut tx = pool.begin().await?;
    sqlx::query("SELECT active_generation FROM projections WHERE name = $1 FOR UPDATE")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    generation::point_views(&mut tx, projection.as_ref(), new).await?;
    sqlx::query("UPDATE projections SET active_generation = $2 WHERE name = $1")
        .bind(name)
        .bind(new)
        .execute(&mut *tx)
        .await?;
    // Readers waiting for a consistency token look again at the new generation.
    sqlx::query(
        "SELECT pg_notify($3, format('%s %s %s.%s', projection, generation, commit_id, event_position)) \
         FROM projection_checkpoints WHERE projection = $1 AND generation = $2",
    )
    .bind(name)
    .bind(new)
    .bind(crate::CHECKPOINT_CHANNEL)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    // A live batch that read the old generation before the switch holds the
    // lock shared until it commits; batches after this one read the new one.
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('tasklog.projection.switch.' || $1, 0))",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        schema(name, old)
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1 AND generation <> $2")
        .bind(name)
        .bind(new)
        .execute(pool)
        .await?;
    // Events parked before the rebuild that it applied in their place (one
    // that failed again was parked again, with a new time).
    sqlx::query("DELETE FROM projection_dead_letters WHERE projection = $1 AND parked_at < $2")
        .bind(name)
        .bind(started)
        .execute(pool)
        .await?;
    Ok(new)
}

/// Applies batches to `generation` until its checkpoint reaches `target`.
async fn catch_up(
    projector: &Projector,
    generation: i32,
    target: LogPosition,
    total: u64,
    applied: &mut u64,
    progress: &impl Fn(RebuildProgress),
) -> Result<(), ProjectorError> {
    projector
        .catch_up_to(generation, target, |outcome| {
            *applied += (outcome.applied + outcome.parked) as u64;
            progress(RebuildProgress {
                applied: *applied,
                total: total.max(*applied),
            });
        })
        .await?;
    Ok(())
}

/// The last committed event's position.
async fn projector_head(pool: &PgPool) -> Result<LogPosition, sqlx::Error> {
    let head: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(head.map_or(LogPosition::START, |(c, e)| LogPosition {
        commit: c as u64,
        event: e as u64,
    }))
}

/// Parked events, oldest first.
pub async fn parked(pool: &PgPool) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT json_build_object('id', id, 'projection', projection, 'event_id', event_id, \
            'event_type', event_type, 'error', error, 'attempts', attempts, 'parked_at', parked_at) \
         FROM projection_dead_letters ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Applies a parked event again (after a fix) to its projection's active
/// generation; on success it leaves the dead-letter table. `Ok(Err(why))`
/// when it still fails, or when it is refused (see [`replay_parked_into`]).
pub async fn replay_parked(
    pool: &PgPool,
    store: &dyn EventStore,
    id: i64,
) -> Result<Result<(), String>, ProjectorError> {
    let name: String =
        sqlx::query_scalar("SELECT projection FROM projection_dead_letters WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| ProjectorError::Unknown(format!("parked event {id}")))?;
    let projection = crate::by_name(&name).ok_or_else(|| ProjectorError::Unknown(name.clone()))?;
    replay_parked_into(pool, store, projection.as_ref(), id).await
}

/// [`replay_parked`] with the projection given.
///
/// A replay must leave the read model as if the event had been applied in
/// its place. Applied now, it lands on rows that later events of its stream
/// may have changed since (an old `TaskDetailsEdited` would overwrite newer
/// edits), so it is refused when the projection has applied any later event
/// of the same stream (later ones that are parked too were not applied: the
/// oldest of them replays first). A refused event stays parked; a rebuild of
/// the projection applies every event in its place.
pub async fn replay_parked_into(
    pool: &PgPool,
    store: &dyn EventStore,
    projection: &dyn Projection,
    id: i64,
) -> Result<Result<(), String>, ProjectorError> {
    let name = projection.name();
    let event_id: Uuid = sqlx::query_scalar(
        "SELECT event_id FROM projection_dead_letters WHERE id = $1 AND projection = $2",
    )
    .bind(id)
    .bind(name)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ProjectorError::Unknown(format!("parked event {id}")))?;
    let event = store
        .find_event(event_id)
        .await?
        .ok_or_else(|| ProjectorError::Unknown(format!("event {event_id}")))?;
    let generation = generation::ensure_active(pool, projection).await?;
    let mut tx = pool.begin().await?;
    // Live batches hold this lock shared: none applies events meanwhile.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('tasklog.projection.switch.' || $1, 0))",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    let (later, first, last): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT count(*), min(e.stream_version), max(e.stream_version) \
         FROM events e JOIN projection_checkpoints c \
           ON c.projection = $3 AND c.generation = $4 \
         WHERE e.stream_id = $1 AND e.stream_version > $2 \
           AND (e.transaction_id, e.global_position) <= (c.commit_id::text::xid8, c.event_position) \
           AND NOT EXISTS (SELECT 1 FROM projection_dead_letters d \
                           WHERE d.projection = $3 AND d.event_id = e.event_id)",
    )
    .bind(&event.stream_id)
    .bind(event.stream_version as i64)
    .bind(name)
    .bind(generation)
    .fetch_one(&mut *tx)
    .await?;
    if later > 0 {
        return Ok(Err(format!(
            "refused: {name} has applied {later} later event(s) of {} (versions {}..={}) since \
             this one (version {}); applied now it would overwrite what they changed. \
             Rebuild the projection (`tasklog projections rebuild {name}`): it applies every \
             event in its place.",
            event.stream_id,
            first.unwrap_or_default(),
            last.unwrap_or_default(),
            event.stream_version
        )));
    }
    sqlx::query(&format!(
        "SET LOCAL search_path TO {}, public",
        schema(name, generation)
    ))
    .execute(&mut *tx)
    .await?;
    match projection
        .apply(&mut tx, std::slice::from_ref(&event))
        .await
    {
        Ok(()) => {}
        Err(ApplyError::Transient(e)) => return Err(e.into()),
        Err(ApplyError::Failed(error)) => return Ok(Err(error)),
    }
    sqlx::query("DELETE FROM projection_dead_letters WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(()))
}
