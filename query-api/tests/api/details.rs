use serde_json::{json, Value};
use tasklog_domain::{TagEvent, TagRenamed};
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp};
use crate::world::moves_to;

#[tokio::test]
async fn a_task_detail_has_its_live_comments_oldest_first_its_tags_and_an_etag() {
    let app = spawn_app().await;
    let w = &app.world;
    let task = w.task("Crash on save");
    let path = format!("/v1/orgs/{}/tasks/{}", w.org, task.id);

    let r = app.get(&path, &w.alice).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with(&format!("\"{}-", task.version)),
        "the version leads: {etag}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], task.id.to_string());
    assert_eq!(body["key"], "WEB-3");
    assert_eq!(body["title"], "Crash on save");
    assert_eq!(body["description"], "Details about crash on save");
    assert_eq!(body["status"], "doing");
    assert_eq!(body["created_by"], w.alice.id.to_string());
    assert_eq!(body["created_at"], "2026-01-01T00:12:00Z");
    let comments = body["comments"].as_array().unwrap();
    let comment_ids: Vec<Uuid> = comments
        .iter()
        .map(|c| c["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(comment_ids, w.comments, "oldest first");
    assert!(!comment_ids.contains(&w.deleted_comment));
    assert_eq!(comments[0]["author"], w.bob.id.to_string());
    assert_eq!(comments[0]["body"], "Repro attached");
    assert_eq!(comments[0]["edited_at"], Value::Null);
    assert_eq!(comments[1]["mentions"], json!([w.bob.id]));
    assert_eq!(comments[1]["edited_at"], "2026-01-01T02:10:00Z");
    assert_eq!(
        body["tag_details"],
        json!([
            {"id": w.bug, "name": "bug", "color": "#ff0000"},
            {"id": w.ui, "name": "ui", "color": "#0000ff"},
        ])
    );

    let unchanged = app
        .get_as(&path, &w.alice, &[("if-none-match", &etag)])
        .await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["etag"], etag.as_str());
    let changed = app
        .get_as(&path, &w.alice, &[("if-none-match", "\"2\"")])
        .await;
    assert_eq!(changed.status(), 200);

    app.teardown().await;
}

#[tokio::test]
async fn a_tasks_activity_is_paged_in_log_order() {
    let app = spawn_app().await;
    let w = &app.world;
    let task = w.task("Crash on save").id;
    // Its events as the log holds them (another task's history is left out).
    let stream = w
        .log
        .store()
        .read_stream(&format!("task-{task}"), 1)
        .await
        .unwrap();
    assert!(stream.len() > 4, "a history worth paging");
    let in_log_order: Vec<Uuid> = stream.iter().map(|e| e.event_id).collect();
    let path = format!("/v1/orgs/{}/tasks/{task}/activity", w.org);

    let all = app.json(&path, &w.alice).await;
    let got: Vec<Uuid> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["event_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, in_log_order);
    assert_eq!(all["items"][0]["event_type"], "TaskCreated");
    assert_eq!(all["items"][0]["data"], stream[0].payload);
    assert_eq!(all["next_cursor"], Value::Null);

    let mut paged = Vec::new();
    let mut next = format!("{path}?limit=2");
    loop {
        let page = app.json(&next, &w.alice).await;
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["event_id"].as_str().unwrap().parse::<Uuid>().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => next = format!("{path}?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, in_log_order);

    app.teardown().await;
}

/// `GET path` with `If-None-Match: etag`: (status, ETag, body).
async fn revalidate(app: &TestApp, path: &str, etag: &str) -> (u16, String, String) {
    let r = app
        .get_as(path, &app.world.alice, &[("if-none-match", etag)])
        .await;
    let status = r.status().as_u16();
    let tag = r.headers()["etag"].to_str().unwrap().to_owned();
    (status, tag, r.text().await.unwrap())
}

#[tokio::test]
async fn a_tasks_etag_changes_when_one_of_its_tags_is_renamed() {
    let app = spawn_app().await;
    let w = &app.world;
    let path = format!("/v1/orgs/{}/tasks/{}", w.org, w.task("Crash on save").id);
    let (_, old, _) = revalidate(&app, &path, "\"0\"").await;
    assert_eq!(revalidate(&app, &path, &old).await.0, 304);

    // The directory projection applies TagRenamed: the task's version stays.
    let renamed = TagEvent::from(TagRenamed {
        tag_id: w.bug,
        from: "bug".into(),
        to: "defect".into(),
    });
    let applied = w
        .write(&format!("tags-{}", w.org), &w.alice, [renamed])
        .await;
    w.projections.catch_up(applied.position).await;

    let (status, new, body) = revalidate(&app, &path, &old).await;
    assert_eq!(status, 200, "the old ETag no longer matches");
    assert_ne!(new, old);
    let version = w.task("Crash on save").version;
    assert!(
        new.starts_with(&format!("\"{version}-")),
        "the version is unchanged: {new}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["tag_details"][0]["name"], "defect", "{body}");
    assert_eq!(revalidate(&app, &path, &new).await.0, 304);

    app.teardown().await;
}

#[tokio::test]
async fn a_projects_etag_changes_when_its_task_counts_do() {
    let app = spawn_app().await;
    let w = &app.world;
    let path = format!("/v1/orgs/{}/projects/{}", w.org, w.project);
    let (_, old, body) = revalidate(&app, &path, "\"0\"").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["task_counts"],
        json!({"todo": 5, "doing": 3, "done": 2})
    );
    assert_eq!(revalidate(&app, &path, &old).await.0, 304);

    // The tasks projection applies TaskStatusChanged: the project's version stays.
    let task = format!("task-{}", w.task("Plan sprint").id);
    let applied = w.write(&task, &w.alice, moves_to("done")).await;
    w.projections.catch_up(applied.position).await;

    let (status, new, body) = revalidate(&app, &path, &old).await;
    assert_eq!(status, 200, "the old ETag no longer matches");
    assert_ne!(new, old);
    assert!(
        new.starts_with(&format!("\"{}-", w.project_version)),
        "the version is unchanged: {new}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["task_counts"],
        json!({"todo": 4, "doing": 3, "done": 3})
    );
    assert_eq!(revalidate(&app, &path, &new).await.0, 304);

    app.teardown().await;
}
