use reqwest::Method;
use serde_json::json;
use tasklog_testkit::{token_expiring_at, token_signed_with};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, User};

#[tokio::test]
async fn requests_without_a_valid_bearer_token_get_401() {
    let app = spawn_app().await;
    let url = format!("{}/v1/orgs", app.address);

    let missing = app
        .client
        .post(&url)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_problem(missing, 401, "unauthenticated").await;

    let garbage = User {
        id: Uuid::now_v7(),
        token: "not-a-jwt".into(),
    };
    assert_problem(
        app.post("/v1/orgs", &garbage, json!({"name": "x"})).await,
        401,
        "unauthenticated",
    )
    .await;

    let forged = User {
        id: Uuid::now_v7(),
        token: token_signed_with("another-secret", Uuid::now_v7(), Some("x"), 60),
    };
    assert_problem(
        app.post("/v1/orgs", &forged, json!({"name": "x"})).await,
        401,
        "unauthenticated",
    )
    .await;

    let expired = User {
        id: Uuid::now_v7(),
        token: expired_token(),
    };
    assert_problem(
        app.post("/v1/orgs", &expired, json!({"name": "x"})).await,
        401,
        "unauthenticated",
    )
    .await;
}

/// The leeway for clock skew is small: a token that expired a little longer
/// ago than it is refused (with the 30 s it once had, this one passed).
#[tokio::test]
async fn a_token_expired_just_past_the_leeway_is_refused() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp() as u64;
    let leeway = tasklog_http::auth::TOKEN_LEEWAY_SECONDS;
    assert!(leeway <= 10, "the leeway stays small");
    let late = User {
        id: Uuid::now_v7(),
        token: token_expiring_at(now - leeway - 5),
    };
    assert_problem(
        app.post("/v1/orgs", &late, json!({"name": "x"})).await,
        401,
        "unauthenticated",
    )
    .await;
    let fresh = User {
        id: Uuid::now_v7(),
        token: token_expiring_at(now + 60),
    };
    assert_eq!(
        app.post("/v1/orgs", &fresh, json!({"name": "x"}))
            .await
            .status(),
        201
    );
}

/// The scheme name of `Authorization` is case-insensitive (RFC 9110 §11.1).
#[tokio::test]
async fn the_bearer_scheme_is_matched_whatever_its_case() {
    let app = spawn_app().await;
    let token = token_expiring_at(chrono::Utc::now().timestamp() as u64 + 60);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = app
            .client
            .post(format!("{}/v1/orgs", app.address))
            .header("authorization", format!("{scheme} {token}"))
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "scheme {scheme}");
    }
    let r = app
        .client
        .post(format!("{}/v1/orgs", app.address))
        .header("authorization", format!("Basic {token}"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthenticated").await;
}

fn expired_token() -> String {
    token_expiring_at(2_000)
}

#[tokio::test]
async fn the_creator_of_an_organization_is_its_owner_and_can_add_members() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let stream = app.stream(&format!("org-{org}")).await;
    assert_eq!(stream[0].0, "OrganizationCreated");
    assert_eq!(stream[0].1["owner_id"], owner.id.to_string());
    app.member(org, &owner, "bob", "member").await;
    assert_eq!(app.stream(&format!("org-{org}")).await[1].0, "MemberAdded");
}

#[tokio::test]
async fn a_non_member_gets_403_whether_or_not_the_organization_exists() {
    let app = spawn_app().await;
    let (org, _) = app.org().await;
    let stranger = app.user("stranger");
    let body = json!({ "name": "Sneaky", "key": "SNK" });
    let existing = app
        .post(&format!("/v1/orgs/{org}/projects"), &stranger, body.clone())
        .await;
    let missing = app
        .post(
            &format!("/v1/orgs/{}/projects", Uuid::now_v7()),
            &stranger,
            body,
        )
        .await;
    let a = assert_problem(existing, 403, "forbidden").await;
    let b = assert_problem(missing, 403, "forbidden").await;
    assert_eq!(a, b, "the two answers are indistinguishable");
}

#[tokio::test]
async fn a_role_too_low_gets_403_and_appends_nothing() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let viewer = app.member(org, &owner, "vera", "viewer").await;
    let member = app.member(org, &owner, "mo", "member").await;
    let before = app.event_count(org).await;

    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects/{project}/tasks"),
            &viewer,
            json!({"title": "t"}),
        )
        .await;
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects"),
            &member,
            json!({"name": "P", "key": "PRJ"}),
        )
        .await;
    assert_problem(r, 403, "forbidden").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/members"),
            &member,
            json!({"user_id": Uuid::now_v7(), "handle": "eve", "role": "owner"}),
        )
        .await;
    assert_problem(r, 403, "forbidden").await;
    assert_eq!(app.event_count(org).await, before);
}

#[tokio::test]
async fn a_removed_member_loses_access_at_once() {
    let app = spawn_app().await;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let bob = app.member(org, &owner, "bob", "member").await;
    app.task(org, project, &bob, "while a member").await;

    let r = app
        .request(
            Method::DELETE,
            &format!("/v1/orgs/{org}/members/{}", bob.id),
            &owner,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects/{project}/tasks"),
            &bob,
            json!({"title": "after"}),
        )
        .await;
    assert_problem(r, 403, "forbidden").await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}
