//! ClickHouse going down is a transient failure of the analytics projection
//! alone: the log and the PostgreSQL projections carry on, nothing is
//! parked, and once ClickHouse is back the analytics store catches up to the
//! same figures a fresh projection of the whole log gives.
//!
//! The test runs a ClickHouse server of its own (the shared one on 8123
//! stays up for the other tests).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Story;
use sqlx::PgPool;
use tasklog_analytics::{Analytics, ClickHouseConfig};
use tasklog_event_store::{EventStore, LogPosition};
use tasklog_projectors::status::{self, ProjectionStatus};
use tasklog_projectors::{Projection, ProjectorConfig};
use tasklog_testkit::{app_pool, ClickHouseServer, EventLog, TestDatabase};
use tokio::sync::watch;

/// Every reporting view, with the columns compared: all of them but
/// `time_in_status.open_seconds`, which runs with now().
const VIEWS: [(&str, &str); 11] = [
    ("cumulative_flow_daily", "*"),
    ("task_cycle", "*"),
    ("cycle_time_weekly", "*"),
    ("throughput_weekly", "*"),
    ("created_vs_resolved_daily", "*"),
    (
        "time_in_status",
        "org_id, project_id, status, category, finished_stays, finished_seconds, \
         avg_finished_seconds, p50_finished_seconds, p85_finished_seconds, open_stays",
    ),
    ("flow_efficiency", "*"),
    ("workload_current", "*"),
    ("comment_activity_daily", "*"),
    ("notifications_daily", "*"),
    ("event_log", "*"),
];

/// `sql`'s rows as TabSeparated lines, sorted (views have no order).
async fn rows(config: &ClickHouseConfig, sql: &str) -> Vec<String> {
    let bytes = config
        .client()
        .query_raw(sql)
        .fetch_bytes("TabSeparated")
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut lines: Vec<String> = String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// The whole log projected afresh into `config`'s (migrated, empty)
/// databases: every event through `Analytics::apply`, its facts kept in a
/// scratch schema of a transaction that is rolled back, so the database's
/// own `analytics` projection is left as it is.
async fn project_afresh(pool: &PgPool, store: &dyn EventStore, config: &ClickHouseConfig) {
    tasklog_analytics::migrate::migrate(config).await.unwrap();
    let analytics = Analytics::new(config).unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("CREATE SCHEMA afresh")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SET LOCAL search_path TO afresh")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql(analytics.ddl())
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut after = LogPosition::START;
    loop {
        let events = store.read_all(after, 500).await.unwrap();
        let Some(last) = events.last() else { break };
        after = last.position;
        analytics.apply(&mut tx, &events).await.unwrap();
    }
    tx.rollback().await.unwrap();
}

/// Polls every projection's standing until `done` holds, for at most a
/// minute.
async fn until(
    pool: &PgPool,
    store: &dyn EventStore,
    projections: &[Arc<dyn Projection>],
    what: &str,
    done: impl Fn(&[ProjectionStatus]) -> bool,
) -> Vec<ProjectionStatus> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = status::status(pool, store, projections).await.unwrap();
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}; standing: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn caught_up(s: &ProjectionStatus) -> bool {
    s.generation.is_some() && s.lag_events == 0
}

async fn dead_letters(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_holds_back_only_the_analytics_projection_and_its_figures_are_exact_once_it_returns(
) {
    let mut server = ClickHouseServer::start().await;
    let (database, owner) = TestDatabase::migrated("outage").await;
    let pool = app_pool(&database, 12).await;
    let mut config = ClickHouseConfig::local("tasklog", "reporting");
    config.url = server.url();
    config.timeout = Duration::from_secs(5);
    let log = EventLog::new(&owner);
    let store = log.store();
    let mut projections = tasklog_projectors::all();
    projections.push(Arc::new(Analytics::new(&config).unwrap()));

    // The projectors as `tasklog projectors` runs them, retrying quickly.
    let (stop, stopped) = watch::channel(false);
    let fast = ProjectorConfig {
        idle_wait: Duration::from_millis(100),
        lease_retry: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..Default::default()
    };
    let runner = tokio::spawn(tasklog::run_projectors(
        pool.clone(),
        Some(config.clone()),
        fast,
        stopped,
    ));

    // Given week 1 projected everywhere, ClickHouse included ...
    let mut story = Story::week_one(&log).await;
    until(
        &owner,
        store.as_ref(),
        &projections,
        "every projection applies week 1",
        |s| s.iter().all(caught_up),
    )
    .await;

    // ... when ClickHouse stops and week 2 is written meanwhile ...
    server.stop().await;
    story.week_two().await;

    // ... then the PostgreSQL projections still reach the head, while
    // analytics waits at its checkpoint, parking nothing.
    let standing = until(
        &owner,
        store.as_ref(),
        &projections,
        "the PostgreSQL projections apply week 2 without ClickHouse",
        |s| s.iter().filter(|p| p.name != "analytics").all(caught_up),
    )
    .await;
    let analytics = standing.iter().find(|p| p.name == "analytics").unwrap();
    assert!(
        analytics.lag_events > 0,
        "analytics cannot apply week 2 yet: {analytics:?}"
    );
    assert!(standing.iter().all(|p| p.parked == 0), "{standing:?}");
    assert_eq!(
        dead_letters(&owner).await,
        0,
        "a ClickHouse outage parks nothing"
    );

    // When it is back, analytics catches up, still parking nothing ...
    server.start_again().await;
    until(
        &owner,
        store.as_ref(),
        &projections,
        "analytics catches up once ClickHouse is back",
        |s| s.iter().all(caught_up),
    )
    .await;
    assert_eq!(dead_letters(&owner).await, 0);

    // ... and every view says what a fresh projection of the whole log says.
    let mut fresh = ClickHouseConfig::local("fresh", "fresh_reporting");
    fresh.url = server.url();
    project_afresh(&owner, store.as_ref(), &fresh).await;
    for (view, columns) in VIEWS {
        let live = rows(
            &config,
            &format!("SELECT {columns} FROM {}.{view}", config.reporting),
        )
        .await;
        let afresh = rows(
            &fresh,
            &format!("SELECT {columns} FROM {}.{view}", fresh.reporting),
        )
        .await;
        assert!(!live.is_empty(), "{view} has rows");
        assert_eq!(live, afresh, "{view}");
    }
    let events: usize = story.events.values().sum();
    assert_eq!(
        rows(
            &config,
            &format!("SELECT count() FROM {}.events FINAL", config.database)
        )
        .await,
        [events.to_string()],
        "each event of the log once"
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("the projectors stop")
        .unwrap()
        .unwrap();
    pool.close().await;
    owner.close().await;
    database.drop_database().await;
    drop(server);
}
