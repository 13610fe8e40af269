//! Whole problem bodies, as a client reads them: one snapshot per kind of
//! answer (ids redacted), so a change of any field shows in review.

use reqwest::Method;
use serde_json::json;
use tasklog_testkit::assert_problem_snapshot;
use uuid::Uuid;

use crate::helpers::{spawn_app, User};

#[tokio::test]
async fn a_body_that_breaks_rules_is_one_422_naming_every_field() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;

    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects"),
            &owner,
            json!({"name": "   ", "key": "web site"}),
        )
        .await;
    assert_problem_snapshot!(r, @r#"
    {
      "code": "validation_failed",
      "detail": "the request is not valid",
      "errors": [
        {
          "field": "name",
          "message": "must not be empty"
        },
        {
          "field": "key",
          "message": "must be 2 to 10 characters: an uppercase letter, then uppercase letters or digits"
        }
      ],
      "status": 422,
      "title": "Validation failed",
      "type": "https://tasklog.dev/problems/validation_failed"
    }
    "#);
}

#[tokio::test]
async fn malformed_json_is_a_400_and_another_content_type_a_415() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let send = |body: &'static str, content_type: &'static str| {
        app.client
            .post(format!("{}/v1/orgs/{org}/projects", app.address))
            .bearer_auth(&owner.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let r = send("{\"name\": ", "application/json").await.unwrap();
    assert_problem_snapshot!(r, @r#"
    {
      "code": "malformed_json",
      "detail": "the body is not valid JSON: EOF while parsing a value at line 1 column 9",
      "status": 400,
      "title": "Malformed JSON",
      "type": "https://tasklog.dev/problems/malformed_json"
    }
    "#);
    let r = send("{\"name\": \"x\"}", "text/plain").await.unwrap();
    assert_problem_snapshot!(r, @r#"
    {
      "code": "unsupported_media_type",
      "detail": "expected a body of type application/json",
      "status": 415,
      "title": "Unsupported media type",
      "type": "https://tasklog.dev/problems/unsupported_media_type"
    }
    "#);
}

#[tokio::test]
async fn a_missing_task_is_a_404() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;

    let r = app
        .patch(
            &format!("/v1/orgs/{org}/tasks/{}", Uuid::now_v7()),
            &owner,
            json!({"title": "x"}),
        )
        .await;
    assert_problem_snapshot!(r, @r#"
    {
      "code": "not_found",
      "detail": "task not found",
      "status": 404,
      "title": "Not found",
      "type": "https://tasklog.dev/problems/not_found"
    }
    "#);
}

#[tokio::test]
async fn a_request_without_a_token_is_a_401() {
    let app = spawn_app().await;

    let r = app
        .client
        .post(format!("{}/v1/orgs", app.address))
        .json(&json!({"name": "Acme"}))
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
}

#[tokio::test]
async fn a_non_member_and_a_viewer_writing_are_403() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let viewer = app.member(org, &owner, "vic", "viewer").await;

    let body = json!({"name": "Website", "key": "WEB"});
    let path = format!("/v1/orgs/{org}/projects");
    let r = app.post(&path, &User::new("stranger"), body.clone()).await;
    assert_problem_snapshot!(r, @r#"
    {
      "code": "forbidden",
      "detail": "you are not a member of this organization",
      "status": 403,
      "title": "Forbidden",
      "type": "https://tasklog.dev/problems/forbidden"
    }
    "#);
    let r = app.post(&path, &viewer, body).await;
    assert_problem_snapshot!(r, @r#"
    {
      "code": "forbidden",
      "detail": "your role (viewer) does not allow this",
      "status": 403,
      "title": "Forbidden",
      "type": "https://tasklog.dev/problems/forbidden"
    }
    "#);
}

#[tokio::test]
async fn a_duplicate_key_is_a_409_and_a_stale_if_match_a_412() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Edit me").await;

    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects"),
            &owner,
            json!({"name": "Again", "key": "WEB"}),
        )
        .await;
    assert_problem_snapshot!(r, @r#"
    {
      "code": "already_exists",
      "detail": "project key already exists",
      "status": 409,
      "title": "Already exists",
      "type": "https://tasklog.dev/problems/already_exists"
    }
    "#);
    let r = app
        .request(
            Method::PATCH,
            &format!("/v1/orgs/{org}/tasks/{task}"),
            &owner,
            Some(json!({"title": "Stale"})),
            &[("if-match", "\"7\"")],
        )
        .await;
    assert_problem_snapshot!(r, @r#"
    {
      "code": "precondition_failed",
      "current_version": 1,
      "detail": "the resource is at version 1, not the version in If-Match",
      "status": 412,
      "title": "Precondition failed",
      "type": "https://tasklog.dev/problems/precondition_failed"
    }
    "#);
}
