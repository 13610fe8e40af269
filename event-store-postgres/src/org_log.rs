//! One organization's events as its auditors read them: its slice of the
//! global log, filtered and read a page at a time by position, and one
//! stream's history. Every query is bounded to the organization's `org_id`,
//! so no other organization's event, hash or position is ever read.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder};
use tasklog_event_store::{LogPosition, RecordedEvent, StoreError};
use uuid::Uuid;

use crate::{decode_rows, store_error, HORIZON, SELECT_EVENT};

/// Which of an organization's events to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only this stream (`task-<uuid>`).
    pub stream: Option<String>,
    /// Only streams of these categories (`task` of `task-<uuid>`); any when empty.
    pub categories: Vec<String>,
    /// Only these event types; any when empty.
    pub event_types: Vec<String>,
    /// Only events of this actor.
    pub actor: Option<Uuid>,
    /// Only events that occurred at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events that occurred before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Up to `limit` events of `org` after `after`, in log order, that match
/// `filter`. Like [`tasklog_event_store::EventStore::read_all`] it reads only
/// below the horizon, so a page never passes over an event whose transaction
/// commits after the page was read: paging on by the last position misses
/// nothing, appends made meanwhile included. Read through a transaction, it
/// reads in that transaction's snapshot.
pub async fn read_org_log<'e>(
    executor: impl PgExecutor<'e>,
    org: Uuid,
    filter: &LogFilter,
    after: LogPosition,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut q = QueryBuilder::<Postgres>::new(SELECT_EVENT);
    q.push(" WHERE org_id = ")
        .push_bind(org)
        .push(" AND (transaction_id, global_position) > (")
        .push_bind(after.commit.to_string())
        .push("::text::xid8, ")
        .push_bind(after.event as i64)
        .push(")")
        .push(format!(" AND transaction_id < {HORIZON}"));
    if let Some(stream) = &filter.stream {
        q.push(" AND stream_id = ").push_bind(stream.clone());
    }
    if !filter.categories.is_empty() {
        q.push(" AND split_part(stream_id, '-', 1) = ANY(")
            .push_bind(filter.categories.clone())
            .push(")");
    }
    if !filter.event_types.is_empty() {
        q.push(" AND event_type = ANY(")
            .push_bind(filter.event_types.clone())
            .push(")");
    }
    if let Some(actor) = filter.actor {
        q.push(" AND actor_id = ").push_bind(actor);
    }
    if let Some(from) = filter.from {
        q.push(" AND occurred_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        q.push(" AND occurred_at < ").push_bind(to);
    }
    q.push(" ORDER BY org_id, transaction_id, global_position LIMIT ")
        .push_bind(limit as i64);
    let rows = q.build().fetch_all(executor).await.map_err(store_error)?;
    decode_rows(&rows)
}

/// Up to `limit` events of `stream` that belong to `org`, after version
/// `after`, in version order (empty when the stream is not `org`'s).
pub async fn read_org_stream(
    pool: &PgPool,
    org: Uuid,
    stream: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT} WHERE stream_id = $1 AND org_id = $2 AND stream_version > $3 \
         ORDER BY stream_version LIMIT $4"
    ))
    .bind(stream)
    .bind(org)
    .bind(after as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    decode_rows(&rows)
}
