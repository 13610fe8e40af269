//! `tasklog audit …`: the auditor's commands run by an operator.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use serde::de::DeserializeOwned;
use tasklog_event_store::export::verify_export;
use tasklog_event_store::seal::{
    self, ConsistencyProof, InclusionProof, SealError, SignedTreeHead,
};
use tasklog_event_store_postgres::audit::verify_log;
use tasklog_event_store_postgres::export::export_org;
use tasklog_event_store_postgres::seals::{self as seal_store, LeafRef};
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
