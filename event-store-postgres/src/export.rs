//! Exporting one organization's events in the format `tasklog-export-v1`
//! ([`tasklog_event_store::export`]): by stream id, each stream's events by
//! version, read a page at a time by keyset (memory stays constant whatever
//! the size of the log), all from one snapshot of the database.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use futures::stream::{self, Stream, TryStreamExt};
use sqlx::{PgPool, Postgres, Transaction};
use tasklog_event_store::export::{ExportHeader, ExportLine, ExportTrailer, ExportedEvent};
use tasklog_event_store::StoreError;
use uuid::Uuid;

use crate::{decode_row, store_error, SELECT_EVENT_WITH_SALTS};

/// Events read at a time, unless the caller says otherwise.
pub const EXPORT_PAGE: usize = 1_000;

/// Writes the header, every event of `org` (its `org_id`; streams are per
/// organization), then the trailer, one [`ExportLine`] at a time through
/// `emit` (the lines of [`export_lines`]).
pub async fn export_org<E: From<StoreError>>(
    pool: &PgPool,
    org: Uuid,
    page: usize,
    mut emit: impl FnMut(ExportLine) -> Result<(), E>,
) -> Result<ExportTrailer, E> {
    let lines = export_lines(pool.clone(), org, page);
    futures::pin_mut!(lines);
    let mut trailer = ExportTrailer::default();
    while let Some(line) = lines.try_next().await? {
        if let ExportLine::Trailer(t) = &line {
            trailer = *t;
        }
        emit(line)?;
    }
    Ok(trailer)
}

/// The lines of `org`'s export, read as they are pulled: one page of
/// `page` events is held at a time, so a slow reader (an HTTP client) holds
/// back the reading, not memory. The events are read in one read-only,
/// repeatable-read transaction, so appends made meanwhile are all in or all
/// out; being read-only it takes no transaction id and holds no log reader
/// back.
pub fn export_lines(
    pool: PgPool,
    org: Uuid,
    page: usize,
) -> impl Stream<Item = Result<ExportLine, StoreError>> + Send + 'static {
    let export = Export {
        pool,
        org,
        page: page.max(1),
        tx: None,
        after: (String::new(), 0),
        trailer: ExportTrailer::default(),
        pending: VecDeque::new(),
        done: false,
    };
    stream::try_unfold(export, |mut export| async move {
        loop {
            if let Some(line) = export.pending.pop_front() {
                return Ok(Some((line, export)));
            }
            if export.done {
                return Ok(None);
            }
            export.read_more().await?;
        }
    })
}

/// Where an export stands.
struct Export {
    pool: PgPool,
    org: Uuid,
    page: usize,
    /// The snapshot, once the header is out; gone once the events are.
    tx: Option<Transaction<'static, Postgres>>,
    /// The last (stream, version) exported.
    after: (String, i64),
    trailer: ExportTrailer,
    pending: VecDeque<ExportLine>,
    done: bool,
}

impl Export {
    /// The next lines: the header (the snapshot begins), a page of events,
    /// or, after the last page, the trailer.
    async fn read_more(&mut self) -> Result<(), StoreError> {
        let Some(tx) = &mut self.tx else {
            let mut tx = self.pool.begin().await.map_err(store_error)?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            // The snapshot's time: the transaction's start.
            let exported_at: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
                .fetch_one(&mut *tx)
                .await
                .map_err(store_error)?;
            self.pending
                .push_back(ExportLine::Header(ExportHeader::new(self.org, exported_at)));
            self.tx = Some(tx);
            return Ok(());
        };
        let rows = sqlx::query(&format!(
            "{SELECT_EVENT_WITH_SALTS} WHERE org_id = $1 AND (stream_id, stream_version) > ($2, $3) \
             ORDER BY stream_id, stream_version LIMIT $4"
        ))
        .bind(self.org)
        .bind(&self.after.0)
        .bind(self.after.1)
        .bind(self.page as i64)
        .fetch_all(&mut **tx)
        .await
        .map_err(store_error)?;
        for row in &rows {
            let event = decode_row(row)?;
            if event.stream_id != self.after.0 {
                self.trailer.streams += 1;
                self.after.0.clone_from(&event.stream_id);
            }
            self.after.1 = event.stream_version as i64;
            self.trailer.events += 1;
            self.pending
                .push_back(ExportLine::Event(Box::new(ExportedEvent::from(event))));
        }
        if rows.len() < self.page {
            if let Some(tx) = self.tx.take() {
                tx.commit().await.map_err(store_error)?;
            }
            self.pending.push_back(ExportLine::Trailer(self.trailer));
            self.done = true;
        }
        Ok(())
    }
}
