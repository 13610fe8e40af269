//! Concurrent writers never lose an update.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_stale_if_match_gets_412_and_the_current_one_succeeds() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Edit me").await;
    let path = format!("/v1/orgs/{org}/tasks/{task}");

    let r = app
        .request(
            Method::PATCH,
            &path,
            &owner,
            Some(json!({"title": "First"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"2\"");

    let r = app
        .request(
            Method::PATCH,
            &path,
            &owner,
            Some(json!({"title": "Stale"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    let body = assert_problem(r, 412, "precondition_failed").await;
    assert_eq!(body["current_version"], 2);

    let titles: Vec<Value> = app
        .stream(&format!("task-{task}"))
        .await
        .into_iter()
        .filter(|(t, _)| t == "TaskDetailsEdited")
        .map(|(_, p)| p["title"].clone())
        .collect();
    assert_eq!(titles, [json!("First")], "the stale edit changed nothing");
}

#[tokio::test]
async fn concurrent_commands_on_one_task_without_if_match_all_apply() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Busy").await;
    let n = 16;
    let path = format!("/v1/orgs/{org}/tasks/{task}/comments");
    let requests =
        (0..n).map(|i| app.post(&path, &owner, json!({ "body": format!("comment {i}") })));
    let responses = futures::future::join_all(requests).await;
    let mut versions = Vec::new();
    for r in responses {
        assert_eq!(r.status(), 201);
        versions.push(
            r.json::<Value>().await.unwrap()["version"]
                .as_u64()
                .unwrap(),
        );
    }
    versions.sort();
    assert_eq!(
        versions,
        (2..=n + 1).collect::<Vec<u64>>(),
        "each command got its own version"
    );
    let bodies: std::collections::HashSet<String> = app
        .stream(&format!("task-{task}"))
        .await
        .into_iter()
        .filter(|(t, _)| t == "CommentAdded")
        .map(|(_, p)| p["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies.len() as u64, n, "no comment was lost");
}

/// A burst larger than the retry budget: writers in one process take turns
/// instead of racing, so none runs out of attempts and answers 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_task_creations_in_one_project_all_succeed_with_distinct_keys() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let path = format!("/v1/orgs/{org}/projects/{project}/tasks");
    let n = 48;
    let creates = (0..n).map(|i| app.post(&path, &owner, json!({ "title": format!("task {i}") })));
    for r in futures::future::join_all(creates).await {
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    }
    let mut keys: Vec<String> = sqlx::query_scalar(
        "SELECT payload->>'key' FROM events WHERE org_id = $1 AND event_type = 'TaskCreated'",
    )
    .bind(org)
    .fetch_all(&app.db)
    .await
    .unwrap();
    keys.sort_by_key(|k| k[4..].parse::<u32>().unwrap());
    assert_eq!(
        keys,
        (1..=n).map(|n| format!("WEB-{n}")).collect::<Vec<_>>()
    );
}
