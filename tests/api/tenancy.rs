//! One organization never sees or touches another's data.

use reqwest::Method;
use serde_json::{json, Value};
use tasklog_domain::inbox_id;
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

/// The matrix above names no real notification (they are the read side's).
/// Here one is real and the caller's own, in another of her organizations:
/// marked read through this one, it is not found, exactly as a missing one,
/// and nothing is appended anywhere. Through its own organization it is.
#[tokio::test]
async fn a_notification_of_another_of_the_callers_organizations_is_not_found_through_this_one() {
    let sys = crate::system::spawn_system().await;
    let app = &sys.app;
    let (org_a, alice) = app.org().await;
    let (org_b, bob) = app.org().await;
    let r = app
        .post(
            &format!("/v1/orgs/{org_b}/members"),
            &bob,
            json!({"user_id": alice.id, "handle": "alice", "role": "member"}),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let project = app.project(org_b, &bob, "NTF").await;
    let task = app.task(org_b, project, &bob, "Review").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org_b}/tasks/{task}/comments"),
            &bob,
            json!({"body": "@alice please review"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let written: Value = r.json().await.unwrap();
    let r = sys
        .get(
            &format!("/v1/orgs/{org_b}/me/notifications"),
            &alice,
            written["consistency_token"].as_str(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let inbox: Value = r.json().await.unwrap();
    assert_eq!(inbox["items"].as_array().unwrap().len(), 1, "{inbox}");
    let notification = inbox["items"][0]["id"].as_str().unwrap().to_owned();

    // The test's database is its own: every event in it is this test's.
    let all_events = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    let before = all_events().await;
    let alice = &alice;
    let mark = |org: Uuid, id: String, if_match: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = if_match.map(|v| ("if-match", v)).into_iter().collect();
        async move {
            let path = format!("/v1/orgs/{org}/me/notifications/{id}/read");
            app.request(Method::POST, &path, alice, None, &headers)
                .await
        }
    };
    for if_match in [None, Some("\"1\""), Some("*")] {
        let r = mark(org_a, notification.clone(), if_match).await;
        let through_a = assert_problem(r, 404, "not_found").await;
        let r = mark(org_a, Uuid::now_v7().to_string(), if_match).await;
        let missing = assert_problem(r, 404, "not_found").await;
        assert_eq!(
            through_a, missing,
            "If-Match {if_match:?}: her notification in B reads through A exactly as a missing one"
        );
    }
    assert_eq!(all_events().await, before, "nothing was appended");
    let inbox_in = |org: Uuid| format!("inbox-{}", inbox_id(org, alice.id));
    assert!(app.stream(&inbox_in(org_a)).await.is_empty());

    // It is real and hers: through B it is marked read, in her inbox in B
    // only (A's history never holds it, nor its hash or version).
    let r = mark(org_b, notification.clone(), None).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(app.stream(&inbox_in(org_a)).await.is_empty());
    assert!(app.stream(&format!("inbox-{}", alice.id)).await.is_empty());
    let inbox = app.stream(&inbox_in(org_b)).await;
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].0, "NotificationRead");
    assert_eq!(inbox[0].1["notification_id"], notification.as_str());
    sys.stop().await;
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
