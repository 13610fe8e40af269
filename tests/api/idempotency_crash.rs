//! `Idempotency-Key` across a failure between a create's two appends (the
//! task number reserved on the project, or the project key registered on the
//! organization, then the creation itself): the retry finishes the command,
//! and the first append is neither lost nor made twice.
//!
//! The failure is the database refusing the second append (a trigger that
//! only this test's organization meets), so the first run ends after its
//! first append, exactly where a crash between the two would leave it. The
//! test reads only HTTP answers and the event store, so it holds whether a
//! create appends twice or once to both streams.

use reqwest::{Method, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{InsertRefusal, TestApp, User};

/// Appends of `event_type` events of `org` fail, as in an outage, until
/// `end`.
async fn outage(app: &TestApp, org: Uuid, event_type: &str) -> InsertRefusal {
    InsertRefusal::begin(app, org, event_type, "57P01", "simulated outage").await
}

async fn send(app: &TestApp, path: &str, user: &User, body: &Value, key: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    app.request(Method::POST, path, user, Some(body.clone()), &headers)
        .await
}

/// The payloads of `stream`'s events of `event_type`.
async fn payloads(app: &TestApp, stream: &str, event_type: &str) -> Vec<Value> {
    app.stream(stream)
        .await
        .into_iter()
        .filter(|(t, _)| t == event_type)
        .map(|(_, p)| p)
        .collect()
}

#[tokio::test]
async fn a_task_create_that_died_after_reserving_its_number_is_finished_by_its_retry() {
    let app = crate::helpers::spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let path = format!("/v1/orgs/{org}/projects/{project}/tasks");
    let before = app.task(org, project, &owner, "Before").await;

    let body = json!({"title": "Interrupted"});
    let outage = outage(&app, org, "TaskCreated").await;
    let first = send(&app, &path, &owner, &body, Some("between")).await;
    assert!(
        first.status().is_server_error(),
        "the first run failed: {}",
        first.status()
    );
    outage.end(&app).await;

    let retry = send(&app, &path, &owner, &body, Some("between")).await;
    assert_eq!(retry.status(), 201, "the retry finishes the command");
    let retry: Value = retry.json().await.unwrap();
    let task: Uuid = retry["id"].as_str().unwrap().parse().unwrap();
    let after = app.task(org, project, &owner, "After").await;

    // One reservation per task, numbers 1, 2, 3: none lost, none doubled.
    let reserved = payloads(&app, &format!("project-{project}"), "TaskNumberReserved").await;
    let reservations: Vec<(String, u64)> = reserved
        .iter()
        .map(|r| {
            (
                r["task_id"].as_str().unwrap().to_owned(),
                r["number"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reservations,
        [
            (before.to_string(), 1),
            (task.to_string(), 2),
            (after.to_string(), 3)
        ]
    );
    for (id, number) in [(before, 1), (task, 2), (after, 3)] {
        let created = payloads(&app, &format!("task-{id}"), "TaskCreated").await;
        assert_eq!(created.len(), 1, "task {number} is created once");
        assert_eq!(created[0]["number"], number);
        assert_eq!(created[0]["key"], format!("WEB-{number}"));
    }

    // Once more: the stored answer, nothing appended.
    let count = app.event_count(org).await;
    let again = send(&app, &path, &owner, &body, Some("between")).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], retry["id"]);
    assert_eq!(app.event_count(org).await, count);
}

#[tokio::test]
async fn a_project_create_that_died_after_registering_its_key_is_finished_by_its_retry() {
    let app = crate::helpers::spawn_app().await;
    let (org, owner) = app.org().await;
    let path = format!("/v1/orgs/{org}/projects");
    let body = json!({"name": "Website", "key": "WEB"});

    let outage = outage(&app, org, "ProjectCreated").await;
    let first = send(&app, &path, &owner, &body, Some("between")).await;
    assert!(
        first.status().is_server_error(),
        "the first run failed: {}",
        first.status()
    );
    outage.end(&app).await;

    let retry = send(&app, &path, &owner, &body, Some("between")).await;
    assert_eq!(retry.status(), 201, "the retry finishes the command");
    let project: Value = retry.json().await.unwrap();
    let project = project["id"].as_str().unwrap().to_owned();

    // The key is registered once, to the project the retry created.
    let registered = payloads(&app, &format!("org-{org}"), "ProjectKeyRegistered").await;
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0]["key"], "WEB");
    assert_eq!(registered[0]["project_id"], project.as_str());
    let created = payloads(&app, &format!("project-{project}"), "ProjectCreated").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["key"], "WEB");

    // The key stays taken for any other project; other keys are free.
    let count = app.event_count(org).await;
    let other = send(&app, &path, &owner, &body, None).await;
    assert_eq!(other.status(), 409);
    assert_eq!(
        app.event_count(org).await,
        count,
        "a refused create appends nothing"
    );
    let next = send(
        &app,
        &path,
        &owner,
        &json!({"name": "App", "key": "APP"}),
        None,
    )
    .await;
    assert_eq!(next.status(), 201);
}
