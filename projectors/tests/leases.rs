//! The lease, against real PostgreSQL: one runner writes a projection at a
//! time, a standby takes over when the holder's connection dies, and a runner
//! that lost its lease stops writing although it goes on running.
//!
//! Which runner holds the lease is read from the server (`pg_locks`: the
//! session holding the projection's advisory lock, named by its
//! `application_name`), and which runner wrote what from the read model: the
//! projection under test records, beside the `activity` rows, every event it
//! applies with the runner that applied it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tasklog_domain::{
    encode_event, CommentAdded, Priority, StatusCategory, TaskCreated, TaskEvent,
};
use tasklog_event_store::{
    EventMetadata, EventStore, ExpectedVersion, LogPosition, NewEvent, RecordedEvent,
};
use tasklog_projectors::{status, ApplyError, Projection, Projector, ProjectorConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// `activity`, recording in `applied` which runner applied each event. No
/// key on `applied`: an event applied twice would show as two rows.
struct Recorder {
    runner: &'static str,
}

#[async_trait]
impl Projection for Recorder {
    fn name(&self) -> &'static str {
        "activity"
    }
    fn ddl(&self) -> &'static str {
        concat!(
            include_str!("../../migrations/projections/activity.sql"),
            "\nCREATE TABLE applied (\n    seq bigserial PRIMARY KEY,\n    event_id uuid NOT NULL,\n    runner text NOT NULL\n);\n"
        )
    }
    fn tables(&self) -> &'static [&'static str] {
        &["activity", "applied"]
    }
    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&["task"])
    }
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        tasklog_projectors::by_name("activity")
            .expect("the activity projection")
            .apply(tx, events)
            .await?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        sqlx::query("INSERT INTO applied (event_id, runner) SELECT unnest($1::uuid[]), $2")
            .bind(&ids)
            .bind(self.runner)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// A runner's own pool: its sessions, its lease's among them, carry its name.
fn pool_named(pool: &PgPool, name: &str) -> PgPool {
    let options = (*pool.connect_options()).clone().application_name(name);
    PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy_with(options)
}

/// A runner of the recorder. Caught up, it waits long for an announcement
/// before it looks again (as in production): under load it is never idle.
fn runner(pool: &PgPool, store: &Arc<dyn EventStore>, name: &'static str) -> Projector {
    let config = ProjectorConfig {
        first_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        idle_wait: Duration::from_secs(1),
        lease_retry: Duration::from_millis(50),
        ..ProjectorConfig::default()
    };
    Projector::new(
        pool_named(pool, &format!("lease-{name}")),
        store.clone(),
        Arc::new(Recorder { runner: name }),
        config,
    )
}

/// The `application_name` and pid of the session holding the lease of
/// `activity`, if any.
async fn lease_holder(pool: &PgPool) -> Option<(String, i32)> {
    sqlx::query_as(
        "SELECT a.application_name, l.pid \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid, \
              (SELECT hashtextextended('tasklog.projection.activity', 0) AS key) k \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid::bigint = (k.key >> 32) & 4294967295 \
           AND l.objid::bigint = k.key & 4294967295",
    )
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn holder_name(pool: &PgPool) -> Option<String> {
    lease_holder(pool).await.map(|(name, _)| name)
}

/// Polls `check` until it holds; fails after a generous deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn applied_count(pool: &PgPool) -> i64 {
    // An error until the first runner created the tables.
    sqlx::query_scalar("SELECT count(*) FROM read.applied")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Waits until `n` more events than now have been applied.
async fn progress(pool: &PgPool, n: i64) {
    let from = applied_count(pool).await;
    eventually(&format!("{n} more events applied"), || async {
        applied_count(pool).await >= from + n
    })
    .await;
}

/// Which runners applied events, in the order they first did.
async fn writers(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT runner FROM read.applied GROUP BY runner ORDER BY min(seq)")
        .fetch_all(pool)
        .await
        .unwrap()
}

fn event(org: Uuid, e: TaskEvent) -> NewEvent {
    let (event_type, payload) = encode_event(&e);
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        payload,
        personal: &[],
        metadata: EventMetadata {
            org_id: org,
            actor_id: Some(org),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            occurred_at: Utc::now(),
        },
    }
}

/// A stream of comments on one task, one append every few milliseconds,
/// until stopped; it answers the position of its last append.
struct Load {
    running: Arc<AtomicBool>,
    task: JoinHandle<LogPosition>,
}

impl Load {
    async fn start(store: &Arc<dyn EventStore>) -> Self {
        let (org, task) = (Uuid::now_v7(), Uuid::now_v7());
        let stream = format!("task-{task}");
        let created = TaskEvent::from(TaskCreated {
            task_id: task,
            org_id: org,
            project_id: Uuid::now_v7(),
            number: 1,
            key: "WEB-1".into(),
            title: "Lease".into(),
            description: String::new(),
            priority: Priority::None,
            due_date: None,
            status: "backlog".into(),
            status_category: StatusCategory::Backlog,
            created_by: org,
        });
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![event(org, created)],
            )
            .await
            .unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn({
            let (store, running) = (store.clone(), running.clone());
            async move {
                let mut last = LogPosition::START;
                let mut n = 0;
                while running.load(Ordering::SeqCst) {
                    n += 1;
                    let comment = TaskEvent::from(CommentAdded {
                        comment_id: Uuid::now_v7(),
                        author: org,
                        body: format!("comment {n}"),
                        mentions: vec![],
                    });
                    last = store
                        .append(&stream, ExpectedVersion::Any, vec![event(org, comment)])
                        .await
                        .unwrap()
                        .last_position;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                last
            }
        });
        Self { running, task }
    }

    /// Stops it and waits until `pool`'s active checkpoint passed its last event.
    async fn stop_and_drain(self, pool: &PgPool) {
        self.running.store(false, Ordering::SeqCst);
        let last = self.task.await.unwrap();
        eventually("the checkpoint passes the last event", || async {
            let at: Option<(i64, i64)> = sqlx::query_as(
                "SELECT c.commit_id, c.event_position FROM projection_checkpoints c \
                 JOIN projections p ON p.name = c.projection AND p.active_generation = c.generation \
                 WHERE c.projection = 'activity'",
            )
            .fetch_optional(pool)
            .await
            .unwrap();
            at.is_some_and(|(c, e)| {
                LogPosition {
                    commit: c as u64,
                    event: e as u64,
                } >= last
            })
        })
        .await;
    }
}

/// Every task event of the log was applied exactly once, and nothing parked.
async fn assert_each_event_applied_once(pool: &PgPool) {
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e WHERE e.stream_id LIKE 'task-%' \
           AND NOT EXISTS (SELECT 1 FROM read.applied a WHERE a.event_id = e.event_id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(missing, 0, "no event lost");
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT event_id FROM read.applied GROUP BY event_id HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(twice, 0, "no event applied twice");
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(parked, 0, "nothing parked");
}

/// The `activity` rows equal those a rebuild from the log produces.
async fn assert_equal_to_a_rebuild(pool: &PgPool, store: &Arc<dyn EventStore>) {
    let rows = || async {
        sqlx::query_scalar::<_, String>("SELECT to_jsonb(a)::text FROM read.activity a ORDER BY 1")
            .fetch_all(pool)
            .await
            .unwrap()
    };
    let live = rows().await;
    status::rebuild(
        pool,
        store.clone(),
        Arc::new(Recorder { runner: "rebuild" }),
        100,
        |_| {},
    )
    .await
    .unwrap();
    let rebuilt = rows().await;
    assert_eq!(live.len(), rebuilt.len(), "as many rows as a rebuild");
    assert_eq!(live, rebuilt, "the same rows as a rebuild");
}

/// Once `later` has written, `earlier` never writes again.
async fn assert_clean_hand_over(pool: &PgPool, earlier: &str, later: &str) {
    let (last_of_earlier, first_of_later): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT max(seq) FROM read.applied WHERE runner = $1), \
                (SELECT min(seq) FROM read.applied WHERE runner = $2)",
    )
    .bind(earlier)
    .bind(later)
    .fetch_one(pool)
    .await
    .unwrap();
    let (last, first) = (last_of_earlier.unwrap(), first_of_later.unwrap());
    assert!(
        last < first,
        "runner {earlier} wrote after runner {later} took over (its last row {last}, {later}'s first {first})"
    );
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn only_one_runner_holds_the_lease_and_a_standby_takes_over_when_it_dies(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    let (stop, stopped) = watch::channel(false);
    let load = Load::start(&store).await;
    let first = tokio::spawn(runner(&pool, &store, "a").run(stopped.clone()));
    eventually("runner a holds the lease", || async {
        holder_name(&pool).await.as_deref() == Some("lease-a")
    })
    .await;
    let standby = tokio::spawn(runner(&pool, &store, "b").run(stopped.clone()));

    // Both run, under load: the holder keeps the lease and writes alone.
    progress(&pool, 100).await;
    assert_eq!(holder_name(&pool).await.as_deref(), Some("lease-a"));
    assert!(!standby.is_finished(), "the standby runs");
    assert_eq!(writers(&pool).await, ["a"]);

    // The holder dies: its lease goes with its connection.
    first.abort();
    let _ = first.await;
    eventually("runner b takes the lease", || async {
        holder_name(&pool).await.as_deref() == Some("lease-b")
    })
    .await;
    progress(&pool, 100).await;
    load.stop_and_drain(&pool).await;
    stop.send(true).unwrap();
    standby.await.unwrap().unwrap();

    assert_eq!(writers(&pool).await, ["a", "b"]);
    assert_clean_hand_over(&pool, "a", "b").await;
    assert_each_event_applied_once(&pool).await;
    assert_equal_to_a_rebuild(&pool, &store).await;
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_runner_whose_lease_connection_is_killed_stops_writing_and_the_standby_takes_over(
    pool: PgPool,
) {
    let store = tasklog_testkit::store(&pool);
    let (stop, stopped) = watch::channel(false);
    let load = Load::start(&store).await;
    let first = tokio::spawn(runner(&pool, &store, "a").run(stopped.clone()));
    eventually("runner a holds the lease", || async {
        holder_name(&pool).await.as_deref() == Some("lease-a")
    })
    .await;
    let standby = tokio::spawn(runner(&pool, &store, "b").run(stopped.clone()));
    progress(&pool, 100).await;
    assert_eq!(writers(&pool).await, ["a"]);

    // The lease holder's session is terminated (a DBA, a failover, a network
    // cut); its runner goes on, and hears of it only when it next uses it.
    let (_, pid) = lease_holder(&pool).await.unwrap();
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(terminated);
    eventually("runner b takes the lease", || async {
        holder_name(&pool).await.as_deref() == Some("lease-b")
    })
    .await;
    // Well past the hand-over, under load.
    progress(&pool, 200).await;
    assert!(!first.is_finished(), "runner a goes on running");
    assert_eq!(holder_name(&pool).await.as_deref(), Some("lease-b"));

    load.stop_and_drain(&pool).await;
    stop.send(true).unwrap();
    first.await.unwrap().unwrap();
    standby.await.unwrap().unwrap();

    assert_clean_hand_over(&pool, "a", "b").await;
    assert_each_event_applied_once(&pool).await;
    assert_equal_to_a_rebuild(&pool, &store).await;
}
