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

mod error;
pub mod generation;
pub mod projections;
mod runner;
pub mod status;

pub use error::{ApplyError, ProjectorError};
pub use runner::{run_all, BatchOutcome, Projector, ProjectorConfig};

use async_trait::async_trait;
use sqlx::PgConnection;
use tasklog_event_store::RecordedEvent;

/// A read model kept from the global log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Its name (checkpoint key, schema prefix, CLI argument).
    fn name(&self) -> &'static str;
    /// Its tables, created in a fresh generation's schema.
    fn ddl(&self) -> &'static str;
    /// The tables exposed as views in schema `read`.
    fn tables(&self) -> &'static [&'static str];
    /// Applies a batch of events, in log order, inside the batch's
    /// transaction (search_path is the generation's schema), with the same
    /// result as applying them one at a time. Holds no business logic:
    /// events carry what it needs.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError>;
}

/// Every projection, in the order they are run and shown.
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
