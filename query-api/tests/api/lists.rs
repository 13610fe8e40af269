use std::cmp::Reverse;
use std::collections::HashSet;

use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{assert_problem, ids, spawn_app, SeededTask, TestApp};

/// The ids of the non-archived seeded tasks matching `keep`, in creation order.
fn expected(app: &TestApp, keep: impl Fn(&SeededTask) -> bool) -> Vec<Uuid> {
    app.world
        .tasks
        .iter()
        .filter(|t| !t.archived && keep(t))
        .map(|t| t.id)
        .collect()
}

/// Asserts the list under `query` is exactly `want`, a proper, non-empty part of the project.
async fn assert_narrows(app: &TestApp, query: &str, want: Vec<Uuid>) {
    let all = expected(app, |_| true);
    assert!(
        !want.is_empty() && want.len() < all.len(),
        "{query} narrows nothing"
    );
    assert_eq!(listed(app, query).await, want, "{query}");
}

async fn listed(app: &TestApp, query: &str) -> Vec<Uuid> {
    let w = &app.world;
    let body = app
        .json(
            &format!("/v1/orgs/{}/projects/{}/tasks?{query}", w.org, w.project),
            &w.alice,
        )
        .await;
    ids(&body)
}

#[tokio::test]
async fn each_task_filter_narrows_the_list_to_the_matching_tasks() {
    let app = spawn_app().await;
    let w = &app.world;
    let (alice, bug) = (w.alice.id, w.bug);

    assert_eq!(listed(&app, "").await, expected(&app, |_| true));
    assert_narrows(
        &app,
        "status=doing",
        expected(&app, |t| t.status == "doing"),
    )
    .await;
    let todo_or_done = expected(&app, |t| t.status == "todo" || t.status == "done");
    assert_narrows(&app, "status=todo,done", todo_or_done.clone()).await;
    assert_narrows(&app, "status=todo&status=done", todo_or_done).await;
    assert_narrows(
        &app,
        &format!("assignee={alice}"),
        expected(&app, |t| t.assignee == Some(alice)),
    )
    .await;
    assert_narrows(
        &app,
        "assignee=none",
        expected(&app, |t| t.assignee.is_none()),
    )
    .await;
    assert_narrows(
        &app,
        &format!("tag={bug}"),
        expected(&app, |t| t.tags.contains(&bug)),
    )
    .await;
    assert_narrows(
        &app,
        "priority=high,urgent",
        expected(&app, |t| t.priority == "high" || t.priority == "urgent"),
    )
    .await;
    let from = crate::world::date("2026-02-01");
    let to = crate::world::date("2026-03-10");
    assert_narrows(
        &app,
        "due_after=2026-02-01&due_before=2026-03-10",
        expected(&app, |t| t.due.is_some_and(|d| d > from && d < to)),
    )
    .await;
    assert_narrows(
        &app,
        "q=login",
        expected(&app, |t| t.title.to_lowercase().contains("login")),
    )
    .await;
    assert_eq!(
        listed(&app, "q=dashboard%20export").await,
        vec![w.task("Dashboard export").id],
        "every word must match"
    );
    assert_eq!(
        listed(&app, "archived=true").await,
        vec![w.task("Old login flow").id]
    );
    assert_eq!(
        listed(&app, &format!("status=todo&assignee={alice}&priority=high")).await,
        vec![w.task("Fix login redirect").id],
        "filters combine"
    );
    let one = app
        .json(
            &format!("/v1/orgs/{}/projects/{}/tasks?q=crash", w.org, w.project),
            &w.alice,
        )
        .await;
    let task = &one["items"][0];
    let seeded = w.task("Crash on save");
    assert_eq!(task["key"], "WEB-3");
    assert_eq!(task["number"], 3);
    assert_eq!(task["status_category"], "started");
    assert_eq!(task["priority"], "urgent");
    assert_eq!(task["due_date"], "2026-02-15");
    assert_eq!(task["comment_count"], 2);
    assert_eq!(task["project_id"], w.project.to_string());
    assert_eq!(task["assignee"], alice.to_string());
    assert_eq!(task["tags"], serde_json::json!(seeded.tags));
    assert_eq!(task["archived"], false);
    assert_eq!(task["version"], seeded.version);
    assert!(task.get("priority_rank").is_none());
    assert_eq!(one["next_cursor"], Value::Null);

    app.teardown().await;
}

#[tokio::test]
async fn malformed_list_parameters_are_rejected_naming_the_parameter() {
    let app = spawn_app().await;
    let w = &app.world;
    let other_sort_cursor = {
        let page = app
            .json(
                &format!("/v1/orgs/{}/projects/{}/tasks?limit=1", w.org, w.project),
                &w.alice,
            )
            .await;
        page["next_cursor"].as_str().unwrap().to_owned()
    };

    for (query, param) in [
        ("assignee=bob", "assignee"),
        ("tag=x", "tag"),
        ("priority=high,huge", "priority"),
        ("due_before=2026-13-01", "due_before"),
        ("due_after=tomorrow", "due_after"),
        ("archived=maybe", "archived"),
        ("sort=title", "sort"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%21%21", "cursor"),
        ("cursor=bm9wZQ", "cursor"),
        ("sort=-priority&cursor=CURSOR", "cursor"),
        ("sort=due&sort=created", "sort"),
        ("colour=red", "colour"),
    ] {
        let query = query.replace("CURSOR", &other_sort_cursor);
        let r = app
            .get(
                &format!("/v1/orgs/{}/projects/{}/tasks?{query}", w.org, w.project),
                &w.alice,
            )
            .await;
        let body = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], param, "{query}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(param));
    }

    app.teardown().await;
}

/// Every page of the task list under `query`, following `next_cursor`.
async fn all_pages(app: &TestApp, query: &str) -> (Vec<Uuid>, usize) {
    let w = &app.world;
    let base = format!("/v1/orgs/{}/projects/{}/tasks?{query}", w.org, w.project);
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = base.clone();
    loop {
        let page = app.json(&path, &w.alice).await;
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("{base}&cursor={c}"),
            None => return (seen, pages),
        }
        assert!(pages < 100, "pagination does not end");
    }
}

#[tokio::test]
async fn every_sort_pages_through_every_task_exactly_once_in_order() {
    let app = spawn_app().await;
    let live: Vec<SeededTask> = app
        .world
        .tasks
        .iter()
        .filter(|t| !t.archived)
        .cloned()
        .collect();
    let sorted = |f: &dyn Fn(&mut Vec<SeededTask>)| {
        let mut v = live.clone();
        f(&mut v);
        v.iter().map(|t| t.id).collect::<Vec<_>>()
    };
    let cases: Vec<(&str, Vec<Uuid>)> = vec![
        (
            "created",
            sorted(&|v| v.sort_by_key(|t| (t.created_at, t.id))),
        ),
        (
            "-created",
            sorted(&|v| v.sort_by_key(|t| Reverse((t.created_at, t.id)))),
        ),
        (
            "updated",
            sorted(&|v| v.sort_by_key(|t| (t.updated_at, t.id))),
        ),
        (
            "-updated",
            sorted(&|v| v.sort_by_key(|t| Reverse((t.updated_at, t.id)))),
        ),
        ("priority", sorted(&|v| v.sort_by_key(|t| (t.rank, t.id)))),
        (
            "-priority",
            sorted(&|v| v.sort_by_key(|t| Reverse((t.rank, t.id)))),
        ),
        (
            "due",
            sorted(&|v| v.sort_by_key(|t| (t.due.is_none(), t.due, t.id))),
        ),
        (
            "-due",
            sorted(&|v| v.sort_by_key(|t| (t.due.is_none(), Reverse((t.due, t.id))))),
        ),
    ];
    // Ties on priority and due dates, and several tasks without a due date,
    // so pages break inside runs of equal keys and inside the NULL tail.
    assert!(live.iter().filter(|t| t.due.is_none()).count() >= 3);
    for (sort, want) in cases {
        for limit in [1, 3, 4, 200] {
            let (got, pages) = all_pages(&app, &format!("sort={sort}&limit={limit}")).await;
            assert_eq!(got, want, "sort={sort} limit={limit}");
            // Fetching one row more than the page tells the last page apart: no empty page.
            assert_eq!(
                pages,
                want.len().div_ceil(limit).max(1),
                "sort={sort} limit={limit}"
            );
            let unique: HashSet<_> = got.iter().collect();
            assert_eq!(
                unique.len(),
                got.len(),
                "sort={sort} limit={limit}: a task twice"
            );
        }
    }
    // Filters hold across pages.
    let (todo, _) = all_pages(&app, "status=todo&sort=-priority&limit=2").await;
    let mut want: Vec<&SeededTask> = live.iter().filter(|t| t.status == "todo").collect();
    want.sort_by_key(|t| Reverse((t.rank, t.id)));
    assert_eq!(todo, want.iter().map(|t| t.id).collect::<Vec<_>>());
    // `updated` is read another way with a filter than without one.
    let (todo, _) = all_pages(&app, "status=todo&sort=-updated&limit=2").await;
    want.sort_by_key(|t| Reverse((t.updated_at, t.id)));
    assert_eq!(todo, want.iter().map(|t| t.id).collect::<Vec<_>>());

    app.teardown().await;
}

#[tokio::test]
async fn the_board_groups_non_archived_tasks_by_status_in_workflow_order() {
    let app = spawn_app().await;
    let w = &app.world;

    let board = app
        .json(
            &format!("/v1/orgs/{}/projects/{}/board", w.org, w.project),
            &w.bob,
        )
        .await;
    let columns = board["columns"].as_array().unwrap();
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["todo", "doing", "done"]);
    assert_eq!(columns[1]["category"], "started");
    for column in columns {
        let status = column["status"].as_str().unwrap();
        let mut want: Vec<&SeededTask> = w
            .tasks
            .iter()
            .filter(|t| !t.archived && t.status == status)
            .collect();
        want.sort_by_key(|t| (Reverse(t.rank), t.created_at));
        let got: Vec<Uuid> = column["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            got,
            want.iter().map(|t| t.id).collect::<Vec<_>>(),
            "{status}"
        );
        assert_eq!(column["total"], want.len());
    }
    let empty = app
        .json(
            &format!("/v1/orgs/{}/projects/{}/board", w.org, w.empty_project),
            &w.bob,
        )
        .await;
    assert_eq!(empty["columns"].as_array().unwrap().len(), 3);
    assert!(empty["columns"][0]["tasks"].as_array().unwrap().is_empty());

    app.teardown().await;
}

#[tokio::test]
async fn projects_are_listed_with_their_open_task_counts_by_status() {
    let app = spawn_app().await;
    let w = &app.world;

    let list = app
        .json(&format!("/v1/orgs/{}/projects", w.org), &w.alice)
        .await;
    assert_eq!(ids(&list), vec![w.project, w.empty_project]);
    let web = &list["items"][0];
    assert_eq!(web["key"], "WEB");
    assert_eq!(web["version"], w.project_version);
    // The archived "Old login flow" (todo) is not counted.
    assert_eq!(
        web["task_counts"],
        serde_json::json!({"todo": 5, "doing": 3, "done": 2})
    );
    assert_eq!(list["items"][1]["task_counts"], serde_json::json!({}));
    assert!(web.get("workflow").is_none());

    let r = app
        .get(
            &format!("/v1/orgs/{}/projects/{}", w.org, w.project),
            &w.alice,
        )
        .await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap();
    assert!(
        etag.starts_with(&format!("\"{}-", w.project_version)),
        "the version leads: {etag}"
    );
    let detail: Value = r.json().await.unwrap();
    assert_eq!(detail["task_counts"], web["task_counts"]);
    assert_eq!(detail["workflow"]["statuses"][1]["name"], "doing");
    assert_eq!(detail["workflow"]["initial"], "todo");

    app.teardown().await;
}

#[tokio::test]
async fn tags_are_listed_by_name_with_usage_counts_defaulting_to_zero() {
    let app = spawn_app().await;
    let w = &app.world;

    let tags = app
        .json(&format!("/v1/orgs/{}/tags", w.org), &w.alice)
        .await;
    assert_eq!(
        tags,
        serde_json::json!({"items": [
            {"id": w.bug, "name": "bug", "color": "#ff0000", "usage_count": 3},
            {"id": w.chore, "name": "chore", "color": null, "usage_count": 0},
            {"id": w.ui, "name": "ui", "color": "#0000ff", "usage_count": 2},
        ]})
    );

    app.teardown().await;
}

#[tokio::test]
async fn members_are_listed_by_handle_and_any_role_may_read() {
    let app = spawn_app().await;
    let w = &app.world;

    let members = app
        .json(&format!("/v1/orgs/{}/members", w.org), &w.bob)
        .await;
    let handles: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles, ["alice", "bob", "dave"]);
    assert_eq!(members["items"][0]["user_id"], w.alice.id.to_string());
    assert_eq!(members["items"][0]["role"], "owner");
    assert_eq!(members["items"][0]["joined_at"], "2026-01-01T00:01:00Z");

    app.teardown().await;
}

#[tokio::test]
async fn notifications_are_the_callers_own_newest_first_and_filter_unread() {
    let app = spawn_app().await;
    let w = &app.world;
    let path = format!("/v1/orgs/{}/me/notifications", w.org);
    let n = &w.notifications;

    let all = app.json(&path, &w.alice).await;
    assert_eq!(ids(&all), vec![n[3], n[2], n[1], n[0]]);
    assert_eq!(all["items"][3]["read"], true);
    let mention = &all["items"][2];
    assert_eq!(mention["kind"], "mentioned");
    assert_eq!(mention["task_key"], "WEB-3");
    assert_eq!(mention["task_title"], "Crash on save");
    assert_eq!(mention["comment_id"], w.comments[1].to_string());
    assert_eq!(mention["actor"], w.bob.id.to_string());
    assert_eq!(mention["read"], false);

    let unread = app.json(&format!("{path}?unread=true"), &w.alice).await;
    assert_eq!(ids(&unread), vec![n[3], n[2], n[1]]);

    let first = app.json(&format!("{path}?limit=2"), &w.alice).await;
    assert_eq!(ids(&first), vec![n[3], n[2]]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .json(&format!("{path}?limit=2&cursor={cursor}"), &w.alice)
        .await;
    assert_eq!(ids(&second), vec![n[1], n[0]]);
    assert_eq!(second["next_cursor"], Value::Null);

    let bobs = app.json(&path, &w.bob).await;
    assert_eq!(bobs["items"].as_array().unwrap().len(), 1);

    app.teardown().await;
}
