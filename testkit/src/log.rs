//! Domain events written through the real event store, and the real
//! projectors stepped over them until they have applied them: how tests
//! give the read side something to read, never by SQL into read models.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tasklog_domain::{encode_event, DomainEvent};
use tasklog_event_store::{EventMetadata, EventStore, ExpectedVersion, LogPosition, NewEvent};
use tasklog_projectors::{generation, status, Projector, ProjectorConfig};
use uuid::Uuid;

/// Who wrote events, for which organization, and when they happened (read
/// models take their times from here).
#[derive(Clone, Copy, Debug)]
pub struct By {
    pub org: Uuid,
    pub actor: Uuid,
    pub at: DateTime<Utc>,
}

impl By {
    /// `actor` in `org`, now.
    pub fn now(org: Uuid, actor: Uuid) -> Self {
        Self {
            org,
            actor,
            at: Utc::now(),
        }
    }
}

/// What an append stored.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Its last event's position: the consistency token of the append.
    pub position: LogPosition,
    /// The stream's version after it.
    pub version: u64,
    /// The ids of its events, in order.
    pub event_ids: Vec<Uuid>,
}

/// The event store over `pool`: the one place the kit names a backend.
pub fn store(pool: &PgPool) -> Arc<dyn EventStore> {
    tasklog::event_store(pool)
}

/// The event log of a test database.
#[derive(Clone)]
pub struct EventLog {
    store: Arc<dyn EventStore>,
}

impl EventLog {
    /// The log of `pool`'s database, through [`store`].
    pub fn new(pool: &PgPool) -> Self {
        Self { store: store(pool) }
    }

    /// The store itself.
    pub fn store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    /// Appends `events` to the end of `stream`, as `by` says.
    pub async fn append<E: DomainEvent>(
        &self,
        stream: &str,
        by: By,
        events: impl IntoIterator<Item = E>,
    ) -> Appended {
        let new: Vec<NewEvent> = events
            .into_iter()
            .map(|e| {
                let (event_type, payload) = encode_event(&e);
                NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event_type.into(),
                    schema_version: e.schema_version(),
                    payload,
                    personal: e.personal_fields(),
                    metadata: EventMetadata {
                        org_id: by.org,
                        actor_id: Some(by.actor),
                        correlation_id: Uuid::now_v7(),
                        causation_id: None,
                        occurred_at: by.at,
                    },
                }
            })
            .collect();
        let event_ids = new.iter().map(|e| e.event_id).collect();
        let result = self
            .store
            // A test writes its streams alone: no version to hold the append to.
            .append(stream, ExpectedVersion::Any, new)
            .await
            .unwrap_or_else(|e| panic!("appending to {stream}: {e}"));
        Appended {
            position: result.last_position,
            version: result.stream_version,
            event_ids,
        }
    }
}

/// Every projection, each with a projector stepped as its runner would.
#[derive(Clone)]
pub struct Projections {
    pool: PgPool,
    store: Arc<dyn EventStore>,
    projectors: Vec<(Projector, i32)>,
}

impl Projections {
    /// Every projection's first generation (tables, views, checkpoint at the
    /// start of the log), with a projector each.
    pub async fn start(pool: &PgPool, log: &EventLog) -> Self {
        let store = log.store();
        let mut projectors = Vec::new();
        for p in tasklog_projectors::all() {
            let g = generation::ensure_active(pool, p.as_ref())
                .await
                .expect("a projection's first generation is created");
            let projector =
                Projector::new(pool.clone(), store.clone(), p, ProjectorConfig::default());
            projectors.push((projector, g));
        }
        Self {
            pool: pool.clone(),
            store,
            projectors,
        }
    }

    /// Steps every projector until it has applied `target`.
    pub async fn catch_up(&self, target: LogPosition) {
        self.catch_up_only(&[], target).await
    }

    /// Steps the projectors of `names` (every one when empty), side by side,
    /// until each has applied `target`. Other tests' open transactions may
    /// hold readers of the log back for a moment, so each looks again until
    /// then.
    pub async fn catch_up_only(&self, names: &[&str], target: LogPosition) {
        let chosen = self
            .projectors
            .iter()
            .filter(|(p, _)| names.is_empty() || names.contains(&p.name()));
        futures::future::join_all(chosen.map(|(projector, g)| async move {
            for _ in 0..6000 {
                let outcome = projector
                    .project_next_batch(*g, true)
                    .await
                    .unwrap_or_else(|e| panic!("{} applies its batch: {e}", projector.name()));
                if outcome.position >= target {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{} did not reach {target}", projector.name());
        }))
        .await;
    }

    /// Rebuilds every projection from the log, as `tasklog projections
    /// rebuild` does.
    pub async fn rebuild(&self) {
        for p in tasklog_projectors::all() {
            status::rebuild(&self.pool, self.store.clone(), p, 1000, |_| {})
                .await
                .expect("the projection rebuilds");
        }
    }
}
