//! The live loop: a runner takes its projection's lease, steps whenever
//! appends are announced (paced, with fallback looks), and hands over when
//! its connection dies; [`run_all`] runs every projection so.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use sqlx::{Connection, PgConnection, PgPool};
use tasklog_event_store::{EventStore, LogPosition};
use tokio::sync::watch;

use super::batch::Writer;
use super::{Projector, ProjectorConfig, STEP_PACE};
use crate::{generation, ProjectorError, SharedLog};

impl Projector {
    /// Runs until `shutdown` turns true: takes the lease, follows the log
    /// live, and hands over when its connection dies.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), ProjectorError> {
        while !*shutdown.borrow() {
            let Some(lease) = self.take_lease(&mut shutdown).boxed().await? else {
                break;
            };
            match self.follow(lease, &mut shutdown).boxed().await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(projection = self.name(), error = %e, "projector stopped; restarting");
                    tokio::time::sleep(self.config.lease_retry).await;
                }
            }
        }
        Ok(())
    }

    /// Waits for the projection's lease; `None` on shutdown.
    async fn take_lease(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<PgConnection>, ProjectorError> {
        loop {
            if *shutdown.borrow() {
                return Ok(None);
            }
            let attempt = async {
                let mut conn = PgConnection::connect_with(&self.pool.connect_options()).await?;
                let got: bool = sqlx::query_scalar(
                    "SELECT pg_try_advisory_lock(hashtextextended('tasklog.projection.' || $1, 0))",
                )
                .bind(self.name())
                .fetch_one(&mut conn)
                .await?;
                Ok::<_, sqlx::Error>(got.then_some(conn))
            };
            match attempt.await {
                Ok(Some(conn)) => {
                    tracing::info!(projection = self.name(), "lease taken");
                    return Ok(Some(conn));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(projection = self.name(), error = %e, "could not ask for the lease")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.lease_retry) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn follow(
        &self,
        mut lease: PgConnection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ProjectorError> {
        let mut appends = self.store.appends();
        let mut generation = generation::ensure_active(&self.pool, self.projection.as_ref())
            .boxed()
            .await?;
        let mut waited = false;
        while generation::outdated(&self.pool, self.projection.as_ref(), generation).await? {
            // Its tables are not the ones this code writes: applying to
            // them would fail (and park) event after event. Holding the
            // lease, rebuild into a generation of the code's tables; the
            // old one serves reads meanwhile.
            if !waited {
                tracing::warn!(
                    projection = self.name(),
                    generation,
                    "the active generation was built from other DDL; rebuilding it"
                );
            }
            let rebuilt = crate::status::rebuild(
                &self.pool,
                self.store.clone(),
                self.projection.clone(),
                crate::status::REBUILD_BATCH,
                |_| {},
            );
            generation = tokio::select! {
                g = rebuilt.boxed() => match g {
                    Ok(g) => {
                        tracing::info!(projection = self.name(), generation = g, "rebuilt");
                        g
                    }
                    // A rebuild started by hand: wait for it, then look again
                    // (it most likely built what this code writes).
                    Err(ProjectorError::RebuildRunning(_)) => {
                        if !std::mem::replace(&mut waited, true) {
                            tracing::info!(projection = self.name(), "waiting for the rebuild already running");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(self.config.lease_retry) => {}
                            _ = shutdown.changed() => return Ok(()),
                        }
                        generation::ensure_active(&self.pool, self.projection.as_ref())
                            .boxed()
                            .await?
                    }
                    Err(e) => return Err(e),
                },
                _ = shutdown.changed() => return Ok(()),
            };
        }
        // Where this runner left the checkpoint; read again after a surprise.
        let mut at: Option<LogPosition> = None;
        // When the last step started, how long it took, and whether it caught up.
        let mut last_step: Option<(tokio::time::Instant, Duration, bool)> = None;
        // How long to wait before looking again while held back; doubles.
        let first_held_back_wait = self.config.min_step_interval.max(Duration::from_millis(1));
        let mut held_back_wait = first_held_back_wait;
        // When this runner last took announcements in (or woke to look
        // again): a shared read of the log must have started since, so it
        // sees what they announced and is not a page this runner saw.
        let mut awake_since = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if let Some((started, took, caught_up)) = last_step {
                let mut pace = (took * STEP_PACE).clamp(
                    self.config.min_step_interval,
                    self.config
                        .max_step_interval
                        .max(self.config.min_step_interval),
                );
                if caught_up {
                    pace = pace.max(self.projection.min_step_interval());
                }
                tokio::time::sleep_until(started + pace).await;
            }
            let started = tokio::time::Instant::now();
            let from = match at {
                Some(from) => from,
                None => self.checkpoint(generation).await?,
            };
            let step = self
                .step_from(
                    &mut Writer::Lease(&mut lease),
                    generation,
                    true,
                    from,
                    Some(awake_since),
                )
                .boxed()
                .await;
            last_step = Some((
                started,
                started.elapsed(),
                matches!(&step, Ok(o) if o.caught_up),
            ));
            at = step.as_ref().ok().map(|o| o.position);
            if !matches!(&step, Ok(o) if o.held_back) {
                held_back_wait = first_held_back_wait;
            }
            match step {
                Ok(outcome) if outcome.caught_up => {
                    // Held back by an open transaction: an append announces
                    // its commit, anything else ends silently, so look again
                    // by then anyway, less often while nothing comes through.
                    let wait = if outcome.held_back {
                        let wait = held_back_wait;
                        held_back_wait = if outcome.applied > 0 {
                            first_held_back_wait
                        } else {
                            (held_back_wait * 2).min(self.config.idle_wait)
                        };
                        wait
                    } else {
                        self.config.idle_wait
                    };
                    tokio::select! {
                        // One step answers every announcement so far.
                        _ = appends.next() => {}
                        _ = tokio::time::sleep(wait) => {
                            if wait >= self.config.idle_wait {
                                // Still holding the lease? It dies with its connection.
                                sqlx::query("SELECT 1").execute(&mut lease).await?;
                            }
                        }
                        _ = shutdown.changed() => {}
                    }
                    awake_since = tokio::time::Instant::now();
                }
                Ok(_) => {}
                Err(ProjectorError::GenerationChanged(_, g)) => {
                    tracing::info!(
                        projection = self.name(),
                        generation = g,
                        "following the new generation"
                    );
                    generation = g;
                }
                Err(ProjectorError::LostRace(_)) => {
                    tracing::warn!(
                        projection = self.name(),
                        "another writer moved the checkpoint"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs `projections` until `shutdown` turns true, each on its own runner:
/// one that is stuck (its other database is down) holds back no other.
pub async fn run_all(
    pool: PgPool,
    store: Arc<dyn EventStore>,
    projections: Vec<Arc<dyn crate::Projection>>,
    config: ProjectorConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let shared = Arc::new(SharedLog::new(store.clone()));
    let runners: Vec<_> = projections
        .into_iter()
        .map(|p| {
            let projector = Projector::new(pool.clone(), store.clone(), p, config.clone())
                .sharing(shared.clone());
            tokio::spawn(projector.run(shutdown.clone()))
        })
        .collect();
    for r in runners {
        match r.await {
            Ok(result) => result?,
            Err(e) => tracing::error!(error = %e, "a projector task panicked"),
        }
    }
    Ok(())
}
