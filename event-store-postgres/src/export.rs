//! Exporting one organization's events in the format `tasklog-export-v1`
//! ([`tasklog_event_store::export`]): by stream id, each stream's events by
//! version, read a page at a time by keyset (memory stays constant whatever
//! the size of the log), all from one snapshot of the database.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tasklog_event_store::export::{ExportHeader, ExportLine, ExportTrailer, ExportedEvent};
use tasklog_event_store::StoreError;
use uuid::Uuid;

use crate::{decode_row, store_error, SELECT_EVENT};

/// Events read at a time, unless the caller says otherwise.
pub const EXPORT_PAGE: usize = 1_000;

/// Writes the header, every event of `org` (its `org_id`; streams are per
/// organization), then the trailer, one [`ExportLine`] at a time through
/// `emit`. The events are read in one read-only, repeatable-read transaction,
/// so appends made meanwhile are all in or all out; being read-only it takes
/// no transaction id and holds no log reader back.
pub async fn export_org<E: From<StoreError>>(
    pool: &PgPool,
    org: Uuid,
    page: usize,
    mut emit: impl FnMut(ExportLine) -> Result<(), E>,
) -> Result<ExportTrailer, E> {
    let page = page.max(1);
    let mut tx = pool.begin().await.map_err(store_error)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    // The snapshot's time: the transaction's start.
    let exported_at: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
    emit(ExportLine::Header(ExportHeader::new(org, exported_at)))?;

    let mut trailer = ExportTrailer::default();
    let (mut stream, mut version) = (String::new(), 0i64);
    loop {
        let rows = sqlx::query(&format!(
            "{SELECT_EVENT} WHERE org_id = $1 AND (stream_id, stream_version) > ($2, $3) \
             ORDER BY stream_id, stream_version LIMIT $4"
        ))
        .bind(org)
        .bind(&stream)
        .bind(version)
        .bind(page as i64)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
        for row in &rows {
            let event = decode_row(row)?;
            if event.stream_id != stream {
                trailer.streams += 1;
                stream.clone_from(&event.stream_id);
            }
            version = event.stream_version as i64;
            trailer.events += 1;
            emit(ExportLine::Event(ExportedEvent::from(event)))?;
        }
        if rows.len() < page {
            break;
        }
    }
    tx.commit().await.map_err(store_error)?;
    emit(ExportLine::Trailer(trailer))?;
    Ok(trailer)
}
