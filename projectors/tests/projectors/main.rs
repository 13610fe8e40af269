//! Projectors against real PostgreSQL, one file per feature: checkpoints
//! (exactly-once application), the live loop, dead letters and replays,
//! rebuilds, set-based batches (the lease: see leases.rs).

mod batches;
mod checkpoints;
mod dead_letters;
mod live;
mod notifications;
mod rebuild;
mod updates;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use tasklog_domain::{
    encode_event, CommentAdded, DomainEvent, MemberAdded, OrgEvent, OrganizationCreated, Priority,
    Role, StatusCategory, TaskAssigned, TaskCreated, TaskEvent,
};
use tasklog_event_store::{EventMetadata, EventStore, ExpectedVersion, LogPosition, NewEvent};
use tasklog_projectors::{generation, Projection, Projector, ProjectorConfig};
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
    store: &Arc<dyn EventStore>,
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
                personal: &[],
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
async fn world(store: &Arc<dyn EventStore>) -> World {
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
    /// Appends `event` to the task, by its owner; the position of that event.
    async fn on_task(
        &self,
        store: &Arc<dyn EventStore>,
        event: impl Into<TaskEvent>,
    ) -> LogPosition {
        let stream = format!("task-{}", self.task);
        emit(store, &stream, self.org, self.owner, vec![event.into()]).await
    }

    /// Moves the task from Bob to its owner; the position of that event.
    async fn reassign_to_owner(&self, store: &Arc<dyn EventStore>) -> LogPosition {
        let reassigned = TaskAssigned {
            assignee: self.owner,
            previous: Some(self.bob),
        };
        self.on_task(store, reassigned).await
    }
}

/// A world projected live into the active `tasks` generation.
async fn tasks_caught_up(pool: &PgPool) -> (Arc<dyn EventStore>, World, Arc<dyn Projection>, i32) {
    let store = tasklog_testkit::store(pool);
    let w = world(&store).await;
    let tasks = tasklog_projectors::by_name("tasks").unwrap();
    let g = generation::ensure_active(pool, tasks.as_ref())
        .await
        .unwrap();
    catch_up(&projector(pool, &store, tasks.clone()), g, w.last).await;
    (store, w, tasks, g)
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

fn projector(pool: &PgPool, store: &Arc<dyn EventStore>, p: Arc<dyn Projection>) -> Projector {
    Projector::new(pool.clone(), store.clone(), p, fast())
}

async fn raw(store: &Arc<dyn EventStore>, payloads: Vec<Value>) -> LogPosition {
    let stream = format!("raw-{}", Uuid::now_v7());
    let events = payloads
        .into_iter()
        .map(|payload| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Raw".into(),
            schema_version: 1,
            payload,
            personal: &[],
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
async fn wait_readable(store: &Arc<dyn EventStore>, target: LogPosition) {
    for _ in 0..500 {
        if store.high_water_mark().await.unwrap().safe >= Some(target) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{target} never became readable");
}
