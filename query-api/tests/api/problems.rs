//! Whole problem bodies, as a client reads them: one snapshot per kind of
//! answer (ids and consistency tokens redacted), so a change of any field
//! shows in review.

use std::time::Duration;

use tasklog_event_store::LogPosition;
use tasklog_testkit::assert_problem_snapshot;
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_waiting};

#[tokio::test]
async fn a_malformed_parameter_is_a_422_naming_it() {
    let app = spawn_app().await;
    let w = &app.world;

    let path = format!("/v1/orgs/{}/projects/{}/tasks?limit=0", w.org, w.project);
    assert_problem_snapshot!(app.get(&path, &w.alice).await, @r#"
    {
      "code": "validation_failed",
      "detail": "query parameter `limit`: must be a whole number from 1 to 200",
      "errors": [
        {
          "field": "limit",
          "message": "must be a whole number from 1 to 200"
        }
      ],
      "status": 422,
      "title": "Validation failed",
      "type": "https://tasklog.dev/problems/validation_failed"
    }
    "#);

    app.teardown().await;
}

#[tokio::test]
async fn a_malformed_consistency_token_is_a_400() {
    let app = spawn_app().await;
    let w = &app.world;

    let r = app
        .get_as(
            &format!("/v1/orgs/{}/members", w.org),
            &w.alice,
            &[("x-consistency-token", "1.x")],
        )
        .await;
    assert_problem_snapshot!(r, @r#"
    {
      "code": "bad_request",
      "detail": "X-Consistency-Token must be the token a command returned, \"<commit>.<event>\"",
      "status": 400,
      "title": "Bad request",
      "type": "https://tasklog.dev/problems/bad_request"
    }
    "#);

    app.teardown().await;
}

#[tokio::test]
async fn a_missing_task_is_a_404_and_an_unknown_route_too() {
    let app = spawn_app().await;
    let w = &app.world;

    let path = format!("/v1/orgs/{}/tasks/{}", w.org, Uuid::now_v7());
    assert_problem_snapshot!(app.get(&path, &w.alice).await, @r#"
    {
      "code": "not_found",
      "detail": "task not found",
      "status": 404,
      "title": "Not found",
      "type": "https://tasklog.dev/problems/not_found"
    }
    "#);
    assert_problem_snapshot!(app.get("/v1/nothing/here", &w.alice).await, @r#"
    {
      "code": "not_found",
      "detail": "route not found",
      "status": 404,
      "title": "Not found",
      "type": "https://tasklog.dev/problems/not_found"
    }
    "#);

    app.teardown().await;
}

#[tokio::test]
async fn a_request_without_a_token_is_a_401_and_a_non_member_gets_a_403() {
    let app = spawn_app().await;
    let w = &app.world;
    let path = format!("/v1/orgs/{}/projects", w.org);

    let r = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    assert_problem_snapshot!(r, @r#"
    {
      "code": "unauthenticated",
      "detail": "an Authorization: Bearer token is required",
      "status": 401,
      "title": "Unauthenticated",
      "type": "https://tasklog.dev/problems/unauthenticated"
    }
    "#);
    assert_problem_snapshot!(app.get(&path, &w.eve).await, @r#"
    {
      "code": "forbidden",
      "detail": "you are not a member of this organization",
      "status": 403,
      "title": "Forbidden",
      "type": "https://tasklog.dev/problems/forbidden"
    }
    "#);

    app.teardown().await;
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_a_405() {
    let app = spawn_app().await;
    let w = &app.world;

    let r = app
        .client
        .delete(format!("{}/v1/orgs/{}/members", app.address, w.org))
        .bearer_auth(&w.alice.token)
        .send()
        .await
        .unwrap();
    assert_problem_snapshot!(r, @r#"
    {
      "code": "method_not_allowed",
      "detail": "this method is not allowed on this route",
      "status": 405,
      "title": "Method not allowed",
      "type": "https://tasklog.dev/problems/method_not_allowed"
    }
    "#);

    app.teardown().await;
}

#[tokio::test]
async fn a_token_not_applied_in_time_is_a_503_not_yet_consistent() {
    let app = spawn_app_waiting(Duration::from_millis(50)).await;
    let w = &app.world;
    let token = LogPosition {
        event: w.checkpoint.event + 1,
        ..w.checkpoint
    }
    .to_string();

    let r = app
        .get_as(
            &format!("/v1/orgs/{}/tags", w.org),
            &w.alice,
            &[("x-consistency-token", &token)],
        )
        .await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_problem_snapshot!(r, [(token, "[token]")], @r#"
    {
      "code": "not_yet_consistent",
      "detail": "the read models have not caught up with consistency token [token] yet (behind: directory, tasks); retry shortly",
      "status": 503,
      "title": "Not yet consistent",
      "type": "https://tasklog.dev/problems/not_yet_consistent"
    }
    "#);

    app.teardown().await;
}
