use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, documented_routes, spawn_app, TestApp};

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

/// A member's answer to a route of their own organization: 200, or for a
/// report while no ClickHouse is configured (as here), 503
/// `analytics_unavailable`.
async fn assert_served_to_a_member(r: reqwest::Response, url: &str) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let report_unavailable =
        url.contains("/reports/") && status == 503 && body["code"] == "analytics_unavailable";
    assert!(
        status == 200 || report_unavailable,
        "GET {url} answers a member {status}: {body}"
    );
}

/// Every route the query API documents (reports included, each with its
/// required parameters and with every parameter it documents), for a user
/// in no organization and for one in another: one 403, the same whatever
/// the organization and ids (its own, another's, none at all), decided
/// before any wait, precondition or report store.
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
    let routes = documented_routes(&app.client, &app.address).await;
    assert!(
        routes.len() >= 14,
        "the document lists every route of an organization, not {}",
        routes.len()
    );

    // The URLs are real: alice, a member, is served each of them.
    let own = [("org", w.org), ("project", w.project), ("task", task)];
    for route in &routes {
        for url in route.urls(&own) {
            assert_served_to_a_member(app.get(&url, &w.alice).await, &url).await;
        }
    }

    for user in [&w.eve, &w.carol] {
        for org in [w.org, missing] {
            for (project, task) in [
                (w.project, task),
                (w.other_project, w.other_task),
                (Uuid::now_v7(), Uuid::now_v7()),
            ] {
                let ids = [("org", org), ("project", project), ("task", task)];
                for url in routes.iter().flat_map(|r| r.urls(&ids)) {
                    for headers in [
                        &[][..],
                        &[("x-consistency-token", "1.0")][..],
                        &[("x-consistency-token", "999999999.0")][..],
                        &[("if-none-match", "\"3\"")][..],
                    ] {
                        let r = app.get_as(&url, user, headers).await;
                        let body = assert_problem(r, 403, "forbidden").await;
                        assert_eq!(body, forbidden, "GET {url} {headers:?}");
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

/// Alice's answer to `url`: its status and body.
async fn answer(app: &TestApp, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = app.get_as(url, &app.world.alice, headers).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Every documented route that names an id besides the organization's, that
/// id in turn another organization's and a missing one: the same answer,
/// whole body included (404 for an id in the path).
#[tokio::test]
async fn another_orgs_projects_and_tasks_are_not_found_exactly_like_missing_ones() {
    let app = spawn_app().await;
    let w = &app.world;
    let own = [
        ("org", w.org),
        ("project", w.project),
        ("task", w.task("Crash on save").id),
    ];
    // The foreign task has a history too, so a leak would have something to show.
    let foreign = [("project", w.other_project), ("task", w.other_task)];
    let missing = Uuid::now_v7();
    let with = |name: &str, id: Uuid| -> Vec<(&'static str, Uuid)> {
        own.iter()
            .map(|&(n, own_id)| (n, if n == name { id } else { own_id }))
            .collect()
    };

    let mut in_path = 0;
    for route in documented_routes(&app.client, &app.address).await {
        let path_params = route.path_params();
        for &(varied, theirs_id) in &foreign {
            let named_in_query = route.query.iter().any(|p| p.uuid && p.name == varied);
            if !path_params.contains(&varied) && !named_in_query {
                continue;
            }
            let (theirs, none) = (with(varied, theirs_id), with(varied, missing));
            for (foreign_url, absent_url) in route.urls(&theirs).iter().zip(route.urls(&none)) {
                for headers in [
                    &[][..],
                    &[("x-consistency-token", "1.0")][..],
                    &[("if-none-match", "*")][..],
                ] {
                    let theirs = answer(&app, foreign_url, headers).await;
                    let none = answer(&app, &absent_url, headers).await;
                    assert_eq!(
                        theirs, none,
                        "GET {foreign_url} reads like GET {absent_url} ({headers:?})"
                    );
                    if path_params.contains(&varied) {
                        assert_eq!(theirs.0, 404, "GET {foreign_url}: {}", theirs.1);
                    }
                }
                if path_params.contains(&varied) {
                    in_path += 1;
                    // Their owner reads them, so the ids are real.
                    let own = foreign_url.replace(&w.org.to_string(), &w.other_org.to_string());
                    assert_eq!(app.get(&own, &w.carol).await.status(), 200, "GET {own}");
                }
            }
        }
    }
    assert!(
        in_path >= 6,
        "every route with an id in its path: only {in_path} URLs"
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
    assert_eq!(ready["projections"]["tasks"], w.checkpoint.to_string());

    app.teardown().await;
}
