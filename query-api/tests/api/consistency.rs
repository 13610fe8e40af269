use std::time::{Duration, Instant};

use crate::helpers::{assert_problem, spawn_app, spawn_app_waiting, CHECKPOINT};

#[tokio::test]
async fn a_token_beyond_the_checkpoints_is_not_yet_consistent_after_the_wait_bound() {
    let app = spawn_app_waiting(Duration::from_millis(100)).await;
    let w = &app.world;
    let token = format!("{}.{}", CHECKPOINT.0, CHECKPOINT.1 + 1);

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
            "detail": "the read models have not caught up with consistency token 100.51 yet \
                       (behind: directory, tasks); retry shortly",
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

    for token in ["100.50", "100.49", "99.999", "0.0"] {
        let r = app
            .get_as(&path, &w.alice, &[("x-consistency-token", token)])
            .await;
        assert_eq!(r.status(), 200, "token {token}");
    }

    app.teardown().await;
}

#[tokio::test]
async fn a_token_applied_during_the_wait_is_answered_once_it_is() {
    let app = spawn_app_waiting(Duration::from_secs(2)).await;
    let w = &app.world;
    let db = app.db.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sqlx::query("UPDATE projection_checkpoints SET commit_id = 101, event_position = 0")
            .execute(&db)
            .await
            .unwrap();
    });

    let started = Instant::now();
    let r = app
        .get_as(
            &format!("/v1/orgs/{}/tasks/{}", w.org, w.task("Plan sprint").id),
            &w.alice,
            &[("x-consistency-token", "101.0")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(50));

    app.teardown().await;
}

#[tokio::test]
async fn only_the_projections_an_endpoint_reads_are_waited_for() {
    let app = spawn_app_waiting(Duration::from_millis(100)).await;
    let w = &app.world;
    app.set_checkpoint("notifications", 90, 0).await;
    app.set_checkpoint("activity", 90, 0).await;
    let token = [("x-consistency-token", "100.0")];

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

    // Membership lives in `directory`: every endpoint waits for it.
    app.set_checkpoint("directory", 90, 0).await;
    let tags = app
        .get_as(&format!("/v1/orgs/{}/tags", w.org), &w.alice, &token)
        .await;
    assert_problem(tags, 503, "not_yet_consistent").await;

    app.teardown().await;
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
