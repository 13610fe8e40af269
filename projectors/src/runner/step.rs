//! One step: the next batch after a checkpoint, applied with the checkpoint
//! in one transaction; a failing event retried with backoff, then parked.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use tasklog_event_store::{LogPosition, RecordedEvent};

use super::batch::{batch_error, Advance, BatchFailure, BatchTx, Writer};
use super::{BatchOutcome, Projector};
use crate::{ApplyError, ProjectorError};

impl Projector {
    /// checkpoint in one transaction. `live` steps check that `generation` is
    /// still the active one (a rebuild may have switched it).
    pub async fn project_next_batch(
        &self,
        generation: i32,
        live: bool,
    ) -> Result<BatchOutcome, ProjectorError> {
        let from = self.checkpoint(generation).await?;
        self.step_from(&mut Writer::Pool, generation, live, from, None)
            .await
    }

    /// [`Self::project_next_batch`] from a checkpoint the caller already
    /// knows (the compare and set still guards it).
    /// `awake_since`: when a live runner last took announcements in (a
    /// shared read must be younger).
    pub(super) async fn step_from(
        &self,
        writer: &mut Writer<'_>,
        generation: i32,
        live: bool,
        from: LogPosition,
        awake_since: Option<tokio::time::Instant>,
    ) -> Result<BatchOutcome, ProjectorError> {
        let size = self.config.batch_size;
        let page = match (&self.shared, awake_since) {
            (Some(shared), Some(since)) => shared.read_page(from, size, since).await?,
            _ => Arc::new(self.store.read_page(from, size).await?),
        };
        let events = &page.events;
        if events.is_empty() {
            return Ok(BatchOutcome {
                position: from,
                caught_up: true,
                held_back: page.held_back,
                ..BatchOutcome::default()
            });
        }
        let mut outcome = self.apply(writer, generation, live, from, events).await?;
        outcome.caught_up = events.len() < self.config.batch_size;
        outcome.held_back = page.held_back;
        Ok(outcome)
    }

    /// Applies batches to `generation` (not live) until its checkpoint
    /// reaches `target`, reading each next batch while the current one is
    /// applied; `on_batch` hears of every batch applied.
    pub async fn catch_up_to(
        &self,
        generation: i32,
        target: LogPosition,
        mut on_batch: impl FnMut(&BatchOutcome),
    ) -> Result<LogPosition, ProjectorError> {
        let mut at = self.checkpoint(generation).await?;
        let (batches, mut next) = tokio::sync::mpsc::channel(1);
        let (store, size) = (self.store.clone(), self.config.batch_size);
        let mut from = at;
        // On its own task, so decoding one batch runs beside applying the last.
        let reader = AbortOnDrop(tokio::spawn(async move {
            while from < target {
                let read = store.read_all(from, size).await;
                match &read {
                    // Held back by an open transaction: look again shortly.
                    Ok(events) if events.is_empty() => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Ok(events) => from = events[events.len() - 1].position,
                    Err(_) => from = target,
                }
                if batches.send(read).await.is_err() {
                    return;
                }
            }
        }));
        while at < target {
            let events = next.recv().await.ok_or_else(|| {
                ProjectorError::Unknown("the log reader stopped before the target".into())
            })??;
            let outcome = self
                .apply(&mut Writer::Pool, generation, false, at, &events)
                .await?;
            at = outcome.position;
            on_batch(&outcome);
        }
        drop(reader);
        Ok(at)
    }

    /// Applies `events` (read after `from`); on a failing event, falls back to
    /// one event per transaction so the good ones land and the bad one is
    /// retried, then parked.
    async fn apply(
        &self,
        writer: &mut Writer<'_>,
        generation: i32,
        live: bool,
        from: LogPosition,
        events: &[RecordedEvent],
    ) -> Result<BatchOutcome, ProjectorError> {
        let mut backoff = self.config.first_backoff;
        loop {
            match self.try_batch(writer, generation, live, from, events).await {
                Ok(()) => {
                    return Ok(BatchOutcome {
                        applied: events.len(),
                        parked: 0,
                        position: events[events.len() - 1].position,
                        caught_up: false,
                        held_back: false,
                    })
                }
                Err(BatchFailure::Transient(e)) => {
                    tracing::warn!(projection = self.name(), error = %e, "transient failure; retrying");
                    writer.still_leased().await?;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                Err(BatchFailure::Stop(e)) => return Err(e),
                Err(BatchFailure::Failed { .. }) => {
                    return self
                        .apply_one_by_one(writer, generation, live, from, events)
                        .await
                }
            }
        }
    }

    async fn apply_one_by_one(
        &self,
        writer: &mut Writer<'_>,
        generation: i32,
        live: bool,
        mut from: LogPosition,
        events: &[RecordedEvent],
    ) -> Result<BatchOutcome, ProjectorError> {
        let mut outcome = BatchOutcome::default();
        for event in events {
            let mut attempts = 0;
            let mut backoff = self.config.first_backoff;
            loop {
                match self
                    .try_batch(writer, generation, live, from, std::slice::from_ref(event))
                    .await
                {
                    Ok(()) => {
                        outcome.applied += 1;
                        break;
                    }
                    Err(BatchFailure::Stop(e)) => return Err(e),
                    Err(BatchFailure::Transient(e)) => {
                        tracing::warn!(projection = self.name(), error = %e, "transient failure; retrying");
                        writer.still_leased().await?;
                    }
                    Err(BatchFailure::Failed { error, .. }) => {
                        attempts += 1;
                        tracing::warn!(
                            projection = self.name(),
                            event_id = %event.event_id,
                            attempts,
                            %error,
                            "event failed"
                        );
                        if attempts >= self.config.max_attempts {
                            self.park(writer, generation, from, event, &error, attempts)
                                .await?;
                            outcome.parked += 1;
                            break;
                        }
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
            from = event.position;
        }
        outcome.position = from;
        Ok(outcome)
    }

    async fn try_batch(
        &self,
        writer: &mut Writer<'_>,
        generation: i32,
        live: bool,
        from: LogPosition,
        events: &[RecordedEvent],
    ) -> Result<(), BatchFailure> {
        let last = &events[events.len() - 1];
        let advance = Advance {
            projection: self.name(),
            generation,
            from,
            to: last.position,
            applied: events.len(),
            last_event_at: last.recorded_at,
        };
        if !events.iter().any(|e| self.wants(e)) {
            return BatchTx::advance_only(writer.conn(&self.pool).await?, live, advance).await;
        }
        let conn = writer.conn(&self.pool).await?;
        let mut batch = BatchTx::begin(conn, self.name(), generation, live).await?;
        match self.projection.apply(batch.conn(), events).await {
            Ok(()) => {}
            Err(e) => {
                batch.rollback().await;
                return Err(match e {
                    ApplyError::Transient(e) => BatchFailure::Transient(e),
                    ApplyError::Failed(error) => BatchFailure::Failed { error },
                });
            }
        }
        batch.commit(advance).await
    }

    /// Whether the projection applies `event` (a stream id without a
    /// category is let through, for the projection to park).
    fn wants(&self, event: &RecordedEvent) -> bool {
        match (
            self.projection.categories(),
            event.stream_id.split_once('-'),
        ) {
            (Some(categories), Some((category, _))) => categories.contains(&category),
            _ => true,
        }
    }

    /// Records the event as parked and moves past it, in one transaction.
    async fn park(
        &self,
        writer: &mut Writer<'_>,
        generation: i32,
        from: LogPosition,
        event: &RecordedEvent,
        error: &str,
        attempts: u32,
    ) -> Result<(), ProjectorError> {
        let mut tx = match writer {
            Writer::Pool => self.pool.begin().await?,
            Writer::Lease(conn) => conn.begin().await?,
        };
        sqlx::query(
            "INSERT INTO projection_dead_letters \
                (projection, event_id, commit_id, event_position, event_type, error, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (projection, event_id) DO UPDATE \
             SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, parked_at = now()",
        )
        .bind(self.name())
        .bind(event.event_id)
        .bind(event.position.commit as i64)
        .bind(event.position.event as i64)
        .bind(&event.event_type)
        .bind(error)
        .bind(attempts as i32)
        .execute(&mut *tx)
        .await?;
        Advance {
            projection: self.name(),
            generation,
            from,
            to: event.position,
            applied: 0,
            last_event_at: event.recorded_at,
        }
        .run(&mut tx)
        .await
        .map_err(|e| batch_error(e, self.name()))
        .map_err(|f| match f {
            BatchFailure::Stop(e) => e,
            BatchFailure::Transient(e) => ProjectorError::Unavailable(e),
            BatchFailure::Failed { error } => ProjectorError::Unknown(error),
        })?;
        tx.commit().await?;
        tracing::error!(projection = self.name(), event_id = %event.event_id, %error, "event parked");
        Ok(())
    }
}

/// Aborts a spawned task when dropped (an early return stops its reader).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
