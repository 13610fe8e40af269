//! Write-path throughput: appends through the event store, and commands
//! through the HTTP API, at 1, 8 and 32 concurrent clients over many streams.
//! Prints appends (or commands) per second and p50/p99 latency.
//!
//! Run with `scripts/dev.sh bench` (or `cargo bench -p tasklog --bench
//! throughput`). BENCH_SECONDS sets each run's length (default 5);
//! BENCH_ONLY=store|http runs one half; BENCH_DATABASE_URL the server (default postgres://postgres@127.0.0.1:5432/postgres).
//! The store is measured with appends grouped (`store.append`, the default)
//! and each in a transaction of its own (`store.alone`). For HTTP as a
//! frontend drives it (wrk, a separate process), see `scripts/bench-http.sh`.
//! Compare with `../shared/bench/pg-insert-baseline.sh` run in the same sitting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tasklog::{CommandApi, Settings};
use tasklog_event_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent};
use tasklog_event_store_postgres::{Grouping, PgEventStore};
use uuid::Uuid;

const CLIENTS: [usize; 3] = [1, 8, 32];
const STREAMS_PER_CLIENT: usize = 50;

fn seconds() -> Duration {
    Duration::from_secs_f64(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5.0),
    )
}

#[global_allocator]
static ALLOCATOR: tasklog::allocator::Allocator = tasklog::allocator::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tasklog::allocator::configure();
    let server = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = server
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(server.clone());
    let admin = sqlx::PgPool::connect(&server).await?;
    sqlx::query("DROP DATABASE IF EXISTS tasklog_bench WITH (FORCE)")
        .execute(&admin)
        .await?;
    sqlx::query("CREATE DATABASE tasklog_bench")
        .execute(&admin)
        .await?;
    admin.close().await;
    let owner_url = format!("{base}/tasklog_bench");
    let app_url = owner_url.replacen("postgres://postgres@", "postgres://tasklog_app@", 1);
    let mut settings = Settings::local(&app_url);
    settings.admin_database_url = owner_url;
    settings.database_pool_size = 40;
    tasklog::migrate(&settings).await?;

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    println!("# event store appends (1 event of ~500 bytes per append, expected version checked)");
    let pool = tasklog::connect(&settings.database_url, 40).await?;
    // Grouped (the default: concurrent appends share a transaction), then
    // each append in a transaction of its own, as before group commit.
    // BENCH_GROUP_SLOTS: groups written at once (`Grouping::in_flight`).
    let slots = std::env::var("BENCH_GROUP_SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Grouping::default().in_flight);
    let grouping = Grouping {
        in_flight: slots,
        ..Grouping::default()
    };
    let stores = [("store.append", Some(grouping)), ("store.alone", None)];
    for (name, grouping) in stores
        .into_iter()
        .filter(|_| only.is_empty() || only == "store")
    {
        let store = PgEventStore::open_with(pool.clone(), grouping);
        for clients in CLIENTS {
            let (count, elapsed, hist) = bench_store(store.clone(), clients).await;
            report(name, clients, count, elapsed, &hist);
        }
    }

    println!("# HTTP commands (POST comment: auth + membership check, load task, decide, append)");
    let api = CommandApi::build(&settings, pool).await?;
    let address = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());
    for clients in CLIENTS
        .into_iter()
        .filter(|_| only.is_empty() || only == "http")
    {
        let (count, elapsed, hist) = bench_http(&address, clients).await?;
        report("http.command", clients, count, elapsed, &hist);
    }
    Ok(())
}

fn report(what: &str, clients: usize, count: u64, elapsed: Duration, hist: &Histogram<u64>) {
    println!(
        "{what:<14} clients={clients:<3} ops={count:<7} ops/s={:>8.0} p50={:>6.2}ms p99={:>6.2}ms",
        count as f64 / elapsed.as_secs_f64(),
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

async fn bench_store(
    store: Arc<dyn EventStore>,
    clients: usize,
) -> (u64, Duration, Histogram<u64>) {
    let payload = json!({ "body": "x".repeat(440), "kind": "bench" });
    let deadline = Instant::now() + seconds();
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let store = store.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                let streams: Vec<String> = (0..STREAMS_PER_CLIENT)
                    .map(|_| format!("bench-{}", Uuid::now_v7()))
                    .collect();
                let mut versions = vec![0u64; streams.len()];
                let mut hist = histogram();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let i = (n as usize) % streams.len();
                    let event = NewEvent {
                        event_id: Uuid::now_v7(),
                        event_type: "BenchHappened".into(),
                        schema_version: 1,
                        payload: payload.clone(),
                        personal: &[],
                        metadata: EventMetadata {
                            org_id: Uuid::nil(),
                            actor_id: None,
                            correlation_id: Uuid::now_v7(),
                            causation_id: None,
                            occurred_at: Utc::now(),
                        },
                    };
                    let t = Instant::now();
                    store
                        .append(
                            &streams[i],
                            ExpectedVersion::from_version(versions[i]),
                            vec![event],
                        )
                        .await
                        .expect("append");
                    hist.record(t.elapsed().as_micros() as u64).ok();
                    versions[i] += 1;
                    n += 1;
                }
                (n, hist)
            })
        })
        .collect();
    let mut total = 0;
    let mut hist = histogram();
    for t in tasks {
        let (n, h) = t.await.expect("client");
        total += n;
        hist.add(h).ok();
    }
    (total, start.elapsed(), hist)
}

async fn bench_http(
    address: &str,
    clients: usize,
) -> anyhow::Result<(u64, Duration, Histogram<u64>)> {
    let http = reqwest::Client::new();
    // One organization and project per client; many tasks so streams stay short.
    let mut setups = Vec::new();
    for _ in 0..clients {
        let user = Uuid::now_v7();
        let token = tasklog_http::auth::mint_hs256(
            tasklog::config::DEV_JWT_SECRET,
            user,
            Some("bench"),
            3600,
        )?;
        let post = |path: String, body: Value| {
            http.post(format!("{address}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        let org = id(post("/v1/orgs".into(), json!({"name": "Bench"})).await?).await?;
        let project = id(post(
            format!("/v1/orgs/{org}/projects"),
            json!({"name": "Bench", "key": "BEN"}),
        )
        .await?)
        .await?;
        let mut tasks = Vec::new();
        for i in 0..STREAMS_PER_CLIENT {
            tasks.push(
                id(post(
                    format!("/v1/orgs/{org}/projects/{project}/tasks"),
                    json!({"title": format!("task {i}")}),
                )
                .await?)
                .await?,
            );
        }
        setups.push((token, org, tasks));
    }
    let deadline = Instant::now() + seconds();
    let start = Instant::now();
    let handles: Vec<_> = setups
        .into_iter()
        .map(|(token, org, tasks)| {
            let http = http.clone();
            let address = address.to_owned();
            tokio::spawn(async move {
                let mut hist = histogram();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let task = tasks[(n as usize) % tasks.len()];
                    let t = Instant::now();
                    let r = http
                        .post(format!("{address}/v1/orgs/{org}/tasks/{task}/comments"))
                        .bearer_auth(&token)
                        .json(&json!({ "body": "Looks good to me, shipping it after one more pass." }))
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(r.status(), 201);
                    hist.record(t.elapsed().as_micros() as u64).ok();
                    n += 1;
                }
                (n, hist)
            })
        })
        .collect();
    let mut total = 0;
    let mut hist = histogram();
    for h in handles {
        let (n, hh) = h.await?;
        total += n;
        hist.add(hh).ok();
    }
    Ok((total, start.elapsed(), hist))
}

async fn id(r: reqwest::Response) -> anyhow::Result<Uuid> {
    let status = r.status();
    let body: Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "setup failed: {body}");
    Ok(body["id"].as_str().unwrap_or_default().parse()?)
}
