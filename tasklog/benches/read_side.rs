//! Read-side benchmarks. Prints figures; never asserts on time.
//!
//! a) generate a realistic log (`tasklog::generate`) with COPY: events/s;
//! b) rebuild every projection from it: events/s per projection and in total;
//! c) projection lag under a paced command load through the HTTP API: the time
//!    from a command's 2xx to the `tasks` checkpoint reaching its consistency
//!    token (p50/p99/max);
//! d) the query API's task list (filters, sorts, keyset pages) over a log of
//!    BENCH_TASKS tasks: p50/p99;
//! e) the analytics store (ClickHouse, databases BENCH_CLICKHOUSE_DATABASE /
//!    BENCH_CLICKHOUSE_REPORTING, dropped first): its rebuild over the log of
//!    a) in events/s beside a)'s COPY rate (part `analytics`), and each
//!    reporting view's p50/p99 filtered to one organization and to one
//!    project (part `views`, BENCH_VIEW_QUERIES each). The lag of c) is
//!    measured for the projection BENCH_LAG_PROJECTION (tasks; `analytics`:
//!    command 2xx -> in the reporting views).
//! f) `tasklog audit verify` over the log of a) (part `audit`): events/s,
//!    beside a plain sequential read of the whole log through the store in
//!    the same run.
//! g) The auditor API's as-of over a task of BENCH_ASOF_EVENTS events
//!    (part `asof`): p50/p99 over real HTTP at its last and middle event.
//!
//! `cargo bench -p tasklog --bench read_side`. Environment:
//! BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
//! BENCH_REBUILD_BATCH (events per rebuild transaction, default the CLI's),
//! BENCH_EVENTS (1000000), BENCH_ORGS (100), BENCH_RATE (commands/s, a comma list; 250,1000),
//! BENCH_LAG_SECONDS (10, after BENCH_WARMUP_SECONDS, 2, of the same load unmeasured), BENCH_STEP_MS (the live projectors' least time
//! between steps, a comma list; default the runner's), BENCH_MAX_STEP_MS (the most; default the runner's),
//! BENCH_IDLE_MS (the live projectors' idle wait; default the runner's), BENCH_TASKS (tasks in the query database, 1000000;
//! 0 queries the first database instead), BENCH_TASKS_EVENTS (events in the
//! query database, default 2.4 × BENCH_TASKS), BENCH_QUERIES (2000),
//! BENCH_POOL (the command API's connections in the lag run, 40), BENCH_CHECKPOINT (1: CHECKPOINT before each lag run),
//! BENCH_LAG_WORKERS (64), BENCH_ONLY (comma list of generate,rebuild,lag,query,analytics,views,audit,asof; default all),
//! BENCH_ASOF_EVENTS (events of the as-of task, 1000), BENCH_ASOF_QUERIES (200).
//! Databases: tasklog_bench_read and tasklog_bench_read_tasks (dropped first).
//! Compare with `../shared/bench/pg-insert-baseline.sh` run in the same sitting.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use sqlx::{Connection, PgPool};
use tasklog::generate::{GenerateOptions, GenerateReport};
use tasklog::Settings;
use tasklog_event_store::{hash, LogPosition};
use tasklog_event_store_postgres::PgEventStore;
use tasklog_projectors::ProjectorConfig;
use tokio::sync::mpsc;
use uuid::Uuid;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// A fresh database `name`, migrated; its owner and application-role URLs.
async fn fresh_database(server: &str, name: &str) -> anyhow::Result<Settings> {
    let base = server
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(server.to_owned());
    let admin = PgPool::connect(server).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let owner_url = format!("{base}/{name}");
    let app_url = owner_url.replacen("postgres://postgres@", "postgres://tasklog_app@", 1);
    let mut settings = Settings::local(&app_url);
    settings.admin_database_url = owner_url;
    settings.database_pool_size = 80;
    tasklog::migrate(&settings).await?;
    Ok(settings)
}

#[global_allocator]
static ALLOCATOR: tasklog::allocator::Allocator = tasklog::allocator::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tasklog::allocator::configure();
    // RUST_LOG=tasklog_analytics=debug shows where a batch's time goes.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let server = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let events: usize = env_or("BENCH_EVENTS", 1_000_000);
    let orgs: usize = env_or("BENCH_ORGS", 100);
    let tasks: usize = env_or("BENCH_TASKS", 1_000_000);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);

    let settings = fresh_database(&server, "tasklog_bench_read").await?;
    let owner = tasklog::connect(&settings.admin_database_url, 4).await?;
    let pool = tasklog::connect(&settings.database_url, env_or("BENCH_POOL", 40)).await?;

    println!("# a) generate: {events} events, {orgs} organizations, COPY in chunks of 50000");
    let report = generate(&owner, GenerateOptions::new(orgs, events)).await?;
    verify_sample(&pool, &report).await?;

    if run("audit") {
        audit(&owner, &pool, report.events).await?;
    }

    if run("asof") {
        as_of(&settings, &pool, &report, env_or("BENCH_ASOF_EVENTS", 1000)).await?;
    }

    if run("rebuild") || run("lag") {
        println!("# b) rebuild every projection from the log (projector role, as the CLI)");
        rebuild_all(&pool, report.events, &tasklog_projectors::all()).await?;
    }

    if run("analytics") || run("views") || lag_projection() == "analytics" {
        let config = bench_clickhouse();
        for db in [&config.database, &config.reporting] {
            config
                .client()
                .query(&format!("DROP DATABASE IF EXISTS {db}"))
                .execute()
                .await?;
        }
        tasklog_analytics::migrate::migrate(&config).await?;
        println!(
            "# e) analytics: rebuild into ClickHouse {} ({} events); generate's COPY above: {:.0} events/s",
            config.url,
            report.events,
            report.events_per_second()
        );
        let analytics: Arc<dyn tasklog_projectors::Projection> =
            Arc::new(tasklog_analytics::Analytics::new(&config)?);
        rebuild_all(&pool, report.events, &[analytics]).await?;
        if run("views") {
            views(&config, &report, env_or("BENCH_VIEW_QUERIES", 20)).await?;
        }
    }

    if run("lag") {
        let rates = std::env::var("BENCH_RATE").unwrap_or_else(|_| "250,1000".into());
        let seconds: f64 = env_or("BENCH_LAG_SECONDS", 10.0);
        let default_step = ProjectorConfig::default().min_step_interval.as_millis();
        let steps = std::env::var("BENCH_STEP_MS").unwrap_or_else(|_| default_step.to_string());
        for rate in rates
            .split(',')
            .filter_map(|r| r.trim().parse::<f64>().ok())
        {
            for step in steps
                .split(',')
                .filter_map(|s| s.trim().parse::<u64>().ok())
            {
                let pace = tasklog_projectors::STEP_PACE;
                let max = std::env::var("BENCH_MAX_STEP_MS").unwrap_or_else(|_| {
                    ProjectorConfig::default()
                        .max_step_interval
                        .as_millis()
                        .to_string()
                });
                println!(
                    "# c) projection lag under load: {rate:.0} commands/s for {seconds:.0} s \
                     (comment 40%, status 30%, assign 30%) on generated tasks, live steps \
                     paced at {pace}x the last one's duration, {step} to {max} ms apart; lag = 2xx -> {} checkpoint >= token", lag_projection()
                );
                let mut config = ProjectorConfig {
                    min_step_interval: Duration::from_millis(step),
                    ..ProjectorConfig::default()
                };
                if let Ok(ms) = std::env::var("BENCH_MAX_STEP_MS") {
                    config.max_step_interval = Duration::from_millis(ms.parse()?);
                }
                if let Ok(ms) = std::env::var("BENCH_IDLE_MS") {
                    config.idle_wait = Duration::from_millis(ms.parse()?);
                }
                lag_under_load(&settings, &pool, &report, rate, seconds, config).await?;
            }
        }
    }

    if run("query") {
        let (qsettings, qpool, qreport) = if tasks == 0 {
            (settings.clone(), pool.clone(), report.clone())
        } else {
            let tasks_events: usize = env_or("BENCH_TASKS_EVENTS", tasks * 12 / 5);
            println!(
                "# d) task-list database: {tasks} tasks in {orgs} organizations, {tasks_events} events"
            );
            let qsettings = fresh_database(&server, "tasklog_bench_read_tasks").await?;
            let qowner = tasklog::connect(&qsettings.admin_database_url, 4).await?;
            let qpool = tasklog::connect(&qsettings.database_url, 40).await?;
            let qreport = generate(
                &qowner,
                GenerateOptions {
                    tasks: Some(tasks),
                    seed: 7,
                    ..GenerateOptions::new(orgs, tasks_events)
                },
            )
            .await?;
            let read_models: Vec<_> = tasklog_projectors::all()
                .into_iter()
                .filter(|p| p.name() == "directory" || p.name() == "tasks")
                .collect();
            rebuild_all(&qpool, qreport.events, &read_models).await?;
            (qsettings, qpool, qreport)
        };
        let tasks_in_read_model: i64 = sqlx::query_scalar("SELECT count(*) FROM read.tasks")
            .fetch_one(&qpool)
            .await?;
        println!(
            "# d) GET /v1/orgs/{{org}}/projects/{{project}}/tasks over {tasks_in_read_model} tasks \
             ({} generated events), limit 50, through the query API",
            qreport.events
        );
        query_tasks(&qsettings, &qpool, &qreport, env_or("BENCH_QUERIES", 2000)).await?;
    }
    Ok(())
}

/// e) Each reporting view filtered to one organization, and to one of its
/// projects: p50/p99 over `queries` reads each, the whole result read.
async fn views(
    config: &tasklog_analytics::ClickHouseConfig,
    report: &GenerateReport,
    queries: usize,
) -> anyhow::Result<()> {
    let client = config.client();
    let reporting = &config.reporting;
    let names: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(reporting)
        .fetch_all()
        .await?;
    println!(
        "# e) reporting views: {queries} reads each, organizations and projects drawn from {} generated",
        report.orgs.len()
    );
    for name in names {
        for filter in ["org", "project"] {
            let mut latency = histogram();
            let mut rows = 0usize;
            for i in 0..queries {
                let org = &report.orgs[i % report.orgs.len()];
                let mut sql = format!(
                    "SELECT * FROM {reporting}.{name} WHERE org_id = toUUID('{}')",
                    org.org_id
                );
                if filter == "project" {
                    let project = &org.projects[i % org.projects.len()];
                    sql.push_str(&format!(
                        " AND project_id = toUUID('{}')",
                        project.project_id
                    ));
                }
                let started = Instant::now();
                let bytes = client
                    .query(&sql)
                    .fetch_bytes("TabSeparated")?
                    .collect()
                    .await?;
                latency.record(started.elapsed().as_micros().max(1) as u64)?;
                rows += bytes.iter().filter(|b| **b == b'\n').count();
            }
            println!(
                "view           {name:<26} one {filter:<8} p50={:>8.1} ms p99={:>8.1} ms rows/read={:>7.0}",
                ms(&latency, 0.5),
                ms(&latency, 0.99),
                rows as f64 / queries as f64
            );
        }
    }
    Ok(())
}

async fn generate(owner: &PgPool, options: GenerateOptions) -> anyhow::Result<GenerateReport> {
    let report = tasklog::generate::generate_with(owner, &options, |_| {}).await?;
    println!(
        "generate       events={:<8} tasks={:<8} comments={:<7} seconds={:>6.1} events/s={:>8.0}",
        report.events,
        report.tasks,
        report.comments,
        report.seconds,
        report.events_per_second()
    );
    Ok(report)
}

/// Reads a sample of generated streams back as stored (with their salts) and checks their hash chains.
async fn verify_sample(pool: &PgPool, report: &GenerateReport) -> anyhow::Result<()> {
    let mut streams: Vec<String> = Vec::new();
    for org in report.orgs.iter().take(5) {
        streams.push(format!("org-{}", org.org_id));
        streams.push(format!("tags-{}", org.org_id));
        streams.extend(
            org.projects
                .iter()
                .map(|p| format!("project-{}", p.project_id)),
        );
    }
    let tasks: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id FROM events WHERE stream_id LIKE 'task-%' AND stream_version = 3 LIMIT 50",
    )
    .fetch_all(pool)
    .await?;
    streams.extend(tasks);
    let mut events = 0;
    for s in &streams {
        let read = tasklog_event_store_postgres::audit::read_stream_as_stored(pool, s).await?;
        anyhow::ensure!(!read.is_empty(), "stream {s} is empty");
        hash::verify_stream(&read).map_err(|e| anyhow::anyhow!("stream {s}: {e}"))?;
        events += read.len();
    }
    println!(
        "verify         hash chains of {} streams ({events} events) read back as stored: ok",
        streams.len()
    );
    Ok(())
}

/// f): the hash-chain verification of the whole log beside a sequential read.
async fn audit(owner: &PgPool, pool: &PgPool, events: u64) -> anyhow::Result<()> {
    println!("# f) audit verify over the whole log ({events} events), beside a sequential read");
    let store = PgEventStore::open(pool.clone());
    let started = Instant::now();
    let (mut at, mut read) = (LogPosition::START, 0u64);
    loop {
        let page = store.read_all(at, 10_000).await?;
        let Some(last) = page.last() else { break };
        at = last.position;
        read += page.len() as u64;
    }
    let read_rate = read as f64 / started.elapsed().as_secs_f64();
    println!(
        "audit.read     events={read:<8} seconds={:>6.1} events/s={read_rate:>8.0} (read_all, pages of 10000)",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let summary = tasklog_event_store_postgres::audit::verify_log(owner, None, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = summary.events as f64 / seconds;
    println!(
        "audit.verify   events={:<8} streams={:<7} findings={} seconds={seconds:>6.1} events/s={rate:>8.0} = {:.2}x the read",
        summary.events,
        summary.streams,
        summary.findings,
        rate / read_rate
    );
    Ok(())
}

async fn rebuild_all(
    pool: &PgPool,
    log_events: u64,
    projections: &[Arc<dyn tasklog_projectors::Projection>],
) -> anyhow::Result<()> {
    // As `tasklog projections rebuild` does: what the projector role creates,
    // the live projectors (that role) can write.
    let pool = &tasklog_event_store_postgres::projector_pool(pool, 4);
    let store = PgEventStore::open(pool.clone());
    let batch = env_or(
        "BENCH_REBUILD_BATCH",
        tasklog_projectors::status::REBUILD_BATCH,
    );
    let mut total = 0.0;
    for p in projections {
        let started = Instant::now();
        let generation =
            tasklog_projectors::status::rebuild(pool, store.clone(), p.clone(), batch, |_| {})
                .await?;
        let secs = started.elapsed().as_secs_f64();
        total += secs;
        println!(
            "rebuild        projection={:<14} generation={generation} batch={batch} events={log_events:<8} seconds={secs:>6.1} events/s={:>8.0}",
            p.name(),
            log_events as f64 / secs
        );
    }
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(pool)
        .await?;
    println!(
        "rebuild        all {} projections: seconds={total:>6.1} events/s={:>8.0} (log events / total seconds); parked events={parked}",
        projections.len(),
        log_events as f64 / total
    );
    Ok(())
}

/// The projection whose lag c) measures (BENCH_LAG_PROJECTION, `tasks`).
fn lag_projection() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| std::env::var("BENCH_LAG_PROJECTION").unwrap_or_else(|_| "tasks".into()))
}

/// The analytics store of the bench, when c) measures it or e) runs.
fn bench_clickhouse() -> tasklog_analytics::ClickHouseConfig {
    let mut config = tasklog_analytics::ClickHouseConfig::local(
        &std::env::var("BENCH_CLICKHOUSE_DATABASE").unwrap_or_else(|_| "tasklog_bench".into()),
        &std::env::var("BENCH_CLICKHOUSE_REPORTING").unwrap_or_else(|_| "reporting_bench".into()),
    );
    if let Ok(url) = std::env::var("TASKLOG_CLICKHOUSE_URL") {
        config.url = url;
    }
    config
}

/// The lag projection's checkpoint (active generation).
async fn tasks_checkpoint<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<LogPosition, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT commit_id, event_position FROM projection_checkpoints c \
         JOIN projections p ON p.name = c.projection AND p.active_generation = c.generation \
         WHERE c.projection = $1",
    )
    .bind(lag_projection())
    .fetch_optional(db)
    .await?;
    Ok(row.map_or(LogPosition::START, |(c, e)| LogPosition {
        commit: c as u64,
        event: e as u64,
    }))
}

/// A task a load worker changes, and what the worker knows of it.
struct Target {
    org: Uuid,
    task: Uuid,
    status: String,
    assignee: Option<Uuid>,
}

fn next_status(s: &str) -> &'static str {
    match s {
        "backlog" => "todo",
        "todo" => "in_progress",
        "in_progress" => "in_review",
        "in_review" => "done",
        _ => "todo", // done and cancelled reopen to todo
    }
}

async fn lag_under_load(
    settings: &Settings,
    pool: &PgPool,
    report: &GenerateReport,
    rate: f64,
    seconds: f64,
    config: ProjectorConfig,
) -> anyhow::Result<()> {
    // The projectors and the command API each run on a runtime of their
    // own, as the separate processes `tasklog projectors` and `tasklog
    // command-api` would: the load generator's tasks must not queue in front
    // of theirs on one runtime (the CPU they share is the machine's anyway).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let projectors = {
        let (pool, stopped) = (pool.clone(), stopped.clone());
        std::thread::spawn(move || {
            let analytics = (lag_projection() == "analytics").then(bench_clickhouse);
            runtime()?.block_on(tasklog::run_projectors(pool, analytics, config, stopped))
        })
    };
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let api = {
        let (settings, mut stopped) = (settings.clone(), stopped.clone());
        std::thread::spawn(move || {
            runtime()?.block_on(async move {
                let pool =
                    tasklog::connect(&settings.database_url, env_or("BENCH_POOL", 40)).await?;
                let api = tasklog::CommandApi::build(&settings, pool.clone()).await?;
                let _ = addr_tx.send(api.addr());
                tokio::select! {
                    served = api.run_until_stopped() => served?,
                    _ = stopped.changed() => {}
                }
                pool.close().await;
                anyhow::Ok(())
            })
        })
    };
    let address = format!("http://{}", addr_rx.await?);

    // Wait for the projectors to hold their leases and stand at the head.
    let store = PgEventStore::open(pool.clone());
    let head = store.high_water_mark().await?.head.unwrap_or_default();
    let waited = Instant::now();
    while tasks_checkpoint(pool).await? < head {
        anyhow::ensure!(
            waited.elapsed() < Duration::from_secs(120),
            "projectors did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Tokens: each organization's owner; targets: open tasks of the first 20 organizations.
    let used: Vec<&tasklog::generate::GeneratedOrg> = report.orgs.iter().take(20).collect();
    let mut tokens = BTreeMap::new();
    let mut writers = BTreeMap::new();
    for org in &used {
        let owner = &org.members[0];
        tokens.insert(
            org.org_id,
            tasklog_http::auth::mint_hs256(
                tasklog::config::DEV_JWT_SECRET,
                owner.user_id,
                Some(&owner.handle),
                3600,
            )?,
        );
        writers.insert(
            org.org_id,
            org.members
                .iter()
                .filter(|m| m.role.can_write())
                .map(|m| (m.user_id, m.handle.clone()))
                .collect::<Vec<_>>(),
        );
    }
    let org_ids: Vec<Uuid> = used.iter().map(|o| o.org_id).collect();
    let rows: Vec<(Uuid, Uuid, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT org_id, task_id, status, assignee FROM read.tasks \
         WHERE org_id = ANY($1) AND NOT archived ORDER BY task_id LIMIT 4000",
    )
    .bind(&org_ids)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(!rows.is_empty(), "no tasks to change");
    let workers: usize = env_or("BENCH_LAG_WORKERS", 64);
    let mut owned: Vec<Vec<Target>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, (org, task, status, assignee)) in rows.into_iter().enumerate() {
        owned[i % workers].push(Target {
            org,
            task,
            status,
            assignee,
        });
    }

    // One watcher resolves pending tokens as the tasks projector announces
    // its checkpoint moves (as the query API's consistency waits do): no
    // polling load of its own, and a connection of its own.
    let (token_tx, mut token_rx) = mpsc::unbounded_channel::<(LogPosition, Instant)>();
    let mut checkpoints = sqlx::postgres::PgListener::connect_with(pool).await?;
    checkpoints
        .listen(tasklog_projectors::CHECKPOINT_CHANNEL)
        .await?;
    let start = tasks_checkpoint(pool).await?;
    let watcher = tokio::spawn(async move {
        let mut lag = histogram();
        let mut pending: Vec<(LogPosition, Instant)> = Vec::new();
        let mut checkpoint = start;
        let mut closed = false;
        let mut wakes = 0u64;
        // The worst lag of each second since the first token, to tell
        // periodic stalls (checkpoints, vacuum) from a steady queue.
        let mut worst: Vec<u64> = Vec::new();
        let mut first: Option<Instant> = None;
        let give_up = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(give_up);
        loop {
            tokio::select! {
                token = token_rx.recv(), if !closed => match token {
                    Some(t) => pending.push(t),
                    None => {
                        closed = true;
                        give_up.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(30));
                    }
                },
                moved = checkpoints.recv() => {
                    let Ok(moved) = moved else { continue };
                    wakes += 1;
                    if let Some((_, position)) = tasklog_projectors::parse_checkpoint(moved.payload())
                        .map(|(name, _, p)| (name, p))
                        .filter(|(name, _)| *name == lag_projection())
                    {
                        checkpoint = checkpoint.max(position);
                    }
                }
                _ = &mut give_up => break,
            }
            let now = Instant::now();
            pending.retain(|(token, at)| {
                if *token <= checkpoint {
                    let micros = now.duration_since(*at).as_micros().max(1) as u64;
                    lag.record(micros).ok();
                    let second = at.duration_since(*first.get_or_insert(*at)).as_secs() as usize;
                    if worst.len() <= second {
                        worst.resize(second + 1, 0);
                    }
                    worst[second] = worst[second].max(micros / 1000);
                    false
                } else {
                    true
                }
            });
            if closed && pending.is_empty() {
                break;
            }
        }
        println!(
            "lag.worst      per second from {}, ms: {worst:?}",
            chrono::Utc::now()
                - chrono::Duration::from_std(first.map_or(Duration::ZERO, |f| f.elapsed()))
                    .unwrap_or_default()
        );
        (lag, pending.len(), wakes)
    });

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()?;
    let period = Duration::from_secs_f64(workers as f64 / rate);
    // Fresh connections, cold caches and statements not yet prepared make the
    // first second several times slower than the rest: it is run, not measured.
    let warmup = Duration::from_secs_f64(env_or("BENCH_WARMUP_SECONDS", 2.0));
    // The log generation and rebuild before this wrote gigabytes of WAL: a
    // checkpoint they provoke would start within the run and, with the full
    // page images that follow it, stall every writer for a moment. Start the
    // run on a fresh checkpoint cycle (BENCH_CHECKPOINT=0 to not).
    if env_or("BENCH_CHECKPOINT", 1) == 1 {
        let mut owner = sqlx::PgConnection::connect(&settings.admin_database_url).await?;
        sqlx::query("CHECKPOINT").execute(&mut owner).await?;
    }
    let begun = Instant::now();
    let started = begun + warmup;
    let deadline = started + Duration::from_secs_f64(seconds);
    let usage_before = {
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(started.into()).await;
            Usage::now(&pool).await
        })
    };
    let tokens = Arc::new(tokens);
    let writers = Arc::new(writers);
    let handles: Vec<_> = owned
        .into_iter()
        .enumerate()
        .map(|(w, mut targets)| {
            let http = http.clone();
            let address = address.clone();
            let tokens = tokens.clone();
            let writers = writers.clone();
            let token_tx = token_tx.clone();
            tokio::spawn(async move {
                let mut latency = histogram();
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut first_error: Option<String> = None;
                if targets.is_empty() {
                    return (latency, ok, failed, first_error);
                }
                // Spread the workers' ticks over one period.
                tokio::time::sleep(period.mul_f64(w as f64 / workers as f64)).await;
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut n = 0usize;
                loop {
                    tick.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                    let i = n % targets.len();
                    let target = &mut targets[i];
                    let members = &writers[&target.org];
                    let base = format!("{address}/v1/orgs/{}/tasks/{}", target.org, target.task);
                    let (url, body, next_status, next_assignee) = match n % 10 {
                        0..=3 => {
                            let (_, handle) = &members[n % members.len()];
                            let text = if n.is_multiple_of(3) {
                                format!("@{handle} can you take a look?")
                            } else {
                                "Pushed a fix, please review.".to_owned()
                            };
                            (
                                format!("{base}/comments"),
                                json!({ "body": text }),
                                None,
                                None,
                            )
                        }
                        4..=6 => {
                            let to = next_status(&target.status);
                            (
                                format!("{base}/status"),
                                json!({ "status": to }),
                                Some(to),
                                None,
                            )
                        }
                        _ => {
                            let mut who = members[n % members.len()].0;
                            if Some(who) == target.assignee {
                                who = members[(n + 1) % members.len()].0;
                            }
                            (
                                format!("{base}/assignee"),
                                json!({ "assignee": who }),
                                None,
                                Some(who),
                            )
                        }
                    };
                    n += 1;
                    let t = Instant::now();
                    let measured = t >= started;
                    let sent = http
                        .post(&url)
                        .bearer_auth(&tokens[&target.org])
                        .json(&body)
                        .send()
                        .await;
                    let response = match sent {
                        Ok(r) => r,
                        Err(e) => {
                            failed += u64::from(measured);
                            first_error.get_or_insert(e.to_string());
                            continue;
                        }
                    };
                    let status = response.status();
                    let answer: Value = response.json().await.unwrap_or(Value::Null);
                    let done = Instant::now();
                    if !measured {
                        continue;
                    }
                    if !status.is_success() {
                        failed += 1;
                        first_error.get_or_insert(format!("{status} {answer}"));
                        continue;
                    }
                    latency
                        .record(done.duration_since(t).as_micros() as u64)
                        .ok();
                    ok += 1;
                    if let Some(s) = next_status {
                        target.status = s.to_owned();
                    }
                    if let Some(a) = next_assignee {
                        target.assignee = Some(a);
                    }
                    match answer["consistency_token"]
                        .as_str()
                        .and_then(|t| t.parse::<LogPosition>().ok())
                    {
                        Some(token) => {
                            let _ = token_tx.send((token, done));
                        }
                        None => {
                            first_error.get_or_insert(format!("no consistency token: {answer}"));
                        }
                    }
                }
                (latency, ok, failed, first_error)
            })
        })
        .collect();
    drop(token_tx);
    let mut latency = histogram();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut errors = Vec::new();
    for h in handles {
        let (l, o, f, e) = h.await?;
        latency.add(l).ok();
        ok += o;
        failed += f;
        errors.extend(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let usage = Usage::now(pool).await?.since(&usage_before.await??);
    let (lag, unresolved, polls) = watcher.await?;
    println!(
        "lag.commands   target/s={rate:<6.0} sent={:<6} ok={ok:<6} failed={failed:<4} achieved/s={:>7.0} p50={:>6.2}ms p99={:>6.2}ms max={:>7.2}ms (workers={workers})",
        ok + failed,
        ok as f64 / elapsed,
        ms(&latency, 0.5),
        ms(&latency, 0.99),
        latency.max() as f64 / 1000.0,
    );
    println!(
        "lag.{:<10} tokens={:<6} unresolved={unresolved:<4} p50={:>6.2}ms p99={:>6.2}ms max={:>7.2}ms (watcher wakes={polls})",
        lag_projection(),
        lag.len(),
        ms(&lag, 0.5),
        ms(&lag, 0.99),
        lag.max() as f64 / 1000.0,
    );
    println!(
        "lag.machine    cpu busy={:>5.1}% (stolen {:.1}%) of {} cores, this process {:>5.1}% of one core; \
         database commits/s={:>6.0}",
        usage.busy * 100.0,
        usage.steal * 100.0,
        usage.cores,
        usage.process * 100.0,
        usage.commits / elapsed,
    );
    if let Some(e) = errors.first() {
        println!("lag.errors     first: {e}");
    }
    if unresolved > 0 {
        // Say what held the projection back.
        let hwm = store.high_water_mark().await?;
        println!(
            "lag.stuck      lag projection's checkpoint {} safe {:?} head {:?} held back {} oldest open {:?}",
            tasks_checkpoint(pool).await?,
            hwm.safe,
            hwm.head,
            hwm.held_back_events,
            hwm.oldest_open_transaction,
        );
        let open: Vec<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT application_name, state, left(query, 80) FROM pg_stat_activity \
             WHERE datname = current_database() AND backend_xid IS NOT NULL",
        )
        .fetch_all(pool)
        .await?;
        println!("lag.stuck      open transactions: {open:?}");
    }
    let _ = stop.send(true);
    let joined = tokio::task::spawn_blocking(move || (projectors.join(), api.join())).await?;
    match joined {
        (Ok(p), Ok(a)) => p.and(a)?,
        _ => anyhow::bail!("a projector or API thread panicked"),
    }
    Ok(())
}

/// A runtime like a process's own (one worker per core).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Where the machine's time went, from `/proc` and `pg_stat_database`:
/// under load, lag is mostly waiting for a CPU.
struct Usage {
    /// Busy and total jiffies of all CPUs.
    busy_jiffies: u64,
    total_jiffies: u64,
    /// Time the hypervisor gave this machine's CPUs to others.
    steal_jiffies: u64,
    /// This process's user + system jiffies.
    own_jiffies: u64,
    cores: usize,
    commits: f64,
    /// As fractions, in [`Usage::since`].
    busy: f64,
    steal: f64,
    process: f64,
}

impl Usage {
    async fn now(pool: &PgPool) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        let total: u64 = cpu.iter().take(8).sum();
        let own = std::fs::read_to_string("/proc/self/stat")?;
        // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
        let after = own.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        let fields: Vec<u64> = after
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let own_jiffies =
            fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        let commits: i64 = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(pool)
        .await?;
        Ok(Self {
            busy_jiffies: total - idle,
            total_jiffies: total,
            steal_jiffies: cpu.get(7).copied().unwrap_or(0),
            own_jiffies,
            cores: stat
                .lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .count(),
            commits: commits as f64,
            busy: 0.0,
            steal: 0.0,
            process: 0.0,
        })
    }

    fn since(self, before: &Usage) -> Usage {
        let total = (self.total_jiffies - before.total_jiffies).max(1) as f64;
        let per_core = total / self.cores.max(1) as f64;
        Usage {
            busy: (self.busy_jiffies - before.busy_jiffies) as f64 / total,
            steal: (self.steal_jiffies - before.steal_jiffies) as f64 / total,
            process: (self.own_jiffies - before.own_jiffies) as f64 / per_core,
            commits: self.commits - before.commits,
            ..self
        }
    }
}

/// One kind of task-list request.
#[derive(Clone, Copy)]
enum Variant {
    Plain,
    UpdatedDesc,
    PriorityDesc,
    Due,
    Status,
    TwoStatuses,
    Assignee,
    Unassigned,
    Tag,
    Priorities,
    Text,
    Combined,
    SecondPage,
}

const VARIANTS: [(Variant, &str); 13] = [
    (Variant::Plain, "sort=created"),
    (Variant::UpdatedDesc, "sort=-updated"),
    (Variant::PriorityDesc, "sort=-priority"),
    (Variant::Due, "sort=due"),
    (Variant::Status, "status=todo"),
    (Variant::TwoStatuses, "status=todo,in_review"),
    (Variant::Assignee, "assignee=<member>"),
    (Variant::Unassigned, "assignee=none&sort=-priority"),
    (Variant::Tag, "tag=<tag>"),
    (Variant::Priorities, "priority=high,urgent"),
    (Variant::Text, "q=<word>"),
    (Variant::Combined, "status+assignee+-priority"),
    (Variant::SecondPage, "sort=created, page 2"),
];

async fn query_tasks(
    settings: &Settings,
    pool: &PgPool,
    report: &GenerateReport,
    requests: usize,
) -> anyhow::Result<()> {
    let auth = Arc::new(tasklog_http::Authenticator::new(&settings.auth()?)?);
    let store = tasklog_event_store_postgres::PgEventStore::open(pool.clone());
    let state = tasklog_query_api::QueryState::new(pool.clone(), store, auth);
    let router = tasklog_query_api::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();

    let words = [
        "billing",
        "login",
        "search",
        "webhook",
        "dashboard",
        "mobile",
    ];
    let mut rng = 0x5eed_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize
    };
    let mut tokens: BTreeMap<Uuid, String> = BTreeMap::new();
    let mut overall = histogram();
    let mut per: Vec<(Histogram<u64>, u64)> = VARIANTS.iter().map(|_| (histogram(), 0)).collect();
    let mut failures = 0u64;
    let mut first_failure = None;
    let started = Instant::now();
    for i in 0..requests {
        let org = &report.orgs[next() % report.orgs.len()];
        let member = &org.members[next() % org.members.len()];
        let token = match tokens.get(&member.user_id) {
            Some(t) => t.clone(),
            None => {
                let t = tasklog_http::auth::mint_hs256(
                    tasklog::config::DEV_JWT_SECRET,
                    member.user_id,
                    Some(&member.handle),
                    3600,
                )?;
                tokens.insert(member.user_id, t.clone());
                t
            }
        };
        let project = &org.projects[next() % org.projects.len()];
        let writers: Vec<Uuid> = org
            .members
            .iter()
            .filter(|m| m.role.can_write())
            .map(|m| m.user_id)
            .collect();
        let someone = writers[next() % writers.len()];
        let tag = org.tags[next() % org.tags.len()];
        let word = words[next() % words.len()];
        let v = i % VARIANTS.len();
        let query = match VARIANTS[v].0 {
            Variant::Plain | Variant::SecondPage => "sort=created".to_owned(),
            Variant::UpdatedDesc => "sort=-updated".to_owned(),
            Variant::PriorityDesc => "sort=-priority".to_owned(),
            Variant::Due => "sort=due".to_owned(),
            Variant::Status => "status=todo".to_owned(),
            Variant::TwoStatuses => "status=todo&status=in_review".to_owned(),
            Variant::Assignee => format!("assignee={someone}"),
            Variant::Unassigned => "assignee=none&sort=-priority".to_owned(),
            Variant::Tag => format!("tag={tag}"),
            Variant::Priorities => "priority=high&priority=urgent".to_owned(),
            Variant::Text => format!("q={word}"),
            Variant::Combined => format!("status=backlog&assignee={someone}&sort=-priority"),
        };
        let mut url = format!(
            "{address}/v1/orgs/{}/projects/{}/tasks?{query}&limit=50",
            org.org_id, project.project_id
        );
        if matches!(VARIANTS[v].0, Variant::SecondPage) {
            let first: Value = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            if let Some(cursor) = first["next_cursor"].as_str() {
                url = format!("{url}&cursor={cursor}");
            }
        }
        let t = Instant::now();
        let response = http.get(&url).bearer_auth(&token).send().await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let micros = t.elapsed().as_micros() as u64;
        if !status.is_success() {
            failures += 1;
            first_failure.get_or_insert(format!("{status} {url}: {body}"));
            continue;
        }
        overall.record(micros).ok();
        per[v].0.record(micros).ok();
        per[v].1 += body["items"].as_array().map_or(0, |a| a.len() as u64);
    }
    let elapsed = started.elapsed().as_secs_f64();
    for ((_, name), (h, items)) in VARIANTS.iter().zip(&per) {
        if h.is_empty() {
            continue;
        }
        println!(
            "query.variant  {name:<30} n={:<4} avg_items={:>5.1} p50={:>7.2}ms p99={:>7.2}ms",
            h.len(),
            *items as f64 / h.len() as f64,
            ms(h, 0.5),
            ms(h, 0.99),
        );
    }
    println!(
        "query.all      requests={} failed={failures} p50={:>7.2}ms p99={:>7.2}ms max={:>7.2}ms ({:.0} requests/s, one client)",
        overall.len(),
        ms(&overall, 0.5),
        ms(&overall, 0.99),
        overall.max() as f64 / 1000.0,
        overall.len() as f64 / elapsed,
    );
    if let Some(f) = first_failure {
        println!("query.errors   first: {f}");
    }
    Ok(())
}

/// g) The auditor API's as-of over a task of `events` events: the command
/// API edits one generated task until its stream holds that many, then
/// `GET …/audit/streams/task-…/as-of?at=` (the whole stream replayed through
/// the domain's `evolve`, and the read recorded) at its last and its middle
/// event, p50/p99 over real HTTP.
async fn as_of(
    settings: &Settings,
    pool: &PgPool,
    report: &GenerateReport,
    events: usize,
) -> anyhow::Result<()> {
    let org = &report.orgs[0];
    let owner = &org.members[0];
    let token = tasklog_http::auth::mint_hs256(
        tasklog::config::DEV_JWT_SECRET,
        owner.user_id,
        Some(&owner.handle),
        3600,
    )?;
    let stream: String = sqlx::query_scalar(
        "SELECT stream_id FROM events WHERE org_id = $1 AND stream_id LIKE 'task-%' \
         AND event_type = 'TaskCreated' LIMIT 1",
    )
    .bind(org.org_id)
    .fetch_one(pool)
    .await?;
    let task = stream.trim_start_matches("task-").to_owned();
    let commands = tasklog::CommandApi::build(settings, pool.clone()).await?;
    let audit = tasklog::AuditApi::build(settings, pool.clone()).await?;
    let (command_url, audit_url) = (
        format!("http://{}", commands.addr()),
        format!("http://{}", audit.addr()),
    );
    let served = tokio::spawn(async move {
        tokio::select! {
            r = commands.run_until_stopped() => r,
            r = audit.run_until_stopped() => r,
        }
    });
    let client = reqwest::Client::new();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE stream_id = $1")
            .bind(&stream)
            .fetch_one(pool)
            .await
    };
    let mut n = count().await? as usize;
    while n < events {
        let r = client
            .patch(format!("{command_url}/v1/orgs/{}/tasks/{task}", org.org_id))
            .bearer_auth(&token)
            .json(&json!({ "title": format!("title {n}") }))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "editing the task: {}",
            r.text().await?
        );
        n += 1;
    }
    let positions: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(&stream)
    .fetch_all(pool)
    .await?;
    let queries: usize = env_or("BENCH_ASOF_QUERIES", 200);
    println!(
        "# g) auditor API as-of: a task of {} events, {queries} reads per point",
        positions.len()
    );
    for (label, (commit, event)) in [
        ("last", positions[positions.len() - 1]),
        ("middle", positions[positions.len() / 2]),
    ] {
        let url = format!(
            "{audit_url}/v1/orgs/{}/audit/streams/{stream}/as-of?at={commit}.{event}",
            org.org_id
        );
        let mut latency = histogram();
        for _ in 0..queries {
            let started = Instant::now();
            let r = client.get(&url).bearer_auth(&token).send().await?;
            anyhow::ensure!(r.status().is_success(), "as-of: {}", r.text().await?);
            r.bytes().await?;
            latency.record(started.elapsed().as_micros().max(1) as u64)?;
        }
        println!(
            "as-of          at the {label:<6} event     p50={:>8.2} ms p99={:>8.2} ms",
            ms(&latency, 0.5),
            ms(&latency, 0.99)
        );
    }
    served.abort();
    Ok(())
}
