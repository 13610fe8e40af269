//! Operator views and actions: each projection's standing (here), rebuilds
//! ([`rebuild`]) and parked events ([`parked`], [`replay_parked`]).

use chrono::Utc;
use sqlx::PgPool;
use tasklog_event_store::{EventStore, LogPosition};

use crate::{checkpoint, ProjectorError};

mod dead_letters;
mod rebuild;

pub use dead_letters::{parked, replay_parked, replay_parked_into};
pub use rebuild::{rebuild, RebuildLock, RebuildProgress, REBUILD_BATCH};

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

/// Every projection's standing: checkpoints and dead letters from the
/// projectors' tables, the lag from the store.
pub async fn status(
    pool: &PgPool,
    store: &dyn EventStore,
    projections: &[std::sync::Arc<dyn crate::Projection>],
) -> Result<Vec<ProjectionStatus>, ProjectorError> {
    let mut out = Vec::new();
    for p in projections {
        let active = checkpoint::active(pool, p.name()).await?;
        let backlog = store
            .backlog(active.map_or(LogPosition::START, |c| c.position))
            .await?;
        let parked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projection_dead_letters WHERE projection = $1",
        )
        .bind(p.name())
        .fetch_one(pool)
        .await?;
        out.push(ProjectionStatus {
            name: p.name().to_owned(),
            generation: active.map(|c| c.generation),
            checkpoint: active.map(|c| c.position.to_string()),
            events_applied: active.map_or(0, |c| c.events_applied),
            lag_events: backlog.events as i64,
            lag_seconds: backlog
                .oldest_recorded_at
                .map_or(0.0, |t| (Utc::now() - t).as_seconds_f64()),
            parked,
        });
    }
    Ok(out)
}
