//! The analytics projection against real PostgreSQL and real ClickHouse.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use tasklog_analytics::Analytics;
use tasklog_domain::*;
use tasklog_event_store::LogPosition;
use tasklog_projectors::{generation, Projection, Projector, ProjectorConfig};
use tasklog_testkit::{By, EventLog, TestClickHouse, TestDatabase};
use uuid::Uuid;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

struct Small {
    org: Uuid,
    project: Uuid,
    task: Uuid,
    bob: Uuid,
    last: LogPosition,
}

/// An organization with a member, a project, and a task assigned, started,
/// completed and commented on with a mention, over three days.
async fn small_history(log: &EventLog) -> Small {
    let (org, owner, bob, project, task) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let by = |t| By {
        org,
        actor: owner,
        at: t,
    };
    log.append(
        &format!("org-{org}"),
        by(at(1, 9)),
        [
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
    log.append(
        &format!("project-{project}"),
        by(at(1, 10)),
        [ProjectEvent::from(ProjectCreated {
            project_id: project,
            org_id: org,
            name: "Web".into(),
            key: "WEB".into(),
            workflow: Workflow::default_workflow(),
        })],
    )
    .await;
    let task_stream = format!("task-{task}");
    log.append(
        &task_stream,
        by(at(1, 11)),
        [
            TaskEvent::from(TaskCreated {
                task_id: task,
                org_id: org,
                project_id: project,
                number: 1,
                key: "WEB-1".into(),
                title: "Ship".into(),
                description: String::new(),
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
        ],
    )
    .await;
    let change = |from: &str, fc, to: &str, tc| {
        TaskEvent::from(TaskStatusChanged {
            from: from.into(),
            to: to.into(),
            from_category: fc,
            to_category: tc,
        })
    };
    use StatusCategory::*;
    log.append(
        &task_stream,
        by(at(2, 9)),
        [change("backlog", Backlog, "todo", Unstarted)],
    )
    .await;
    log.append(
        &task_stream,
        by(at(2, 10)),
        [change("todo", Unstarted, "in_progress", Started)],
    )
    .await;
    log.append(
        &task_stream,
        by(at(3, 10)),
        [TaskEvent::from(CommentAdded {
            comment_id: Uuid::now_v7(),
            author: owner,
            body: "@bob done?".into(),
            mentions: vec![bob],
        })],
    )
    .await;
    let last = log
        .append(
            &task_stream,
            by(at(3, 12)),
            [change("in_progress", Started, "done", Completed)],
        )
        .await
        .position;
    Small {
        org,
        project,
        task,
        bob,
        last,
    }
}

async fn catch_up(projector: &Projector, generation: i32, target: LogPosition) {
    for _ in 0..500 {
        let outcome = projector
            .project_next_batch(generation, true)
            .await
            .unwrap();
        assert_eq!(outcome.parked, 0, "nothing is parked");
        if outcome.position >= target {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("did not catch up");
}

#[tokio::test]
async fn every_event_reaches_clickhouse_flattened_with_its_task_facts() {
    let (db, pool) = TestDatabase::migrated("analytics").await;
    let ch = TestClickHouse::migrated().await;
    let log = EventLog::new(&pool);
    let w = small_history(&log).await;
    let analytics: Arc<dyn Projection> = Arc::new(Analytics::new(&ch.config).unwrap());
    let g = generation::ensure_active(&pool, analytics.as_ref())
        .await
        .unwrap();
    let projector = Projector::new(
        pool.clone(),
        log.store(),
        analytics,
        ProjectorConfig::default(),
    );
    catch_up(&projector, g, w.last).await;

    assert_eq!(
        ch.tsv(
            "SELECT event_type, toString(project_id), toString(task_id) FROM events FINAL \
                WHERE event_type IN ('MemberAdded', 'TaskAssigned') ORDER BY commit_id, event_seq"
        )
        .await,
        format!(
            "MemberAdded\t\\N\t\\N\nTaskAssigned\t{}\t{}\n",
            w.project, w.task
        ),
        "task events carry their project; membership events none"
    );
    assert_eq!(
        ch.tsv(&format!(
            "SELECT status, category, toString(assignee_id), toString(completed_at), \
                    toString(completed_by_assignee_id), toString(first_started_at), \
                    toString(first_left_backlog_at), version \
             FROM tasks FINAL WHERE task_id = toUUID('{}')",
            w.task
        ))
        .await,
        format!(
            "done\tcompleted\t{bob}\t2026-03-03 12:00:00\t{bob}\t2026-03-02 10:00:00\t2026-03-02 09:00:00\t6\n",
            bob = w.bob
        )
    );
    assert_eq!(
        ch.tsv(&format!(
            "SELECT status_from, status_to, seconds_in_from FROM status_changes FINAL \
             WHERE task_id = toUUID('{}') ORDER BY changed_at",
            w.task
        ))
        .await,
        "\tbacklog\t0\nbacklog\ttodo\t79200\ntodo\tin_progress\t3600\nin_progress\tdone\t93600\n",
        "creation enters the first status; each change closes a stay"
    );
    assert_eq!(
        ch.tsv("SELECT kind, toString(user_id) FROM notifications FINAL ORDER BY kind")
            .await,
        format!("assigned\t{bob}\nmentioned\t{bob}\n", bob = w.bob),
        "the notifications read model's rules: assigned and mentioned"
    );
    assert_eq!(
        ch.tsv(&format!(
            "SELECT handle, role FROM members FINAL WHERE org_id = toUUID('{}') ORDER BY handle",
            w.org
        ))
        .await,
        "ann\towner\nbob\tmember\n"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_batch_sent_again_after_a_crash_is_never_counted_twice() {
    let (db, pool) = TestDatabase::migrated("analytics").await;
    let ch = TestClickHouse::migrated().await;
    let log = EventLog::new(&pool);
    let w = small_history(&log).await;
    let analytics = Arc::new(Analytics::new(&ch.config).unwrap());
    let g = generation::ensure_active(&pool, analytics.as_ref())
        .await
        .unwrap();

    // Background merges would collapse the copies before they are counted.
    ch.tsv(&format!("SYSTEM STOP MERGES {}.events", ch.config.database))
        .await;
    // A batch that reached ClickHouse, whose checkpoint never committed (the
    // process died between the two) ...
    let events = log
        .store()
        .read_all(LogPosition::START, 1000)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!(
        "SET LOCAL search_path TO {}",
        generation::schema("analytics", g)
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    analytics.apply(&mut tx, &events).await.unwrap();
    tx.rollback().await.unwrap();
    // ... is sent again by the next step.
    let projector = Projector::new(
        pool.clone(),
        log.store(),
        analytics,
        ProjectorConfig::default(),
    );
    catch_up(&projector, g, w.last).await;

    let raw = ch.tsv("SELECT count() FROM events").await;
    assert_eq!(
        raw.trim(),
        (2 * events.len()).to_string(),
        "both copies are stored"
    );
    let counted = ch.tsv("SELECT count() FROM events FINAL").await;
    assert_eq!(
        counted.trim(),
        events.len().to_string(),
        "each is counted once"
    );
    // And once merged, once stored.
    ch.tsv(&format!(
        "SYSTEM START MERGES {}.events",
        ch.config.database
    ))
    .await;
    for table in [
        "events",
        "status_changes",
        "tasks",
        "notifications",
        "members",
        "projects",
    ] {
        ch.tsv(&format!("OPTIMIZE TABLE {table} FINAL")).await;
    }
    assert_eq!(
        ch.tsv("SELECT count() FROM events").await.trim(),
        events.len().to_string()
    );
    assert_eq!(
        ch.tsv("SELECT count() FROM status_changes").await.trim(),
        "4"
    );
    assert_eq!(
        ch.tsv("SELECT count() FROM notifications").await.trim(),
        "2"
    );
    db.drop_database().await;
}

/// Each fact the projection keeps in a generation, as stored.
async fn facts_of(
    pool: &sqlx::PgPool,
    generation: i32,
) -> Vec<(String, Uuid, Uuid, serde_json::Value)> {
    sqlx::query_as(&format!(
        "SELECT kind, org_id, id, facts FROM {}.analytics_facts ORDER BY 1, 2, 3",
        generation::schema("analytics", generation)
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rebuild_folds_in_memory_and_leaves_the_facts_and_rows_the_live_projection_has() {
    let (db, pool) = TestDatabase::migrated("analytics").await;
    let live_ch = TestClickHouse::migrated().await;
    let rebuilt_ch = TestClickHouse::migrated().await;
    let log = EventLog::new(&pool);
    let w = small_history(&log).await;
    let by = |day| By {
        org: w.org,
        actor: w.bob,
        at: at(day, 9),
    };
    let task_stream = format!("task-{}", w.task);
    // A reopening, then an event that cannot be applied (its task was never
    // created), in a batch of their own: the batch fails and is applied again
    // one event at a time. Folding over the kept facts themselves would
    // count the reopening twice.
    let before = log
        .store()
        .read_all(LogPosition::START, 1000)
        .await
        .unwrap()
        .len();
    log.append(
        &task_stream,
        by(4),
        [TaskEvent::from(TaskStatusChanged {
            from: "done".into(),
            to: "in_progress".into(),
            from_category: StatusCategory::Completed,
            to_category: StatusCategory::Started,
        })],
    )
    .await;
    let last = log
        .append(
            &format!("task-{}", Uuid::now_v7()),
            by(4),
            [TaskEvent::from(TaskAssigned {
                assignee: w.bob,
                previous: None,
            })],
        )
        .await
        .position;

    let fast = ProjectorConfig {
        first_backoff: std::time::Duration::from_millis(1),
        ..ProjectorConfig::default()
    };
    let live: Arc<dyn Projection> = Arc::new(Analytics::new(&live_ch.config).unwrap());
    let g = generation::ensure_active(&pool, live.as_ref())
        .await
        .unwrap();
    let projector = Projector::new(pool.clone(), log.store(), live, fast.clone());
    for _ in 0..50 {
        if projector
            .project_next_batch(g, true)
            .await
            .unwrap()
            .position
            >= last
        {
            break;
        }
    }
    let live_facts = facts_of(&pool, g).await;
    assert!(
        live_facts.iter().any(|f| f.3["times_reopened"] == 1),
        "the live projection counted the reopening once: {live_facts:?}"
    );

    // Into a ClickHouse of its own, the last two events in a batch.
    let analytics: Arc<dyn Projection> = Arc::new(Analytics::new(&rebuilt_ch.config).unwrap());
    let rebuilt =
        tasklog_projectors::status::rebuild(&pool, log.store(), analytics.clone(), before, |_| {})
            .await
            .unwrap();
    assert_eq!(
        facts_of(&pool, rebuilt).await,
        live_facts,
        "the facts written once at the end are the live ones"
    );
    assert_eq!(
        rebuilt_ch.views().await,
        live_ch.views().await,
        "every view reads the same"
    );
    assert_eq!(
        rebuilt_ch.tsv("SELECT count() FROM events FINAL").await,
        live_ch.tsv("SELECT count() FROM events FINAL").await
    );

    // The live projection goes on from the rebuilt generation's facts.
    let done_again = log
        .append(
            &task_stream,
            by(5),
            [TaskEvent::from(TaskStatusChanged {
                from: "in_progress".into(),
                to: "done".into(),
                from_category: StatusCategory::Started,
                to_category: StatusCategory::Completed,
            })],
        )
        .await
        .position;
    let projector = Projector::new(pool.clone(), log.store(), analytics, fast);
    catch_up(&projector, rebuilt, done_again).await;
    assert_eq!(
        rebuilt_ch
            .tsv(&format!(
                "SELECT status_from, seconds_in_from, reopened FROM status_changes FINAL \
                 WHERE task_id = toUUID('{}') ORDER BY changed_at DESC LIMIT 1",
                w.task
            ))
            .await,
        "in_progress\t86400\t0\n",
        "the stay since the reopening, a day, from the facts the rebuild wrote"
    );
    assert_eq!(
        rebuilt_ch
            .tsv(&format!(
                "SELECT status, times_reopened, version FROM tasks FINAL WHERE task_id = toUUID('{}')",
                w.task
            ))
            .await,
        "done\t1\t8\n"
    );
    db.drop_database().await;
}
