//! A create is accepted or rejected as a whole: one the database refuses
//! after the command was decided (its task number or project key chosen)
//! leaves no `TaskNumberReserved` or `ProjectKeyRegistered` behind, so no
//! number is lost and no key taken.
//!
//! Through HTTP nothing PostgreSQL refuses gets that far any more (NUL bytes
//! and out-of-range dates are refused at the edge, see `errors.rs`), and the
//! new aggregate's stream can exist already only if a fresh UUID v7 repeats.
//! So PostgreSQL is made to refuse the creation's insert itself, with the
//! SQLSTATE a NUL byte in `jsonb` raises, by a trigger that only this test's
//! organization meets: the real database refusing a real statement, after
//! the parent's change was decided and sent in the same call.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, InsertRefusal, TestApp};

/// Inserts of `event_type` events of `org` are refused (SQLSTATE 22P05,
/// "unsupported Unicode escape sequence") until `end`.
async fn refuse(app: &TestApp, org: Uuid, event_type: &str) -> InsertRefusal {
    InsertRefusal::begin(
        app,
        org,
        event_type,
        "22P05",
        "unsupported Unicode escape sequence",
    )
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
async fn a_task_create_the_database_refuses_reserves_no_number_and_the_next_task_gets_it() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "RJT").await;
    let project_stream = format!("project-{project}");
    let first = app.task(org, project, &owner, "First").await;
    let (project_before, count_before) = (
        app.stream(&project_stream).await,
        app.event_count(org).await,
    );

    let refusal = refuse(&app, org, "TaskCreated").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects/{project}/tasks"),
            &owner,
            json!({"title": "Refused"}),
        )
        .await;
    refusal.end(&app).await;
    assert_problem(r, 500, "internal").await;
    assert_eq!(
        app.stream(&project_stream).await,
        project_before,
        "the refused create reserved no number"
    );
    assert_eq!(app.event_count(org).await, count_before, "nothing appended");

    // The next task gets the next number: none was lost.
    let next = app.task(org, project, &owner, "Next").await;
    let reserved: Vec<(String, u64)> = payloads(&app, &project_stream, "TaskNumberReserved")
        .await
        .iter()
        .map(|r| {
            (
                r["task_id"].as_str().unwrap().to_owned(),
                r["number"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(reserved, [(first.to_string(), 1), (next.to_string(), 2)]);
    let created = payloads(&app, &format!("task-{next}"), "TaskCreated").await;
    assert_eq!(created[0]["key"], "RJT-2");
}

#[tokio::test]
async fn a_project_create_the_database_refuses_registers_no_key_and_the_key_stays_free() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let org_stream = format!("org-{org}");
    let (org_before, count_before) = (app.stream(&org_stream).await, app.event_count(org).await);
    let body = json!({"name": "Website", "key": "WEB"});

    let refusal = refuse(&app, org, "ProjectCreated").await;
    let r = app
        .post(&format!("/v1/orgs/{org}/projects"), &owner, body.clone())
        .await;
    refusal.end(&app).await;
    assert_problem(r, 500, "internal").await;
    assert_eq!(
        app.stream(&org_stream).await,
        org_before,
        "the refused create registered no key"
    );
    assert_eq!(app.event_count(org).await, count_before, "nothing appended");

    // The key is still free: the next project takes it.
    let r = app
        .post(&format!("/v1/orgs/{org}/projects"), &owner, body)
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let project = crate::helpers::id_of(r).await;
    let registered = payloads(&app, &org_stream, "ProjectKeyRegistered").await;
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0]["key"], "WEB");
    assert_eq!(registered[0]["project_id"], project.to_string());
}
