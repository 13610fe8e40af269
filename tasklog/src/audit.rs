//! `tasklog audit …`: the auditor's commands run by an operator.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use tasklog_event_store::export::verify_export;
use tasklog_event_store_postgres::audit::verify_log;
use tasklog_event_store_postgres::export::export_org;
use uuid::Uuid;

/// `tasklog audit verify`: connects as the schema owner (the application
/// role may be what an intruder holds), prints one line per finding and a
/// summary line. True when nothing was found.
pub async fn verify_cli(admin_database_url: &str, org: Option<Uuid>) -> anyhow::Result<bool> {
    let pool = crate::connect(admin_database_url, 1).await?;
    let summary = verify_log(&pool, org, |finding| println!("{finding}")).await?;
    println!(
        "verified {} streams, {} events: {} findings",
        summary.streams, summary.events, summary.findings
    );
    pool.close().await;
    Ok(summary.findings == 0)
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
