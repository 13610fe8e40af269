//! Bad input gets a clear problem+json 4xx and changes nothing.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use tasklog_testkit::assert_problem_snapshot;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn every_kind_of_bad_input_is_a_4xx_problem_and_appends_nothing() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "A task").await;
    let before = app.event_count(org).await;
    let tasks = format!("{}/v1/orgs/{org}/projects/{project}/tasks", app.address);
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(&tasks)
            .bearer_auth(&owner.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    assert_problem(
        raw("{\"title\": ", "application/json").await.unwrap(),
        400,
        "malformed_json",
    )
    .await;
    assert_problem(
        raw("{\"title\": \"x\"}", "text/plain").await.unwrap(),
        415,
        "unsupported_media_type",
    )
    .await;

    let wrong_type = assert_problem(
        raw("{\"title\": 42}", "application/json").await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(wrong_type["errors"][0]["field"], "title");

    let unknown = assert_problem(
        raw(
            "{\"title\": \"x\", \"colour\": \"red\"}",
            "application/json",
        )
        .await
        .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert!(unknown["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));

    let empty = assert_problem(
        app.post(&tasks[app.address.len()..], &owner, json!({"title": "   "}))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(empty["errors"][0]["field"], "title");

    let bad_date = assert_problem(
        app.post(
            &tasks[app.address.len()..],
            &owner,
            json!({"title": "x", "due_date": "tomorrow"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(bad_date["errors"][0]["field"], "due_date");

    let huge = "x".repeat(70 * 1024);
    let r = app
        .post(
            &tasks[app.address.len()..],
            &owner,
            json!({ "title": huge }),
        )
        .await;
    assert_problem(r, 413, "payload_too_large").await;

    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{}/status", Uuid::now_v7()),
            &owner,
            json!({"status": "todo"}),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/not-a-uuid/status"),
            &owner,
            json!({"status": "todo"}),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects/{}/tasks", Uuid::now_v7()),
            &owner,
            json!({"title": "x"}),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/status"),
            &owner,
            json!({"status": "shipped"}),
        )
        .await;
    let unknown_status = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(unknown_status["errors"][0]["field"], "status");
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/tags"),
            &owner,
            json!({"tag_id": Uuid::now_v7()}),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .request(
            Method::PATCH,
            &format!("/v1/orgs/{org}/tasks/{task}"),
            &owner,
            Some(json!({})),
            &[],
        )
        .await;
    assert_problem(r, 422, "validation_failed").await;
    let r = app
        .request(
            Method::POST,
            "/v1/nothing-here",
            &owner,
            Some(json!({})),
            &[],
        )
        .await;
    assert_problem(r, 404, "not_found").await;

    assert_eq!(
        app.event_count(org).await,
        before,
        "no bad request appended anything"
    );
}

#[tokio::test]
async fn a_status_change_off_the_workflow_is_rejected_with_its_rule() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "A task").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/status"),
            &owner,
            json!({"status": "done"}),
        )
        .await;
    let body = assert_problem(r, 422, "transition_not_allowed").await;
    assert!(body["detail"].as_str().unwrap().contains("backlog"));
}

#[tokio::test]
async fn a_duplicate_project_key_is_a_409_conflict() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    app.project(org, &owner, "WEB").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects"),
            &owner,
            json!({"name": "Again", "key": "WEB"}),
        )
        .await;
    assert_problem(r, 409, "already_exists").await;
}

#[tokio::test]
async fn a_rejected_create_takes_no_key_or_number() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects"),
            &owner,
            json!({"name": "", "key": "WEB"}),
        )
        .await;
    assert_problem(r, 422, "validation_failed").await;
    let project = app.project(org, &owner, "WEB").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects/{project}/tasks"),
            &owner,
            json!({"title": ""}),
        )
        .await;
    assert_problem(r, 422, "validation_failed").await;
    let task = app.task(org, project, &owner, "first real task").await;
    assert_eq!(
        app.stream(&format!("task-{task}")).await[0].1["key"],
        "WEB-1"
    );
}

/// Text PostgreSQL would refuse (NUL), trailing data, a wrongly typed enum
/// and dates outside `YYYY-MM-DD` with years 0001 to 9999 are refused at the
/// edge with the field named; none of them takes a task number.
#[tokio::test]
async fn input_the_database_would_refuse_is_rejected_at_the_edge_and_takes_no_number() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "EDG").await;
    let tasks = format!("{}/v1/orgs/{org}/projects/{project}/tasks", app.address);
    let send = |body: String, key: Option<&'static str>| {
        let mut req = app
            .client
            .post(&tasks)
            .bearer_auth(&owner.token)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        req.send()
    };
    let field_of = |v: serde_json::Value| v["errors"][0]["field"].as_str().unwrap().to_owned();

    let nul = r#"{"title": "a\u0000b"}"#.to_owned();
    let r = send(nul.clone(), None).await.unwrap();
    assert_eq!(
        field_of(assert_problem(r, 422, "validation_failed").await),
        "title"
    );
    // With an Idempotency-Key the refusal is stored and replayed, never left "in progress".
    let first = send(nul.clone(), Some("nul-key")).await.unwrap();
    assert_problem(first, 422, "validation_failed").await;
    let again = send(nul, Some("nul-key")).await.unwrap();
    assert_problem(again, 422, "validation_failed").await;

    let r = send(r#"{"title": "t"}garbage"#.into(), None).await.unwrap();
    assert_problem(r, 400, "malformed_json").await;
    for priority in ["5", "null", "\"highest\""] {
        let r = send(format!(r#"{{"title": "t", "priority": {priority}}}"#), None)
            .await
            .unwrap();
        let body = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(field_of(body), "priority", "priority {priority}");
    }
    for date in [
        "+99999-01-01",
        "-0001-01-01",
        "2024-1-1",
        "0000-01-01",
        "2024-02-30",
        "2024-01-01T00:00:00Z",
    ] {
        let r = send(format!(r#"{{"title": "t", "due_date": "{date}"}}"#), None)
            .await
            .unwrap();
        let body = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(field_of(body), "due_date", "due date {date}");
    }
    let r = send(r#"{"title": "t", "due_date": "9999-12-31"}"#.into(), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let task = crate::helpers::id_of(r).await;
    let stored = app.stream(&format!("task-{task}")).await;
    assert_eq!(
        stored[0].1["key"], "EDG-1",
        "no refused create took a number"
    );
    assert_eq!(stored[0].1["due_date"], "9999-12-31");
}

/// A role is one of the roles: `null`, a number or an unknown name is 422
/// naming `role` (not 400 "not valid JSON"), adding a member and changing
/// one's role alike, and appends nothing.
#[tokio::test]
async fn a_role_that_is_null_or_not_a_role_is_rejected_naming_role() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let member = app.member(org, &owner, "mona", "member").await;
    let before = app.event_count(org).await;
    let members = format!("/v1/orgs/{org}/members");
    for role in [json!(null), json!(5), json!("boss")] {
        let r = app
            .post(
                &members,
                &owner,
                json!({"user_id": Uuid::now_v7(), "handle": "newbie", "role": role}),
            )
            .await;
        let body = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(
            body["errors"][0]["field"], "role",
            "adding with role {role}"
        );
        let r = app
            .patch(
                &format!("{members}/{}", member.id),
                &owner,
                json!({ "role": role }),
            )
            .await;
        let body = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(
            body["errors"][0]["field"], "role",
            "changing to role {role}"
        );
    }
    assert_eq!(app.event_count(org).await, before, "nothing was appended");
}

/// 405 is its own problem, not a 400.
#[tokio::test]
async fn a_wrong_method_is_a_405_method_not_allowed_problem() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let r = app
        .request(
            Method::PUT,
            &format!("/v1/orgs/{org}/projects"),
            &owner,
            None,
            &[],
        )
        .await;
    assert_problem_snapshot!(r, @r#"
    {
      "code": "method_not_allowed",
      "detail": "this method is not allowed on this route",
      "status": 405,
      "title": "Method not allowed",
      "type": "https://tasklog.dev/problems/method_not_allowed"
    }
    "#);
}

/// Marking read needs a notification that exists and is the caller's: an
/// unknown one is 404 and the caller's inbox gets no event.
#[tokio::test]
async fn an_unknown_notification_cannot_be_marked_read() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let viewer = app.member(org, &owner, "vera", "viewer").await;
    for user in [&owner, &viewer] {
        let r = app
            .post(
                &format!("/v1/orgs/{org}/me/notifications/{}/read", Uuid::now_v7()),
                user,
                json!({}),
            )
            .await;
        assert_problem(r, 404, "not_found").await;
        let inbox = format!("inbox-{}", tasklog_domain::inbox_id(org, user.id));
        assert!(app.stream(&inbox).await.is_empty());
    }
}

/// A correlation id the caller sends is kept in every event's envelope, so it
/// must be a UUID; `If-Match: *` asks only that the object exists.
#[tokio::test]
async fn a_correlation_id_must_be_a_uuid_and_if_match_star_asks_only_for_existence() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "HDR").await;
    let task = app.task(org, project, &owner, "A task").await;
    let path = format!("/v1/orgs/{org}/tasks/{task}/archive");

    let r = app
        .request(
            Method::POST,
            &path,
            &owner,
            None,
            &[("x-correlation-id", "{}")],
        )
        .await;
    assert_problem(r, 400, "bad_request").await;
    assert_eq!(app.stream(&format!("task-{task}")).await.len(), 1);

    let r = app
        .request(Method::POST, &path, &owner, None, &[("if-match", "*")])
        .await;
    assert_eq!(r.status(), 200);
    let missing = format!("/v1/orgs/{org}/tasks/{}/archive", Uuid::now_v7());
    let r = app
        .request(Method::POST, &missing, &owner, None, &[("if-match", "*")])
        .await;
    assert_problem(r, 404, "not_found").await;
}
