//! Seals benchmark. Prints figures; never asserts on time.
//!
//! Generates a log of BENCH_EVENTS events (1000000; `tasklog::generate`),
//! seals it with the real sealer (heads every BENCH_SEAL_EVERY, 10000,
//! events): events/s; then times BENCH_PROOFS (2000) inclusion proofs of
//! random events against the latest head and as many consistency proofs
//! between random recorded heads and the latest, through the library
//! functions the CLI and the API call (p50/p99/max, one connection).
//!
//! `cargo bench -p tasklog --bench seals`. BENCH_DATABASE_URL (default
//! postgres://postgres@127.0.0.1:5432/postgres); database tasklog_bench_seals,
//! dropped first unless BENCH_SEALS_REUSE=1 (then generate and seal are
//! skipped when a head covers the log).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sqlx::PgPool;
use tasklog::generate::GenerateOptions;
use tasklog::seals::{run_sealer, SealerConfig};
use tasklog_event_store::seal::signing_key_from_hex;
use tasklog_event_store_postgres::seals::{self, LeafRef};
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: tasklog::allocator::Allocator = tasklog::allocator::Allocator;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn line(name: &str, h: &Histogram<u64>) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<22} n={:<6} p50={:>7.3} ms p99={:>7.3} ms max={:>7.3} ms",
        h.len(),
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tasklog::allocator::configure();
    let server: String = env_or(
        "BENCH_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
    );
    let events: usize = env_or("BENCH_EVENTS", 1_000_000);
    let every: u64 = env_or("BENCH_SEAL_EVERY", 10_000);
    let proofs: usize = env_or("BENCH_PROOFS", 2_000);
    let reuse = env_or("BENCH_SEALS_REUSE", 0) == 1;
    let name = "tasklog_bench_seals";
    let base = server
        .rsplit_once('/')
        .map_or(server.clone(), |(b, _)| b.to_owned());
    let owner_url = format!("{base}/{name}");
    let app_url = owner_url.replacen("postgres://postgres@", "postgres://tasklog_app@", 1);

    let exists = {
        let admin = PgPool::connect(&server).await?;
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&admin)
                .await?;
        if !(reuse && found) {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        reuse && found
    };
    let owner = PgPool::connect(&owner_url).await?;
    tasklog::MIGRATOR.run(&owner).await?;
    if !exists {
        let report =
            tasklog::generate::generate_with(&owner, &GenerateOptions::new(100, events), |_| {})
                .await?;
        println!(
            "generate               events={} seconds={:.1} events/s={:.0}",
            report.events,
            report.seconds,
            report.events_per_second()
        );
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&owner)
        .await?;
    let sealed = || async {
        sqlx::query_scalar::<_, i64>("SELECT coalesce(max(tree_size), 0) FROM seal_heads")
            .fetch_one(&owner)
            .await
    };
    let before = sealed().await?;
    if before < total {
        let app = PgPool::connect(&app_url).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let config = SealerConfig {
            every_events: every,
            every: Duration::from_secs(1),
            ..SealerConfig::new(signing_key_from_hex(&"42".repeat(32))?)
        };
        let started = Instant::now();
        let sealer = tokio::spawn(run_sealer(app.clone(), Some(config), stopped));
        while sealed().await? < total {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        stop.send(true)?;
        sealer.await??;
        app.close().await;
        println!(
            "seal                   events={} seconds={secs:.1} events/s={:.0}",
            total - before,
            (total - before) as f64 / secs
        );
    }
    let sizes: Vec<(String, String)> = sqlx::query_as(
        "SELECT pg_size_pretty(pg_total_relation_size('seal_leaves')), \
                pg_size_pretty(pg_total_relation_size('seal_nodes'))",
    )
    .fetch_all(&owner)
    .await?;
    println!(
        "storage                seal_leaves={} seal_nodes={}",
        sizes[0].0, sizes[0].1
    );

    // What the API's pool would be: the application role, one connection.
    let app = PgPool::connect(&app_url).await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT event_id FROM events TABLESAMPLE SYSTEM (1) ORDER BY random() LIMIT {proofs}"
    ))
    .fetch_all(&owner)
    .await?;
    let heads: Vec<i64> = sqlx::query_scalar("SELECT tree_size FROM seal_heads ORDER BY random()")
        .fetch_all(&owner)
        .await?;
    for round in ["warm-up", "measured"] {
        let mut inclusion = Histogram::<u64>::new(3)?;
        for id in &ids {
            let t = Instant::now();
            let proof = seals::inclusion_proof(&app, LeafRef::Event(*id), None, None).await?;
            inclusion.record(t.elapsed().as_micros() as u64)?;
            std::hint::black_box(proof);
        }
        let mut consistency = Histogram::<u64>::new(3)?;
        for from in heads.iter().cycle().take(proofs) {
            let t = Instant::now();
            let proof = seals::consistency_proof(&app, *from as u64, None).await?;
            consistency.record(t.elapsed().as_micros() as u64)?;
            std::hint::black_box(proof);
        }
        if round == "measured" {
            println!("proofs over {total} events ({} heads)", heads.len());
            line("inclusion proof", &inclusion);
            line("consistency proof", &consistency);
        }
    }
    app.close().await;
    owner.close().await;
    Ok(())
}
