//! Dead letters: events a projection parked, and replaying one after a fix.

use sqlx::PgPool;
use sqlx::Row;
use tasklog_event_store::{EventStore, RecordedEvent};
use uuid::Uuid;

use crate::generation::{self, schema};
use crate::{checkpoint, ApplyError, Projection, ProjectorError};

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
    projections: &[std::sync::Arc<dyn Projection>],
    id: i64,
) -> Result<Result<(), String>, ProjectorError> {
    let name: String =
        sqlx::query_scalar("SELECT projection FROM projection_dead_letters WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| ProjectorError::Unknown(format!("parked event {id}")))?;
    let projection = projections
        .iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| ProjectorError::Unknown(name.clone()))?;
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
    generation::lock_switch(&mut tx, name).await?;
    // Later events of its stream the projection applied: up to its
    // checkpoint, and not parked.
    let applied_to = checkpoint::of_generation(&mut *tx, name, generation).await?;
    let later: Vec<RecordedEvent> = match applied_to {
        Some(c) => store
            .read_stream(&event.stream_id, event.stream_version + 1)
            .await?
            .into_iter()
            .filter(|e| e.position <= c.position)
            .collect(),
        None => Vec::new(),
    };
    let ids: Vec<Uuid> = later.iter().map(|e| e.event_id).collect();
    let parked: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM projection_dead_letters WHERE projection = $1 AND event_id = ANY($2)",
    )
    .bind(name)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let applied: Vec<u64> = later
        .iter()
        .filter(|e| !parked.contains(&e.event_id))
        .map(|e| e.stream_version)
        .collect();
    if let (Some(first), Some(last)) = (applied.iter().min(), applied.iter().max()) {
        let later = applied.len();
        return Ok(Err(format!(
            "refused: {name} has applied {later} later event(s) of {} (versions {}..={}) since \
             this one (version {}); applied now it would overwrite what they changed. \
             Rebuild the projection (`tasklog projections rebuild {name}`): it applies every \
             event in its place.",
            event.stream_id, first, last, event.stream_version
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
        Err(ApplyError::Transient(e)) => return Err(ProjectorError::Unavailable(e)),
        Err(ApplyError::Failed(error)) => return Ok(Err(error)),
    }
    sqlx::query("DELETE FROM projection_dead_letters WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(()))
}
