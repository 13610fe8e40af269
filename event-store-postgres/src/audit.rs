//! Verifying the whole stored log against its hash chains, stream by stream
//! in stream id order, each stream's events in version order, read in pages:
//! memory stays constant whatever the size of the log or of a stream.

use sqlx::PgPool;
use tasklog_event_store::verify::{Finding, StreamVerifier};
use tasklog_event_store::StoreError;
use uuid::Uuid;

use crate::{decode_row, store_error, SELECT_EVENT_WITH_SALTS};

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
) -> Result<Vec<tasklog_event_store::RecordedEvent>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT_WITH_SALTS} WHERE stream_id = $1 ORDER BY stream_version"
    ))
    .bind(stream)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    rows.iter().map(decode_row).collect()
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

/// Every stream in one pass over the log in (stream, version) order, a page
/// of [`SCAN_PAGE`] events at a time, read while the page before is hashed:
/// one query per page instead of one per stream.
async fn verify_all(
    pool: &PgPool,
    mut on_finding: impl FnMut(&Finding),
) -> Result<AuditSummary, StoreError> {
    let (pages, mut next) = tokio::sync::mpsc::channel(2);
    let reader = tokio::spawn(read_pages(pool.clone(), pages));
    let mut summary = AuditSummary::default();
    let mut open: Option<(String, StreamVerifier)> = None;
    let mut finish = |verifier: StreamVerifier, summary: &mut AuditSummary| {
        let findings = verifier.finish();
        summary.streams += 1;
        summary.findings += findings.len() as u64;
        findings.iter().for_each(&mut on_finding);
    };
    while let Some(page) = next.recv().await {
        let (events, last_versions) = page?;
        for event in &events {
            if open
                .as_ref()
                .is_none_or(|(stream, _)| *stream != event.stream_id)
            {
                if let Some((_, verifier)) = open.take() {
                    finish(verifier, &mut summary);
                }
                let last = last_versions
                    .get(&event.stream_id)
                    .copied()
                    .unwrap_or(event.stream_version);
                let verifier = StreamVerifier::new(&event.stream_id, last);
                open = Some((event.stream_id.clone(), verifier));
            }
            if let Some((_, verifier)) = &mut open {
                verifier.push(event);
            }
            summary.events += 1;
        }
    }
    if let Some((_, verifier)) = open.take() {
        finish(verifier, &mut summary);
    }
    reader
        .await
        .map_err(|e| StoreError::Backend(format!("the audit reader: {e}").into()))?;
    Ok(summary)
}

/// A page of events, and the highest stored version of each stream in it
/// (where a moved event is looked for).
type Page = (
    Vec<tasklog_event_store::RecordedEvent>,
    std::collections::HashMap<String, u64>,
);

async fn read_pages(pool: PgPool, pages: tokio::sync::mpsc::Sender<Result<Page, StoreError>>) {
    let mut after = (String::new(), 0i64);
    loop {
        let page = read_page(&pool, &after).await;
        let full = match &page {
            Ok((events, _)) => {
                if let Some(last) = events.last() {
                    after = (last.stream_id.clone(), last.stream_version as i64);
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

async fn read_page(pool: &PgPool, after: &(String, i64)) -> Result<Page, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT_EVENT_WITH_SALTS} WHERE (stream_id, stream_version) > ($1, $2) \
         ORDER BY stream_id, stream_version LIMIT $3"
    ))
    .bind(&after.0)
    .bind(after.1)
    .bind(SCAN_PAGE as i64)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    let events = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
    let mut streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
    streams.dedup();
    let last_versions: Vec<(String, i64)> = sqlx::query_as(
        "SELECT stream_id, max(stream_version) FROM events \
         WHERE stream_id = ANY($1) GROUP BY stream_id",
    )
    .bind(&streams)
    .fetch_all(pool)
    .await
    .map_err(store_error)?;
    let last_versions = last_versions
        .into_iter()
        .map(|(stream, last)| (stream, last as u64))
        .collect();
    Ok((events, last_versions))
}
