//! The live loop: woken by appends, looking again when held back, sharing reads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Connection, PgConnection, PgPool};
use tasklog_event_store::{EventStore, ExpectedVersion, LogPosition, NewEvent, RecordedEvent};
use tasklog_projectors::{ApplyError, Projection, Projector, ProjectorConfig};
use uuid::Uuid;

use crate::{activity_rows, fast, wait_readable, world};

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_live_projector_looks_again_when_a_transaction_that_announces_nothing_held_events_back(
    pool: PgPool,
) {
    let store = tasklog_testkit::store(&pool);
    let activity = tasklog_projectors::by_name("activity").unwrap();
    let w = world(&store).await;
    // Without another look, only the idle wait would bring the events in.
    let config = ProjectorConfig {
        idle_wait: Duration::from_secs(60),
        ..fast()
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let runner =
        tokio::spawn(Projector::new(pool.clone(), store.clone(), activity, config).run(stopped));
    wait_for_rows(&pool, w.task, 3).await;

    // A transaction that appends nothing holds readers back while an append
    // commits and is announced ...
    let mut silent = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut silent).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut silent)
        .await
        .unwrap();
    w.reassign_to_owner(&store).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = activity_rows(&pool, w.task).await.unwrap();
    assert_eq!(rows, 3, "the held-back event is not applied yet");

    // ... and its end announces nothing: the projector must look by itself.
    sqlx::query("COMMIT").execute(&mut silent).await.unwrap();
    wait_for_rows(&pool, w.task, 4).await;
    runner.abort();
}

async fn wait_for_rows(pool: &PgPool, task: Uuid, n: i64) {
    for _ in 0..200 {
        if activity_rows(pool, task).await.ok() == Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("activity of {task} never reached {n} rows");
}

/// The PostgreSQL store, counting its log page reads.
struct CountingStore {
    inner: Arc<dyn EventStore>,
    page_reads: AtomicU32,
}

#[async_trait]
impl EventStore for CountingStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<tasklog_event_store::AppendResult, tasklog_event_store::StoreError> {
        self.inner.append(stream, expected, events).await
    }
    async fn append_all(
        &self,
        appends: Vec<tasklog_event_store::StreamAppend>,
    ) -> Result<Vec<tasklog_event_store::AppendResult>, tasklog_event_store::StoreError> {
        self.inner.append_all(appends).await
    }
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, tasklog_event_store::StoreError> {
        self.inner.read_stream(stream, from_version).await
    }
    async fn read_all(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, tasklog_event_store::StoreError> {
        self.inner.read_all(after, limit).await
    }
    async fn read_page(
        &self,
        after: LogPosition,
        limit: usize,
    ) -> Result<tasklog_event_store::LogPage, tasklog_event_store::StoreError> {
        self.page_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read_page(after, limit).await
    }
    fn subscribe_all(
        &self,
        after: LogPosition,
    ) -> futures::stream::BoxStream<'static, Result<RecordedEvent, tasklog_event_store::StoreError>>
    {
        self.inner.subscribe_all(after)
    }
    async fn high_water_mark(
        &self,
    ) -> Result<tasklog_event_store::HighWaterMark, tasklog_event_store::StoreError> {
        self.inner.high_water_mark().await
    }
    fn appends(&self) -> tasklog_event_store::Appends {
        self.inner.appends()
    }
    async fn backlog(
        &self,
        after: LogPosition,
    ) -> Result<tasklog_event_store::Backlog, tasklog_event_store::StoreError> {
        self.inner.backlog(after).await
    }
    async fn estimated_len(&self) -> Result<u64, tasklog_event_store::StoreError> {
        self.inner.estimated_len().await
    }
    async fn find_event(
        &self,
        event_id: Uuid,
    ) -> Result<Option<RecordedEvent>, tasklog_event_store::StoreError> {
        self.inner.find_event(event_id).await
    }
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn projectors_awake_since_one_read_share_it_and_a_later_wake_reads_anew(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    let w = world(&store).await;
    wait_readable(&store, w.last).await;
    let counting = Arc::new(CountingStore {
        inner: store.clone(),
        page_reads: AtomicU32::new(0),
    });
    let shared = tasklog_projectors::SharedLog::new(counting.clone());
    let woke = tokio::time::Instant::now();
    let first = shared
        .read_page(LogPosition::START, 500, woke)
        .await
        .unwrap();
    let second = shared
        .read_page(LogPosition::START, 500, woke)
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&first, &second), "one read serves both");
    assert_eq!(counting.page_reads.load(Ordering::SeqCst), 1);
    assert_eq!(first.events.last().unwrap().position, w.last);

    // An append announced after that read: a projector that took the
    // announcement in must not be served the older page.
    w.reassign_to_owner(&store).await;
    let head = store.high_water_mark().await.unwrap().head.unwrap();
    wait_readable(&store, head).await;
    let later = tokio::time::Instant::now();
    let third = shared
        .read_page(LogPosition::START, 500, later)
        .await
        .unwrap();
    assert_eq!(counting.page_reads.load(Ordering::SeqCst), 2);
    assert_eq!(third.events.last().unwrap().position, head);
}

/// `activity`, asking for a floor between live steps, counting its batches.
struct Floored {
    floor: Duration,
    batches: AtomicU32,
}

impl Floored {
    fn new(floor: Duration) -> Arc<Self> {
        Arc::new(Self {
            floor,
            batches: AtomicU32::new(0),
        })
    }

    fn batches(&self) -> u32 {
        self.batches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Projection for Floored {
    fn name(&self) -> &'static str {
        "activity"
    }
    fn ddl(&self) -> &'static str {
        activity().ddl()
    }
    fn tables(&self) -> &'static [&'static str] {
        activity().tables()
    }
    fn categories(&self) -> Option<&'static [&'static str]> {
        activity().categories()
    }
    fn min_step_interval(&self) -> Duration {
        self.floor
    }
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        activity().apply(tx, events).await
    }
}

fn activity() -> Arc<dyn Projection> {
    tasklog_projectors::by_name("activity").expect("the activity projection")
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_caught_up_projection_with_a_step_floor_applies_what_came_within_it_in_one_batch(
    pool: PgPool,
) {
    let store = tasklog_testkit::store(&pool);
    let w = world(&store).await;
    let floored = Floored::new(Duration::from_secs(5));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(
        Projector::new(pool.clone(), store.clone(), floored.clone(), fast()).run(stopped),
    );
    wait_for_rows(&pool, w.task, 3).await;
    let before = floored.batches();

    // Eight appends, each announced, 50 ms apart: without the floor the
    // runner (5 ms pace) steps for each of them.
    for _ in 0..8 {
        w.reassign_to_owner(&store).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_rows(&pool, w.task, 11).await;
    let batches = floored.batches() - before;
    assert!(
        batches <= 2,
        "8 appends within a 5 s floor took {batches} batches"
    );
    runner.abort();
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_step_floor_does_not_slow_a_projection_that_is_behind(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    let w = world(&store).await;
    for _ in 0..8 {
        w.reassign_to_owner(&store).await;
    }
    // An hour's floor: were it kept between full batches, the 11 task
    // events, two a batch, would take hours.
    let floored = Floored::new(Duration::from_secs(3600));
    let config = ProjectorConfig {
        batch_size: 2,
        ..fast()
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(
        Projector::new(pool.clone(), store.clone(), floored.clone(), config).run(stopped),
    );
    wait_for_rows(&pool, w.task, 11).await;
    assert!(floored.batches() >= 5, "{} batches", floored.batches());
    runner.abort();
}
