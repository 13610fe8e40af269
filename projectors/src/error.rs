/// Any error, boxed (a transient failure may come from another database).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The database is unreachable, overloaded, or chose this transaction as a
    /// deadlock victim: retry, never park.
    #[error("transient failure: {0}")]
    Transient(#[source] BoxError),
    /// This event cannot be applied as things are (bad data, a bug): retry a
    /// few times, then park.
    #[error("{0}")]
    Failed(String),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        if is_transient(&e) {
            ApplyError::Transient(Box::new(e))
        } else {
            ApplyError::Failed(format!("{e}"))
        }
    }
}

impl From<serde_json::Error> for ApplyError {
    fn from(e: serde_json::Error) -> Self {
        ApplyError::Failed(format!("event does not decode: {e}"))
    }
}

/// Connection trouble, resource exhaustion, serialization failures, deadlocks,
/// administrator shutdowns; and read-model tables missing or forbidden to
/// this role (42P01, 3F000, 42501): a fault of the deployment, not of the
/// event, so waiting for a fix loses nothing, while parking would quietly
/// skip every event until someone replays them.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .map(|c| {
                matches!(&c[..2], "08" | "40" | "53" | "57" | "58")
                    || matches!(&*c, "42P01" | "3F000" | "42501")
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// Errors of a projector run.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("event store error")]
    Store(#[from] tasklog_event_store::StoreError),
    /// Another writer moved the checkpoint: this one stops and re-reads.
    #[error("the checkpoint of {0} moved under this writer")]
    LostRace(String),
    /// A rebuild switched the projection to another generation.
    #[error("{0} switched to generation {1}")]
    GenerationChanged(String, i32),
    /// Another rebuild of the projection is running.
    #[error("a rebuild of {0} is already running")]
    RebuildRunning(String),
    /// A store other than PostgreSQL (ClickHouse) failed and keeps failing.
    #[error("unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("unknown projection {0}")]
    Unknown(String),
}
