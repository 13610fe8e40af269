//! Projectors against real PostgreSQL: exactly-once application, retries
//! and dead letters, rebuilds (the lease: see leases.rs).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use tasklog_domain::{
    encode_event, CommentAdded, CommentDeleted, CommentEdited, DomainEvent, InboxEvent,
    MemberAdded, MemberRemoved, MemberRoleChanged, NotificationRead, OrgEvent, OrganizationCreated,
    Priority, ProjectArchived, ProjectCreated, ProjectEvent, ProjectRenamed, ProjectUnarchived,
    Role, StatusCategory, TagCreated, TagDeleted, TagEvent, TagRenamed, TaskArchived, TaskAssigned,
    TaskCreated, TaskDetailsEdited, TaskEvent, TaskNumberReserved, TaskStatusChanged, TaskTagAdded,
    TaskTagRemoved, TaskUnassigned, Workflow,
};
use tasklog_event_store::{
    EventMetadata, EventStore, ExpectedVersion, LogPosition, NewEvent, PgEventStore, RecordedEvent,
};
use tasklog_projectors::projections::notification_id;
use tasklog_projectors::{
    generation, status, ApplyError, Projection, Projector, ProjectorConfig, ProjectorError,
};
use uuid::Uuid;

fn fast() -> ProjectorConfig {
    ProjectorConfig {
        max_attempts: 3,
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        idle_wait: Duration::from_millis(50),
        lease_retry: Duration::from_millis(50),
        ..ProjectorConfig::default()
    }
}

async fn emit<E: DomainEvent>(
    store: &PgEventStore,
    stream: &str,
    org: Uuid,
    actor: Uuid,
    events: Vec<E>,
) -> LogPosition {
    let version = store.read_stream(stream, 1).await.unwrap().len() as u64;
    let new = events
        .iter()
        .map(|e| {
            let (t, payload) = encode_event(e);
            NewEvent {
                event_id: Uuid::now_v7(),
                event_type: t.into(),
                schema_version: 1,
                payload,
                metadata: EventMetadata {
                    org_id: org,
                    actor_id: Some(actor),
                    correlation_id: Uuid::now_v7(),
                    causation_id: None,
                    occurred_at: Utc::now(),
                },
            }
        })
        .collect();
    store
        .append(stream, ExpectedVersion::from_version(version), new)
        .await
        .unwrap()
        .last_position
}

struct World {
    org: Uuid,
    owner: Uuid,
    bob: Uuid,
    task: Uuid,
    /// The position of its last event.
    last: LogPosition,
}

/// An organization with two members, a task assigned to Bob with a comment mentioning him.
async fn world(store: &PgEventStore) -> World {
    let (org, owner, bob, task, project) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    emit(
        store,
        &format!("org-{org}"),
        org,
        owner,
        vec![
            OrgEvent::from(OrganizationCreated {
                org_id: org,
                name: "Acme".into(),
                owner_id: owner,
                owner_handle: "ann".into(),
            }),
            OrgEvent::from(MemberAdded {
                user_id: bob,
                handle: "bob".into(),
                role: Role::Member,
            }),
        ],
    )
    .await;
    let last = emit(
        store,
        &format!("task-{task}"),
        org,
        owner,
        vec![
            TaskEvent::from(TaskCreated {
                task_id: task,
                org_id: org,
                project_id: project,
                number: 1,
                key: "WEB-1".into(),
                title: "Ship".into(),
                description: "it".into(),
                priority: Priority::High,
                due_date: None,
                status: "backlog".into(),
                status_category: StatusCategory::Backlog,
                created_by: owner,
            }),
            TaskEvent::from(TaskAssigned {
                assignee: bob,
                previous: None,
            }),
            TaskEvent::from(CommentAdded {
                comment_id: Uuid::now_v7(),
                author: owner,
                body: "@bob look".into(),
                mentions: vec![bob],
            }),
        ],
    )
    .await;
    wait_readable(store, last).await;
    World {
        org,
        owner,
        bob,
        task,
        last,
    }
}

impl World {
    /// Moves the task from Bob to its owner.
    async fn reassign_to_owner(&self, store: &PgEventStore) {
        emit(
            store,
            &format!("task-{}", self.task),
            self.org,
            self.owner,
            vec![TaskEvent::from(TaskAssigned {
                assignee: self.owner,
                previous: Some(self.bob),
            })],
        )
        .await;
    }
}

/// The task's activity rows; an error until the table exists.
async fn activity_rows(pool: &PgPool, task: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM read.activity WHERE task_id = $1")
        .bind(task)
        .fetch_one(pool)
        .await
}

/// Steps until the checkpoint reaches `target`. Other tests' open
/// transactions may hold safe readers back for a moment, so it polls.
async fn catch_up(projector: &Projector, generation: i32, target: LogPosition) {
    for _ in 0..500 {
        if projector
            .project_next_batch(generation, true)
            .await
            .unwrap()
            .position
            >= target
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("did not catch up");
}

fn projector(pool: &PgPool, store: &PgEventStore, p: Arc<dyn Projection>) -> Projector {
    Projector::new(pool.clone(), Arc::new(store.clone()), p, fast())
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn every_projection_applies_each_event_once_and_moves_its_checkpoint_with_it(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let w = world(&store).await;
    for p in tasklog_projectors::all() {
        let g = generation::ensure_active(&pool, p.as_ref()).await.unwrap();
        let projector = projector(&pool, &store, p.clone());
        catch_up(&projector, g, w.last).await;
        // Another step applies nothing again.
        let again = projector.project_next_batch(g, true).await.unwrap();
        assert_eq!(again.applied, 0);
    }
    let parked: Vec<String> =
        sqlx::query_scalar("SELECT projection || ': ' || error FROM projection_dead_letters")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(parked.is_empty(), "{parked:?}");
    let task: (String, String, Option<Uuid>, i32, i64) = sqlx::query_as(
        "SELECT key, priority, assignee, comment_count, version FROM read.tasks WHERE task_id = $1",
    )
    .bind(w.task)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(task, ("WEB-1".into(), "high".into(), Some(w.bob), 1, 3));
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM read.members WHERE org_id = $1")
        .bind(w.org)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(members, 2);
    let activity: Vec<String> = sqlx::query_scalar("SELECT event_type FROM read.activity WHERE task_id = $1 ORDER BY commit_id, event_position")
        .bind(w.task).fetch_all(&pool).await.unwrap();
    assert_eq!(activity, ["TaskCreated", "TaskAssigned", "CommentAdded"]);
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM read.notifications WHERE user_id = $1 ORDER BY kind")
            .bind(w.bob)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        kinds,
        ["assigned", "mentioned"],
        "Bob hears of both; the owner of neither"
    );
    let owner_notes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM read.notifications WHERE user_id = $1")
            .bind(w.owner)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(owner_notes, 0);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn every_checkpoint_move_is_announced_when_its_batch_commits(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let w = world(&store).await;
    wait_readable(&store, w.last).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener
        .listen(tasklog_projectors::CHECKPOINT_CHANNEL)
        .await
        .unwrap();
    let tasks = tasklog_projectors::by_name("tasks").unwrap();
    let g = generation::ensure_active(&pool, tasks.as_ref())
        .await
        .unwrap();
    let moved = projector(&pool, &store, tasks)
        .project_next_batch(g, true)
        .await
        .unwrap();
    assert!(moved.applied > 0);
    let announced = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(
        tasklog_projectors::parse_checkpoint(announced.payload()),
        Some(("tasks", g, moved.position))
    );
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_batch_without_events_the_projection_applies_only_moves_its_checkpoint(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let w = world(&store).await;
    let directory = tasklog_projectors::by_name("directory").unwrap();
    let g = generation::ensure_active(&pool, directory.as_ref())
        .await
        .unwrap();
    let projector = projector(&pool, &store, directory);
    catch_up(&projector, g, w.last).await;
    let orgs = || async {
        sqlx::query_scalar::<_, String>("SELECT to_jsonb(o)::text FROM read.organizations o")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    let before = orgs().await;
    w.reassign_to_owner(&store).await;
    let head = store.high_water_mark().await.unwrap().head.unwrap();
    wait_readable(&store, head).await;
    let moved = projector.project_next_batch(g, true).await.unwrap();
    assert_eq!((moved.applied, moved.position), (1, head));
    assert_eq!(projector.checkpoint(g).await.unwrap(), head);
    assert_eq!(orgs().await, before);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn two_writers_from_the_same_checkpoint_apply_a_batch_only_once(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let w = world(&store).await;
    let activity = tasklog_projectors::by_name("activity").unwrap();
    let g = generation::ensure_active(&pool, activity.as_ref())
        .await
        .unwrap();
    let (a, b) = (
        projector(&pool, &store, activity.clone()),
        projector(&pool, &store, activity.clone()),
    );
    let (ra, rb) = tokio::join!(a.project_next_batch(g, true), b.project_next_batch(g, true));
    // Either one lost the race, or they ran one after the other and the
    // second found nothing left: never both applied the batch.
    let applied = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Ok(o) if o.applied > 0))
        .count();
    assert_eq!(applied, 1, "{ra:?} {rb:?}");
    catch_up(&a, g, w.last).await;
    let rows = activity_rows(&pool, w.task).await.unwrap();
    assert_eq!(rows, 3);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_live_projector_looks_again_when_a_transaction_that_announces_nothing_held_events_back(
    pool: PgPool,
) {
    let store = PgEventStore::new(pool.clone());
    let activity = tasklog_projectors::by_name("activity").unwrap();
    let w = world(&store).await;
    // Without another look, only the idle wait would bring the events in.
    let config = ProjectorConfig {
        idle_wait: Duration::from_secs(60),
        ..fast()
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(
        Projector::new(pool.clone(), Arc::new(store.clone()), activity, config).run(stopped),
    );
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
                    return Err(ApplyError::Transient(sqlx::Error::PoolTimedOut));
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

async fn raw(store: &PgEventStore, payloads: Vec<Value>) -> LogPosition {
    let stream = format!("raw-{}", Uuid::now_v7());
    let events = payloads
        .into_iter()
        .map(|payload| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Raw".into(),
            schema_version: 1,
            payload,
            metadata: EventMetadata {
                org_id: Uuid::nil(),
                actor_id: None,
                correlation_id: Uuid::now_v7(),
                causation_id: None,
                occurred_at: Utc::now(),
            },
        })
        .collect();
    let last = store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap()
        .last_position;
    wait_readable(store, last).await;
    last
}

/// Waits until safe readers reach `target`: another test's open transaction
/// anywhere on the server holds them back for a moment.
async fn wait_readable(store: &PgEventStore, target: LogPosition) {
    for _ in 0..500 {
        if store.high_water_mark().await.unwrap().safe >= Some(target) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{target} never became readable");
}

async fn seen(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM read.seen")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_failing_event_is_retried_then_parked_and_the_projection_moves_on(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
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
        status::replay_parked_into(&pool, &store, flaky.as_ref(), id)
            .await
            .unwrap()
            .is_err()
    );
    flaky.fixed.store(true, Ordering::SeqCst);
    status::replay_parked_into(&pool, &store, flaky.as_ref(), id)
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
    let store = PgEventStore::new(pool.clone());
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

/// A world projected live into the active `tasks` generation.
async fn tasks_caught_up(pool: &PgPool) -> (PgEventStore, World, Arc<dyn Projection>, i32) {
    let store = PgEventStore::new(pool.clone());
    let w = world(&store).await;
    let tasks = tasklog_projectors::by_name("tasks").unwrap();
    let g = generation::ensure_active(pool, tasks.as_ref())
        .await
        .unwrap();
    catch_up(&projector(pool, &store, tasks.clone()), g, w.last).await;
    (store, w, tasks, g)
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_rebuild_fills_a_new_generation_and_switches_reads_in_one_step(pool: PgPool) {
    let (store, w, tasks, g1) = tasks_caught_up(&pool).await;
    let before: Value =
        sqlx::query_scalar("SELECT to_jsonb(t) - 'search' FROM read.tasks t WHERE task_id = $1")
            .bind(w.task)
            .fetch_one(&pool)
            .await
            .unwrap();

    let progress = std::sync::Mutex::new(Vec::new());
    let g2 = status::rebuild(&pool, Arc::new(store.clone()), tasks.clone(), 2, |p| {
        progress.lock().unwrap().push(p.applied)
    })
    .await
    .unwrap();
    assert_eq!(g2, g1 + 1);
    assert!(
        progress.lock().unwrap().len() > 1,
        "progress is reported batch by batch"
    );
    let after: Value =
        sqlx::query_scalar("SELECT to_jsonb(t) - 'search' FROM read.tasks t WHERE task_id = $1")
            .bind(w.task)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(before, after);
    let old_schema: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
            .bind(generation::schema("tasks", g1))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(old_schema, 0, "the old generation is gone");
    // A live projector on the old generation learns of the switch.
    let live = projector(&pool, &store, tasks.clone())
        .project_next_batch(g1, true)
        .await;
    assert!(
        matches!(live, Err(ProjectorError::GenerationChanged(_, g)) if g == g2),
        "{live:?}"
    );
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_rebuild_drops_the_old_generation_only_after_live_batches_on_it_commit(pool: PgPool) {
    let (store, _, tasks, g1) = tasks_caught_up(&pool).await;

    // A live batch in flight holds the switch lock shared, as the runner's does.
    let mut batch = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('tasklog.projection.switch.tasks', 0))",
    )
    .execute(&mut *batch)
    .await
    .unwrap();
    let rebuild = tokio::spawn({
        let (pool, store, tasks) = (pool.clone(), store.clone(), tasks.clone());
        async move { status::rebuild(&pool, Arc::new(store), tasks, 100, |_| {}).await }
    });
    let old_schema_exists = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
        )
        .bind(generation::schema("tasks", g1))
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let waited = std::time::Instant::now();
    while generation::active(&pool, "tasks").await.unwrap() == Some(g1) {
        assert!(waited.elapsed() < Duration::from_secs(20), "no switch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(old_schema_exists().await, "dropped under a live batch");
    assert!(!rebuild.is_finished());

    batch.commit().await.unwrap();
    let g2 = rebuild.await.unwrap().unwrap();
    assert_eq!(g2, g1 + 1);
    assert!(!old_schema_exists().await, "the old generation is gone");
}

/// A log with every kind of event the projections read, the events of each
/// aggregate spread over several appends and interleaved with the others'.
async fn busy_world(store: &PgEventStore) -> LogPosition {
    let id = Uuid::now_v7;
    let (org, owner, bob, carol, project) = (id(), id(), id(), id(), id());
    let (a, b) = (id(), id());
    let (t1, t2, t3) = (id(), id(), id());
    let (c1, c2, c3) = (id(), id(), id());
    let org_stream = format!("org-{org}");
    let (ta, tb) = (format!("task-{a}"), format!("task-{b}"));
    let project_stream = format!("project-{project}");
    let tags = format!("tags-{org}");
    let member = |user, handle: &str, role| {
        OrgEvent::from(MemberAdded {
            user_id: user,
            handle: handle.into(),
            role,
        })
    };
    let created = |task, number, title: &str| {
        TaskEvent::from(TaskCreated {
            task_id: task,
            org_id: org,
            project_id: project,
            number,
            key: format!("WEB-{number}"),
            title: title.into(),
            description: "d".into(),
            priority: Priority::Low,
            due_date: None,
            status: "backlog".into(),
            status_category: StatusCategory::Backlog,
            created_by: owner,
        })
    };
    let assigned = |user| {
        TaskEvent::from(TaskAssigned {
            assignee: user,
            previous: None,
        })
    };
    let comment = |c, mentions: Vec<Uuid>| {
        TaskEvent::from(CommentAdded {
            comment_id: c,
            author: owner,
            body: "hi".into(),
            mentions,
        })
    };
    let tag_added = |t| TaskEvent::from(TaskTagAdded { tag_id: t });
    let tag_removed = |t| TaskEvent::from(TaskTagRemoved { tag_id: t });

    emit(
        store,
        &org_stream,
        org,
        owner,
        vec![
            OrgEvent::from(OrganizationCreated {
                org_id: org,
                name: "Acme".into(),
                owner_id: owner,
                owner_handle: "ann".into(),
            }),
            member(bob, "bob", Role::Member),
            member(carol, "carol", Role::Viewer),
        ],
    )
    .await;
    emit(
        store,
        &tags,
        org,
        owner,
        vec![
            TagEvent::from(TagCreated {
                tag_id: t1,
                name: "bug".into(),
                color: None,
            }),
            TagEvent::from(TagCreated {
                tag_id: t2,
                name: "ui".into(),
                color: Some("#f00".into()),
            }),
            TagEvent::from(TagCreated {
                tag_id: t3,
                name: "old".into(),
                color: None,
            }),
        ],
    )
    .await;
    emit(
        store,
        &project_stream,
        org,
        owner,
        vec![
            ProjectEvent::from(ProjectCreated {
                project_id: project,
                org_id: org,
                name: "Web".into(),
                key: "WEB".into(),
                workflow: Workflow::default(),
            }),
            ProjectEvent::from(TaskNumberReserved {
                task_id: a,
                number: 1,
            }),
        ],
    )
    .await;
    emit(
        store,
        &ta,
        org,
        owner,
        vec![created(a, 1, "A"), assigned(bob)],
    )
    .await;
    emit(
        store,
        &project_stream,
        org,
        owner,
        vec![ProjectEvent::from(TaskNumberReserved {
            task_id: b,
            number: 2,
        })],
    )
    .await;
    emit(
        store,
        &tb,
        org,
        bob,
        vec![created(b, 2, "B"), tag_added(t1)],
    )
    .await;
    emit(
        store,
        &ta,
        org,
        owner,
        vec![
            TaskEvent::from(TaskDetailsEdited {
                title: "A2".into(),
                description: "more".into(),
                priority: Priority::Urgent,
                due_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 1),
            }),
            TaskEvent::from(TaskStatusChanged {
                from: "backlog".into(),
                to: "todo".into(),
                from_category: StatusCategory::Backlog,
                to_category: StatusCategory::Unstarted,
            }),
            tag_added(t1),
            tag_added(t2),
        ],
    )
    .await;
    emit(
        store,
        &org_stream,
        org,
        owner,
        vec![
            OrgEvent::from(MemberRoleChanged {
                user_id: bob,
                from: Role::Member,
                to: Role::Admin,
            }),
            OrgEvent::from(MemberRemoved { user_id: carol }),
        ],
    )
    .await;
    emit(
        store,
        &ta,
        org,
        owner,
        vec![tag_removed(t1), comment(c1, vec![bob, carol])],
    )
    .await;
    emit(
        store,
        &tb,
        org,
        bob,
        vec![comment(c3, vec![owner]), TaskEvent::from(TaskArchived {})],
    )
    .await;
    emit(
        store,
        &tags,
        org,
        owner,
        vec![
            TagEvent::from(TagRenamed {
                tag_id: t2,
                from: "ui".into(),
                to: "ux".into(),
            }),
            TagEvent::from(TagDeleted { tag_id: t3 }),
        ],
    )
    .await;
    emit(
        store,
        &ta,
        org,
        owner,
        vec![
            TaskEvent::from(CommentEdited {
                comment_id: c1,
                body: "hi @bob".into(),
                mentions: vec![bob],
            }),
            comment(c2, vec![]),
            TaskEvent::from(CommentDeleted { comment_id: c2 }),
            TaskEvent::from(TaskUnassigned { previous: bob }),
        ],
    )
    .await;
    emit(
        store,
        &project_stream,
        org,
        owner,
        vec![
            ProjectEvent::from(ProjectRenamed {
                from: "Web".into(),
                to: "Website".into(),
            }),
            ProjectEvent::from(ProjectArchived {}),
            ProjectEvent::from(ProjectUnarchived {}),
        ],
    )
    .await;
    // Bob reads the assignment; carol reads her mention twice.
    let assignment = store.read_stream(&ta, 1).await.unwrap()[1].event_id;
    let mention = store.read_stream(&ta, 1).await.unwrap()[7].event_id;
    emit(
        store,
        &format!("inbox-{bob}"),
        org,
        bob,
        vec![InboxEvent::from(NotificationRead {
            notification_id: notification_id(assignment, bob),
        })],
    )
    .await;
    emit(
        store,
        &ta,
        org,
        owner,
        vec![assigned(bob), tag_added(t1), tag_removed(t2)],
    )
    .await;
    let last = emit(
        store,
        &format!("inbox-{carol}"),
        org,
        carol,
        vec![
            InboxEvent::from(NotificationRead {
                notification_id: notification_id(mention, carol),
            }),
            InboxEvent::from(NotificationRead {
                notification_id: notification_id(mention, carol),
            }),
        ],
    )
    .await;
    wait_readable(store, last).await;
    last
}

/// Every row of a generation's tables, as JSON text, sorted.
async fn rows_of(pool: &PgPool, projection: &dyn Projection, generation: i32) -> Vec<String> {
    let mut rows = Vec::new();
    for table in projection.tables() {
        let schema = generation::schema(projection.name(), generation);
        let mut these: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT '{table}: ' || to_jsonb(t)::text FROM {schema}.{table} t"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        rows.append(&mut these);
    }
    rows.sort();
    rows
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_batch_yields_the_same_rows_as_its_events_applied_one_at_a_time(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
    let last = busy_world(&store).await;
    for p in tasklog_projectors::all() {
        let mut results = Vec::new();
        for (generation, batch_size) in [(1, 1), (2, 3), (3, 1000)] {
            let mut tx = pool.begin().await.unwrap();
            generation::create_in(&mut tx, p.as_ref(), generation)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let config = ProjectorConfig {
                batch_size,
                ..fast()
            };
            let projector =
                Projector::new(pool.clone(), Arc::new(store.clone()), p.clone(), config);
            loop {
                let step = projector
                    .project_next_batch(generation, false)
                    .await
                    .unwrap();
                assert_eq!(step.parked, 0, "{}: nothing fails", p.name());
                if step.position >= last {
                    break;
                }
            }
            results.push(rows_of(&pool, p.as_ref(), generation).await);
        }
        assert!(!results[0].is_empty(), "{} has rows", p.name());
        assert_eq!(results[0], results[1], "{}: batches of 3", p.name());
        assert_eq!(results[0], results[2], "{}: one batch", p.name());
    }
    // The fold did what the events say, not just the same thing twice.
    let a: (String, String, String, i32, i32, bool) = sqlx::query_as(
        "SELECT title, priority, status, comment_count, cardinality(tags), assignee IS NOT NULL \
         FROM rm_tasks_g3.tasks WHERE key = 'WEB-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(a, ("A2".into(), "urgent".into(), "todo".into(), 1, 1, true));
    let usage: Vec<i64> =
        sqlx::query_scalar("SELECT tasks FROM rm_tasks_g3.tag_usage ORDER BY tasks")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(usage, [0, 2], "bug on both tasks; ui added and removed");
    let comments: Vec<(String, i32, bool)> = sqlx::query_as(
        "SELECT body, cardinality(mentions), deleted FROM rm_tasks_g3.comments ORDER BY created_at, body",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(comments.iter().filter(|c| c.2).count(), 1, "{comments:?}");
    assert!(
        comments.contains(&("hi @bob".into(), 1, false)),
        "{comments:?}"
    );
    let rows = rows_of(
        &pool,
        tasklog_projectors::by_name("notifications")
            .unwrap()
            .as_ref(),
        3,
    )
    .await;
    let read = rows
        .iter()
        .filter(|r| r.contains("\"read_at\": \""))
        .count();
    assert_eq!((rows.len(), read), (5, 2), "{rows:#?}");
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_task_created_twice_is_parked_not_overwritten(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
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

#[test]
fn a_notification_id_is_the_same_for_the_same_cause_and_recipient() {
    let (cause, user) = (Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(notification_id(cause, user), notification_id(cause, user));
    assert_ne!(
        notification_id(cause, user),
        notification_id(cause, Uuid::now_v7())
    );
}

/// The PostgreSQL store, counting its log page reads.
struct CountingStore {
    inner: PgEventStore,
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
    async fn find_event(
        &self,
        event_id: Uuid,
    ) -> Result<Option<RecordedEvent>, tasklog_event_store::StoreError> {
        self.inner.find_event(event_id).await
    }
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn projectors_awake_since_one_read_share_it_and_a_later_wake_reads_anew(pool: PgPool) {
    let store = PgEventStore::new(pool.clone());
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
    store: &PgEventStore,
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
    let store = PgEventStore::new(pool.clone());
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

    let refused = status::replay_parked_into(&pool, &store, latest.as_ref(), parked[0])
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
    status::rebuild(&pool, Arc::new(store.clone()), latest.clone(), 100, |_| {})
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
    let store = PgEventStore::new(pool.clone());
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
        status::replay_parked_into(&pool, &store, latest.as_ref(), id)
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
