//! Rebuilds: replay the whole log into a new generation while the active one
//! serves, then switch the views in one step.

use std::sync::Arc;

use sqlx::{Connection, PgConnection, PgPool};
use tasklog_event_store::{EventStore, LogPosition};

use crate::generation::{self, schema};
use crate::{Projection, Projector, ProjectorConfig, ProjectorError};

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

/// One rebuild of a projection at a time: held for a rebuild's whole run.
///
/// Two rebuilds of one projection would pick their generations from the same
/// newest one, and the later could drop the tables the earlier is filling, or
/// leave a generation behind that nothing drops. The lock is a session-level
/// advisory lock on a connection of its own, outside the pool: it goes with
/// that connection however the rebuild ends, a crash included.
pub struct RebuildLock {
    conn: PgConnection,
}

impl RebuildLock {
    /// Takes the lock of `projection`'s rebuilds; `None` while another
    /// rebuild (in this process or another) holds it.
    pub async fn try_take(pool: &PgPool, projection: &str) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(format!("tasklog.projection.rebuild.{projection}"))
                .fetch_one(&mut conn)
                .await?;
        if taken {
            Ok(Some(Self { conn }))
        } else {
            conn.close().await?;
            Ok(None)
        }
    }

    /// Lets the next rebuild of the projection start.
    pub async fn release(self) -> Result<(), sqlx::Error> {
        self.conn.close().await
    }
}

/// Replays the whole log into a new generation while the active one keeps
/// serving, then points the views at it in one transaction and drops the old.
///
/// [`ProjectorError::RebuildRunning`] when another rebuild of the projection
/// is running: nothing is done.
pub async fn rebuild(
    pool: &PgPool,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    batch_size: usize,
    progress: impl Fn(RebuildProgress),
) -> Result<i32, ProjectorError> {
    let name = projection.name();
    let Some(lock) = RebuildLock::try_take(pool, name).await? else {
        return Err(ProjectorError::RebuildRunning(name.to_owned()));
    };
    let new = rebuild_holding_lock(pool, store, projection, batch_size, progress).await?;
    lock.release().await?;
    Ok(new)
}

async fn rebuild_holding_lock(
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

    // For the progress bar only: a cheap estimate, not a count.
    let total = store.estimated_len().await?;
    // The whole log as of now: wait out transactions that hold readers back.
    let target = store.high_water_mark().await?.head.unwrap_or_default();
    let config = ProjectorConfig {
        batch_size,
        ..ProjectorConfig::default()
    };
    let mut applied = 0u64;
    if let Some(bulk) = projection.for_rebuild() {
        let projector = Projector::new(pool.clone(), store.clone(), bulk.clone(), config.clone());
        catch_up(&projector, new, target, total, &mut applied, &progress).await?;
        finish(pool, bulk.as_ref(), new).await?;
    }
    let projector = Projector::new(pool.clone(), store.clone(), projection.clone(), config);
    catch_up(&projector, new, target, total, &mut applied, &progress).await?;
    generation::create_indexes(pool, projection.as_ref(), new).await?;
    // Events that came while indexing.
    let head = store.high_water_mark().await?.head.unwrap_or_default();
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
    generation::lock_switch(&mut tx, name).await?;
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

/// Lets the projection write out what it kept in memory or sent behind.
async fn finish(
    pool: &PgPool,
    projection: &dyn Projection,
    generation: i32,
) -> Result<(), ProjectorError> {
    projection
        .finish_rebuild(pool, &schema(projection.name(), generation))
        .await
        .map_err(|e| match e {
            crate::ApplyError::Transient(e) => ProjectorError::Unavailable(e),
            crate::ApplyError::Failed(e) => ProjectorError::Unknown(e),
        })
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
