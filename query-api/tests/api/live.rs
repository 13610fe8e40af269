//! The query API over read models kept by the real projectors, from events
//! appended to the real event store: what only the whole read path shows
//! (a deletion reaching every read model, checkpoint announcements waking
//! waiting readers, membership granted but not yet projected).

use std::time::Duration;

use serde_json::Value;
use tasklog_domain::{
    CommentAdded, CommentDeleted, CommentEdited, DomainEvent, MemberAdded, OrgEvent,
    OrganizationCreated, Priority, Role, StatusCategory, TaskCreated, TaskEvent,
};
use tasklog_event_store::LogPosition;
use tasklog_testkit::{By, EventLog, Projections, TestDatabase};
use uuid::Uuid;

use crate::helpers::{TestApp, User};

/// Longer than any test runs: a wait must not end by the fallback read.
const NEVER: Duration = Duration::from_secs(3600);
/// How long a test waits for an answer that must come without the fallback;
/// a bound on a hang, not a measure of speed (the answer takes milliseconds).
const HANG: Duration = Duration::from_secs(30);

pub struct Live {
    log: EventLog,
    projections: Projections,
    org: Uuid,
    alice: User,
    bob: User,
    task: Uuid,
}

/// An organization (alice owner, bob member) with one task, projected.
async fn spawn_live(wait: Duration, poll: Duration) -> TestApp<Live> {
    let (database, db) = TestDatabase::migrated("queryapi_test").await;
    let log = EventLog::new(&db);
    let projections = Projections::start(&db, &log).await;
    let (org, task) = (Uuid::now_v7(), Uuid::now_v7());
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let live = Live {
        log,
        projections,
        org,
        alice,
        bob,
        task,
    };
    live.org_events(vec![
        OrgEvent::from(OrganizationCreated {
            org_id: org,
            name: "Acme".into(),
            owner_id: live.alice.id,
            owner_handle: "alice".into(),
        }),
        OrgEvent::from(MemberAdded {
            user_id: live.bob.id,
            handle: "bob".into(),
            role: Role::Member,
        }),
    ])
    .await;
    let created = live
        .task_events(vec![TaskEvent::from(TaskCreated {
            task_id: task,
            org_id: org,
            project_id: Uuid::now_v7(),
            number: 1,
            key: "WEB-1".into(),
            title: "Ship".into(),
            description: "it".into(),
            priority: Priority::High,
            due_date: None,
            status: "todo".into(),
            status_category: StatusCategory::Unstarted,
            created_by: live.alice.id,
        })])
        .await;
    live.project(created).await;
    TestApp::over(database, db, live, wait, poll).await
}

impl Live {
    async fn append<E: DomainEvent>(&self, stream: &str, events: Vec<E>) -> LogPosition {
        let by = By::now(self.org, self.alice.id);
        self.log.append(stream, by, events).await.position
    }

    async fn org_events(&self, events: Vec<OrgEvent>) -> LogPosition {
        self.append(&format!("org-{}", self.org), events).await
    }

    async fn task_events(&self, events: Vec<TaskEvent>) -> LogPosition {
        self.append(&format!("task-{}", self.task), events).await
    }

    /// Steps every projector, as its runner would, until it has applied `target`.
    async fn project(&self, target: LogPosition) {
        self.projections.catch_up(target).await
    }

    /// Rebuilds every projection from the log, as `tasklog projections rebuild` does.
    async fn rebuild(&self) {
        self.projections.rebuild().await
    }
}

/// Every answer about the task a member can get, as one text.
async fn everything_about_the_task(app: &TestApp<Live>) -> String {
    let w = &app.world;
    let mut all = String::new();
    for path in [
        format!("/v1/orgs/{}/tasks/{}", w.org, w.task),
        format!("/v1/orgs/{}/tasks/{}/activity", w.org, w.task),
        format!("/v1/orgs/{}/me/notifications", w.org),
    ] {
        for user in [&w.alice, &w.bob] {
            let body: Value = app.json(&path, user).await;
            all.push_str(&body.to_string());
        }
    }
    all
}

/// Every row of every read model, as one text.
async fn every_read_model(db: &sqlx::PgPool) -> String {
    let mut all = String::new();
    for table in ["tasks", "comments", "activity", "notifications"] {
        let rows: Vec<Value> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(r) - 'search' FROM read.{table} r"
        ))
        .fetch_all(db)
        .await
        .unwrap();
        for row in rows {
            all.push_str(&row.to_string());
        }
    }
    all
}

#[tokio::test]
async fn a_deleted_comments_text_is_in_no_answer_and_no_read_model_also_after_a_rebuild() {
    let app = spawn_live(Duration::from_secs(10), Duration::from_millis(100)).await;
    let w = &app.world;
    let (kept, deleted) = (Uuid::now_v7(), Uuid::now_v7());
    let added = w
        .task_events(vec![
            TaskEvent::from(CommentAdded {
                comment_id: kept,
                author: w.alice.id,
                body: "kept words".into(),
                mentions: vec![],
            }),
            TaskEvent::from(CommentAdded {
                comment_id: deleted,
                author: w.alice.id,
                body: "SECRET-FIRST @bob".into(),
                mentions: vec![w.bob.id],
            }),
            TaskEvent::from(CommentEdited {
                comment_id: deleted,
                body: "SECRET-SECOND @bob".into(),
                mentions: vec![w.bob.id],
            }),
        ])
        .await;
    w.project(added).await;
    let before = everything_about_the_task(&app).await;
    assert!(
        before.contains("SECRET-SECOND") && before.contains("SECRET-FIRST"),
        "the text shows while the comment lives: {before}"
    );

    // Deleted in a batch of its own, as it usually is.
    let gone = w
        .task_events(vec![TaskEvent::from(CommentDeleted {
            comment_id: deleted,
        })])
        .await;
    w.project(gone).await;
    let after = everything_about_the_task(&app).await;
    assert!(!after.contains("SECRET"), "{after}");
    assert!(after.contains("kept words"), "other comments stay: {after}");
    let rows = every_read_model(&app.db).await;
    assert!(!rows.contains("SECRET"), "{rows}");
    let activity = app
        .json(
            &format!("/v1/orgs/{}/tasks/{}/activity", w.org, w.task),
            &w.alice,
        )
        .await;
    let redacted: Vec<&Value> = activity["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["data"]["comment_id"] == deleted.to_string())
        .collect();
    assert_eq!(redacted.len(), 3, "added, edited, deleted: {activity}");
    for item in &redacted[..2] {
        assert_eq!(item["data"]["redacted"], true, "{item}");
    }
    assert_eq!(redacted[0]["data"]["author"], w.alice.id.to_string());
    assert_eq!(redacted[2]["event_type"], "CommentDeleted");

    // A rebuild folds added, edited and deleted into one batch.
    w.rebuild().await;
    let rebuilt = everything_about_the_task(&app).await;
    assert!(!rebuilt.contains("SECRET"), "{rebuilt}");
    assert!(rebuilt.contains("kept words"), "{rebuilt}");
    let rows = every_read_model(&app.db).await;
    assert!(!rows.contains("SECRET"), "{rows}");
    // The event log keeps it for auditors.
    let logged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%SECRET%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(logged, 2);

    app.teardown().await;
}

/// Sends a read of the task with `token` and answers it once it comes.
fn read_with(app: &TestApp<Live>, token: LogPosition) -> tokio::task::JoinHandle<u16> {
    let url = format!(
        "{}/v1/orgs/{}/tasks/{}",
        app.address, app.world.org, app.world.task
    );
    let request = app
        .client
        .get(url)
        .bearer_auth(&app.world.alice.token)
        .header("x-consistency-token", token.to_string());
    tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
}

#[tokio::test]
async fn a_waiting_read_is_woken_by_the_checkpoint_announcement_also_after_earlier_waits_ended() {
    // Neither the fallback read nor the wait bound can end a wait here.
    let app = spawn_live(NEVER, NEVER).await;
    let w = &app.world;

    // The second round is the one that matters: by then no request has been
    // waiting for a while, which once stopped the listener for good.
    for round in 0..2 {
        let token = w
            .task_events(vec![TaskEvent::from(CommentAdded {
                comment_id: Uuid::now_v7(),
                author: w.alice.id,
                body: format!("round {round}"),
                mentions: vec![],
            })])
            .await;
        let read = read_with(&app, token);
        // Let the read start waiting first (if it has not, it is answered
        // at once, which proves nothing but is not wrong either).
        tokio::time::sleep(Duration::from_millis(300)).await;
        w.project(token).await;
        let status = tokio::time::timeout(HANG, read)
            .await
            .unwrap_or_else(|_| {
                panic!("round {round}: the announcement did not wake the waiting read")
            })
            .unwrap();
        assert_eq!(status, 200, "round {round}");
        // No request waits now.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    app.teardown().await;
}

#[tokio::test]
async fn a_member_just_added_reads_with_the_token_of_their_addition_before_the_directory_shows_them(
) {
    let app = spawn_live(Duration::from_secs(60), NEVER).await;
    let w = &app.world;
    let carol = User::new("carol");
    let path = format!("{}/v1/orgs/{}/members", app.address, w.org);

    let token = w
        .org_events(vec![OrgEvent::from(MemberAdded {
            user_id: carol.id,
            handle: "carol".into(),
            role: Role::Viewer,
        })])
        .await;
    // Without the token, the read model decides: not (yet) a member.
    let r = app
        .client
        .get(&path)
        .bearer_auth(&carol.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let read = {
        let request = app
            .client
            .get(&path)
            .bearer_auth(&carol.token)
            .header("x-consistency-token", token.to_string());
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.project(token).await;
    let r = tokio::time::timeout(HANG, read)
        .await
        .expect("the announcement wakes the read")
        .unwrap();
    assert_eq!(r.status(), 200);
    let members: Value = r.json().await.unwrap();
    assert_eq!(members["items"].as_array().unwrap().len(), 3, "{members}");

    app.teardown().await;
}
