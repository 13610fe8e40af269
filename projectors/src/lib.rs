//! Projectors: each projection follows the global event log from its own
//! checkpoint and keeps its read-model tables.
//!
//! - A batch of events and the checkpoint move in one transaction, and the
//!   checkpoint only moves if it still holds what the batch started from
//!   (compare and set): a crash at any point, or a second writer, can neither
//!   lose an event nor apply one twice.
//! - One runner per projection holds its lease (a session advisory lock); the
//!   lock dies with its connection, so another runner takes over.
//! - A failing event is retried with exponential backoff; if it keeps failing
//!   it is parked in `projection_dead_letters` and the projection moves on.
//!   Transient database errors are retried forever and never park.
//! - Tables live in a schema per generation, exposed as views in `read`; a
//!   rebuild fills a new generation while the old one serves, then re-points
//!   the views in one transaction.
//! - Projectors learn of appends through the store's signal
//!   ([`EventStore::appends`](tasklog_event_store::EventStore::appends)) and
//!   read the log through the store; their own tables (checkpoints, dead
//!   letters, read models) are PostgreSQL.

mod checkpoint;
mod error;
pub mod generation;
pub mod projections;
pub mod replay;
mod runner;
mod shared_log;
pub mod status;

pub use error::{ApplyError, BoxError, ProjectorError};
pub use runner::{run_all, BatchOutcome, Projector, ProjectorConfig, STEP_PACE};
pub use shared_log::SharedLog;

use async_trait::async_trait;
use sqlx::PgConnection;
use tasklog_event_store::{LogPosition, RecordedEvent};

/// The channel every checkpoint move is announced on when its batch commits
/// (by `projection_batch_advance`; a rebuild's switch announces too), with
/// the payload `"<projection> <generation> <commit>.<event>"`.
pub const CHECKPOINT_CHANNEL: &str = "tasklog_checkpoints";

/// Reads a [`CHECKPOINT_CHANNEL`] payload: projection, generation, position.
pub fn parse_checkpoint(payload: &str) -> Option<(&str, i32, LogPosition)> {
    let mut parts = payload.split(' ');
    let name = parts.next()?;
    let generation = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some((name, generation, position))
}

/// A read model kept from the global log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Its name (checkpoint key, schema prefix, CLI argument).
    fn name(&self) -> &'static str;
    /// Its tables, created in a fresh generation's schema.
    fn ddl(&self) -> &'static str;
    /// The tables exposed as views in schema `read`.
    fn tables(&self) -> &'static [&'static str];
    /// The stream categories (`task` of `task-<uuid>`) whose events it
    /// applies; `None`, every event. A batch with none of them only moves the
    /// checkpoint, in one round trip.
    fn categories(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// The least time between the starts of two live steps after one that
    /// caught up, for a store that wants fewer, larger writes; above the
    /// runner's [`ProjectorConfig::min_step_interval`]. A projection that is
    /// behind reads on at the runner's pace: a floor never slows a catch-up.
    fn min_step_interval(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Applies a batch of events, in log order, inside the batch's
    /// transaction (search_path is the generation's schema), with the same
    /// result as applying them one at a time. Holds no business logic:
    /// events carry what it needs.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError>;
    /// What a rebuild applies its batches through up to the log's head as
    /// it started; `None`, this projection. A rebuild fills a generation
    /// nobody reads, and one that stops is thrown away (the next starts a new
    /// generation), so what this returns may keep its state in memory between
    /// batches, or send work behind, as long as
    /// [`Projection::finish_rebuild`] writes it all out. Events after that
    /// head go through this projection, once the deferred indexes are built.
    fn for_rebuild(&self) -> Option<std::sync::Arc<dyn Projection>> {
        None
    }
    /// Called once on what [`Projection::for_rebuild`] returned, after its
    /// last batch and before the deferred indexes are built: writes out
    /// whatever `apply` kept in memory or sent behind into the new
    /// generation's `schema`, or fails the rebuild. Nobody reads that schema
    /// yet, so it may write through several connections of `pool`, each
    /// committing on its own.
    async fn finish_rebuild(&self, _pool: &sqlx::PgPool, _schema: &str) -> Result<(), ApplyError> {
        Ok(())
    }
}

/// Every projection into PostgreSQL, in the order they are run and shown
/// (the binary adds the analytics projection, which needs its ClickHouse).
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(projections::Directory),
        std::sync::Arc::new(projections::Tasks),
        std::sync::Arc::new(projections::Activity),
        std::sync::Arc::new(projections::Notifications),
    ]
}

/// The projection called `name`.
pub fn by_name(name: &str) -> Option<std::sync::Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_announcement_names_projection_generation_and_position() {
        assert_eq!(
            parse_checkpoint("tasks 3 812.4051"),
            Some((
                "tasks",
                3,
                LogPosition {
                    commit: 812,
                    event: 4051
                }
            ))
        );
        assert_eq!(parse_checkpoint("tasks 3"), None);
        assert_eq!(parse_checkpoint("tasks x 812.4051"), None);
        assert_eq!(parse_checkpoint("tasks 3 812.4051 extra"), None);
    }
}
