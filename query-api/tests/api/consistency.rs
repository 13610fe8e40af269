use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tasklog_domain::{CommentAdded, TaskEvent};
use tasklog_event_store::LogPosition;
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, spawn_app_polling, spawn_app_waiting, TestApp};

/// Longer than any test runs: a wait must not end by the fallback read or
/// the wait bound.
const NEVER: Duration = Duration::from_secs(3600);
/// How long a test waits for an answer that must come without the fallback;
/// a bound on a hang, not a measure of speed (the answer takes milliseconds).
const HANG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_token_beyond_the_checkpoints_is_not_yet_consistent_after_the_wait_bound() {
    let app = spawn_app_waiting(Duration::from_millis(100)).await;
    let w = &app.world;
    let token = LogPosition {
        event: w.checkpoint.event + 1,
        ..w.checkpoint
    }
    .to_string();

    let started = Instant::now();
    let r = app
        .get_as(
            &format!("/v1/orgs/{}/projects", w.org),
            &w.alice,
            &[("x-consistency-token", &token)],
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(r.headers()["retry-after"], "1");
    let body = assert_problem(r, 503, "not_yet_consistent").await;
    assert_eq!(
        body,
        serde_json::json!({
            "type": "https://tasklog.dev/problems/not_yet_consistent",
            "title": "Not yet consistent",
            "status": 503,
            "detail": format!(
                "the read models have not caught up with consistency token {token} yet \
                 (behind: directory, tasks); retry shortly"
            ),
            "code": "not_yet_consistent"
        })
    );

    app.teardown().await;
}

#[tokio::test]
async fn a_token_at_or_below_the_checkpoints_is_answered_at_once() {
    let app = spawn_app_waiting(Duration::from_millis(100)).await;
    let w = &app.world;
    let path = format!("/v1/orgs/{}/projects/{}/tasks", w.org, w.project);
    let at = w.checkpoint;

    for token in [
        at,
        LogPosition {
            event: at.event - 1,
            ..at
        },
        LogPosition {
            commit: at.commit - 1,
            event: 999,
        },
        LogPosition::START,
    ] {
        let token = token.to_string();
        let r = app
            .get_as(&path, &w.alice, &[("x-consistency-token", &token)])
            .await;
        assert_eq!(r.status(), 200, "token {token}");
    }

    app.teardown().await;
}

#[tokio::test]
async fn a_token_applied_during_the_wait_is_answered_once_it_is() {
    // Neither the wait bound nor the fallback read can end the wait: only
    // the announcement of the checkpoint move can.
    let app = spawn_app_polling(NEVER, NEVER).await;
    let w = &app.world;
    let token = comment_on_plan_sprint(&app).await;
    let moved = Arc::new(AtomicBool::new(false));
    let mover = {
        let moved = moved.clone();
        let projections = w.projections.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // The projectors apply it; each batch's checkpoint move is
            // announced at its commit.
            moved.store(true, Ordering::SeqCst);
            projections.catch_up(token).await;
        })
    };

    let path = format!("/v1/orgs/{}/tasks/{}", w.org, w.task("Plan sprint").id);
    let token = token.to_string();
    let headers = [("x-consistency-token", token.as_str())];
    let read = app.get_as(&path, &w.alice, &headers);
    let r = tokio::time::timeout(HANG, read)
        .await
        .expect("the announcement wakes the waiting read");
    assert_eq!(r.status(), 200);
    assert!(
        moved.load(Ordering::SeqCst),
        "answered only once the token was applied"
    );
    mover.await.unwrap();

    app.teardown().await;
}

#[tokio::test]
async fn a_non_member_with_a_token_is_refused_before_any_wait() {
    // A wait here would last an hour: a 403 can only come before it.
    let app = spawn_app_polling(NEVER, NEVER).await;
    let w = &app.world;
    let far = [("x-consistency-token", "999999999.0")];
    let missing = uuid::Uuid::now_v7();

    let mut bodies = Vec::new();
    for org in [w.org, missing] {
        for path in [
            format!("/v1/orgs/{org}/projects"),
            format!("/v1/orgs/{org}/tasks/{}", w.task("Plan sprint").id),
            format!("/v1/orgs/{org}/me/notifications"),
        ] {
            let r = tokio::time::timeout(HANG, app.get_as(&path, &w.eve, &far))
                .await
                .unwrap_or_else(|_| panic!("GET {path} waited instead of refusing"));
            assert_eq!(r.status(), 403, "GET {path}: 403, not 503 after a wait");
            bodies.push(assert_problem(r, 403, "forbidden").await);
        }
    }
    assert!(bodies.windows(2).all(|b| b[0] == b[1]), "{bodies:?}");
    // A member of another organization is a non-member here too.
    let r = tokio::time::timeout(
        HANG,
        app.get_as(&format!("/v1/orgs/{}/members", w.org), &w.carol, &far),
    )
    .await
    .expect("refused before any wait");
    assert_problem(r, 403, "forbidden").await;

    app.teardown().await;
}

#[tokio::test]
async fn only_the_projections_an_endpoint_reads_are_waited_for() {
    let app = spawn_app_waiting(Duration::from_millis(100)).await;
    let w = &app.world;
    // Directory and tasks apply the comment; notifications and activity not yet.
    let applied = comment_on_plan_sprint(&app).await;
    w.projections
        .catch_up_only(&["directory", "tasks"], applied)
        .await;
    let token = applied.to_string();
    let token = [("x-consistency-token", token.as_str())];

    let members = app
        .get_as(&format!("/v1/orgs/{}/members", w.org), &w.alice, &token)
        .await;
    assert_eq!(members.status(), 200);
    let notifications = app
        .get_as(
            &format!("/v1/orgs/{}/me/notifications", w.org),
            &w.alice,
            &token,
        )
        .await;
    assert_problem(notifications, 503, "not_yet_consistent").await;

    // Membership lives in `directory`: every endpoint waits for it. Tasks
    // (where tag usage lives) applies the next comment, directory not yet.
    let later = comment_on_plan_sprint(&app).await;
    w.projections.catch_up_only(&["tasks"], later).await;
    let token = later.to_string();
    let tags = app
        .get_as(
            &format!("/v1/orgs/{}/tags", w.org),
            &w.alice,
            &[("x-consistency-token", &token)],
        )
        .await;
    assert_problem(tags, 503, "not_yet_consistent").await;

    app.teardown().await;
}

/// Alice comments on "Plan sprint"; the position of the comment, not yet
/// projected.
async fn comment_on_plan_sprint(app: &TestApp) -> LogPosition {
    let w = &app.world;
    let comment = TaskEvent::from(CommentAdded {
        comment_id: Uuid::now_v7(),
        author: w.alice.id,
        body: "Later".into(),
        mentions: vec![],
    });
    let task = format!("task-{}", w.task("Plan sprint").id);
    w.write(&task, &w.alice, [comment]).await.position
}

#[tokio::test]
async fn a_projection_missing_from_the_bookkeeping_has_not_applied_anything() {
    let app = spawn_app_waiting(Duration::from_millis(50)).await;
    let w = &app.world;
    sqlx::query("DELETE FROM projections WHERE name = 'activity'")
        .execute(&app.db)
        .await
        .unwrap();
    let path = format!(
        "/v1/orgs/{}/tasks/{}/activity",
        w.org,
        w.task("Plan sprint").id
    );

    let r = app
        .get_as(&path, &w.alice, &[("x-consistency-token", "1.0")])
        .await;
    let body = assert_problem(r, 503, "not_yet_consistent").await;
    assert!(body["detail"].as_str().unwrap().contains("activity"));

    app.teardown().await;
}

#[tokio::test]
async fn a_malformed_consistency_token_is_a_bad_request() {
    let app = spawn_app().await;
    let w = &app.world;

    for token in ["abc", "12", "1.x", "-1.2"] {
        let r = app
            .get_as(
                &format!("/v1/orgs/{}/members", w.org),
                &w.alice,
                &[("x-consistency-token", token)],
            )
            .await;
        assert_problem(r, 400, "bad_request").await;
    }

    app.teardown().await;
}
