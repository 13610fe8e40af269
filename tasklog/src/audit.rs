//! `tasklog audit …`: the auditor's commands run by an operator.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use serde::de::DeserializeOwned;
use tasklog_event_store::export::verify_export;
use tasklog_event_store::seal::{
    self, ConsistencyProof, InclusionProof, SealError, SignedTreeHead,
};
use tasklog_event_store::{LogPosition, RecordedEvent, StoreError};
use tasklog_event_store_postgres::audit::verify_log;
use tasklog_event_store_postgres::export::export_org;
use tasklog_event_store_postgres::org_log::{read_org_log, LogFilter};
use tasklog_event_store_postgres::seals::{self as seal_store, LeafRef};
use tasklog_projectors::replay::{Comparison, OrgLog, Replay, ReplayReport};
use uuid::Uuid;

/// `tasklog audit verify`: connects as the schema owner (the application
/// role may be what an intruder holds), prints one line per finding and a
/// summary line. True when nothing was found.
/// Without `org`, it also recomputes the Merkle root at every recorded
/// head's size from the stored events (and checks the heads' signatures
/// with `key`, when given).
pub async fn verify_cli(
    admin_database_url: &str,
    org: Option<Uuid>,
    key: Option<&VerifyingKey>,
) -> anyhow::Result<bool> {
    let pool = crate::connect(admin_database_url, 1).await?;
    let summary = verify_log(&pool, org, |finding| println!("{finding}")).await?;
    println!(
        "verified {} streams, {} events: {} findings",
        summary.streams, summary.events, summary.findings
    );
    let mut clean = summary.findings == 0;
    if org.is_none() {
        let heads = seal_store::verify_heads(&pool, key, |finding| println!("{finding}")).await?;
        println!(
            "verified {} tree heads over {} leaves{}: {} findings",
            heads.heads,
            heads.leaves,
            if key.is_some() {
                ", signatures included"
            } else {
                ""
            },
            heads.findings
        );
        clean &= heads.findings == 0;
    }
    pool.close().await;
    Ok(clean)
}

/// `tasklog audit head`: the latest signed tree head, one JSON line.
pub async fn head_cli(database_url: &str) -> anyhow::Result<()> {
    let pool = crate::connect(database_url, 1).await?;
    let head = seal_store::latest_head(&pool)
        .await?
        .ok_or(seal_store::SealStoreError::NoHeads)?;
    println!("{}", serde_json::to_string(&head)?);
    Ok(())
}

/// `tasklog audit prove`: an event's inclusion proof against the head of
/// `size` (the latest when `None`), as JSON.
pub async fn prove_cli(database_url: &str, leaf: LeafRef, size: Option<u64>) -> anyhow::Result<()> {
    let pool = crate::connect(database_url, 1).await?;
    let proof = seal_store::inclusion_proof(&pool, leaf, size, None).await?;
    println!("{}", serde_json::to_string_pretty(&proof)?);
    Ok(())
}

/// `tasklog audit prove-consistency`: from the head of `from` to the head of
/// `to` (the latest when `None`), as JSON.
pub async fn prove_consistency_cli(
    database_url: &str,
    from: u64,
    to: Option<u64>,
) -> anyhow::Result<()> {
    let pool = crate::connect(database_url, 1).await?;
    let proof = seal_store::consistency_proof(&pool, from, to).await?;
    println!("{}", serde_json::to_string_pretty(&proof)?);
    Ok(())
}

/// Every JSON value of a file (lines, or pretty-printed documents; `-`: standard input).
fn read_documents<T: DeserializeOwned>(file: &Path) -> anyhow::Result<Vec<T>> {
    let input: Box<dyn std::io::Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(file).with_context(|| format!("opening {}", file.display()))?)
    };
    let documents = serde_json::Deserializer::from_reader(BufReader::new(input))
        .into_iter::<T>()
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", file.display()))?;
    anyhow::ensure!(
        !documents.is_empty(),
        "{} holds no document",
        file.display()
    );
    Ok(documents)
}

/// A check's outcome as `audit verify` exits: `Ok(false)` on a finding, an
/// error when the document could not be checked.
fn outcome(what: &str, checked: Result<(), SealError>) -> anyhow::Result<bool> {
    match checked {
        Ok(()) => {
            println!("{what}: ok");
            Ok(true)
        }
        Err(e) if e.is_finding() => {
            println!("{what}: {e}");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// `tasklog audit verify-head`: every head of a file (one signed head, or a
/// heads file of JSON lines): signatures, and no two heads of one size with
/// different roots.
pub fn verify_head_cli(file: &Path, key: &VerifyingKey) -> anyhow::Result<bool> {
    let heads: Vec<SignedTreeHead> = read_documents(file)?;
    let mut findings = 0;
    let mut unreadable = None;
    let count = seal::verify_heads(&heads, key, |e| {
        if e.is_finding() {
            findings += 1;
            println!("{e}");
        } else {
            unreadable = Some(e);
        }
    });
    if let Some(e) = unreadable {
        return Err(e.into());
    }
    println!("verified {count} tree heads: {findings} findings");
    Ok(findings == 0)
}

/// `tasklog audit verify-inclusion`: the proof's head signature and path;
/// with `event_hash`, also that the proof is for that event (its `hash`,
/// from an export the auditor holds).
pub fn verify_inclusion_cli(
    file: &Path,
    key: &VerifyingKey,
    event_hash: Option<&str>,
) -> anyhow::Result<bool> {
    let mut clean = true;
    for proof in read_documents::<InclusionProof>(file)? {
        let what = format!(
            "event {} as leaf {} of the head of size {}",
            proof.event_id, proof.leaf_index, proof.head.head.tree_size
        );
        if let Some(expected) = event_hash {
            if !proof
                .event_hash
                .to_string()
                .eq_ignore_ascii_case(expected.trim())
            {
                println!(
                    "{what}: the proof is for event hash {}, not {expected}",
                    proof.event_hash
                );
                clean = false;
                continue;
            }
        }
        clean &= outcome(&what, proof.verify(key))?;
    }
    Ok(clean)
}

/// `tasklog audit verify-consistency`: both heads' signatures and the proof.
pub fn verify_consistency_cli(file: &Path, key: &VerifyingKey) -> anyhow::Result<bool> {
    let mut clean = true;
    for proof in read_documents::<ConsistencyProof>(file)? {
        let what = format!(
            "the head of size {} extends the head of size {}",
            proof.to.head.tree_size, proof.from.head.tree_size
        );
        clean &= outcome(&what, proof.verify(key))?;
    }
    Ok(clean)
}

/// `tasklog audit export`: writes `org`'s events as NDJSON
/// (`tasklog-export-v1`, see docs/audit.md) to `output` or standard output,
/// reading `page` events at a time as the schema owner; the counts go to
/// standard error.
pub async fn export_cli(
    admin_database_url: &str,
    org: Uuid,
    output: Option<&Path>,
    page: usize,
) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout())),
    };
    let pool = crate::connect(admin_database_url, 1).await?;
    let trailer = export_org(&pool, org, page, |line| -> anyhow::Result<()> {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        Ok(())
    })
    .await?;
    out.flush()?;
    pool.close().await;
    eprintln!(
        "exported {} streams, {} events of organization {org}",
        trailer.streams, trailer.events
    );
    Ok(())
}

/// `tasklog audit verify --file`: verifies an export with no database (`-`:
/// standard input); prints as `verify_cli` does. True when nothing was found.
pub fn verify_file_cli(file: &Path) -> anyhow::Result<bool> {
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(BufReader::new(
            File::open(file).with_context(|| format!("opening {}", file.display()))?,
        ))
    };
    let summary = verify_export(input, |finding| println!("{finding}"))?;
    println!(
        "verified {} streams, {} events: {} findings",
        summary.streams, summary.events, summary.findings
    );
    Ok(summary.findings == 0)
}

/// How `tasklog audit replay` runs.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Keep the scratch schemas for inspection instead of dropping them.
    pub keep: bool,
    /// How long to wait, in all, for live projections to reach the target.
    pub wait: Duration,
    /// Differences listed per table (all are counted).
    pub listed: usize,
}

/// The organization's slice of the log, as its auditors read it: what
/// `tasklog audit replay` folds.
pub struct OrgEvents(pub Uuid);

#[async_trait::async_trait]
impl OrgLog for OrgEvents {
    async fn read(
        &self,
        conn: &mut sqlx::PgConnection,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        read_org_log(conn, self.0, &LogFilter::default(), after, limit).await
    }
}

/// `tasklog audit replay`: rebuilds `org`'s rows of every PostgreSQL
/// projection in scratch schemas, from its events up to the log's safe
/// position now, and compares them with the live generations' (see
/// docs/audit.md). Connects as the schema owner, as `verify` does. Prints a
/// report; true when nothing differs, an error when a projection could not
/// be compared. The scratch schemas are dropped at the end, on an error or
/// Ctrl-C too, unless `keep`.
pub async fn replay_cli(
    admin_database_url: &str,
    org: Uuid,
    options: &ReplayOptions,
) -> anyhow::Result<bool> {
    let pool = crate::connect(admin_database_url, 2).await?;
    // A mistyped id would otherwise compare nothing with nothing, identical.
    let first = OrgEvents(org)
        .read(&mut *pool.acquire().await?, LogPosition::START, 1)
        .await?;
    anyhow::ensure!(!first.is_empty(), "organization {org} has no events");
    let target = crate::event_store(&pool)
        .high_water_mark()
        .await?
        .safe
        .unwrap_or(LogPosition::START);
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut replay = Replay::new(
        pool.clone(),
        Arc::new(OrgEvents(org)),
        org,
        tasklog_projectors::all(),
        &run,
    )?;
    let ran = tokio::select! {
        ran = replay.run(target, options.wait, options.listed) => ran.map_err(anyhow::Error::from),
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if options.keep {
        println!("scratch schemas kept: {}", replay.schemas().join(", "));
    } else if let Err(e) = replay.drop_schemas().await {
        eprintln!(
            "could not drop the scratch schemas {}: {e}",
            replay.schemas().join(", ")
        );
    }
    pool.close().await;
    let report = ran?;
    print_replay(&report, options.listed);
    let differences = report.differences();
    if differences == 0 && !report.complete() {
        anyhow::bail!("a live projection lags behind log position {target}: not compared");
    }
    Ok(differences == 0)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_replay(report: &ReplayReport, listed: usize) {
    for p in &report.projections {
        match &p.comparison {
            Comparison::Compared {
                generation,
                at,
                tables,
            } => {
                println!(
                    "{}: generation {generation} at {at}, {} replayed",
                    p.projection,
                    plural(p.events, "event", "events"),
                );
                for t in tables {
                    let found = if t.missing_in_live {
                        "the live generation has no such table".to_owned()
                    } else if t.differences() == 0 {
                        "identical".to_owned()
                    } else {
                        format!(
                            "{} only in live, {} only in replay, {} differing",
                            t.only_live, t.only_replay, t.differing
                        )
                    };
                    println!(
                        "  {}: {} live, {} replayed: {found}",
                        t.table,
                        plural(t.live_rows, "row", "rows"),
                        t.replay_rows
                    );
                    for c in &t.columns_only_live {
                        println!("    column {c} only in live");
                    }
                    for c in &t.columns_only_replay {
                        println!("    column {c} only in replay");
                    }
                    for d in &t.listed {
                        println!("    {d}");
                    }
                    let rows = t.only_live + t.only_replay + t.differing;
                    if rows > t.listed.len() as u64 {
                        println!(
                            "    … {} more not listed (--max-listed {listed})",
                            rows - t.listed.len() as u64
                        );
                    }
                }
            }
            Comparison::Lagging { checkpoint } => println!(
                "{}: not compared: its live checkpoint is at {}, short of {}",
                p.projection,
                checkpoint.map_or("none".to_owned(), |c| c.to_string()),
                report.target
            ),
        }
        for u in &p.unapplied {
            println!("  {u}");
        }
    }
    let differences = report.differences();
    println!(
        "replayed organization {} up to log position {} (analytics is not replayed): {}",
        report.org,
        report.target,
        if differences == 0 {
            "no differences".to_owned()
        } else {
            plural(differences, "difference", "differences")
        }
    );
}
