//! Runs one projection: a step (one batch from the checkpoint, with retries
//! and dead letters, [`step`]), the live loop around it under a lease
//! ([`live`]), and the batch protocol both write through ([`batch`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tasklog_event_store::{EventStore, LogPosition};

use crate::{checkpoint, generation};
use crate::{Projection, ProjectorError, SharedLog};

mod batch;
mod live;
mod step;

pub use live::run_all;

/// Tuning of a projector.
#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    /// Events per transaction.
    pub batch_size: usize,
    /// Tries of a failing event before it is parked.
    pub max_attempts: u32,
    /// First backoff after a failure; doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a caught-up projector waits for an announcement before it
    /// looks again anyway (covers rolled-back appends that announce nothing).
    pub idle_wait: Duration,
    /// How often a standby runner tries to take the lease.
    pub lease_retry: Duration,
    /// The least time between the starts of two live steps. Under load,
    /// announcements come faster than batches apply: pacing lets each step
    /// take everything that came meanwhile, for a bounded delay, instead of
    /// spending the machine on batches of one event.
    pub min_step_interval: Duration,
    /// The most: steps are paced at [`STEP_PACE`] times the last step's
    /// duration within these bounds. A step slows down when the machine is
    /// busy, and then fewer, larger steps leave it more time for the rest.
    pub max_step_interval: Duration,
}

/// Live steps start at least this many times the last step's duration apart.
pub const STEP_PACE: u32 = 2;

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_attempts: 5,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            idle_wait: Duration::from_millis(500),
            lease_retry: Duration::from_secs(1),
            // 25 ms rather than 5: +30% commands/s over HTTP at 1 to 32
            // connections with every projector running (scripts/bench-http.sh,
            // README), for at most 75 ms more on a consistency token's wait.
            min_step_interval: Duration::from_millis(25),
            max_step_interval: Duration::from_millis(75),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    pub applied: usize,
    pub parked: usize,
    /// The checkpoint after the step.
    pub position: LogPosition,
    /// Nothing was left to read.
    pub caught_up: bool,
    /// Committed events wait behind an open transaction: look again soon.
    pub held_back: bool,
}

/// Keeps one projection.
#[derive(Clone)]
pub struct Projector {
    pool: PgPool,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
    config: ProjectorConfig,
    /// Where live steps read the log, when shared with other projectors.
    shared: Option<Arc<SharedLog>>,
}

impl Projector {
    pub fn new(
        pool: PgPool,
        store: Arc<dyn EventStore>,
        projection: Arc<dyn Projection>,
        config: ProjectorConfig,
    ) -> Self {
        Self {
            pool,
            store,
            projection,
            config,
            shared: None,
        }
    }

    /// Live steps read the log through `shared`, with the other projectors
    /// that do. (Appends are heard through the store's signal, which every
    /// projector on one store shares.)
    pub fn sharing(mut self, shared: Arc<SharedLog>) -> Self {
        self.shared = Some(shared);
        self
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Where generation `generation` stands. A generation a rebuild replaced
    /// has no checkpoint left: the answer names the active one.
    pub async fn checkpoint(&self, generation: i32) -> Result<LogPosition, ProjectorError> {
        match checkpoint::of_generation(&self.pool, self.name(), generation).await? {
            Some(c) => Ok(c.position),
            None => match generation::active(&self.pool, self.name()).await? {
                Some(active) if active != generation => Err(ProjectorError::GenerationChanged(
                    self.name().to_owned(),
                    active,
                )),
                _ => Err(ProjectorError::Unknown(format!(
                    "{} generation {generation}",
                    self.name()
                ))),
            },
        }
    }
}
