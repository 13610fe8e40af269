//! Replays: one organization's events folded again, through the same
//! projection code, into scratch schemas of their own, and compared row by
//! row with that organization's rows in each projection's live generation
//! (`tasklog audit replay`, see docs/audit.md).
//!
//! - A scratch schema `replay_<projection>_<run>` gets the projection's
//!   tables exactly as a new generation does (its DDL, indexes included) and
//!   nothing else: no checkpoint, no view, no dead letter, nothing the live
//!   projectors or the APIs read.
//! - Events are applied as the runner applies them: a batch in a transaction
//!   whose search_path is the schema, falling back to one event at a time;
//!   an event that fails is left out, as the runner parks it, and reported.
//! - The live projection keeps moving while the replay runs. Its rows are
//!   read in one snapshot with its checkpoint, and compared once the scratch
//!   holds exactly the organization's events up to that checkpoint.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::{PgConnection, PgPool, Row};
use tasklog_event_store::{LogPosition, RecordedEvent, StoreError};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{checkpoint, generation, ApplyError, Projection, ProjectorError};

/// The organization's events read at a time.
pub const REPLAY_PAGE: usize = 1_000;

/// How many snapshots a comparison looks at, by default, for one in which
/// the organization has no event past the scratch's; the last one applies
/// those events inside the snapshot instead, which holds the log's readers
/// back while it compares (its transaction then has an id).
pub const SETTLE_ATTEMPTS: u32 = 5;

/// How often a comparison looks again at a live checkpoint that lags.
const LAG_POLL: Duration = Duration::from_millis(100);

/// The column every read-model table scopes its rows to an organization by.
const ORG_COLUMN: &str = "org_id";

/// One organization's slice of the global log.
#[async_trait]
pub trait OrgLog: Send + Sync {
    /// Up to `limit` of the organization's events after `after`, in log
    /// order and only below the log's horizon (as the projectors read),
    /// through `conn`: in its transaction's snapshot, when it has one.
    async fn read(
        &self,
        conn: &mut PgConnection,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;
}

/// An event the projection could not apply (the live runner retries such
/// an event, then parks it and moves on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unapplied {
    pub event_id: Uuid,
    pub position: LogPosition,
    pub event_type: String,
    pub error: String,
}

impl fmt::Display for Unapplied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {} ({} at {}) could not be applied: {}",
            self.event_id, self.event_type, self.position, self.error
        )
    }
}

/// What a replay found.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub org: Uuid,
    /// The log position taken at the start: every live projection had to
    /// reach it before it was compared.
    pub target: LogPosition,
    pub projections: Vec<ProjectionReport>,
}

impl ReplayReport {
    /// Differences in every projection compared, unapplied events included.
    pub fn differences(&self) -> u64 {
        self.projections.iter().map(|p| p.differences()).sum()
    }

    /// Whether every projection was compared.
    pub fn complete(&self) -> bool {
        self.projections
            .iter()
            .all(|p| matches!(p.comparison, Comparison::Compared { .. }))
    }
}

/// One projection's replay.
#[derive(Debug, Clone)]
pub struct ProjectionReport {
    pub projection: String,
    pub schema: String,
    /// The organization's events the projection applies that were replayed.
    pub events: u64,
    pub unapplied: Vec<Unapplied>,
    pub comparison: Comparison,
}

impl ProjectionReport {
    pub fn differences(&self) -> u64 {
        let tables = match &self.comparison {
            Comparison::Compared { tables, .. } => tables.iter().map(|t| t.differences()).sum(),
            Comparison::Lagging { .. } => 0,
        };
        tables + self.unapplied.len() as u64
    }
}

/// Whether, and against what, a projection was compared.
#[derive(Debug, Clone)]
pub enum Comparison {
    /// Compared with live generation `generation` at its checkpoint `at`.
    Compared {
        generation: i32,
        at: LogPosition,
        tables: Vec<TableReport>,
    },
    /// The live projection had not reached the target in time: not compared.
    Lagging { checkpoint: Option<LogPosition> },
}

/// One table's comparison: the organization's rows in the live generation
/// against every row of the scratch copy.
#[derive(Debug, Clone, Default)]
pub struct TableReport {
    pub table: String,
    pub live_rows: u64,
    pub replay_rows: u64,
    pub only_live: u64,
    pub only_replay: u64,
    pub differing: u64,
    /// The live generation has no such table (it predates the DDL).
    pub missing_in_live: bool,
    /// Columns of one side only (the live generation predates the DDL);
    /// the others are compared.
    pub columns_only_live: Vec<String>,
    pub columns_only_replay: Vec<String>,
    /// The first differences, by primary key.
    pub listed: Vec<RowDifference>,
}

impl TableReport {
    pub fn differences(&self) -> u64 {
        self.only_live
            + self.only_replay
            + self.differing
            + u64::from(self.missing_in_live)
            + (self.columns_only_live.len() + self.columns_only_replay.len()) as u64
    }
}

/// A row that is not the same on both sides, named by its primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDifference {
    /// (column, value) of each primary key column.
    pub key: Vec<(String, String)>,
    pub kind: DifferenceKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DifferenceKind {
    OnlyInLive,
    OnlyInReplay,
    /// On both sides, with these columns different.
    Differs(Vec<ColumnDifference>),
}

/// One column of a row on both sides, as text (`None`: NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDifference {
    pub column: String,
    pub live: Option<String>,
    pub replay: Option<String>,
}

/// Values are shown up to this many characters.
const SHOWN: usize = 60;

fn shown(value: &Option<String>) -> String {
    match value {
        None => "NULL".into(),
        Some(v) if v.chars().count() > SHOWN => {
            format!("{:?}…", v.chars().take(SHOWN).collect::<String>())
        }
        Some(v) => format!("{v:?}"),
    }
}

impl fmt::Display for RowDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: Vec<String> = self.key.iter().map(|(c, v)| format!("{c}={v}")).collect();
        let key = key.join(" ");
        match &self.kind {
            DifferenceKind::OnlyInLive => write!(f, "only in live: {key}"),
            DifferenceKind::OnlyInReplay => write!(f, "only in replay: {key}"),
            DifferenceKind::Differs(columns) => {
                let columns: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        format!(
                            "{} (live {}, replay {})",
                            c.column,
                            shown(&c.live),
                            shown(&c.replay)
                        )
                    })
                    .collect();
                write!(f, "differs: {key}: {}", columns.join(", "))
            }
        }
    }
}

/// A projection's scratch copy and how far it is.
struct Scratch {
    projection: Arc<dyn Projection>,
    schema: String,
    /// This replay created the schema (only such are dropped).
    created: bool,
    /// The organization's events up to here are applied.
    position: LogPosition,
    events: u64,
    unapplied: Vec<Unapplied>,
}

/// A replay of one organization into scratch schemas (see the module).
/// Whatever happens, [`Replay::drop_schemas`] removes them.
pub struct Replay {
    pool: PgPool,
    log: Arc<dyn OrgLog>,
    org: Uuid,
    scratches: Vec<Scratch>,
    settle_attempts: u32,
}

impl Replay {
    /// A replay of `org` through `projections`, into schemas
    /// `replay_<projection>_<run>` (`run` names this replay: letters and
    /// digits). Creates nothing yet.
    pub fn new(
        pool: PgPool,
        log: Arc<dyn OrgLog>,
        org: Uuid,
        projections: Vec<Arc<dyn Projection>>,
        run: &str,
    ) -> Result<Self, ProjectorError> {
        if run.is_empty() || !run.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ProjectorError::Unknown(format!("replay run id {run:?}")));
        }
        let scratches = projections
            .into_iter()
            .map(|projection| Scratch {
                schema: format!("replay_{}_{}", projection.name(), run.to_ascii_lowercase()),
                created: false,
                projection,
                position: LogPosition::START,
                events: 0,
                unapplied: Vec::new(),
            })
            .collect();
        Ok(Self {
            pool,
            log,
            org,
            scratches,
            settle_attempts: SETTLE_ATTEMPTS,
        })
    }

    /// Looks at up to `attempts` snapshots per comparison (see
    /// [`SETTLE_ATTEMPTS`]); 1 applies whatever came since the target
    /// inside the first.
    pub fn settling_within(mut self, attempts: u32) -> Self {
        self.settle_attempts = attempts.max(1);
        self
    }

    /// The scratch schemas' names.
    pub fn schemas(&self) -> Vec<String> {
        self.scratches.iter().map(|s| s.schema.clone()).collect()
    }

    /// Creates the scratch schemas, folds the organization's events up to
    /// `target` into them, and compares each with its live projection once
    /// that has reached `target`, waiting up to `wait` in all. Lists up to
    /// `listed` differences per table.
    pub async fn run(
        &mut self,
        target: LogPosition,
        wait: Duration,
        listed: usize,
    ) -> Result<ReplayReport, ProjectorError> {
        self.create_schemas().await?;
        self.fold_to(target).await?;
        let deadline = Instant::now() + wait;
        let mut projections = Vec::new();
        for i in 0..self.scratches.len() {
            let comparison = self.compare(i, deadline, listed).await?;
            let scratch = &self.scratches[i];
            projections.push(ProjectionReport {
                projection: scratch.projection.name().to_owned(),
                schema: scratch.schema.clone(),
                events: scratch.events,
                unapplied: scratch.unapplied.clone(),
                comparison,
            });
        }
        Ok(ReplayReport {
            org: self.org,
            target,
            projections,
        })
    }

    /// Creates the scratch schemas; one that exists already is an error
    /// (and is left alone).
    async fn create_schemas(&mut self) -> Result<(), ProjectorError> {
        for scratch in &mut self.scratches {
            let mut tx = self.pool.begin().await?;
            generation::create_schema(&mut tx, scratch.projection.as_ref(), &scratch.schema, false)
                .await?;
            tx.commit().await?;
            scratch.created = true;
        }
        Ok(())
    }

    /// Drops the scratch schemas this replay created.
    pub async fn drop_schemas(&self) -> Result<(), sqlx::Error> {
        for scratch in self.scratches.iter().filter(|s| s.created) {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", scratch.schema))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Applies the organization's events up to `target` to every scratch.
    async fn fold_to(&mut self, target: LogPosition) -> Result<(), ProjectorError> {
        let mut conn = self.pool.acquire().await?;
        let mut after = LogPosition::START;
        loop {
            let page = self.log.read(&mut conn, after, REPLAY_PAGE).await?;
            let full = page.len() == REPLAY_PAGE;
            let events: Vec<RecordedEvent> = page
                .into_iter()
                .take_while(|e| e.position <= target)
                .collect();
            if let Some(last) = events.last() {
                after = last.position;
                for scratch in &mut self.scratches {
                    let mut tx = self.pool.begin().await?;
                    apply(&mut tx, scratch, &events).await?;
                    tx.commit().await?;
                }
            }
            if !full || after >= target || events.is_empty() {
                break;
            }
        }
        for scratch in &mut self.scratches {
            scratch.position = target;
        }
        Ok(())
    }

    /// The organization's events after `after`, up to and with `until`,
    /// read through `conn`.
    async fn read_until(
        &self,
        conn: &mut PgConnection,
        mut after: LogPosition,
        until: LogPosition,
    ) -> Result<Vec<RecordedEvent>, ProjectorError> {
        let mut out = Vec::new();
        while after < until {
            let page = self.log.read(conn, after, REPLAY_PAGE).await?;
            let full = page.len() == REPLAY_PAGE;
            let before = out.len();
            out.extend(page.into_iter().take_while(|e| e.position <= until));
            match out.last() {
                Some(last) if out.len() > before && full => after = last.position,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Compares scratch `i` with its live projection: waits (until
    /// `deadline`) for the live checkpoint to reach the scratch, then looks
    /// for a snapshot in which the organization has no event between the
    /// two, catching the scratch up meanwhile.
    async fn compare(
        &mut self,
        i: usize,
        deadline: Instant,
        listed: usize,
    ) -> Result<Comparison, ProjectorError> {
        let name = self.scratches[i].projection.name();
        let mut attempts = 0;
        loop {
            let live = checkpoint::active(&self.pool, name).await?;
            if live.is_none_or(|c| c.position < self.scratches[i].position) {
                if Instant::now() >= deadline {
                    return Ok(Comparison::Lagging {
                        checkpoint: live.map(|c| c.position),
                    });
                }
                tokio::time::sleep(LAG_POLL).await;
                continue;
            }
            attempts += 1;
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
            // The live rows are read in this snapshot, in which batches and
            // their checkpoint moves are atomic: they are the rows at `live`.
            let Some(live) = checkpoint::active(&mut *tx, name).await? else {
                continue;
            };
            let scratch = &self.scratches[i];
            if live.position < scratch.position {
                // A rebuild switched to a generation still behind: wait.
                continue;
            }
            let tail = self
                .read_until(&mut tx, scratch.position, live.position)
                .await?;
            let wanted = tail.iter().any(|e| wants(scratch.projection.as_ref(), e));
            if wanted && attempts < self.settle_attempts {
                tx.rollback().await?;
                let scratch = &mut self.scratches[i];
                let mut tx = self.pool.begin().await?;
                apply(&mut tx, scratch, &tail).await?;
                tx.commit().await?;
                scratch.position = live.position;
                continue;
            }
            // The organization keeps writing: apply the rest in this snapshot.
            let mut settled = Scratch {
                projection: scratch.projection.clone(),
                schema: scratch.schema.clone(),
                created: true,
                position: live.position,
                events: 0,
                unapplied: Vec::new(),
            };
            apply(&mut tx, &mut settled, &tail).await?;
            let live_schema = generation::schema(name, live.generation);
            match compare_tables(&mut tx, scratch, &live_schema, self.org, listed).await {
                Ok(tables) => {
                    tx.commit().await?;
                    let scratch = &mut self.scratches[i];
                    scratch.position = live.position;
                    scratch.events += settled.events;
                    scratch.unapplied.extend(settled.unapplied);
                    return Ok(Comparison::Compared {
                        generation: live.generation,
                        at: live.position,
                        tables,
                    });
                }
                // A rebuild dropped the generation this snapshot saw active.
                Err(ProjectorError::Database(e))
                    if is_missing_relation(&e) && attempts < 3 * self.settle_attempts => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether the projection applies `event` (as the runner decides).
fn wants(projection: &dyn Projection, event: &RecordedEvent) -> bool {
    match (projection.categories(), event.stream_id.split_once('-')) {
        (Some(categories), Some((category, _))) => categories.contains(&category),
        _ => true,
    }
}

fn is_missing_relation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("42P01" | "3F000")))
}

/// Applies `events` to `scratch` inside the caller's transaction, as the
/// runner does: as one batch, or, when that fails, one event at a time,
/// leaving out (and recording) each that fails. Savepoints stand in for the
/// runner's transactions.
async fn apply(
    conn: &mut PgConnection,
    scratch: &mut Scratch,
    events: &[RecordedEvent],
) -> Result<(), ProjectorError> {
    let projection = scratch.projection.as_ref();
    let wanted: Vec<&RecordedEvent> = events.iter().filter(|e| wants(projection, e)).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    // As `projection_batch_begin` sets it for a generation.
    sqlx::query(&format!(
        "SET LOCAL search_path TO {}, public",
        scratch.schema
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query("SAVEPOINT replay_batch")
        .execute(&mut *conn)
        .await?;
    match projection.apply(conn, events).await {
        Ok(()) => {
            sqlx::query("RELEASE SAVEPOINT replay_batch")
                .execute(&mut *conn)
                .await?;
        }
        Err(ApplyError::Transient(e)) => return Err(ProjectorError::Unavailable(e)),
        Err(ApplyError::Failed(_)) => {
            sqlx::query("ROLLBACK TO SAVEPOINT replay_batch")
                .execute(&mut *conn)
                .await?;
            for event in &wanted {
                sqlx::query("SAVEPOINT replay_event")
                    .execute(&mut *conn)
                    .await?;
                let end = match projection.apply(conn, std::slice::from_ref(*event)).await {
                    Ok(()) => "RELEASE SAVEPOINT replay_event",
                    Err(ApplyError::Transient(e)) => return Err(ProjectorError::Unavailable(e)),
                    Err(ApplyError::Failed(error)) => {
                        scratch.unapplied.push(Unapplied {
                            event_id: event.event_id,
                            position: event.position,
                            event_type: event.event_type.clone(),
                            error,
                        });
                        "ROLLBACK TO SAVEPOINT replay_event"
                    }
                };
                sqlx::query(end).execute(&mut *conn).await?;
            }
        }
    }
    sqlx::query("SET LOCAL search_path TO DEFAULT")
        .execute(&mut *conn)
        .await?;
    scratch.events += wanted.len() as u64;
    Ok(())
}

/// A double-quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table's columns (name, generated), in order; empty when it does not exist.
async fn columns(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, bool)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.attname::text, a.attgenerated <> '' FROM pg_attribute a \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(format!("{}.{}", ident(schema), ident(table)))
    .fetch_all(conn)
    .await
}

/// A table's primary key columns, in order.
async fn primary_key(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.n",
    )
    .bind(format!("{}.{}", ident(schema), ident(table)))
    .fetch_all(conn)
    .await
}

/// Compares every table of `scratch` with `live_schema`'s: the live side's
/// rows of `org` against every scratch row (all of which the organization's
/// events wrote, so a scratch row of another organization is a difference
/// too). Generated columns are left out: they follow from the others.
async fn compare_tables(
    conn: &mut PgConnection,
    scratch: &Scratch,
    live_schema: &str,
    org: Uuid,
    listed: usize,
) -> Result<Vec<TableReport>, ProjectorError> {
    let mut reports = Vec::new();
    for &table in scratch.projection.tables() {
        let mut report = TableReport {
            table: table.to_owned(),
            ..TableReport::default()
        };
        let replay_columns = columns(conn, &scratch.schema, table).await?;
        let live_columns = columns(conn, live_schema, table).await?;
        let key = primary_key(conn, &scratch.schema, table).await?;
        let has_org = |cols: &[(String, bool)]| cols.iter().any(|(c, _)| c == ORG_COLUMN);
        if key.is_empty() || !has_org(&replay_columns) {
            return Err(ProjectorError::Unknown(format!(
                "{} has no primary key or no {ORG_COLUMN}: a replay cannot compare it",
                table
            )));
        }
        let scratch_table = format!("{}.{}", ident(&scratch.schema), ident(table));
        report.replay_rows =
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {scratch_table}"))
                .fetch_one(&mut *conn)
                .await? as u64;
        if live_columns.is_empty() {
            report.missing_in_live = true;
            reports.push(report);
            continue;
        }
        if !has_org(&live_columns)
            || key
                .iter()
                .any(|k| !live_columns.iter().any(|(c, _)| c == k))
        {
            return Err(ProjectorError::Unknown(format!(
                "{live_schema}.{table} lacks {ORG_COLUMN} or a primary key column: a replay cannot compare it"
            )));
        }
        let live_table = format!("{}.{}", ident(live_schema), ident(table));
        report.live_rows = sqlx::query_scalar::<_, i64>(&format!(
            "SELECT count(*) FROM {live_table} WHERE {} = $1",
            ident(ORG_COLUMN)
        ))
        .bind(org)
        .fetch_one(&mut *conn)
        .await? as u64;
        let plain = |cols: &[(String, bool)]| -> Vec<String> {
            cols.iter()
                .filter(|(_, generated)| !generated)
                .map(|(c, _)| c.clone())
                .collect()
        };
        let (live_plain, replay_plain) = (plain(&live_columns), plain(&replay_columns));
        report.columns_only_live = live_plain
            .iter()
            .filter(|c| !replay_plain.contains(c))
            .cloned()
            .collect();
        report.columns_only_replay = replay_plain
            .iter()
            .filter(|c| !live_plain.contains(c))
            .cloned()
            .collect();
        let compared: Vec<&String> = replay_plain
            .iter()
            .filter(|c| live_plain.contains(c) && !key.contains(c))
            .collect();
        let sql = diff_query(&live_table, &scratch_table, &key, &compared);
        let mut rows = sqlx::query(&sql).bind(org).fetch(&mut *conn);
        while let Some(row) = rows.try_next().await? {
            let (in_live, in_replay): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
            let values: Vec<String> = row.try_get(2)?;
            let kind = match (in_live, in_replay) {
                (true, false) => {
                    report.only_live += 1;
                    DifferenceKind::OnlyInLive
                }
                (false, true) => {
                    report.only_replay += 1;
                    DifferenceKind::OnlyInReplay
                }
                _ => {
                    report.differing += 1;
                    let cells: serde_json::Value = row.try_get(3)?;
                    DifferenceKind::Differs(column_differences(&cells))
                }
            };
            if report.listed.len() < listed {
                report.listed.push(RowDifference {
                    key: key.iter().cloned().zip(values).collect(),
                    kind,
                });
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The rows that differ between `live` (the rows of organization `$1`) and
/// `replay` (all), matched by `key`: whether each side has the row, its key
/// as text, and `[column, live, replay]` (as text) for each column of
/// `compared` that differs (NULL for the others).
fn diff_query(live: &str, replay: &str, key: &[String], compared: &[&String]) -> String {
    let key: Vec<String> = key.iter().map(|k| ident(k)).collect();
    let on: Vec<String> = key.iter().map(|k| format!("l.{k} = r.{k}")).collect();
    let key_text: Vec<String> = key
        .iter()
        .map(|k| format!("coalesce(l.{k}, r.{k})::text"))
        .collect();
    let compared: Vec<(String, String)> = compared
        .iter()
        .map(|c| (ident(c), c.replace('\'', "''")))
        .collect();
    let (cells, differs) = if compared.is_empty() {
        ("'[]'::jsonb".to_owned(), "false".to_owned())
    } else {
        let cells: Vec<String> = compared
            .iter()
            .map(|(c, name)| {
                format!(
                    "CASE WHEN l.{c} IS DISTINCT FROM r.{c} \
                     THEN jsonb_build_array('{name}', l.{c}::text, r.{c}::text) END"
                )
            })
            .collect();
        let left: Vec<String> = compared.iter().map(|(c, _)| format!("l.{c}")).collect();
        let right: Vec<String> = compared.iter().map(|(c, _)| format!("r.{c}")).collect();
        (
            format!("to_jsonb(ARRAY[{}]::jsonb[])", cells.join(", ")),
            format!(
                "ROW({}) IS DISTINCT FROM ROW({})",
                left.join(", "),
                right.join(", ")
            ),
        )
    };
    format!(
        "SELECT l.replay_present IS NOT NULL, r.replay_present IS NOT NULL, \
                ARRAY[{key_text}] AS key, {cells} \
         FROM (SELECT true AS replay_present, * FROM {live} WHERE {org} = $1) l \
         FULL JOIN (SELECT true AS replay_present, * FROM {replay}) r ON {on} \
         WHERE l.replay_present IS NULL OR r.replay_present IS NULL OR {differs} \
         ORDER BY 3",
        key_text = key_text.join(", "),
        org = ident(ORG_COLUMN),
        on = on.join(" AND "),
    )
}

/// Reads `diff_query`'s cells: `[column, live, replay]` for each column that
/// differs, NULL for the others.
fn column_differences(cells: &serde_json::Value) -> Vec<ColumnDifference> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    cells
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|cell| {
            let cell = cell.as_array()?;
            Some(ColumnDifference {
                column: text(cell.first()?)?,
                live: cell.get(1).and_then(text),
                replay: cell.get(2).and_then(text),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_names_its_key_and_each_column_with_both_values() {
        let d = RowDifference {
            key: vec![
                ("org_id".into(), "o".into()),
                ("user_id".into(), "u".into()),
            ],
            kind: DifferenceKind::Differs(vec![
                ColumnDifference {
                    column: "role".into(),
                    live: Some("owner".into()),
                    replay: Some("member".into()),
                },
                ColumnDifference {
                    column: "assignee".into(),
                    live: None,
                    replay: Some("x".repeat(70)),
                },
            ]),
        };
        assert_eq!(
            d.to_string(),
            format!(
                "differs: org_id=o user_id=u: role (live \"owner\", replay \"member\"), \
                 assignee (live NULL, replay \"{}\"…)",
                "x".repeat(60)
            )
        );
    }

    #[test]
    fn the_diff_cells_keep_only_the_columns_that_differ() {
        let cells =
            serde_json::json!([null, ["title", "a", "b"], ["due_date", null, "2026-01-01"]]);
        assert_eq!(
            column_differences(&cells),
            [
                ColumnDifference {
                    column: "title".into(),
                    live: Some("a".into()),
                    replay: Some("b".into())
                },
                ColumnDifference {
                    column: "due_date".into(),
                    live: None,
                    replay: Some("2026-01-01".into())
                }
            ]
        );
    }

    #[tokio::test]
    async fn a_run_id_is_letters_and_digits_only() {
        struct NoLog;
        #[async_trait]
        impl OrgLog for NoLog {
            async fn read(
                &self,
                _: &mut PgConnection,
                _: LogPosition,
                _: usize,
            ) -> Result<Vec<RecordedEvent>, StoreError> {
                Ok(Vec::new())
            }
        }
        let pool = PgPool::connect_lazy("postgres://localhost/none").expect("a lazy pool");
        let replay = |run| {
            Replay::new(
                pool.clone(),
                Arc::new(NoLog),
                Uuid::nil(),
                crate::all(),
                run,
            )
        };
        assert!(replay("x; DROP TABLE events").is_err());
        assert!(replay("").is_err());
        assert_eq!(
            replay("A1b2").expect("a valid run id").schemas(),
            [
                "replay_directory_a1b2",
                "replay_tasks_a1b2",
                "replay_activity_a1b2",
                "replay_notifications_a1b2"
            ]
        );
    }
}
