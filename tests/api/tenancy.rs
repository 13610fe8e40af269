//! One organization never sees or touches another's data.

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, id_of, spawn_app, TestApp, User};

#[tokio::test]
async fn another_organizations_task_is_not_found_through_your_own() {
    let app = spawn_app().await;
    let (org_a, alice) = app.org().await;
    let (org_b, bob) = app.org().await;
    let project_b = app.project(org_b, &bob, "SEC").await;
    let task_b = app.task(org_b, project_b, &bob, "Secret").await;
    let missing = uuid::Uuid::now_v7();
    // A leaked write would be stamped with Alice's organization: look at B's streams.
    let b_streams = vec![format!("project-{project_b}"), format!("task-{task_b}")];
    let before = events_in(&app, &b_streams).await;

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
    assert_eq!(events_in(&app, &b_streams).await, before);
}

/// Every route of the command API's OpenAPI document, every id in its path
/// in turn named as another organization's object and as a missing one,
/// with and without `If-Match`: the two answers are the same, whole body
/// included, and the other organization's streams do not change. With the
/// organization itself named as another's or a missing one: the same 403.
#[tokio::test]
async fn every_route_answers_a_foreign_id_exactly_as_a_missing_one() {
    let app = spawn_app().await;
    let (org_a, alice) = app.org().await;
    let (org_b, bob) = app.org().await;
    let world_a = World::build(&app, org_a, &alice, "AAA").await;
    let world_b = World::build(&app, org_b, &bob, "BBB").await;
    let b_streams: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT stream_id FROM events WHERE org_id = $1")
            .bind(org_b)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let b_events_before = events_in(&app, &b_streams).await;

    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let params: Vec<&str> = template
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        if params.is_empty() {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let body = body_for(method, template, &world_a);
            for varied in &params {
                for if_match in [None, Some("\"1\"")] {
                    let mut answers = Vec::new();
                    for foreign in [true, false] {
                        let path = fill(template, |p| {
                            if p == *varied {
                                if foreign {
                                    world_b.id(p)
                                } else {
                                    Uuid::now_v7()
                                }
                            } else {
                                world_a.id(p)
                            }
                        });
                        let headers: Vec<(&str, &str)> =
                            if_match.map(|v| ("if-match", v)).into_iter().collect();
                        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                        let r = app.request(m, &path, &alice, body.clone(), &headers).await;
                        let status = r.status().as_u16();
                        let text = r.text().await.unwrap();
                        answers.push((status, text, path));
                    }
                    let (foreign, missing) = (&answers[0], &answers[1]);
                    let expected = match (*varied, method.as_str()) {
                        ("org", _) => Some(403),
                        // Removing a tag the task does not carry changes
                        // nothing (200, or 412 on the caller's own task).
                        ("tag", "delete") if template.starts_with("/v1/orgs/{org}/tasks/") => None,
                        _ => Some(404),
                    };
                    let what =
                        format!("{method} {template} with {varied} varied, If-Match {if_match:?}");
                    if let Some(expected) = expected {
                        assert_eq!(foreign.0, expected, "{what}: {} {}", foreign.2, foreign.1);
                    }
                    assert_eq!(
                        (foreign.0, &foreign.1),
                        (missing.0, &missing.1),
                        "{what}: a foreign id must answer exactly as a missing one"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked >= 40,
        "only {checked} cases: the document lists too few routes"
    );
    assert_eq!(
        events_in(&app, &b_streams).await,
        b_events_before,
        "the other organization's streams did not change"
    );
}

/// An organization with one object of every kind a path can name.
struct World {
    ids: std::collections::HashMap<&'static str, Uuid>,
}

impl World {
    async fn build(app: &TestApp, org: Uuid, owner: &User, key: &str) -> World {
        let member = app
            .member(org, owner, &format!("m{key}").to_lowercase(), "member")
            .await;
        let project = app.project(org, owner, key).await;
        let task = app.task(org, project, owner, "Task").await;
        let r = app
            .post(
                &format!("/v1/orgs/{org}/tasks/{task}/comments"),
                owner,
                json!({"body": "a comment"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let comment = id_of(r).await;
        let r = app
            .post(
                &format!("/v1/orgs/{org}/tags"),
                owner,
                json!({"name": "bug"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        let tag = id_of(r).await;
        let r = app
            .post(
                &format!("/v1/orgs/{org}/tasks/{task}/tags"),
                owner,
                json!({"tag_id": tag}),
            )
            .await;
        assert_eq!(r.status(), 200);
        World {
            ids: [
                ("org", org),
                ("user", member.id),
                ("project", project),
                ("task", task),
                ("comment", comment),
                ("tag", tag),
                // Notifications are the read side's; none is known here.
                ("notification", Uuid::now_v7()),
            ]
            .into(),
        }
    }

    fn id(&self, param: &str) -> Uuid {
        *self
            .ids
            .get(param)
            .unwrap_or_else(|| panic!("no object for path parameter {{{param}}}"))
    }
}

fn fill(template: &str, mut id: impl FnMut(&str) -> Uuid) -> String {
    template
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(p) => id(p).to_string(),
                None => s.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// A body the route accepts, so that only the ids decide the answer.
fn body_for(method: &str, template: &str, own: &World) -> Option<Value> {
    let tail = template.trim_start_matches("/v1/orgs/{org}");
    Some(match (method, tail) {
        ("post", "/members") => {
            json!({"user_id": Uuid::now_v7(), "handle": "newcomer", "role": "member"})
        }
        ("patch", "/members/{user}") => json!({"role": "admin"}),
        ("post", "/projects") => json!({"name": "New", "key": "NEW"}),
        ("patch", "/projects/{project}") => json!({"name": "Renamed"}),
        ("post", "/projects/{project}/tasks") => json!({"title": "New task"}),
        ("patch", "/tasks/{task}") => json!({"title": "Edited"}),
        ("post", "/tasks/{task}/assignee") => json!({"assignee": null}),
        ("post", "/tasks/{task}/status") => json!({"status": "todo"}),
        ("post", "/tasks/{task}/tags") => json!({"tag_id": own.id("tag")}),
        ("post", "/tasks/{task}/comments") => json!({"body": "hello"}),
        ("patch", "/tasks/{task}/comments/{comment}") => json!({"body": "edited"}),
        ("post", "/tags") => json!({"name": "feature"}),
        ("patch", "/tags/{tag}") => json!({"name": "renamed"}),
        ("delete", _) => return None,
        ("post", t)
            if t.ends_with("/archive") || t.ends_with("/unarchive") || t.ends_with("/read") =>
        {
            return None
        }
        other => panic!("no body known for {other:?}: add one"),
    })
}

async fn events_in(app: &TestApp, streams: &[String]) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT stream_id, max(stream_version) FROM events WHERE stream_id = ANY($1) \
         GROUP BY stream_id ORDER BY stream_id",
    )
    .bind(streams)
    .fetch_all(&app.db)
    .await
    .unwrap()
}
