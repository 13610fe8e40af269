//! The auditor API end to end: histories written through the command API
//! (or, where times must be known, domain events through the store), read
//! back over a real socket from the real app against real PostgreSQL.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use tasklog_domain::{
    stream_name, MemberAdded, MemberRoleChanged, OrgEvent, Organization, OrganizationCreated, Role,
};
use tasklog_testkit::{By, EventLog};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, TestApp, User};

/// An organization with an auditor, a member and a viewer besides its owner.
struct Org {
    id: Uuid,
    owner: User,
    auditor: User,
    member: User,
    viewer: User,
}

async fn org_with_roles(app: &TestApp) -> Org {
    let (id, owner) = app.org().await;
    let auditor = app.member(id, &owner, "audra", "auditor").await;
    let member = app.member(id, &owner, "mel", "member").await;
    let viewer = app.member(id, &owner, "vic", "viewer").await;
    Org {
        id,
        owner,
        auditor,
        member,
        viewer,
    }
}

/// The consistency token (the position of the last event) of a command's answer.
async fn token_of(r: reqwest::Response) -> String {
    assert!(r.status().is_success(), "{}", r.status());
    let body: Value = r.json().await.unwrap();
    body["consistency_token"].as_str().unwrap().to_owned()
}

/// The JSON of a 200 answer of the auditor API.
async fn read(app: &TestApp, path: &str, user: &User) -> Value {
    let r = app.audit_get(path, user).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Every item of every page of `path` (a list), following `next_cursor`
/// up to an empty page.
async fn walk(app: &TestApp, path: &str, user: &User) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let body = read(app, &url, user).await;
        items.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => {
                assert_ne!(
                    cursor.as_deref(),
                    Some(c),
                    "{path}: the cursor did not move"
                );
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    items
}

/// Waits until the log of `org` shows at least `n` events of `kind`: a
/// transaction of any database of the server may hold the log's horizon
/// back for a moment, and a reader asks again, as a follower would.
async fn visible(app: &TestApp, org: Uuid, kind: &str, n: usize, user: &User) {
    for _ in 0..500 {
        let body = read(
            app,
            &format!("/v1/orgs/{org}/audit/events?kind={kind}&limit=200"),
            user,
        )
        .await;
        if body["items"].as_array().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{n} {kind} events of {org} never showed");
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of `org`'s events as stored, in log order, optionally of one kind.
async fn stored_ids(app: &TestApp, org: Uuid, kind: Option<&str>) -> Vec<String> {
    sqlx::query_scalar::<_, Uuid>(
        "SELECT event_id FROM events WHERE org_id = $1 \
         AND ($2::text IS NULL OR split_part(stream_id, '-', 1) = $2) \
         ORDER BY transaction_id, global_position",
    )
    .bind(org)
    .bind(kind)
    .fetch_all(&app.db)
    .await
    .unwrap()
    .into_iter()
    .map(|id| id.to_string())
    .collect()
}

/// The audit reads recorded for `org`, oldest first.
async fn recorded_reads(app: &TestApp, org: Uuid) -> Vec<(Option<Uuid>, Value)> {
    sqlx::query_as(
        "SELECT actor_id, payload FROM events WHERE stream_id = $1 AND org_id = $2 \
         AND event_type = 'AuditLogRead' ORDER BY stream_version",
    )
    .bind(format!("audit-{org}"))
    .bind(org)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_log_shows_each_event_with_its_whole_envelope_and_chained_hashes() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let project = app.project(o.id, &o.owner, "AUD").await;
    let task = app.task(o.id, project, &o.member, "Check the books").await;
    visible(&app, o.id, "task", 1, &o.auditor).await;

    let events = walk(
        &app,
        &format!("/v1/orgs/{}/audit/events?limit=3", o.id),
        &o.auditor,
    )
    .await;
    assert_eq!(
        ids(&events),
        stored_ids(&app, o.id, None).await[..events.len()]
    );
    let created = events
        .iter()
        .find(|e| e["event_type"] == "TaskCreated")
        .expect("the task's creation is in the log");
    assert_eq!(created["stream_id"], format!("task-{task}"));
    assert_eq!(created["actor_id"], o.member.id.to_string());
    assert_eq!(created["payload"]["title"], "Check the books");
    for field in [
        "event_id",
        "stream_version",
        "position",
        "schema_version",
        "occurred_at",
        "recorded_at",
        "org_id",
        "correlation_id",
        "causation_id",
        "prev_hash",
        "hash",
    ] {
        assert!(created.get(field).is_some(), "{field} missing: {created}");
    }
    // Each stream's events link to the one before them.
    let mut last_hash: std::collections::HashMap<String, Value> = Default::default();
    for e in &events {
        let hash = e["hash"].as_str().unwrap();
        assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
        let stream = e["stream_id"].as_str().unwrap().to_owned();
        let expected = last_hash.get(&stream).cloned().unwrap_or(Value::Null);
        assert_eq!(e["prev_hash"], expected, "{e}");
        last_hash.insert(stream, e["hash"].clone());
    }
}

#[tokio::test]
async fn each_filter_keeps_only_the_events_it_names() {
    let app = spawn_app().await;
    let log = EventLog::new(&app.db);
    let (org, owner, auditor) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
    let at = |minutes: i64| t0 + Duration::minutes(minutes);
    let by = |actor: Uuid, minutes: i64| By {
        org,
        actor,
        at: at(minutes),
    };
    let org_stream = stream_name::<Organization>(org);
    log.append(
        &org_stream,
        by(owner, 0),
        [OrgEvent::from(OrganizationCreated {
            org_id: org,
            name: "Filters".into(),
            owner_id: owner,
            owner_handle: "own".into(),
        })],
    )
    .await;
    log.append(
        &org_stream,
        by(owner, 10),
        [OrgEvent::from(MemberAdded {
            user_id: auditor,
            handle: "aud".into(),
            role: Role::Auditor,
        })],
    )
    .await;
    log.append(
        &org_stream,
        by(auditor, 20),
        [OrgEvent::from(MemberRoleChanged {
            user_id: auditor,
            from: Role::Auditor,
            to: Role::Auditor,
        })],
    )
    .await;
    let auditor_user = User {
        id: auditor,
        token: tasklog_testkit::token(auditor, "aud"),
    };
    visible(&app, org, "org", 3, &auditor_user).await;
    let list = |query: &str| {
        let path = format!("/v1/orgs/{org}/audit/events?{query}");
        let app = &app;
        let user = &auditor_user;
        async move {
            let body = read(app, &path, user).await;
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_type"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let all = ["OrganizationCreated", "MemberAdded", "MemberRoleChanged"];
    assert_eq!(list(&format!("stream={org_stream}")).await, all);
    assert_eq!(list("kind=org").await, all);
    assert!(list("kind=task,project").await.is_empty());
    assert_eq!(list("type=MemberAdded").await, ["MemberAdded"]);
    assert_eq!(
        list("type=MemberAdded&type=OrganizationCreated").await,
        ["OrganizationCreated", "MemberAdded"]
    );
    assert_eq!(
        list(&format!("actor={auditor}&kind=org")).await,
        ["MemberRoleChanged"]
    );
    assert_eq!(list(&format!("actor={owner}&kind=org")).await, all[..2]);
    assert_eq!(list("from=2026-01-01T09:10:00Z").await[..2], all[1..]);
    assert_eq!(list("to=2026-01-01T09:10:00Z").await, all[..1]);
    assert_eq!(
        list("from=2026-01-01T09:05:00Z&to=2026-01-01T09:15:00Z&kind=org").await,
        ["MemberAdded"]
    );
    assert_eq!(
        list("from=2026-01-01T10:10:00%2B01:00&kind=org").await,
        all[1..]
    );
    assert!(list(&format!("stream=task-{}", Uuid::now_v7()))
        .await
        .is_empty());
}

#[tokio::test]
async fn pages_hold_every_event_once_even_when_events_are_appended_between_them() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let project = app.project(o.id, &o.owner, "PAG").await;
    for i in 0..5 {
        app.task(o.id, project, &o.member, &format!("task {i}"))
            .await;
    }
    let path = format!("/v1/orgs/{}/audit/events?kind=task&limit=2", o.id);
    let (mut items, mut cursor, mut pages, mut empty) = (Vec::new(), None::<String>, 0, 0);
    // An empty page means nothing more is visible yet (a transaction of any
    // database of the server may hold the log's horizon back for a moment):
    // the walker asks again with the cursor it holds, as a follower would.
    while items.len() < 8 {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.clone(),
        };
        let body = read(&app, &url, &o.auditor).await;
        let page = body["items"].as_array().unwrap();
        assert!(page.len() <= 2);
        items.extend(page.iter().cloned());
        if let Some(c) = body["next_cursor"].as_str() {
            cursor = Some(c.to_owned());
        }
        pages += 1;
        if pages <= 3 {
            // Appended while the auditor pages: later pages must hold them.
            app.task(o.id, project, &o.member, &format!("late {pages}"))
                .await;
        }
        if page.is_empty() {
            empty += 1;
            assert!(empty < 500, "the appended events never showed");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let last = read(
        &app,
        &format!("{path}&cursor={}", cursor.unwrap()),
        &o.auditor,
    )
    .await;
    assert_eq!(last["items"], json!([]));
    assert_eq!(last["next_cursor"], Value::Null);
    let seen = ids(&items);
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "an event on two pages");
    assert_eq!(seen, stored_ids(&app, o.id, Some("task")).await, "a gap");
}

#[tokio::test]
async fn a_streams_history_is_all_its_events_by_version() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let project = app.project(o.id, &o.owner, "HIS").await;
    let task = app.task(o.id, project, &o.member, "first").await;
    for title in ["second", "third", "fourth"] {
        let r = app
            .patch(
                &format!("/v1/orgs/{}/tasks/{task}", o.id),
                &o.member,
                json!({ "title": title }),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let stream = format!("task-{task}");
    let history = walk(
        &app,
        &format!("/v1/orgs/{}/audit/streams/{stream}?limit=3", o.id),
        &o.owner,
    )
    .await;
    let versions: Vec<u64> = history
        .iter()
        .map(|e| e["stream_version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert!(history.iter().all(|e| e["stream_id"] == stream.as_str()));
    assert_eq!(history[3]["payload"]["title"], "fourth");
    assert_eq!(history[3]["prev_hash"], history[2]["hash"]);
}

#[tokio::test]
async fn as_of_a_position_rebuilds_a_task_a_project_and_the_membership_as_they_were() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let org = o.id;
    let project = app.project(org, &o.owner, "ASOF").await;
    let task = app.task(org, project, &o.member, "draft").await;
    let created = token_of(
        app.patch(
            &format!("/v1/orgs/{org}/tasks/{task}"),
            &o.member,
            json!({ "title": "v1" }),
        )
        .await,
    )
    .await;
    let moved = token_of(
        app.post(
            &format!("/v1/orgs/{org}/tasks/{task}/status"),
            &o.member,
            json!({ "status": "todo" }),
        )
        .await,
    )
    .await;
    let renamed = token_of(
        app.patch(
            &format!("/v1/orgs/{org}/tasks/{task}"),
            &o.member,
            json!({ "title": "v2" }),
        )
        .await,
    )
    .await;
    let project_renamed = token_of(
        app.patch(
            &format!("/v1/orgs/{org}/projects/{project}"),
            &o.owner,
            json!({ "name": "Audited" }),
        )
        .await,
    )
    .await;
    let promoted = token_of(
        app.patch(
            &format!("/v1/orgs/{org}/members/{}", o.viewer.id),
            &o.owner,
            json!({ "role": "admin" }),
        )
        .await,
    )
    .await;
    app.post(
        &format!("/v1/orgs/{org}/projects/{project}/archive"),
        &o.owner,
        json!({}),
    )
    .await;

    let as_of = |stream: String, at: &str| {
        let path = format!("/v1/orgs/{org}/audit/streams/{stream}/as-of?at={at}");
        let (app, user) = (&app, &o.auditor);
        async move { read(app, &path, user).await }
    };
    let t = |at: &str| as_of(format!("task-{task}"), at);
    let s = t(&created).await;
    assert_eq!(
        (s["state"]["title"].clone(), s["state"]["status"].clone()),
        (json!("v1"), json!("backlog"))
    );
    assert_eq!(s["version"], 2);
    assert_eq!(s["position"], created.as_str());
    let s = t(&moved).await;
    assert_eq!(
        (s["state"]["title"].clone(), s["state"]["status"].clone()),
        (json!("v1"), json!("todo"))
    );
    let s = t(&renamed).await;
    assert_eq!(s["state"]["title"], "v2");
    assert_eq!(s["state"]["id"], task.to_string());
    let s = t("1.0").await;
    assert_eq!(
        (s["version"].clone(), s["state"].clone()),
        (json!(0), Value::Null)
    );

    let p = |at: &str| as_of(format!("project-{project}"), at);
    let s = p(&renamed).await;
    assert_eq!(
        (s["state"]["name"].clone(), s["state"]["archived"].clone()),
        (json!("Website"), json!(false))
    );
    let s = p(&project_renamed).await;
    assert_eq!(
        (s["state"]["name"].clone(), s["state"]["archived"].clone()),
        (json!("Audited"), json!(false))
    );
    let s = p("18446744073709551.0").await;
    assert_eq!(s["state"]["archived"], true);

    let m = |at: &str| as_of(format!("org-{org}"), at);
    let viewer = o.viewer.id.to_string();
    assert_eq!(
        m(&project_renamed).await["state"]["members"][&viewer]["role"],
        "viewer"
    );
    assert_eq!(
        m(&promoted).await["state"]["members"][&viewer]["role"],
        "admin"
    );
}

#[tokio::test]
async fn as_of_a_time_takes_the_events_that_occurred_by_then() {
    let app = spawn_app().await;
    let log = EventLog::new(&app.db);
    let (org, owner, auditor, newcomer) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
    let by = |minutes: i64| By {
        org,
        actor: owner,
        at: t0 + Duration::minutes(minutes),
    };
    let stream = stream_name::<Organization>(org);
    let history: [(i64, OrgEvent); 4] = [
        (
            0,
            OrganizationCreated {
                org_id: org,
                name: "Timely".into(),
                owner_id: owner,
                owner_handle: "own".into(),
            }
            .into(),
        ),
        (
            5,
            MemberAdded {
                user_id: auditor,
                handle: "aud".into(),
                role: Role::Auditor,
            }
            .into(),
        ),
        (
            10,
            MemberAdded {
                user_id: newcomer,
                handle: "new".into(),
                role: Role::Viewer,
            }
            .into(),
        ),
        (
            20,
            MemberRoleChanged {
                user_id: newcomer,
                from: Role::Viewer,
                to: Role::Member,
            }
            .into(),
        ),
    ];
    for (minutes, event) in history {
        log.append(&stream, by(minutes), [event]).await;
    }
    let user = User {
        id: auditor,
        token: tasklog_testkit::token(auditor, "aud"),
    };
    let role_at = |at: DateTime<Utc>| {
        let path = format!(
            "/v1/orgs/{org}/audit/streams/{stream}/as-of?at={}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
        let (app, user) = (&app, &user);
        async move {
            let s = read(app, &path, user).await;
            (
                s["version"].as_u64().unwrap(),
                s["state"]["members"][newcomer.to_string()]["role"].clone(),
            )
        }
    };
    let minute = |m: i64| t0 + Duration::minutes(m);
    assert_eq!(role_at(minute(9)).await, (2, Value::Null));
    assert_eq!(role_at(minute(10)).await, (3, json!("viewer")));
    assert_eq!(
        role_at(minute(19) + Duration::seconds(59)).await,
        (3, json!("viewer"))
    );
    assert_eq!(role_at(minute(20)).await, (4, json!("member")));
    let before = read(
        &app,
        &format!("/v1/orgs/{org}/audit/streams/{stream}/as-of?at=2026-03-01T07:59:59Z"),
        &user,
    )
    .await;
    assert_eq!(
        (before["version"].clone(), before["state"].clone()),
        (json!(0), Value::Null)
    );
}

#[tokio::test]
async fn a_diff_names_each_changed_field_with_the_event_and_its_actor() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let org = o.id;
    let project = app.project(org, &o.owner, "DIFF").await;
    let task = app.task(org, project, &o.member, "before").await;
    let start = token_of(
        app.patch(
            &format!("/v1/orgs/{org}/tasks/{task}"),
            &o.member,
            json!({ "title": "during" }),
        )
        .await,
    )
    .await;
    let editor = app.member(org, &o.owner, "eddie", "member").await;
    app.patch(
        &format!("/v1/orgs/{org}/tasks/{task}"),
        &editor,
        json!({ "title": "after" }),
    )
    .await;
    let end = token_of(
        app.post(
            &format!("/v1/orgs/{org}/tasks/{task}/status"),
            &o.owner,
            json!({ "status": "todo" }),
        )
        .await,
    )
    .await;
    let diff = read(
        &app,
        &format!("/v1/orgs/{org}/audit/streams/task-{task}/diff?from={start}&to={end}"),
        &o.auditor,
    )
    .await;
    assert_eq!(diff["from"]["version"], 2);
    assert_eq!(diff["to"]["version"], 4);
    let changes = diff["changes"].as_array().unwrap();
    let summary: Vec<(Value, Value, Value)> = changes
        .iter()
        .map(|c| {
            (
                c["event_type"].clone(),
                c["actor_id"].clone(),
                c["fields"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                json!("TaskDetailsEdited"),
                json!(editor.id),
                json!([{ "field": "title", "from": "during", "to": "after" }])
            ),
            (
                json!("TaskStatusChanged"),
                json!(o.owner.id),
                json!([
                    { "field": "status", "from": "backlog", "to": "todo" },
                    { "field": "status_category", "from": "backlog", "to": "unstarted" }
                ])
            ),
        ]
    );
    assert_eq!(changes[1]["position"], end.as_str());
    let stored: Uuid = sqlx::query_scalar(
        "SELECT event_id FROM events WHERE stream_id = $1 AND stream_version = 3",
    )
    .bind(format!("task-{task}"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(changes[0]["event_id"], stored.to_string());
    let r = app
        .audit_get(
            &format!("/v1/orgs/{org}/audit/streams/task-{task}/diff?from={end}&to={start}"),
            &o.auditor,
        )
        .await;
    assert_problem(r, 422, "validation_failed").await;
}

#[tokio::test]
async fn the_http_export_is_the_cli_export_and_verifies_offline() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let project = app.project(o.id, &o.owner, "EXP").await;
    for i in 0..3 {
        app.task(o.id, project, &o.member, &format!("Prüfbericht \"{i}\""))
            .await;
    }
    let r = app
        .audit_get(&format!("/v1/orgs/{}/audit/export", o.id), &o.auditor)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let body = r.text().await.unwrap();

    let summary = tasklog_event_store::export::verify_export(body.as_bytes(), |finding| {
        panic!("the HTTP export has a finding: {finding}")
    })
    .unwrap();
    assert_eq!(summary.findings, 0);

    let file = std::env::temp_dir().join(format!("tasklog-audit-{}.ndjson", Uuid::now_v7()));
    tasklog::audit::export_cli(&app.owner_url, o.id, Some(&file), 2)
        .await
        .unwrap();
    let cli = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    // The header's time is each export's own; every other line is the same.
    let lines = |text: &str| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(lines(&body), lines(&cli));
    assert!(lines(&body).len() > 10);
    assert_eq!(summary.events as usize, lines(&body).len() - 1);
    assert!(
        body.contains("\"event_type\":\"AuditLogRead\""),
        "the export's own read is in it"
    );
}

#[tokio::test]
async fn every_answered_read_is_recorded_with_reader_and_what_was_read() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let project = app.project(o.id, &o.owner, "REC").await;
    let task = app.task(o.id, project, &o.member, "t").await;
    let reads = [
        (
            format!("/v1/orgs/{}/audit/events?kind=task&limit=5", o.id),
            "listAuditEvents",
            None,
        ),
        (
            format!("/v1/orgs/{}/audit/streams/task-{task}", o.id),
            "getAuditStream",
            Some(format!("task-{task}")),
        ),
        (
            format!(
                "/v1/orgs/{}/audit/streams/task-{task}/as-of?at=2030-01-01T00:00:00Z",
                o.id
            ),
            "getAuditStateAsOf",
            Some(format!("task-{task}")),
        ),
        (
            format!("/v1/orgs/{}/audit/export", o.id),
            "exportAuditLog",
            None,
        ),
    ];
    for (path, _, _) in &reads {
        let r = app.audit_get(path, &o.auditor).await;
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
    }
    let recorded = recorded_reads(&app, o.id).await;
    assert_eq!(recorded.len(), reads.len());
    for ((actor, payload), (path, operation, stream)) in recorded.iter().zip(&reads) {
        let (path, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
        assert_eq!(*actor, Some(o.auditor.id));
        assert_eq!(
            *payload,
            json!({
                "reader": o.auditor.id,
                "role": "auditor",
                "operation": operation,
                "path": path,
                "query": query,
                "stream": stream,
            })
        );
    }
    // The record is in the log the auditors read, hash-chained like the rest.
    let trail = read(
        &app,
        &format!("/v1/orgs/{}/audit/streams/audit-{}", o.id, o.id),
        &o.owner,
    )
    .await;
    assert_eq!(trail["items"].as_array().unwrap().len(), reads.len());
}

#[tokio::test]
async fn only_owners_admins_and_auditors_read_the_audit_log() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let admin = app.member(o.id, &o.owner, "adam", "admin").await;
    let path = format!("/v1/orgs/{}/audit/events", o.id);
    for user in [&o.owner, &admin, &o.auditor] {
        assert_eq!(app.audit_get(&path, user).await.status(), 200);
    }
    let reads_before = recorded_reads(&app, o.id).await.len();
    for user in [&o.member, &o.viewer] {
        for path in [
            path.clone(),
            format!("/v1/orgs/{}/audit/streams/org-{}", o.id, o.id),
            format!("/v1/orgs/{}/audit/streams/org-{}/as-of?at=1.0", o.id, o.id),
            format!("/v1/orgs/{}/audit/export", o.id),
        ] {
            assert_problem(app.audit_get(&path, user).await, 403, "forbidden").await;
        }
    }
    assert_eq!(recorded_reads(&app, o.id).await.len(), reads_before);
}

#[tokio::test]
async fn another_organizations_stream_is_answered_exactly_like_a_missing_one() {
    let app = spawn_app().await;
    let a = org_with_roles(&app).await;
    let b = org_with_roles(&app).await;
    let project = app.project(a.id, &a.owner, "SEC").await;
    let task = app.task(a.id, project, &a.member, "secret").await;
    let missing = Uuid::now_v7();
    for suffix in [
        "",
        "/as-of?at=2030-01-01T00:00:00Z",
        "/diff?from=1.0&to=2.0",
        "?limit=1&cursor=MQ",
    ] {
        let foreign = app
            .audit_get(
                &format!("/v1/orgs/{}/audit/streams/task-{task}{suffix}", b.id),
                &b.auditor,
            )
            .await;
        let foreign = assert_problem(foreign, 404, "not_found").await;
        let absent = app
            .audit_get(
                &format!("/v1/orgs/{}/audit/streams/task-{missing}{suffix}", b.id),
                &b.auditor,
            )
            .await;
        assert_eq!(
            foreign,
            assert_problem(absent, 404, "not_found").await,
            "{suffix}"
        );
    }
    // Org A's own path: B's auditor is no member, answered as for an organization that does not exist.
    let theirs = app
        .audit_get(
            &format!("/v1/orgs/{}/audit/streams/task-{task}", a.id),
            &b.auditor,
        )
        .await;
    let nowhere = app
        .audit_get(
            &format!("/v1/orgs/{missing}/audit/streams/task-{task}"),
            &b.auditor,
        )
        .await;
    assert_eq!(
        assert_problem(theirs, 403, "forbidden").await,
        assert_problem(nowhere, 403, "forbidden").await
    );
    assert!(recorded_reads(&app, b.id).await.is_empty());
}

#[tokio::test]
async fn listing_one_organization_shows_nothing_of_another() {
    let app = spawn_app().await;
    let a = org_with_roles(&app).await;
    let b = org_with_roles(&app).await;
    let project = app.project(a.id, &a.owner, "OWN").await;
    let task = app.task(a.id, project, &a.member, "theirs").await;
    let a_hashes: Vec<String> =
        sqlx::query_scalar("SELECT encode(hash, 'hex') FROM events WHERE org_id = $1")
            .bind(a.id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    let one_stream = format!("?stream=task-{task}");
    for query in ["", "?kind=task", one_stream.as_str()] {
        let body = read(
            &app,
            &format!("/v1/orgs/{}/audit/events{query}", b.id),
            &b.auditor,
        )
        .await;
        let text = body.to_string();
        for e in body["items"].as_array().unwrap() {
            assert_eq!(e["org_id"], b.id.to_string());
        }
        assert!(!text.contains(&a.id.to_string()) && !text.contains(&task.to_string()));
        assert!(
            a_hashes.iter().all(|h| !text.contains(h.as_str())),
            "{query}"
        );
    }
    let export = app
        .audit_get(&format!("/v1/orgs/{}/audit/export", b.id), &b.auditor)
        .await
        .text()
        .await
        .unwrap();
    assert!(!export.contains(&a.id.to_string()));
    assert!(a_hashes.iter().all(|h| !export.contains(h.as_str())));
}

#[tokio::test]
async fn bad_input_is_refused_at_the_edge_as_a_problem_and_records_nothing() {
    let app = spawn_app().await;
    let o = org_with_roles(&app).await;
    let org = o.id;
    let task_stream = format!("org-{org}");
    let long = "x".repeat(10_000);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("/v1/orgs/{org}/audit/events?kind=bogus"),
            422,
            "kind",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?kind=task,bogus"),
            422,
            "kind",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?type=TaskExploded"),
            422,
            "type",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?actor=not-a-uuid"),
            422,
            "actor",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?from=yesterday"),
            422,
            "from",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?from=0000-01-01T00:00:00Z"),
            422,
            "from",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?to=2026-13-01T00:00:00Z"),
            422,
            "to",
        ),
        (
            format!(
                "/v1/orgs/{org}/audit/events?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"
            ),
            422,
            "to",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?cursor=garbage!"),
            422,
            "cursor",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?cursor=WzEsLTFd"),
            422,
            "cursor",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?stream=task-123"),
            422,
            "stream",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?stream=task-%00"),
            422,
            "stream",
        ),
        (
            format!("/v1/orgs/{org}/audit/events?stream=task-{long}"),
            422,
            "stream",
        ),
        (format!("/v1/orgs/{org}/audit/events?limit=0"), 422, "limit"),
        (
            format!("/v1/orgs/{org}/audit/events?colour=red"),
            422,
            "colour",
        ),
        (
            format!("/v1/orgs/{org}/audit/streams/{task_stream}/as-of"),
            422,
            "at",
        ),
        (
            format!("/v1/orgs/{org}/audit/streams/{task_stream}/as-of?at=soon"),
            422,
            "at",
        ),
        (
            format!("/v1/orgs/{org}/audit/streams/{task_stream}/as-of?at=1.2.3"),
            422,
            "at",
        ),
        (
            format!("/v1/orgs/{org}/audit/streams/{task_stream}/diff?from=1.0"),
            422,
            "to",
        ),
        (
            format!("/v1/orgs/{org}/audit/streams/{task_stream}?cursor=LTE"),
            422,
            "cursor",
        ),
        (format!("/v1/orgs/{org}/audit/export?page=2"), 422, "page"),
    ];
    for (path, status, field) in &cases {
        let body = assert_problem(
            app.audit_get(path, &o.auditor).await,
            *status,
            "validation_failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], *field, "{path}: {body}");
    }
    for path in [
        "/v1/orgs/not-a-uuid/audit/events".to_owned(),
        format!("/v1/orgs/{org}/audit/streams/task-notauuid"),
        format!("/v1/orgs/{org}/audit/streams/widget-{org}"),
        format!("/v1/orgs/{org}/audit/streams/TASK-{org}/as-of?at=1.0"),
    ] {
        assert_problem(app.audit_get(&path, &o.auditor).await, 404, "not_found").await;
    }
    assert!(recorded_reads(&app, org).await.is_empty());
}

/// Seals every event of the app's log (the sealer as `tasklog serve` runs
/// it, with a test key), and returns the key's public half.
async fn seal_everything(app: &TestApp, app_url: &str) -> ed25519_dalek::VerifyingKey {
    use tasklog::seals::{run_sealer, SealerConfig};
    let key = tasklog_event_store::seal::signing_key_from_hex(&"5e".repeat(32)).unwrap();
    let public = key.verifying_key();
    let config = SealerConfig {
        every_events: 4,
        every: std::time::Duration::from_millis(100),
        idle_wait: std::time::Duration::from_millis(50),
        lease_retry: std::time::Duration::from_millis(50),
        ..SealerConfig::new(key)
    };
    let pool = sqlx::PgPool::connect_lazy(app_url).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sealer = tokio::spawn(run_sealer(pool.clone(), Some(config), stopped));
    let scalar = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    let events = scalar("SELECT count(*) FROM events").await;
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while scalar("SELECT coalesce(max(tree_size), 0) FROM seal_heads").await < events {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the sealer signs a head over the whole log");
    stop.send(true).unwrap();
    sealer.await.unwrap().unwrap();
    pool.close().await;
    public
}

#[tokio::test]
async fn the_seals_are_served_to_an_organizations_auditors_and_check_offline_with_the_key() {
    use tasklog_event_store::seal::{ConsistencyProof, InclusionProof, SignedTreeHead};
    let (app, database) = crate::helpers::spawn_app_alone("tasklog_e2e_seals").await;
    let org = org_with_roles(&app).await;
    let project = app.project(org.id, &org.owner, "SEAL").await;
    let task = app.task(org.id, project, &org.owner, "sealed").await;
    let (other, other_owner) = app.org().await;
    let other_project = app.project(other, &other_owner, "OTHR").await;
    app.task(other, other_project, &other_owner, "theirs").await;
    let public = seal_everything(&app, &database.app_url).await;
    let base = format!("/v1/orgs/{}/audit/seals", org.id);
    let json = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };

    // The latest head covers the whole log, and its signature checks.
    let head: SignedTreeHead = serde_json::from_value(
        json(app.audit_get(&format!("{base}/head"), &org.auditor).await).await,
    )
    .unwrap();
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id NOT LIKE 'audit-%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(head.head.tree_size, events as u64);
    head.verify(&public).unwrap();

    // An inclusion proof of one of the organization's events, by id and by
    // position, against the latest head and an older one.
    let (event_id, position): (Uuid, i64) = sqlx::query_as(
        "SELECT event_id, global_position FROM events WHERE stream_id = $1 ORDER BY stream_version LIMIT 1",
    )
    .bind(format!("task-{task}"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    let proof: InclusionProof = serde_json::from_value(
        json(
            app.audit_get(&format!("{base}/inclusion?event={event_id}"), &org.auditor)
                .await,
        )
        .await,
    )
    .unwrap();
    proof.verify(&public).unwrap();
    assert_eq!(proof.event_id, event_id);
    assert_eq!(proof.position.event, position as u64);
    let by_position = json(
        app.audit_get(
            &format!("{base}/inclusion?position={}", proof.position),
            &org.owner,
        )
        .await,
    )
    .await;
    assert_eq!(by_position, serde_json::to_value(&proof).unwrap());
    let oldest: i64 =
        sqlx::query_scalar("SELECT min(tree_size) FROM seal_heads WHERE tree_size > $1")
            .bind(proof.leaf_index as i64)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let older: InclusionProof = serde_json::from_value(
        json(
            app.audit_get(
                &format!("{base}/inclusion?event={event_id}&size={oldest}"),
                &org.auditor,
            )
            .await,
        )
        .await,
    )
    .unwrap();
    older.verify(&public).unwrap();
    assert_eq!(older.head.head.tree_size, oldest as u64);

    // A consistency proof from the first head to the latest.
    let first: i64 = sqlx::query_scalar("SELECT min(tree_size) FROM seal_heads")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let consistency: ConsistencyProof = serde_json::from_value(
        json(
            app.audit_get(&format!("{base}/consistency?from={first}"), &org.auditor)
                .await,
        )
        .await,
    )
    .unwrap();
    consistency.verify(&public).unwrap();
    assert_eq!(consistency.to, head);

    // Another organization's event is answered exactly as one that does
    // not exist; members get 403; bad input is refused and records nothing.
    let theirs: Uuid = sqlx::query_scalar("SELECT event_id FROM events WHERE org_id = $1 LIMIT 1")
        .bind(other)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let foreign = app
        .audit_get(&format!("{base}/inclusion?event={theirs}"), &org.auditor)
        .await;
    let missing = app
        .audit_get(
            &format!("{base}/inclusion?event={}", Uuid::now_v7()),
            &org.auditor,
        )
        .await;
    assert_eq!(foreign.status(), 404);
    assert_eq!(foreign.text().await.unwrap(), missing.text().await.unwrap());
    let r = app.audit_get(&format!("{base}/head"), &org.member).await;
    assert_eq!(r.status(), 403);
    let reads_before = recorded_reads(&app, org.id).await.len();
    for (query, field) in [
        (
            "inclusion?size=0&event=".to_owned() + &event_id.to_string(),
            "size",
        ),
        (
            format!("inclusion?event={event_id}&position={}", proof.position),
            "position",
        ),
        ("inclusion".to_owned(), "event"),
        ("inclusion?position=12".to_owned(), "position"),
        ("consistency".to_owned(), "from"),
        (
            format!("consistency?from={}&to={first}", head.head.tree_size),
            "to",
        ),
        ("consistency?from=99999999999999999999".to_owned(), "from"),
    ] {
        let r = app
            .audit_get(&format!("{base}/{query}"), &org.auditor)
            .await;
        let body = assert_problem(r, 422, "validation_failed").await;
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
    assert_eq!(recorded_reads(&app, org.id).await.len(), reads_before);

    // Each answered read was recorded.
    let operations: Vec<String> = recorded_reads(&app, org.id)
        .await
        .into_iter()
        .map(|(_, p)| p["operation"].as_str().unwrap().to_owned())
        .collect();
    for op in [
        "getLatestTreeHead",
        "getInclusionProof",
        "getConsistencyProof",
    ] {
        assert!(
            operations.iter().any(|o| o == op),
            "{op} not recorded: {operations:?}"
        );
    }
    database.drop_database().await;
}
