//! Read-your-writes: a client that sends the consistency token a command gave
//! it (`X-Consistency-Token: <commit>.<event>`) is answered only once every
//! projection the endpoint reads has applied that position.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tasklog_event_store::LogPosition;
use tasklog_http::ApiError;
use tokio::sync::watch;
use tokio::time::Instant;

/// The PostgreSQL `NOTIFY` channel the projectors announce each checkpoint
/// move on (the `tasklog` crate checks that both sides name the same one).
pub const CHECKPOINT_CHANNEL: &str = "tasklog_checkpoints";

/// The header carrying the token.
pub const HEADER: &str = "x-consistency-token";

/// How often the checkpoints are read again while waiting when no
/// announcement comes (one lost while the listener reconnected), by default.
pub const DEFAULT_POLL_EVERY: Duration = Duration::from_millis(100);

/// How long the listener waits before connecting again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_millis(100);

/// The read models a route reads, by the names of the projections (and
/// their checkpoints) that keep them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadModel {
    /// Organizations, members, projects, tags.
    Directory,
    /// Tasks, comments, tag usage.
    Tasks,
    /// Each task's history.
    Activity,
    /// Each user's notifications.
    Notifications,
    /// The analytics store in ClickHouse, which the reports read.
    Analytics,
}

impl ReadModel {
    /// Every read model the query API serves from.
    pub const ALL: [Self; 5] = [
        Self::Directory,
        Self::Tasks,
        Self::Activity,
        Self::Notifications,
        Self::Analytics,
    ];

    /// The name in `projections` and `projection_checkpoints`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::Tasks => "tasks",
            Self::Activity => "activity",
            Self::Notifications => "notifications",
            Self::Analytics => "analytics",
        }
    }
}

/// The request's consistency token, if it sent one; 400 when it is not a position.
#[derive(Clone, Copy, Debug, Default)]
pub struct Consistency(pub Option<LogPosition>);

impl<S: Send + Sync> FromRequestParts<S> for Consistency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .and_then(|v| LogPosition::from_str(v.trim()).ok())
            .map(|p| Self(Some(p)))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "X-Consistency-Token must be the token a command returned, \"<commit>.<event>\""
                        .into(),
                )
            })
    }
}

/// Wakes waiting requests when a checkpoint moves: one listener on
/// [`CHECKPOINT_CHANNEL`] per process, started at the first wait and kept
/// for as long as the process runs (reconnecting when it loses its
/// connection), instead of every request polling.
#[derive(Clone, Default)]
pub struct CheckpointMoves {
    sender: Arc<OnceLock<watch::Sender<u64>>>,
}

impl CheckpointMoves {
    /// A receiver that sees every announcement after this call.
    fn subscribe(&self, pool: &PgPool) -> watch::Receiver<u64> {
        self.sender
            .get_or_init(|| {
                let (sender, _) = watch::channel(0);
                tokio::spawn(listen(pool.clone(), sender.clone()));
                sender
            })
            .subscribe()
    }
}

/// Counts announcements, and reconnections (which may have lost some), for
/// good: a wait that starts when no other request is waiting must be woken
/// by announcements as much as the first one was. Ends only with the pool.
async fn listen(pool: PgPool, moves: watch::Sender<u64>) {
    while !pool.is_closed() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for checkpoint moves; retrying");
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHECKPOINT_CHANNEL).await {
            tracing::warn!(error = %e, "cannot listen for checkpoint moves; retrying");
            tokio::time::sleep(RECONNECT_AFTER).await;
            continue;
        }
        // Waiters read the checkpoints again: a move may have gone unheard.
        moves.send_modify(|n| *n += 1);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => moves.send_modify(|n| *n += 1),
                // The connection was lost (and PgListener reconnects on the
                // next call); whatever was announced meanwhile is unheard.
                Ok(None) => moves.send_modify(|n| *n += 1),
                Err(e) => {
                    tracing::warn!(error = %e, "lost the checkpoint listener; reconnecting");
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    break;
                }
            }
        }
    }
}

/// Waits until every one of `projections` has applied `token`, reading the
/// checkpoints of their active generations again whenever one moves (and
/// every `poll` in case an announcement was lost); 503 `not_yet_consistent`
/// after `bound`.
#[tracing::instrument(skip(pool, moves, projections), fields(token = %token))]
pub async fn wait_until_applied(
    pool: &PgPool,
    moves: &CheckpointMoves,
    token: LogPosition,
    projections: &[ReadModel],
    bound: Duration,
    poll: Duration,
) -> Result<(), ApiError> {
    let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    let started = Instant::now();
    // Before the first read, so no move after it goes unseen.
    let mut moved = moves.subscribe(pool);
    loop {
        let behind = behind(pool, token, &names).await?;
        if behind.is_empty() {
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= bound {
            tracing::info!(?behind, ?waited, "read models not yet consistent");
            return Err(ApiError::NotYetConsistent { token, behind });
        }
        tokio::select! {
            _ = moved.changed() => {}
            _ = tokio::time::sleep(poll.min(bound - waited)) => {}
        }
    }
}

/// The projections among `names` that have not applied `token` (a missing one has not).
async fn behind(
    pool: &PgPool,
    token: LogPosition,
    names: &[&str],
) -> Result<Vec<String>, ApiError> {
    let applied = checkpoints(pool).await?;
    Ok(names
        .iter()
        .filter(|name| {
            !applied
                .iter()
                .any(|(n, at)| n == *name && at.is_some_and(|at| at >= token))
        })
        .map(|name| (*name).to_owned())
        .collect())
}

/// Every projection by name with the checkpoint of its active generation
/// (`None` before it has one).
pub async fn checkpoints(pool: &PgPool) -> Result<Vec<(String, Option<LogPosition>)>, sqlx::Error> {
    let rows: Vec<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT projection, commit_id, event_position FROM active_checkpoints ORDER BY projection",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, commit, event)| {
            let at = commit
                .zip(event)
                .map(|(commit, event)| position(commit, event));
            (name, at)
        })
        .collect())
}

fn position(commit: i64, event: i64) -> LogPosition {
    LogPosition {
        commit: u64::try_from(commit).unwrap_or(0),
        event: u64::try_from(event).unwrap_or(0),
    }
}
