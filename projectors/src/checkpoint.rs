//! Projection checkpoints (`projection_checkpoints`), read in one place.

use sqlx::PgExecutor;
use tasklog_event_store::LogPosition;

/// Where one generation of a projection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub generation: i32,
    pub position: LogPosition,
    pub events_applied: i64,
}

const SELECT: &str = "SELECT c.generation, c.commit_id, c.event_position, c.events_applied \
    FROM projection_checkpoints c";

type Row = (i32, i64, i64, i64);

fn decode((generation, commit, event, events_applied): Row) -> Checkpoint {
    Checkpoint {
        generation,
        position: LogPosition {
            commit: commit as u64,
            event: event as u64,
        },
        events_applied,
    }
}

/// The checkpoint of `projection`'s `generation`; `None` when that
/// generation has none (never created, or dropped by a rebuild).
pub async fn of_generation<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
    generation: i32,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "{SELECT} WHERE c.projection = $1 AND c.generation = $2"
    ))
    .bind(projection)
    .bind(generation)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(decode))
}

/// The checkpoint of `projection`'s active generation; `None` before it
/// first ran.
pub async fn active<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT generation, commit_id, event_position, events_applied FROM active_checkpoints \
         WHERE projection = $1 AND commit_id IS NOT NULL",
    )
    .bind(projection)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(decode))
}
