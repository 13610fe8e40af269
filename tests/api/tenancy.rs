//! One organization never sees or touches another's data.

use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn another_organizations_task_is_not_found_through_your_own() {
    let app = spawn_app().await;
    let (org_a, alice) = app.org().await;
    let (org_b, bob) = app.org().await;
    let project_b = app.project(org_b, &bob, "SEC").await;
    let task_b = app.task(org_b, project_b, &bob, "Secret").await;
    let missing = uuid::Uuid::now_v7();
    let before = app.event_count(org_b).await;

    // Alice is a member of A and names B's task under A: it does not exist there.
    let r = app
        .post(
            &format!("/v1/orgs/{org_a}/tasks/{task_b}/status"),
            &alice,
            json!({"status": "todo"}),
        )
        .await;
    let through_a = assert_problem(r, 404, "not_found").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org_a}/tasks/{missing}/status"),
            &alice,
            json!({"status": "todo"}),
        )
        .await;
    let nonexistent = assert_problem(r, 404, "not_found").await;
    assert_eq!(
        through_a, nonexistent,
        "an existing foreign task looks exactly like a missing one"
    );

    let r = app
        .post(
            &format!("/v1/orgs/{org_a}/projects/{project_b}/tasks"),
            &alice,
            json!({"title": "x"}),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
    // And under B's own path she is not a member.
    let r = app
        .post(
            &format!("/v1/orgs/{org_b}/tasks/{task_b}/status"),
            &alice,
            json!({"status": "todo"}),
        )
        .await;
    assert_problem(r, 403, "forbidden").await;
    assert_eq!(app.event_count(org_b).await, before);
}
