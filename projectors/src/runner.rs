//! Runs one projection: batches from its checkpoint, a lease, retries,
//! dead letters, and the live loop.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::FutureExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgDatabaseError;
use sqlx::{Connection, Executor, PgConnection, PgPool, Postgres};
use tasklog_event_store::{EventStore, LogPosition, RecordedEvent};
use tokio::sync::watch;

use crate::generation;
use crate::{Announcements, ApplyError, Projection, ProjectorError, SharedLog};

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
            min_step_interval: Duration::from_millis(5),
            max_step_interval: Duration::from_millis(15),
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
    /// The process's append listener, when shared with other projectors.
    announcements: Option<Announcements>,
}

enum BatchFailure {
    Transient(sqlx::Error),
    Failed { error: String },
    Stop(ProjectorError),
}

impl From<sqlx::Error> for BatchFailure {
    fn from(e: sqlx::Error) -> Self {
        if crate::error::is_transient(&e) {
            BatchFailure::Transient(e)
        } else {
            BatchFailure::Stop(e.into())
        }
    }
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
            announcements: None,
        }
    }

    /// Live steps read the log through `shared`, and hear of appends
    /// through `announcements`, with the other projectors that do.
    pub fn sharing(mut self, shared: Arc<SharedLog>, announcements: Announcements) -> Self {
        self.shared = Some(shared);
        self.announcements = Some(announcements);
        self
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Where generation `generation` stands. A generation a rebuild replaced
    /// has no checkpoint left: the answer names the active one.
    pub async fn checkpoint(&self, generation: i32) -> Result<LogPosition, ProjectorError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT commit_id, event_position FROM projection_checkpoints \
             WHERE projection = $1 AND generation = $2",
        )
        .bind(self.name())
        .bind(generation)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((c, e)) => Ok(LogPosition {
                commit: c as u64,
                event: e as u64,
            }),
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

    /// One step: the next batch after the checkpoint, applied with the
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
    async fn step_from(
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
            BatchFailure::Transient(e) => e.into(),
            BatchFailure::Failed { error } => ProjectorError::Unknown(error),
        })?;
        tx.commit().await?;
        tracing::error!(projection = self.name(), event_id = %event.event_id, %error, "event parked");
        Ok(())
    }

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
        let mut announcements = self
            .announcements
            .clone()
            .unwrap_or_else(|| Announcements::start(&self.pool));
        let mut generation = generation::ensure_active(&self.pool, self.projection.as_ref())
            .boxed()
            .await?;
        // Where this runner left the checkpoint; read again after a surprise.
        let mut at: Option<LogPosition> = None;
        // When the last step started, and how long it took.
        let mut last_step: Option<(tokio::time::Instant, Duration)> = None;
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
            if let Some((started, took)) = last_step {
                let pace = (took * STEP_PACE).clamp(
                    self.config.min_step_interval,
                    self.config
                        .max_step_interval
                        .max(self.config.min_step_interval),
                );
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
            last_step = Some((started, started.elapsed()));
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
                        _ = announcements.next() => {}
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

/// Aborts a spawned task when dropped (an early return stops its reader).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A checkpoint move: from `from` (compare and set) to `to`.
struct Advance<'a> {
    projection: &'a str,
    generation: i32,
    from: LogPosition,
    to: LogPosition,
    applied: usize,
    last_event_at: DateTime<Utc>,
}

impl Advance<'_> {
    /// Within a caller's transaction (extended protocol).
    async fn run(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT projection_batch_advance($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(self.projection)
            .bind(self.generation)
            .bind(self.from.commit as i64)
            .bind(self.from.event as i64)
            .bind(self.to.commit as i64)
            .bind(self.to.event as i64)
            .bind(self.applied as i64)
            .bind(self.last_event_at)
            .execute(conn)
            .await
            .map(|_| ())
    }

    /// The call as SQL text, for a simple query that also commits. Every
    /// value is a number or a timestamp but the name, which is quoted.
    fn call(&self) -> String {
        format!(
            "SELECT projection_batch_advance({}, {}, {}, {}, {}, {}, {}, '{}')",
            quote(self.projection),
            self.generation,
            self.from.commit,
            self.from.event,
            self.to.commit,
            self.to.event,
            self.applied,
            self.last_event_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
        )
    }
}

/// An SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Where a step writes. A live runner writes through the connection that
/// holds its lease: once that connection is gone (killed, cut off), the
/// runner cannot commit another batch, so a standby that took the lease over
/// is the only writer (the checkpoint's compare and set alone would keep
/// events from being applied twice, not the old holder from writing on).
/// Other steps (tests, rebuilds) write through pooled connections.
enum Writer<'a> {
    Pool,
    Lease(&'a mut PgConnection),
}

impl Writer<'_> {
    async fn conn<'w>(&'w mut self, pool: &PgPool) -> Result<BatchConn<'w>, sqlx::Error> {
        Ok(match self {
            Writer::Pool => BatchConn::Pooled(pool.acquire().await?),
            Writer::Lease(conn) => BatchConn::Lease(conn),
        })
    }

    /// After a transient failure: an error when the lease's connection is
    /// gone, so the runner asks for the lease again instead of retrying on a
    /// dead connection.
    async fn still_leased(&mut self) -> Result<(), ProjectorError> {
        if let Writer::Lease(conn) = self {
            sqlx::query("SELECT 1").execute(&mut **conn).await?;
        }
        Ok(())
    }
}

/// A batch's connection: pooled, or the runner's lease.
enum BatchConn<'a> {
    Pooled(PoolConnection<Postgres>),
    Lease(&'a mut PgConnection),
}

impl std::ops::Deref for BatchConn<'_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match self {
            BatchConn::Pooled(conn) => conn,
            BatchConn::Lease(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for BatchConn<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            BatchConn::Pooled(conn) => conn,
            BatchConn::Lease(conn) => conn,
        }
    }
}

/// A batch's transaction, opened and closed with one round trip each
/// (`projection_batch_begin` and `projection_batch_advance`, see their
/// migration). Dropped while open (its `ROLLBACK` failed: the connection is
/// broken), a pooled connection is closed rather than handed back; a broken
/// lease fails the runner's next statement, and the runner starts over with a
/// new lease.
struct BatchTx<'a> {
    conn: BatchConn<'a>,
    open: bool,
}

impl<'a> BatchTx<'a> {
    async fn begin(
        conn: BatchConn<'a>,
        projection: &str,
        generation: i32,
        live: bool,
    ) -> Result<Self, BatchFailure> {
        let mut batch = BatchTx { conn, open: true };
        let begin = format!(
            "BEGIN; SELECT projection_batch_begin({}, {generation}, {live})",
            quote(projection)
        );
        match batch.conn.execute(begin.as_str()).await {
            Ok(_) => Ok(batch),
            Err(e) => {
                batch.rollback().await;
                Err(batch_error(e, projection))
            }
        }
    }

    /// Moves the checkpoint over events the projection does not apply: the
    /// batch's checks and the move in one simple query, which runs as one
    /// transaction.
    async fn advance_only(
        mut conn: BatchConn<'_>,
        live: bool,
        advance: Advance<'_>,
    ) -> Result<(), BatchFailure> {
        let statements = format!(
            "SELECT projection_batch_begin({}, {}, {live}); {}",
            quote(advance.projection),
            advance.generation,
            advance.call()
        );
        conn.execute(statements.as_str())
            .await
            .map(|_| ())
            .map_err(|e| batch_error(e, advance.projection))
    }

    fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Moves the checkpoint and commits; nothing is kept when it fails.
    async fn commit(mut self, advance: Advance<'_>) -> Result<(), BatchFailure> {
        let finish = format!("{}; COMMIT", advance.call());
        match self.conn.execute(finish.as_str()).await {
            Ok(_) => {
                self.open = false;
                Ok(())
            }
            Err(e) => {
                self.rollback().await;
                Err(batch_error(e, advance.projection))
            }
        }
    }

    /// Ends the transaction (a failed one too); a connection that cannot is
    /// closed.
    async fn rollback(&mut self) {
        if self.conn.execute("ROLLBACK").await.is_ok() {
            self.open = false;
        }
    }
}

impl Drop for BatchTx<'_> {
    fn drop(&mut self) {
        if let (true, BatchConn::Pooled(conn)) = (self.open, &mut self.conn) {
            conn.close_on_drop();
        }
    }
}

/// Reads the SQLSTATEs the batch functions raise.
fn batch_error(e: sqlx::Error, projection: &str) -> BatchFailure {
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            Some("TLG01") => {
                let active = db
                    .try_downcast_ref::<PgDatabaseError>()
                    .and_then(|pg| pg.detail())
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                return BatchFailure::Stop(ProjectorError::GenerationChanged(
                    projection.to_owned(),
                    active,
                ));
            }
            Some("TLC01") => {
                return BatchFailure::Stop(ProjectorError::LostRace(projection.to_owned()))
            }
            _ => {}
        }
    }
    e.into()
}

/// Runs every projection until `shutdown` turns true.
pub async fn run_all(
    pool: PgPool,
    store: Arc<dyn EventStore>,
    config: ProjectorConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let shared = Arc::new(SharedLog::new(store.clone()));
    let announcements = Announcements::start(&pool);
    let runners: Vec<_> = crate::all()
        .into_iter()
        .map(|p| {
            let projector = Projector::new(pool.clone(), store.clone(), p, config.clone())
                .sharing(shared.clone(), announcements.clone());
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
