//! Verifying the whole stored log against its hash chains, stream by stream
//! in stream id order, each stream's events in version order, read in pages:
//! memory stays constant whatever the size of the log or of a stream.

use sqlx::PgPool;
use tasklog_event_store::verify::{Finding, StreamVerifier};
use tasklog_event_store::StoreError;
use uuid::Uuid;

use crate::{decode_row, store_error, SELECT_EVENT};

/// Streams asked for at a time.
const STREAMS_PAGE: i64 = 500;
/// Events of a stream read at a time.
const EVENTS_PAGE: i64 = 1_000;

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
            "{SELECT_EVENT} WHERE stream_id = $1 AND stream_version > $2 \
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
