//! Failing events: retried, parked, replayed after a fix (or refused).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use tasklog_domain::{Priority, StatusCategory, TaskCreated, TaskEvent};
use tasklog_event_store::{EventStore, RecordedEvent};
use tasklog_projectors::{generation, status, ApplyError, Projection};
use uuid::Uuid;

use crate::{catch_up, emit, projector, raw, wait_readable, world};

/// A projection that fails on events whose payload has `"poison": true`:
/// permanently until fixed, or transiently a few times.
struct Flaky {
    fixed: AtomicBool,
    transient_failures_left: AtomicU32,
}

#[async_trait]
impl Projection for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn ddl(&self) -> &'static str {
        "CREATE TABLE seen (event_id uuid PRIMARY KEY);"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["seen"]
    }
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        for e in events {
            if e.payload.get("poison") == Some(&Value::Bool(true)) {
                if self.transient_failures_left.load(Ordering::SeqCst) > 0 {
                    self.transient_failures_left.fetch_sub(1, Ordering::SeqCst);
                    return Err(ApplyError::Transient(Box::new(sqlx::Error::PoolTimedOut)));
                }
                if !self.fixed.load(Ordering::SeqCst) {
                    return Err(ApplyError::Failed("cannot digest poison".into()));
                }
            }
            sqlx::query("INSERT INTO seen (event_id) VALUES ($1)")
                .bind(e.event_id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

async fn seen(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM read.seen")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_failing_event_is_retried_then_parked_and_the_projection_moves_on(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    // Each in a stream of its own: a replay after later events of the same
    // stream is refused (see the replay tests below).
    raw(&store, vec![json!({"n": 1})]).await;
    raw(&store, vec![json!({"poison": true})]).await;
    raw(&store, vec![json!({"n": 3})]).await;
    let flaky = Arc::new(Flaky {
        fixed: AtomicBool::new(false),
        transient_failures_left: AtomicU32::new(0),
    });
    let g = generation::ensure_active(&pool, flaky.as_ref())
        .await
        .unwrap();
    let p = projector(&pool, &store, flaky.clone());
    let outcome = p.project_next_batch(g, true).await.unwrap();
    assert_eq!((outcome.applied, outcome.parked), (2, 1));
    assert_eq!(seen(&pool).await, 2, "the events around the poison landed");
    let (id, attempts, error): (i64, i32, String) = sqlx::query_as(
        "SELECT id, attempts, error FROM projection_dead_letters WHERE projection = 'flaky'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, 3);
    assert!(error.contains("poison"));

    // Replaying before the fix keeps it parked; after the fix it lands and leaves the table.
    assert!(
        status::replay_parked_into(&pool, store.as_ref(), flaky.as_ref(), id)
            .await
            .unwrap()
            .is_err()
    );
    flaky.fixed.store(true, Ordering::SeqCst);
    status::replay_parked_into(&pool, store.as_ref(), flaky.as_ref(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen(&pool).await, 3);
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parked, 0);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn transient_errors_are_retried_and_never_park(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    raw(&store, vec![json!({"n": 1}), json!({"poison": true})]).await;
    // More transient failures than max_attempts: still never parked.
    let flaky = Arc::new(Flaky {
        fixed: AtomicBool::new(true),
        transient_failures_left: AtomicU32::new(7),
    });
    let g = generation::ensure_active(&pool, flaky.as_ref())
        .await
        .unwrap();
    let outcome = projector(&pool, &store, flaky.clone())
        .project_next_batch(g, true)
        .await
        .unwrap();
    assert_eq!((outcome.applied, outcome.parked), (2, 0));
    assert_eq!(seen(&pool).await, 2);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_task_created_twice_is_parked_not_overwritten(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    let w = world(&store).await;
    let again = emit(
        &store,
        &format!("task-{}", w.task),
        w.org,
        w.owner,
        vec![TaskEvent::from(TaskCreated {
            task_id: w.task,
            org_id: w.org,
            project_id: Uuid::now_v7(),
            number: 9,
            key: "WEB-9".into(),
            title: "Impostor".into(),
            description: String::new(),
            priority: Priority::None,
            due_date: None,
            status: "todo".into(),
            status_category: StatusCategory::Unstarted,
            created_by: w.bob,
        })],
    )
    .await;
    wait_readable(&store, again).await;
    let tasks = tasklog_projectors::by_name("tasks").unwrap();
    let g = generation::ensure_active(&pool, tasks.as_ref())
        .await
        .unwrap();
    catch_up(&projector(&pool, &store, tasks), g, again).await;
    let (key, title): (String, String) =
        sqlx::query_as("SELECT key, title FROM read.tasks WHERE task_id = $1")
            .bind(w.task)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((key.as_str(), title.as_str()), ("WEB-1", "Ship"));
    let parked: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM projection_dead_letters WHERE projection = 'tasks'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(parked, ["TaskCreated"]);
}

/// Keeps each stream's latest value: order matters, as in a task's details.
struct Latest {
    fixed: AtomicBool,
}

#[async_trait]
impl Projection for Latest {
    fn name(&self) -> &'static str {
        "latest"
    }
    fn ddl(&self) -> &'static str {
        "CREATE TABLE latest (stream text PRIMARY KEY, value bigint NOT NULL);"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["latest"]
    }
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        for e in events {
            if e.payload.get("poison") == Some(&Value::Bool(true))
                && !self.fixed.load(Ordering::SeqCst)
            {
                return Err(ApplyError::Failed("cannot digest poison".into()));
            }
            sqlx::query(
                "INSERT INTO latest (stream, value) VALUES ($1, $2) \
                 ON CONFLICT (stream) DO UPDATE SET value = EXCLUDED.value",
            )
            .bind(&e.stream_id)
            .bind(e.payload["v"].as_i64().unwrap_or(-1))
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

/// Applies the log to `latest`, parking what fails; (stream, parked ids).
async fn latest_with_parked(
    pool: &PgPool,
    store: &Arc<dyn EventStore>,
    payloads: Vec<Value>,
) -> (Arc<Latest>, String, Vec<i64>) {
    let last = raw(store, payloads).await;
    let stream: String =
        sqlx::query_scalar("SELECT stream_id FROM events ORDER BY global_position DESC LIMIT 1")
            .fetch_one(pool)
            .await
            .unwrap();
    let latest = Arc::new(Latest {
        fixed: AtomicBool::new(false),
    });
    let g = generation::ensure_active(pool, latest.as_ref())
        .await
        .unwrap();
    catch_up(&projector(pool, store, latest.clone()), g, last).await;
    let parked: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM projection_dead_letters WHERE projection = 'latest' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    latest.fixed.store(true, Ordering::SeqCst);
    (latest, stream, parked)
}

async fn latest_value(pool: &PgPool, stream: &str) -> i64 {
    sqlx::query_scalar("SELECT value FROM read.latest WHERE stream = $1")
        .bind(stream)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn replaying_a_parked_event_after_later_events_of_its_stream_were_applied_is_refused(
    pool: PgPool,
) {
    let store = tasklog_testkit::store(&pool);
    let (latest, stream, parked) = latest_with_parked(
        &pool,
        &store,
        vec![
            json!({"v": 1}),
            json!({"v": 2, "poison": true}),
            json!({"v": 3}),
        ],
    )
    .await;
    assert_eq!(parked.len(), 1);
    assert_eq!(latest_value(&pool, &stream).await, 3);

    let refused = status::replay_parked_into(&pool, store.as_ref(), latest.as_ref(), parked[0])
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        refused.contains("refused") && refused.contains("rebuild"),
        "{refused}"
    );
    assert_eq!(
        latest_value(&pool, &stream).await,
        3,
        "the newer value stands"
    );
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(still, 1, "the event stays parked");

    // A rebuild applies it in its place, and its dead letter goes.
    status::rebuild(&pool, store.clone(), latest.clone(), 100, |_| {})
        .await
        .unwrap();
    assert_eq!(latest_value(&pool, &stream).await, 3);
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(still, 0);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_parked_event_still_the_newest_applied_of_its_stream_is_replayed_in_its_place(
    pool: PgPool,
) {
    let store = tasklog_testkit::store(&pool);
    // Two in a row fail: the later one was not applied, so the first may go.
    let (latest, stream, parked) = latest_with_parked(
        &pool,
        &store,
        vec![
            json!({"v": 1}),
            json!({"v": 2, "poison": true}),
            json!({"v": 3, "poison": true}),
        ],
    )
    .await;
    assert_eq!(parked.len(), 2);
    assert_eq!(latest_value(&pool, &stream).await, 1);
    for (id, value) in [(parked[0], 2), (parked[1], 3)] {
        status::replay_parked_into(&pool, store.as_ref(), latest.as_ref(), id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest_value(&pool, &stream).await, value);
    }
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(still, 0);
}

/// Tables out of reach are a fault of the deployment, not of the events: the
/// projection waits for them and parks nothing it would then skip.
#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_projection_whose_tables_are_missing_waits_for_them_and_parks_nothing(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    world(&store).await;
    let tasks = tasklog_projectors::by_name("tasks").unwrap();
    let g = generation::ensure_active(&pool, tasks.as_ref())
        .await
        .unwrap();
    let schema = format!("rm_tasks_g{g}");
    sqlx::query(&format!("ALTER TABLE {schema}.tasks RENAME TO tasks_away"))
        .execute(&pool)
        .await
        .unwrap();
    let p = projector(&pool, &store, tasks);
    let step = tokio::spawn(async move { p.project_next_batch(g, true).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!step.is_finished(), "the step waits for its tables");
    sqlx::query(&format!("ALTER TABLE {schema}.tasks_away RENAME TO tasks"))
        .execute(&pool)
        .await
        .unwrap();
    let outcome = step.await.unwrap().unwrap();
    assert_eq!(outcome.parked, 0);
    assert!(outcome.applied > 0);
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parked, 0);
}
