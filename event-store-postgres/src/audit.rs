//! Verifying the whole stored log against its hash chains, stream by stream
//! in stream id order, each stream's events in version order, read in pages:
//! memory stays constant whatever the size of the log or of a stream.

use std::collections::{BTreeSet, HashMap};

use sqlx::PgPool;
use tasklog_event_store::hash::recompute;
use tasklog_event_store::verify::{Finding, StreamVerifier};
use tasklog_event_store::{RecordedEvent, StoreError};
use uuid::Uuid;

use crate::{decode_row, decode_rows, store_error, SELECT_EVENT_WITH_SALTS};

/// Streams asked for at a time.
const STREAMS_PAGE: i64 = 500;
/// Events of a stream read at a time.
const EVENTS_PAGE: i64 = 1_000;
/// Events read at a time by the pass over the whole log.
const SCAN_PAGE: usize = 10_000;

/// One stream's events as stored, with the salts of their personal fields:
/// everything its hashes are recomputed from.
pub async fn read_stream_as_stored(
    pool: &PgPool,
    stream: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT_WITH_SALTS} WHERE stream_id = $1 ORDER BY stream_version"
    ))
    .bind(stream)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    decode_rows(&rows)
}

/// What a verification went over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSummary {
    pub streams: u64,
    pub events: u64,
    pub findings: u64,
}

/// Verifies every stream (of `org` only, when given: the streams with an
/// event of that organization), calling `on_finding` for each finding as it
/// is made.
pub async fn verify_log(
    pool: &PgPool,
    org: Option<Uuid>,
    mut on_finding: impl FnMut(&Finding),
) -> Result<AuditSummary, StoreError> {
    let Some(org) = org else {
        return verify_all(pool, on_finding).await;
    };
    let org = Some(org);
    let mut summary = AuditSummary::default();
    let mut after = String::new();
    loop {
        let streams: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_id, max(stream_version) FROM events \
             WHERE stream_id > $1 AND ($2::uuid IS NULL OR org_id = $2) \
             GROUP BY stream_id ORDER BY stream_id LIMIT $3",
        )
        .bind(&after)
        .bind(org)
        .bind(STREAMS_PAGE)
        .fetch_all(pool)
        .await
        .map_err(store_error)?;
        let Some((last, _)) = streams.last() else {
            return Ok(summary);
        };
        after = last.clone();
        for (stream, last_version) in streams {
            let findings = verify_stream(pool, &stream, last_version as u64, &mut summary).await?;
            summary.streams += 1;
            summary.findings += findings.len() as u64;
            findings.iter().for_each(&mut on_finding);
        }
    }
}

/// One stream's findings; its events are read whatever their organization.
async fn verify_stream(
    pool: &PgPool,
    stream: &str,
    last_version: u64,
    summary: &mut AuditSummary,
) -> Result<Vec<Finding>, StoreError> {
    let mut verifier = StreamVerifier::new(stream, last_version);
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(&format!(
            "{SELECT_EVENT_WITH_SALTS} WHERE stream_id = $1 AND stream_version > $2 \
             ORDER BY stream_version LIMIT $3"
        ))
        .bind(stream)
        .bind(after)
        .bind(EVENTS_PAGE)
        .fetch_all(pool)
        .await
        .map_err(store_error)?;
        for row in &rows {
            let event = decode_row(row)?;
            after = event.stream_version as i64;
            verifier.push(&event);
        }
        summary.events += rows.len() as u64;
        if (rows.len() as i64) < EVENTS_PAGE {
            return Ok(verifier.finish());
        }
    }
}

/// Every stream, in two passes. First one pass over the whole log in
/// position order (the table's own order, read like a projector reads it, a
/// page of [`SCAN_PAGE`] events at a time while the page before is hashed),
/// keeping each stream's last version and hash: an untouched stream's events
/// come in version order, each linking to the one before it. A stream where
/// anything does not hold is set aside, and only those are then verified
/// again, stream by stream in version order, by the [`StreamVerifier`] that
/// names what happened. Memory: one entry per stream (its id, version and
/// last hash), none per event.
async fn verify_all(
    pool: &PgPool,
    mut on_finding: impl FnMut(&Finding),
) -> Result<AuditSummary, StoreError> {
    let (pages, mut next) = tokio::sync::mpsc::channel(2);
    let reader = tokio::spawn(read_log_pages(pool.clone(), pages));
    let mut chains: HashMap<String, Link> = HashMap::new();
    let mut suspects: BTreeSet<String> = BTreeSet::new();
    let mut summary = AuditSummary::default();
    while let Some(page) = next.recv().await {
        for event in page? {
            summary.events += 1;
            if suspects.contains(&event.stream_id) {
                continue;
            }
            let link = chains.get_mut(&event.stream_id);
            let linked = match &link {
                None => event.stream_version == 1 && event.prev_hash.is_none(),
                Some(l) => {
                    event.stream_version == l.version + 1
                        && event.prev_hash.as_deref() == Some(l.hash.as_slice())
                }
            };
            let intact = linked && recompute(&event).as_ref() == Some(&event.hash);
            match (intact, link) {
                (true, Some(l)) => {
                    l.version = event.stream_version;
                    l.hash = event.hash;
                }
                (true, None) => {
                    let link = Link {
                        version: event.stream_version,
                        hash: event.hash,
                    };
                    chains.insert(event.stream_id, link);
                }
                (false, _) => {
                    chains.remove(&event.stream_id);
                    suspects.insert(event.stream_id);
                }
            }
        }
    }
    reader
        .await
        .map_err(|e| StoreError::Backend(format!("the audit reader: {e}").into()))?;
    summary.streams = (chains.len() + suspects.len()) as u64;
    drop(chains);
    for stream in suspects {
        let last: i64 =
            sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
                .bind(&stream)
                .fetch_one(pool)
                .await
                .map_err(store_error)?;
        // Its events were counted in the first pass.
        let mut again = AuditSummary::default();
        let findings = verify_stream(pool, &stream, last as u64, &mut again).await?;
        summary.findings += findings.len() as u64;
        findings.iter().for_each(&mut on_finding);
    }
    Ok(summary)
}

/// A stream's last verified event, in the first pass of [`verify_all`].
struct Link {
    version: u64,
    hash: Vec<u8>,
}

/// The whole log by `global_position`, every row whatever its transaction
/// (the verifier reads what is stored, not what readers may see yet), all
/// pages from one snapshot so that an append made meanwhile is all in or
/// all out.
async fn read_log_pages(
    pool: PgPool,
    pages: tokio::sync::mpsc::Sender<Result<Vec<RecordedEvent>, StoreError>>,
) {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let _ = pages.send(Err(store_error(e))).await;
            return;
        }
    };
    let snapshot = sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await;
    // Parallel workers would take the cores the hashing needs; the pages
    // are read in index order anyway.
    let snapshot = match snapshot {
        Ok(_) => {
            sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
                .execute(&mut *tx)
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = snapshot {
        let _ = pages.send(Err(store_error(e))).await;
        return;
    }
    let mut after = 0i64;
    loop {
        let page = read_log_page(&mut tx, after).await;
        let full = match &page {
            Ok(events) => {
                if let Some(last) = events.last() {
                    after = last.position.event as i64;
                }
                events.len() == SCAN_PAGE
            }
            Err(_) => false,
        };
        if pages.send(page).await.is_err() || !full {
            return;
        }
    }
}

async fn read_log_page(
    tx: &mut sqlx::PgConnection,
    after: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT_WITH_SALTS} WHERE global_position > $1 ORDER BY global_position LIMIT $2"
    ))
    .bind(after)
    .bind(SCAN_PAGE as i64)
    .fetch_all(tx)
    .await
    .map_err(store_error)?;
    decode_rows(&rows)
}
