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
        "UPDATE idempotency_keys SET response_status = NULL, response_body = NULL, response_raw = NULL \
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

#[tokio::test]
async fn the_same_key_with_the_organization_id_in_upper_case_replays_the_first_response() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let send = |org: String, project: String| {
        let path = format!("/v1/orgs/{org}/projects/{project}/tasks");
        let app = &app;
        let owner = &owner;
        async move {
            app.request(
                Method::POST,
                &path,
                owner,
                Some(json!({"title": "Once"})),
                &[("idempotency-key", "case")],
            )
            .await
        }
    };
    let first = send(org.to_string(), project.to_string()).await;
    assert_eq!(first.status(), 201);
    let first_body: Value = first.json().await.unwrap();
    let count = app.event_count(org).await;

    let upper = send(
        org.to_string().to_uppercase(),
        project.to_string().to_uppercase(),
    )
    .await;
    assert_eq!(upper.status(), 201);
    assert_eq!(upper.headers()["idempotent-replayed"], "true");
    assert_eq!(upper.json::<Value>().await.unwrap(), first_body);
    let simple = send(org.simple().to_string(), project.to_string()).await;
    assert_eq!(simple.headers()["idempotent-replayed"], "true");
    assert_eq!(app.event_count(org).await, count, "nothing appended again");
}

#[tokio::test]
async fn a_duplicate_while_the_first_request_runs_gets_409_with_retry_after() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let path = format!("/v1/orgs/{org}/projects/{project}/tasks");
    // The first request stops right after taking its key: its record of the
    // key waits for this transaction's conflicting row.
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys \
            (org_scope, caller_id, idempotency_key, fingerprint, seed, locked_until) \
         VALUES ($1, $2, 'busy', '\\x00', $3, now())",
    )
    .bind(org.to_string())
    .bind(owner.id)
    .bind(uuid::Uuid::now_v7())
    .execute(&mut *blocker)
    .await
    .unwrap();
    let first = {
        let (client, address, token) =
            (app.client.clone(), app.address.clone(), owner.token.clone());
        let path = path.clone();
        tokio::spawn(async move {
            client
                .post(format!("{address}{path}"))
                .bearer_auth(token)
                .header("idempotency-key", "busy")
                .json(&json!({"title": "Busy"}))
                .send()
                .await
                .unwrap()
        })
    };
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
               AND query ILIKE '%INSERT INTO idempotency_keys%' AND datname = current_database()",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // A timeout: an implementation that waits for the first would hang here.
    let duplicate = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(&owner.token)
        .header("idempotency-key", "busy")
        .json(&json!({"title": "Busy"}))
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .expect("the duplicate is answered at once");
    assert_eq!(duplicate.headers()["retry-after"], "1");
    assert_problem(duplicate, 409, "conflict").await;
    blocker.rollback().await.unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status(), 201, "the first request ran on");
}

#[tokio::test]
async fn a_keyed_request_that_failed_is_not_left_in_progress() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let path = format!("/v1/orgs/{org}/projects/{project}/tasks");
    // PostgreSQL refuses NUL in text: whatever the answer, a retry gets the
    // same one, not "in progress", and appends nothing more.
    let send = || {
        app.request(
            Method::POST,
            &path,
            &owner,
            Some(json!({"title": "nul \u{0000} byte"})),
            &[("idempotency-key", "nul")],
        )
    };
    let first = send().await.status();
    let count = app.event_count(org).await;
    let retry = send().await.status();
    assert_ne!(retry, 409, "the key was left in progress");
    assert_eq!(retry, first);
    assert_eq!(app.event_count(org).await, count);
}
