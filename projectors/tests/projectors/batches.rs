//! Set-based batches: the same rows as one event at a time.

use std::sync::Arc;

use sqlx::PgPool;
use tasklog_domain::{
    CommentAdded, CommentDeleted, CommentEdited, InboxEvent, MemberAdded, MemberRemoved,
    MemberRoleChanged, NotificationRead, OrgEvent, OrganizationCreated, Priority, ProjectArchived,
    ProjectCreated, ProjectEvent, ProjectRenamed, ProjectUnarchived, Role, StatusCategory,
    TagCreated, TagDeleted, TagEvent, TagRenamed, TaskArchived, TaskAssigned, TaskCreated,
    TaskDetailsEdited, TaskEvent, TaskNumberReserved, TaskStatusChanged, TaskTagAdded,
    TaskTagRemoved, TaskUnassigned, Workflow,
};
use tasklog_event_store::{EventStore, LogPosition};
use tasklog_projectors::projections::notification_id;
use tasklog_projectors::{generation, Projection, Projector, ProjectorConfig};
use uuid::Uuid;

use crate::{emit, fast, wait_readable};

/// A log with every kind of event the projections read, the events of each
/// aggregate spread over several appends and interleaved with the others'.
async fn busy_world(store: &Arc<dyn EventStore>) -> LogPosition {
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
    let store = tasklog_testkit::store(&pool);
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
            let projector = Projector::new(pool.clone(), store.clone(), p.clone(), config);
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
