use serde_json::json;
use uuid::Uuid;

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

/// Every query route of organization `org`, naming `project` and `task`.
fn every_route(org: Uuid, project: Uuid, task: Uuid) -> Vec<String> {
    [
        "projects".to_owned(),
        format!("projects/{project}"),
        format!("projects/{project}/board"),
        format!("projects/{project}/tasks"),
        format!("projects/{project}/tasks?status=todo&sort=-priority"),
        format!("tasks/{task}"),
        format!("tasks/{task}/activity"),
        "tags".to_owned(),
        "members".to_owned(),
        "me/notifications".to_owned(),
        "me/notifications?unread=true".to_owned(),
    ]
    .into_iter()
    .map(|suffix| format!("/v1/orgs/{org}/{suffix}"))
    .collect()
}

#[tokio::test]
async fn a_non_member_gets_the_same_forbidden_answer_whether_or_not_the_org_exists() {
    let app = spawn_app().await;
    let w = &app.world;
    let missing = Uuid::now_v7();
    let forbidden = json!({
        "type": "https://tasklog.dev/problems/forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": "you are not a member of this organization",
        "code": "forbidden"
    });
    let task = w.task("Crash on save").id;

    // Eve is in no organization; carol is in another one. Whatever the
    // organization and ids (its own, another's, none at all), one answer.
    for user in [&w.eve, &w.carol] {
        for org in [w.org, missing] {
            for (project, task) in [
                (w.project, task),
                (w.other_project, w.other_task),
                (Uuid::now_v7(), Uuid::now_v7()),
            ] {
                for path in every_route(org, project, task) {
                    for headers in [
                        &[][..],
                        &[("x-consistency-token", "1.0")][..],
                        &[("if-none-match", "\"3\"")][..],
                    ] {
                        let r = app.get_as(&path, user, headers).await;
                        let body = assert_problem(r, 403, "forbidden").await;
                        assert_eq!(body, forbidden, "GET {path} {headers:?}");
                    }
                }
            }
        }
    }
    // And the other way round: alice is not a member of carol's organization.
    let theirs = format!("/v1/orgs/{}/tasks/{}", w.other_org, w.other_task);
    assert_problem(app.get(&theirs, &w.alice).await, 403, "forbidden").await;
    assert_eq!(app.get(&theirs, &w.carol).await.status(), 200);

    app.teardown().await;
}

#[tokio::test]
async fn another_orgs_projects_and_tasks_are_not_found_exactly_like_missing_ones() {
    let app = spawn_app().await;
    let w = &app.world;
    // The foreign task has a history too, so a leak would have something to show.
    let missing = Uuid::now_v7();
    let routes = |project: Uuid, task: Uuid| -> Vec<String> {
        every_route(w.org, project, task)
            .into_iter()
            .filter(|p| p.contains(&project.to_string()) || p.contains(&task.to_string()))
            .collect()
    };
    let foreign = routes(w.other_project, w.other_task);
    let absent = routes(missing, missing);
    assert_eq!(
        foreign.len(),
        6,
        "every route that takes an id: {foreign:?}"
    );

    for (foreign, absent) in foreign.iter().zip(&absent) {
        for headers in [
            &[][..],
            &[("x-consistency-token", "1.0")][..],
            &[("if-none-match", "*")][..],
        ] {
            let theirs = app.get_as(foreign, &w.alice, headers).await;
            let theirs = assert_problem(theirs, 404, "not_found").await;
            let none = app.get_as(absent, &w.alice, headers).await;
            let none = assert_problem(none, 404, "not_found").await;
            assert_eq!(
                theirs, none,
                "GET {foreign} reads like GET {absent} ({headers:?})"
            );
        }
        // Their owner reads them, so the ids are real.
        let own = foreign.replace(&w.org.to_string(), &w.other_org.to_string());
        assert_eq!(app.get(&own, &w.carol).await.status(), 200, "GET {own}");
    }

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
    assert_eq!(ready["projections"]["tasks"], w.checkpoint.to_string());

    app.teardown().await;
}
