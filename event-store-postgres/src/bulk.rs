//! Loading a prepared log into `events` with `COPY`, for `tasklog generate`
//! (benchmarks and load tests): orders of magnitude faster than appends.
//!
//! The caller prepares every row as an append would have stored it: versions
//! counting up from 1 per stream and hashes chained with
//! [`tasklog_event_store::hash::chain_hash`]. Nothing here checks that: the
//! log is trusted, which is why only the schema owner can `COPY` into it.
//! Chunks are copied in order, one transaction each, so the log's reading
//! order is the order the rows were pushed in.

use std::fmt::Write as _;

use chrono::SecondsFormat;
use sqlx::{Connection, PgPool};
use tasklog_event_store::hash::{HashScheme, Salts};
use tasklog_event_store::EventMetadata;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::CHANNEL;

/// The statement each chunk is written with (text format).
const COPY_STATEMENT: &str = "COPY events (event_id, stream_id, stream_version, event_type, \
    schema_version, occurred_at, org_id, actor_id, correlation_id, causation_id, payload, \
    prev_hash, hash, hash_scheme) FROM STDIN";
/// The salts of the chunk's v2 events, after the events (they refer to them).
const COPY_SALTS_STATEMENT: &str = "COPY event_salts (event_id, salts) FROM STDIN";

/// One stored event, as an append would have written it.
pub struct BulkRow<'a> {
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u16,
    pub metadata: &'a EventMetadata,
    pub payload: &'a serde_json::Value,
    pub prev_hash: Option<&'a [u8]>,
    pub hash: &'a [u8],
    pub hash_scheme: HashScheme,
    /// The salts a v2 hash committed to (empty: none).
    pub salts: &'a Salts,
}

/// Rows of one `COPY`, in its text format.
#[derive(Default)]
pub struct CopyChunk {
    pub data: String,
    pub rows: u64,
    /// `event_salts` rows, in the same format.
    pub salts: String,
}

impl CopyChunk {
    /// Adds one row.
    pub fn push(&mut self, row: &BulkRow<'_>) -> Result<(), serde_json::Error> {
        let b = &mut self.data;
        let opt = |v: Option<Uuid>| v.map_or_else(|| "\\N".to_owned(), |u| u.to_string());
        let meta = row.metadata;
        let _ = write!(
            b,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t",
            row.event_id,
            row.stream_id,
            row.stream_version,
            row.event_type,
            row.schema_version,
            meta.occurred_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            meta.org_id,
            opt(meta.actor_id),
            meta.correlation_id,
            opt(meta.causation_id),
        );
        // Text format: a backslash escapes, so JSON's own backslashes double.
        // (serde_json escapes tabs and newlines inside strings.)
        let json = serde_json::to_string(row.payload)?;
        if json.contains('\\') {
            b.push_str(&json.replace('\\', "\\\\"));
        } else {
            b.push_str(&json);
        }
        b.push('\t');
        match row.prev_hash {
            Some(prev) => push_bytea(b, prev),
            None => b.push_str("\\N"),
        }
        b.push('\t');
        push_bytea(b, row.hash);
        let _ = writeln!(b, "\t{}", row.hash_scheme.code());
        if !row.salts.is_empty() {
            // Hex and pointers of plain field names: nothing COPY escapes.
            let _ = writeln!(
                self.salts,
                "{}\t{}",
                row.event_id,
                serde_json::to_string(row.salts)?
            );
        }
        self.rows += 1;
        Ok(())
    }

    /// The chunk so far, leaving this one empty (with its capacity).
    pub fn take(&mut self) -> CopyChunk {
        let data = std::mem::take(&mut self.data);
        self.data.reserve(data.len());
        CopyChunk {
            data,
            rows: std::mem::take(&mut self.rows),
            salts: std::mem::take(&mut self.salts),
        }
    }
}

/// `bytea` in COPY text format: `\\x` and hex.
pub fn push_bytea(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\\\x");
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
}

/// What [`copy_chunks`] wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct Copied {
    pub rows: u64,
    pub chunks: u64,
}

/// Copies every chunk from `chunks` into the database of `pool` (connect as
/// the schema owner), in order, one transaction each; `progress` gets the
/// rows written after each chunk. Live readers are woken at the end. On an
/// error the receiver is dropped, which stops the producer.
pub async fn copy_chunks(
    pool: &PgPool,
    mut chunks: mpsc::Receiver<CopyChunk>,
    progress: impl Fn(u64),
) -> Result<Copied, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut copied = Copied::default();
    while let Some(chunk) = chunks.recv().await {
        // Events and their salts together, or neither.
        let mut tx = conn.begin().await?;
        let mut copy = tx.copy_in_raw(COPY_STATEMENT).await?;
        copy.send(chunk.data.into_bytes()).await?;
        copy.finish().await?;
        if !chunk.salts.is_empty() {
            let mut copy = tx.copy_in_raw(COPY_SALTS_STATEMENT).await?;
            copy.send(chunk.salts.into_bytes()).await?;
            copy.finish().await?;
        }
        tx.commit().await?;
        copied.rows += chunk.rows;
        copied.chunks += 1;
        progress(copied.rows);
    }
    // Live readers would find the rows within a poll anyway.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(copied)
}
