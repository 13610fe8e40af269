//! `Idempotency-Key`: a retry gets the first response and appends nothing.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_retried_request_returns_the_first_response_and_appends_nothing() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let path = format!("/v1/orgs/{org}/projects/{project}/tasks");
    let send = || {
        app.request(
            Method::POST,
            &path,
            &owner,
            Some(json!({"title": "Once"})),
            &[("idempotency-key", "k-1")],
        )
    };
    let first = send().await;
    assert_eq!(first.status(), 201);
    let first_body: Value = first.json().await.unwrap();
    let count = app.event_count(org).await;

    let retry = send().await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first_body);
    assert_eq!(app.event_count(org).await, count);
}

#[tokio::test]
async fn reusing_a_key_for_a_different_request_is_rejected() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let path = format!("/v1/orgs/{org}/projects/{project}/tasks");
    let r = app
        .request(
            Method::POST,
            &path,
            &owner,
            Some(json!({"title": "A"})),
            &[("idempotency-key", "k")],
        )
        .await;
    assert_eq!(r.status(), 201);
    let count = app.event_count(org).await;
    let r = app
        .request(
            Method::POST,
            &path,
            &owner,
            Some(json!({"title": "B"})),
            &[("idempotency-key", "k")],
        )
        .await;
    assert_problem(r, 422, "idempotency_key_reused").await;
    assert_eq!(app.event_count(org).await, count);
}

#[tokio::test]
async fn concurrent_duplicates_append_once() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Discuss").await;
    let path = format!("/v1/orgs/{org}/tasks/{task}/comments");
    let sends = (0..8).map(|_| {
        app.request(
            Method::POST,
            &path,
            &owner,
            Some(json!({"body": "only once"})),
            &[("idempotency-key", "dup")],
        )
    });
    let statuses: Vec<u16> = futures::future::join_all(sends)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&201));
    let comments = app
        .stream(&format!("task-{task}"))
        .await
        .into_iter()
        .filter(|(t, _)| t == "CommentAdded")
        .count();
    assert_eq!(comments, 1);
}

#[tokio::test]
async fn a_retry_after_a_crash_between_append_and_response_appends_nothing_twice() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let path = format!("/v1/orgs/{org}/projects/{project}/tasks");
    let send = || {
        app.request(
            Method::POST,
            &path,
            &owner,
            Some(json!({"title": "Crashy"})),
            &[("idempotency-key", "crash")],
        )
    };
    let first: Value = send().await.json().await.unwrap();
    let count = app.event_count(org).await;
    // As if the process died after appending, before saving the response.
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = NULL, response_body = NULL, locked_until = now() \
         WHERE idempotency_key = 'crash' AND caller_id = $1",
    )
    .bind(owner.id)
    .execute(&app.db)
    .await
    .unwrap();

    let retry = send().await;
    assert_eq!(retry.status(), 201);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"], "the same task, not a second one");
    assert_eq!(retry["version"], first["version"]);
    assert_eq!(app.event_count(org).await, count, "nothing appended twice");
}
