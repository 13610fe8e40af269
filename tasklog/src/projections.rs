//! Running the projectors and the `projections` operator subcommands.

use std::time::Duration;

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use tasklog_analytics::{Analytics, ClickHouseConfig};
use tasklog_event_store_postgres::projector_pool;
use tasklog_projectors::Projection;
use tasklog_projectors::{status, ProjectorConfig};
use tokio::sync::watch;

/// Connections of the live projectors: a batch and a log read for each of
/// the five projections. Leases and listeners have their own.
const PROJECTOR_CONNECTIONS: u32 = 10;

/// Every projection: PostgreSQL's, and the analytics store when one is given.
pub fn projections(
    analytics: Option<&ClickHouseConfig>,
) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    let mut all = tasklog_projectors::all();
    if let Some(config) = analytics {
        all.push(Arc::new(Analytics::new(config)?));
    }
    Ok(all)
}

/// Runs every projection, tuned by `config`, until `stop` turns true.
pub async fn run_projectors(
    pool: PgPool,
    analytics: Option<ClickHouseConfig>,
    config: ProjectorConfig,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let projections = projections(analytics.as_ref())?;
    // Projector sessions of their own: no reader waits for their batches,
    // and a busy API pool never starves them.
    let pool = projector_pool(&pool, PROJECTOR_CONNECTIONS);
    let store = crate::event_store(&pool);
    let ran = tasklog_projectors::run_all(pool.clone(), store, projections, config, stop).await;
    pool.close().await;
    Ok(ran?)
}

/// The sealer's line under the projections': its tree, its lag, its last
/// head, or that it does not run.
async fn seals_status(
    pool: &PgPool,
    store: &dyn tasklog_event_store::EventStore,
    sealing: bool,
) -> anyhow::Result<()> {
    use tasklog_event_store_postgres::seals;
    let status = seals::status(pool).await?;
    let lag = store
        .backlog(
            status
                .last_sealed
                .unwrap_or(tasklog_event_store::LogPosition::START),
        )
        .await?;
    let head = status
        .latest_head
        .as_ref()
        .map_or("no head yet".to_owned(), |h| {
            format!(
                "last head: size {} at {}",
                h.head.tree_size,
                h.head
                    .sealed_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        });
    println!(
        "seals: {} leaves, {} events to seal, {head}{}",
        status.tree_size,
        lag.events,
        if sealing {
            ""
        } else {
            "; TASKLOG_SEAL_SIGNING_KEY is not set here: a sealer started so does not run"
        }
    );
    Ok(())
}

/// What `tasklog projections …` does.
pub enum ProjectionsCommand {
    Status,
    Rebuild { name: String, batch: usize },
    Parked,
    Replay { id: i64 },
}

pub async fn projections_cli(
    pool: PgPool,
    analytics: Option<ClickHouseConfig>,
    command: ProjectionsCommand,
    sealing: bool,
) -> anyhow::Result<()> {
    let projections = projections(analytics.as_ref())?;
    // A rebuild's long batches must not hold back the live projectors.
    let pool = projector_pool(&pool, 4);
    let store = crate::event_store(&pool);
    match command {
        ProjectionsCommand::Status => {
            println!(
                "{:<14} {:>4} {:>22} {:>12} {:>10} {:>9} {:>7}",
                "projection", "gen", "checkpoint", "applied", "lag", "lag(s)", "parked"
            );
            for s in status::status(&pool, store.as_ref(), &projections).await? {
                println!(
                    "{:<14} {:>4} {:>22} {:>12} {:>10} {:>9.1} {:>7}",
                    s.name,
                    s.generation.map_or("-".into(), |g| g.to_string()),
                    s.checkpoint.unwrap_or_else(|| "-".into()),
                    s.events_applied,
                    s.lag_events,
                    s.lag_seconds,
                    s.parked
                );
            }
            seals_status(&pool, store.as_ref(), sealing).await?;
        }
        ProjectionsCommand::Rebuild { name, batch } => {
            let projection = projections
                .iter()
                .find(|p| p.name() == name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no projection called {name}"))?;
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta} ({elapsed})",
                )?
                .progress_chars("=> "),
            );
            bar.set_message(format!("rebuilding {name}"));
            bar.enable_steady_tick(Duration::from_millis(200));
            let started = std::time::Instant::now();
            let generation = status::rebuild(&pool, store, projection, batch, |p| {
                bar.set_length(p.total.max(p.applied));
                bar.set_position(p.applied);
            })
            .await?;
            let applied = bar.position();
            bar.finish();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{name}: generation {generation} is live; {applied} events in {secs:.1} s ({:.0} events/s)",
                applied as f64 / secs.max(1e-9)
            );
        }
        ProjectionsCommand::Parked => {
            for p in status::parked(&pool).await? {
                println!("{p}");
            }
        }
        ProjectionsCommand::Replay { id } => {
            match status::replay_parked(&pool, store.as_ref(), &projections, id).await? {
                Ok(()) => println!("parked event {id} applied and removed"),
                Err(error) => anyhow::bail!("parked event {id} not applied: {error}"),
            }
        }
    }
    Ok(())
}
