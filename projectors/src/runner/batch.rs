//! The batch protocol: where a step writes (a pooled connection or the
//! runner's lease), and a batch's transaction, opened and closed with one
//! round trip each.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgDatabaseError;
use sqlx::{Executor, PgConnection, PgPool, Postgres};
use tasklog_event_store::LogPosition;

use crate::ProjectorError;

/// How a batch failed: retry it as it is, fall back to one event at a time
/// (and park what keeps failing), or stop the step.
pub(super) enum BatchFailure {
    Transient(crate::error::BoxError),
    Failed { error: String },
    Stop(ProjectorError),
}

impl From<sqlx::Error> for BatchFailure {
    fn from(e: sqlx::Error) -> Self {
        if crate::error::is_transient(&e) {
            BatchFailure::Transient(Box::new(e))
        } else {
            BatchFailure::Stop(e.into())
        }
    }
}

/// A checkpoint move: from `from` (compare and set) to `to`.
pub(super) struct Advance<'a> {
    pub projection: &'a str,
    pub generation: i32,
    pub from: LogPosition,
    pub to: LogPosition,
    pub applied: usize,
    pub last_event_at: DateTime<Utc>,
}

impl Advance<'_> {
    /// Within a caller's transaction (extended protocol).
    pub(super) async fn run(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
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
pub(super) enum Writer<'a> {
    Pool,
    Lease(&'a mut PgConnection),
}

impl Writer<'_> {
    pub(super) async fn conn<'w>(
        &'w mut self,
        pool: &PgPool,
    ) -> Result<BatchConn<'w>, sqlx::Error> {
        Ok(match self {
            Writer::Pool => BatchConn::Pooled(pool.acquire().await?),
            Writer::Lease(conn) => BatchConn::Lease(conn),
        })
    }

    /// After a transient failure: an error when the lease's connection is
    /// gone, so the runner asks for the lease again instead of retrying on a
    /// dead connection.
    pub(super) async fn still_leased(&mut self) -> Result<(), ProjectorError> {
        if let Writer::Lease(conn) = self {
            sqlx::query("SELECT 1").execute(&mut **conn).await?;
        }
        Ok(())
    }
}

/// A batch's connection: pooled, or the runner's lease.
pub(super) enum BatchConn<'a> {
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
pub(super) struct BatchTx<'a> {
    conn: BatchConn<'a>,
    open: bool,
}

impl<'a> BatchTx<'a> {
    pub(super) async fn begin(
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
    pub(super) async fn advance_only(
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

    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// Moves the checkpoint and commits; nothing is kept when it fails.
    pub(super) async fn commit(mut self, advance: Advance<'_>) -> Result<(), BatchFailure> {
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
    pub(super) async fn rollback(&mut self) {
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
pub(super) fn batch_error(e: sqlx::Error, projection: &str) -> BatchFailure {
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
