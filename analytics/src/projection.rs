//! The `analytics` projection: folds each batch over the facts it keeps in
//! PostgreSQL, sends ClickHouse the rows, then saves the facts; the runner
//! commits them with the checkpoint.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use sqlx::PgConnection;
use tasklog_event_store::RecordedEvent;
use tasklog_projectors::{ApplyError, Projection};
use uuid::Uuid;

use tokio::sync::mpsc;

use crate::fold::{Decoded, Facts, Fold, Key};
use crate::rows::Rows;
use crate::{ClickHouseConfig, ConfigError};

/// The projection into ClickHouse.
pub struct Analytics {
    sink: Arc<Sink>,
    /// Set on the copy a rebuild applies through (see [`Analytics::for_rebuild`]).
    rebuilding: Option<Rebuilding>,
}

/// Where rows go: the analytics database.
struct Sink {
    config: ClickHouseConfig,
    client: clickhouse::Client,
    timeout: Duration,
    /// Its migrations, applied before the first batch is sent: ClickHouse
    /// may come up after the system did.
    migrated: tokio::sync::OnceCell<()>,
}

/// A rebuild's state: every fact in memory, and rows sent behind by a task of
/// their own while the next batches fold. Nobody reads the generation a
/// rebuild fills and a stopped rebuild is thrown away, so neither needs to be
/// written with each checkpoint; `finish_rebuild` waits for the last rows and
/// writes the facts once, before the switch.
struct Rebuilding {
    facts: std::sync::Mutex<Facts>,
    queue: tokio::sync::Mutex<Option<mpsc::Sender<Rows>>>,
    sender: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Batches of rows a rebuild may hold queued for ClickHouse.
const REBUILD_QUEUE: usize = 4;
/// Connections a rebuild writes its facts through, side by side.
const FACT_WRITERS: usize = 2;
/// Events whose rows a rebuild sends in one insert per table.
const REBUILD_INSERT_EVENTS: usize = 250_000;

impl Analytics {
    pub fn new(config: &ClickHouseConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            sink: Arc::new(Sink {
                config: config.clone(),
                client: config.client().with_database(&config.database),
                timeout: config.timeout,
                migrated: tokio::sync::OnceCell::new(),
            }),
            rebuilding: None,
        })
    }

    async fn load(&self, tx: &mut PgConnection, keys: &[Key]) -> Result<Fold, ApplyError> {
        let (kinds, orgs, ids): (Vec<&str>, Vec<Uuid>, Vec<Uuid>) =
            keys.iter().map(|k| k.parts()).fold(
                (Vec::new(), Vec::new(), Vec::new()),
                |(mut a, mut b, mut c), (k, o, i)| {
                    a.push(k);
                    b.push(o);
                    c.push(i);
                    (a, b, c)
                },
            );
        let stored: Vec<(String, Uuid, Uuid, serde_json::Value)> = sqlx::query_as(
            "SELECT f.kind, f.org_id, f.id, f.facts FROM analytics_facts f \
             JOIN UNNEST($1::text[], $2::uuid[], $3::uuid[]) AS k(kind, org_id, id) \
               USING (kind, org_id, id)",
        )
        .bind(&kinds)
        .bind(&orgs)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut fold = Fold::default();
        for (kind, org, id, facts) in stored {
            match kind.as_str() {
                "task" => {
                    fold.tasks.insert(id, serde_json::from_value(facts)?);
                }
                "project" => {
                    fold.projects.insert(id, serde_json::from_value(facts)?);
                }
                "member" => {
                    fold.members
                        .insert((org, id), serde_json::from_value(facts)?);
                }
                "tag" => {
                    fold.tags.insert((org, id), serde_json::from_value(facts)?);
                }
                other => return Err(ApplyError::Failed(format!("unknown facts kind {other}"))),
            }
        }
        Ok(fold)
    }

    async fn save(&self, tx: &mut PgConnection, fold: &Fold) -> Result<(), ApplyError> {
        let mut kinds = Vec::new();
        let mut orgs = Vec::new();
        let mut ids = Vec::new();
        let mut facts = Vec::new();
        for key in &fold.touched {
            let json = match *key {
                Key::Task(id) => fold.tasks.get(&id).map(serde_json::to_string),
                Key::Project(id) => fold.projects.get(&id).map(serde_json::to_string),
                Key::Member(org, user) => fold.members.get(&(org, user)).map(serde_json::to_string),
                Key::Tag(org, tag) => fold.tags.get(&(org, tag)).map(serde_json::to_string),
            };
            if let Some(json) = json {
                let (kind, org, id) = key.parts();
                kinds.push(kind);
                orgs.push(org);
                ids.push(id);
                facts.push(json?);
            }
        }
        if kinds.is_empty() {
            return Ok(());
        }
        // (A generation made before the facts were `json` has `jsonb`:
        // PostgreSQL casts on assignment.)
        sqlx::query(
            "INSERT INTO analytics_facts (kind, org_id, id, facts) \
             SELECT k, o, i, f::json FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::text[]) AS x(k, o, i, f) \
             ON CONFLICT (kind, org_id, id) DO UPDATE SET facts = EXCLUDED.facts",
        )
        .bind(&kinds)
        .bind(&orgs)
        .bind(&ids)
        .bind(&facts)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// A batch of a rebuild: folds over the facts in memory and queues the
    /// rows; the facts are kept once the rows are queued.
    async fn apply_rebuilding(
        r: &Rebuilding,
        events: &[RecordedEvent],
        decoded: &[Decoded],
        keys: &[Key],
    ) -> Result<(), ApplyError> {
        let mut fold = r.facts.lock().expect("facts lock").load(keys);
        fold.rows.events.reserve(events.len());
        for (e, d) in events.iter().zip(decoded) {
            fold.apply(e, d)?;
        }
        let (rows, fold) = fold.finish();
        let queue = r.queue.lock().await;
        let sent = match queue.as_ref() {
            Some(queue) => queue.send(rows).await.is_ok(),
            None => false,
        };
        if !sent {
            return Err(ApplyError::Failed(
                "the rebuild's ClickHouse sender has stopped".into(),
            ));
        }
        r.facts.lock().expect("facts lock").keep(fold);
        Ok(())
    }
}

impl Sink {
    /// One insert of `table`'s rows of every batch of `batches`.
    async fn insert<'r, T>(
        &self,
        table: &str,
        batches: &'r [Rows],
        rows: impl Fn(&'r Rows) -> &'r [T],
    ) -> Result<(), clickhouse::error::Error>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Serialize + 'r,
    {
        if batches.iter().all(|b| rows(b).is_empty()) {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert::<T>(table)
            .await?
            .with_timeouts(Some(self.timeout), Some(self.timeout));
        for row in batches.iter().flat_map(rows) {
            insert.write(row).await?;
        }
        insert.end().await
    }

    /// Sends the rows of `batches`, one insert per table. Any failure is
    /// transient: ClickHouse being down, slow or refusing is no fault of
    /// the events, and the batches are sent again whole (their rows
    /// collapse with any that got through).
    async fn send(&self, batches: &[Rows]) -> Result<(), ApplyError> {
        self.migrated
            .get_or_try_init(|| async { crate::migrate::migrate(&self.config).await.map(|_| ()) })
            .await
            .map_err(|e| ApplyError::Transient(format!("ClickHouse migrations: {e}").into()))?;
        // Side by side: each table's insert is a request of its own.
        tokio::try_join!(
            self.insert("events", batches, |b| &b.events),
            self.insert("status_changes", batches, |b| &b.status_changes),
            self.insert("tasks", batches, |b| &b.tasks),
            self.insert("projects", batches, |b| &b.projects),
            self.insert("members", batches, |b| &b.members),
            self.insert("tags", batches, |b| &b.tags),
            self.insert("notifications", batches, |b| &b.notifications),
        )
        .map(|_| ())
        .map_err(|e| ApplyError::Transient(format!("ClickHouse: {e}").into()))
    }

    /// A rebuild's sender: sends queued rows in order, gathered into inserts
    /// of [`REBUILD_INSERT_EVENTS`] (fewer, larger parts for ClickHouse to
    /// write and merge), each until it goes through: as the live projection
    /// retries, ClickHouse being away only delays the rebuild.
    async fn send_queued(self: Arc<Self>, mut queue: mpsc::Receiver<Rows>) {
        // The batches themselves, not one copy of them all: copying them
        // together took about 8% of a rebuild's own CPU.
        let mut gathered: Vec<Rows> = Vec::new();
        loop {
            let next = queue.recv().await;
            let last = next.is_none();
            gathered.extend(next);
            let events: usize = gathered.iter().map(|b| b.events.len()).sum();
            if events < REBUILD_INSERT_EVENTS && !last {
                continue;
            }
            let started = std::time::Instant::now();
            let mut backoff = Duration::from_millis(100);
            while let Err(e) = self.send(&gathered).await {
                tracing::warn!(error = %e, "rebuild: ClickHouse refused a batch; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            tracing::debug!(events, sending = ?started.elapsed(), "rebuild: rows sent");
            if last {
                return;
            }
            gathered.clear();
        }
    }
}

/// A CSV field's inside: what is written has its quotes doubled.
struct CsvQuoted<'a>(&'a mut Vec<u8>);

impl std::io::Write for CsvQuoted<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for part in bytes.split_inclusive(|&b| b == b'"') {
            self.0.extend_from_slice(part);
            if part.ends_with(b"\"") {
                self.0.push(b'"');
            }
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes every fact of a rebuild into `schema`: one COPY per connection of
/// [`FACT_WRITERS`], each with its share of the facts, streamed in chunks.
async fn copy_facts(pool: &sqlx::PgPool, schema: &str, facts: Facts) -> Result<(), ApplyError> {
    let facts = Arc::new(facts);
    let writers: Vec<_> = (0..FACT_WRITERS)
        .map(|share| {
            let (pool, facts) = (pool.clone(), facts.clone());
            let statement = format!(
                "COPY {schema}.analytics_facts (kind, org_id, id, facts) FROM STDIN (FORMAT csv)"
            );
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                let mut copy = conn.copy_in_raw(&statement).await?;
                let mut csv = Vec::new();
                for (key, fact) in facts.stored().skip(share).step_by(FACT_WRITERS) {
                    let (kind, org, id) = key.parts();
                    write!(csv, "{kind},{org},{id},\"").expect("writing to memory");
                    fact.write_json(CsvQuoted(&mut csv))?;
                    csv.extend_from_slice(b"\"\n");
                    if csv.len() >= 1 << 22 {
                        copy.send(std::mem::take(&mut csv)).await?;
                    }
                }
                copy.send(csv).await?;
                copy.finish().await?;
                Ok::<_, ApplyError>(())
            })
        })
        .collect();
    // Spawned, so they run side by side; awaited in turn.
    for written in writers {
        let written = written.await;
        written.map_err(|e| ApplyError::Failed(format!("writing facts: {e}")))??;
    }
    Ok(())
}

#[async_trait]
impl Projection for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../migrations/projections/analytics.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        // Its readers read ClickHouse; nothing is exposed in `read`.
        &[]
    }
    fn min_step_interval(&self) -> Duration {
        self.sink.config.insert_interval
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        let started = std::time::Instant::now();
        let decoded = events
            .iter()
            .map(Decoded::of)
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys: Vec<Key> = events
            .iter()
            .zip(&decoded)
            .filter_map(|(e, d)| d.key(e.metadata.org_id))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if let Some(r) = &self.rebuilding {
            return Self::apply_rebuilding(r, events, &decoded, &keys).await;
        }
        let decoding = started.elapsed();
        let mut fold = self.load(tx, &keys).await?;
        let loading = started.elapsed() - decoding;
        fold.rows.events.reserve(events.len());
        for (e, d) in events.iter().zip(&decoded) {
            fold.apply(e, d)?;
        }
        let (rows, fold) = fold.finish();
        let folded = started.elapsed();
        // The facts are saved while ClickHouse takes the rows: the runner
        // commits them only if both succeed.
        let ((sent, sending), (saved, saving)) = tokio::join!(
            async {
                (
                    self.sink.send(std::slice::from_ref(&rows)).await,
                    started.elapsed() - folded,
                )
            },
            async { (self.save(tx, &fold).await, started.elapsed() - folded) },
        );
        sent.and(saved)?;
        tracing::debug!(
            events = events.len(),
            facts = keys.len(),
            ?decoding,
            ?loading,
            folding = ?folded - decoding - loading,
            ?sending,
            ?saving,
            "analytics batch"
        );
        Ok(())
    }

    fn for_rebuild(&self) -> Option<Arc<dyn Projection>> {
        let (queue, queued) = mpsc::channel(REBUILD_QUEUE);
        let sender = tokio::spawn(self.sink.clone().send_queued(queued));
        Some(Arc::new(Analytics {
            sink: self.sink.clone(),
            rebuilding: Some(Rebuilding {
                facts: Default::default(),
                queue: tokio::sync::Mutex::new(Some(queue)),
                sender: tokio::sync::Mutex::new(Some(sender)),
            }),
        }))
    }

    async fn finish_rebuild(&self, pool: &sqlx::PgPool, schema: &str) -> Result<(), ApplyError> {
        let Some(r) = &self.rebuilding else {
            return Ok(());
        };
        // The last rows: closing the queue ends the sender once it is empty.
        r.queue.lock().await.take();
        let sender = r.sender.lock().await.take();
        let sent = async {
            match sender {
                Some(sender) => sender.await.map_err(|e| {
                    ApplyError::Failed(format!("the rebuild's ClickHouse sender: {e}"))
                }),
                None => Ok(()),
            }
        };
        // The facts are final once the last batch folded: they are written
        // while ClickHouse takes the last rows.
        let facts = std::mem::take(&mut *r.facts.lock().expect("facts lock"));
        let (count, started) = (facts.len(), std::time::Instant::now());
        let (sent, copied) = tokio::join!(sent, copy_facts(pool, schema, facts));
        sent.and(copied)?;
        tracing::debug!(facts = count, finished = ?started.elapsed(), "rebuild: facts written, rows sent");
        Ok(())
    }
}

/// Projects the whole log afresh into the tables of `config`, beside the
/// live projection and without touching its checkpoint or state (they live
/// in a schema of a transaction that is rolled back): what a rebuild into an
/// empty ClickHouse writes. For checks that the live tables are exact.
/// Returns the number of events projected.
pub async fn project_afresh(
    pool: &sqlx::PgPool,
    store: &dyn tasklog_event_store::EventStore,
    config: &ClickHouseConfig,
) -> Result<u64, tasklog_projectors::ProjectorError> {
    use tasklog_projectors::ProjectorError;
    let analytics = Analytics::new(config).map_err(|e| ProjectorError::Unknown(e.to_string()))?;
    let head = store.high_water_mark().await?.head.unwrap_or_default();
    let mut tx = pool.begin().await?;
    let schema = format!("analytics_afresh_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("SET LOCAL search_path TO {schema}"))
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(analytics.ddl()).execute(&mut *tx).await?;
    let mut at = tasklog_event_store::LogPosition::START;
    let mut projected = 0u64;
    while at < head {
        let events = store.read_all(at, 5000).await?;
        let Some(last) = events.last() else {
            // Held back by an open transaction: look again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        at = last.position;
        let events: Vec<_> = events.into_iter().filter(|e| e.position <= head).collect();
        projected += events.len() as u64;
        analytics
            .apply(&mut tx, &events)
            .await
            .map_err(|e| match e {
                ApplyError::Transient(e) => ProjectorError::Unavailable(e),
                ApplyError::Failed(e) => ProjectorError::Unknown(e),
            })?;
    }
    tx.rollback().await?;
    Ok(projected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_written_as_a_csv_field_has_every_quote_doubled() {
        let mut csv = b"\"".to_vec();
        serde_json::to_writer(
            CsvQuoted(&mut csv),
            &serde_json::json!({"t": "Q4 \"draft\""}),
        )
        .unwrap();
        csv.push(b'"');
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            r#""{""t"":""Q4 \""draft\""""}""#
        );
    }
}
