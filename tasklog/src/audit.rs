//! `tasklog audit …`: the auditor's commands run by an operator.

use tasklog_event_store_postgres::audit::verify_log;
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
