//! Tasks through their whole life, as the events record it.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{assert_problem, id_of, spawn_app};

#[tokio::test]
async fn task_keys_count_up_within_each_project() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let web = app.project(org, &owner, "WEB").await;
    let api = app.project(org, &owner, "API").await;
    let w1 = app.task(org, web, &owner, "one").await;
    let w2 = app.task(org, web, &owner, "two").await;
    let a1 = app.task(org, api, &owner, "three").await;
    let key =
        |events: Vec<(String, serde_json::Value)>| events[0].1["key"].as_str().unwrap().to_owned();
    assert_eq!(key(app.stream(&format!("task-{w1}")).await), "WEB-1");
    assert_eq!(key(app.stream(&format!("task-{w2}")).await), "WEB-2");
    assert_eq!(key(app.stream(&format!("task-{a1}")).await), "API-1");
}

#[tokio::test]
async fn a_task_moves_along_the_workflow_and_each_change_records_from_to_and_category() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Ship it").await;
    for status in ["todo", "in_progress", "in_review", "done", "todo"] {
        let r = app
            .post(
                &format!("/v1/orgs/{org}/tasks/{task}/status"),
                &owner,
                json!({"status": status}),
            )
            .await;
        assert_eq!(r.status(), 200, "{status}: {}", r.text().await.unwrap());
    }
    let changes: Vec<_> = app
        .stream(&format!("task-{task}"))
        .await
        .into_iter()
        .filter(|(t, _)| t == "TaskStatusChanged")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(changes.len(), 5);
    assert_eq!(changes[3]["from"], "in_review");
    assert_eq!(changes[3]["to"], "done");
    assert_eq!(changes[3]["to_category"], "completed");
    assert_eq!(changes[4]["from_category"], "completed");
}

#[tokio::test]
async fn assigning_a_non_member_is_rejected_and_a_member_is_assigned() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Assign me").await;
    let bob = app.member(org, &owner, "bob", "member").await;
    let outsider = app.user("outsider");

    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/assignee"),
            &owner,
            json!({"assignee": outsider.id}),
        )
        .await;
    assert_problem(r, 422, "not_a_member").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/assignee"),
            &owner,
            json!({"assignee": bob.id}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/assignee"),
            &owner,
            json!({"assignee": null}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let types: Vec<String> = app
        .stream(&format!("task-{task}"))
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(types, ["TaskCreated", "TaskAssigned", "TaskUnassigned"]);
}

#[tokio::test]
async fn a_task_carries_only_tags_from_the_catalog() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Tag me").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tags"),
            &owner,
            json!({"name": "bug", "color": "#ff0000"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let tag = id_of(r).await;

    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/tags"),
            &owner,
            json!({"tag_id": tag}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .request(
            Method::DELETE,
            &format!("/v1/orgs/{org}/tasks/{task}/tags/{tag}"),
            &owner,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .request(
            Method::DELETE,
            &format!("/v1/orgs/{org}/tags/{tag}"),
            &owner,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/tags"),
            &owner,
            json!({"tag_id": tag}),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn comment_mentions_resolve_to_member_ids_and_only_the_author_edits() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Discuss").await;
    let bob = app.member(org, &owner, "bob", "member").await;

    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/comments"),
            &owner,
            json!({"body": "@bob please look; cc @nobody and mail bob@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let comment = id_of(r).await;
    let events = app.stream(&format!("task-{task}")).await;
    let added = &events.last().unwrap().1;
    assert_eq!(added["mentions"], json!([bob.id]));
    assert_eq!(added["comment_id"], comment.to_string());

    let path = format!("/v1/orgs/{org}/tasks/{task}/comments/{comment}");
    assert_problem(
        app.patch(&path, &bob, json!({"body": "hijacked"})).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.patch(&path, &owner, json!({"body": "edited"}))
            .await
            .status(),
        200
    );
    let r = app.request(Method::DELETE, &path, &owner, None, &[]).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_archived_task_refuses_changes() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Old").await;
    assert_eq!(
        app.post(
            &format!("/v1/orgs/{org}/tasks/{task}/archive"),
            &owner,
            json!({})
        )
        .await
        .status(),
        200
    );
    let r = app
        .patch(
            &format!("/v1/orgs/{org}/tasks/{task}"),
            &owner,
            json!({"title": "New"}),
        )
        .await;
    assert_problem(r, 422, "archived").await;
}

#[tokio::test]
async fn every_event_carries_its_envelope() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let correlation = uuid::Uuid::now_v7();
    let r = app
        .request(
            Method::POST,
            &format!("/v1/orgs/{org}/projects"),
            &owner,
            Some(json!({"name": "Website", "key": "WEB"})),
            &[("x-correlation-id", &correlation.to_string())],
        )
        .await;
    let project = id_of(r).await;
    let row: (uuid::Uuid, Option<uuid::Uuid>, uuid::Uuid, i32, Vec<u8>) = sqlx::query_as(
        "SELECT org_id, actor_id, correlation_id, schema_version, hash FROM events WHERE stream_id = $1",
    )
    .bind(format!("project-{project}"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(row.0, org);
    assert_eq!(row.1, Some(owner.id));
    assert_eq!(row.2, correlation);
    assert_eq!(row.3, 1);
    assert_eq!(row.4.len(), 32);
}
