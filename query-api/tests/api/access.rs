use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthenticated() {
    let app = spawn_app().await;
    let path = format!("{}/v1/orgs/{}/projects", app.address, app.world.org);

    let bare = app.client.get(&path).send().await.unwrap();
    assert_eq!(bare.headers()["www-authenticate"], "Bearer");
    assert_problem(bare, 401, "unauthenticated").await;
    let forged = app
        .client
        .get(&path)
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_problem(forged, 401, "unauthenticated").await;

    app.teardown().await;
}

#[tokio::test]
async fn a_non_member_gets_the_same_forbidden_answer_whether_or_not_the_org_exists() {
    let app = spawn_app().await;
    let w = &app.world;
    let missing = uuid::Uuid::now_v7();

    for suffix in ["projects", "tags", "members", "me/notifications"] {
        let existing = app
            .get(&format!("/v1/orgs/{}/{suffix}", w.org), &w.eve)
            .await;
        let existing = assert_problem(existing, 403, "forbidden").await;
        let absent = app
            .get(&format!("/v1/orgs/{missing}/{suffix}"), &w.eve)
            .await;
        let absent = assert_problem(absent, 403, "forbidden").await;
        assert_eq!(existing, absent);
        assert_eq!(
            existing,
            serde_json::json!({
                "type": "https://tasklog.dev/problems/forbidden",
                "title": "Forbidden",
                "status": 403,
                "detail": "you are not a member of this organization",
                "code": "forbidden"
            })
        );
    }
    // A member of another organization is a non-member here, even for its own objects.
    let r = app
        .get(
            &format!("/v1/orgs/{}/tasks/{}", w.org, w.other_task),
            &w.carol,
        )
        .await;
    assert_problem(r, 403, "forbidden").await;
    let theirs = format!("/v1/orgs/{}/tasks/{}", w.other_org, w.other_task);
    assert_problem(app.get(&theirs, &w.alice).await, 403, "forbidden").await;
    assert_eq!(app.get(&theirs, &w.carol).await.status(), 200);

    app.teardown().await;
}

#[tokio::test]
async fn another_orgs_projects_and_tasks_are_not_found_exactly_like_missing_ones() {
    let app = spawn_app().await;
    let w = &app.world;
    let missing = uuid::Uuid::now_v7();

    let mut bodies: Vec<Value> = Vec::new();
    for path in [
        format!("/v1/orgs/{}/tasks/{}", w.org, w.other_task),
        format!("/v1/orgs/{}/tasks/{missing}", w.org),
        format!("/v1/orgs/{}/tasks/{}/activity", w.org, w.other_task),
        format!("/v1/orgs/{}/projects/{}", w.org, w.other_project),
        format!("/v1/orgs/{}/projects/{missing}", w.org),
        format!("/v1/orgs/{}/projects/{}/tasks", w.org, w.other_project),
        format!("/v1/orgs/{}/projects/{}/board", w.org, w.other_project),
    ] {
        let r = app.get(&path, &w.alice).await;
        bodies.push(assert_problem(r, 404, "not_found").await);
    }
    assert_eq!(
        bodies[0], bodies[1],
        "a foreign task reads like a missing one"
    );
    assert_eq!(
        bodies[3], bodies[4],
        "a foreign project reads like a missing one"
    );

    app.teardown().await;
}

#[tokio::test]
async fn unknown_routes_are_problem_not_found_and_health_checks_answer() {
    let app = spawn_app().await;
    let w = &app.world;

    let r = app.get("/v1/nothing/here", &w.alice).await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .get(&format!("/v1/orgs/{}/tasks/not-a-uuid", w.org), &w.alice)
        .await;
    assert_problem(r, 404, "not_found").await;
    let health = app.json("/healthz", &w.alice).await;
    assert_eq!(health["status"], "ok");
    let ready = app.json("/readyz", &w.alice).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["projections"]["tasks"], "100.50");

    app.teardown().await;
}
