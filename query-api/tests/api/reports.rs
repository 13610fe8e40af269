//! The reports, end to end: events written at chosen times through the
//! store, projected by the real projectors (the PostgreSQL ones and the
//! `analytics` projection into a fresh pair of ClickHouse databases), read
//! back over HTTP from the query API on a random port.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::Response;
use serde_json::{json, Value};
use sqlx::PgPool;
use tasklog_analytics::{Analytics, ClickHouseConfig};
use tasklog_domain::{
    MemberAdded, OrgEvent, OrganizationCreated, Priority, ProjectCreated, ProjectEvent, Role,
    StatusCategory, TaskAssigned, TaskCreated, TaskEvent, TaskStatusChanged, Workflow,
};
use tasklog_event_store::LogPosition;
use tasklog_projectors::{generation, Projection, Projector, ProjectorConfig};
use tasklog_testkit::{
    free_port, spawn_query_api_with_reports, By, EventLog, Projections, TestClickHouse,
    TestDatabase, User,
};
use uuid::Uuid;

use crate::helpers::assert_problem;

/// Hour `hour` of day `day` of March 2026 (Monday the 2nd starts a week).
fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

/// Organization A (alice owner, bob member) with project WEB: WEB-1 created
/// Monday 2 March 09:00 in the backlog, assigned to bob, to `todo` at 10:00,
/// `in_progress` Tuesday 10:00, `done` Wednesday 12:00; WEB-2 created Tuesday
/// 09:00, left in the backlog unassigned. Project MOB has nothing.
/// Organization B (carol) with project OPS, whose one task carol completes
/// the same week. Eve is in no organization.
struct Reporting {
    org: Uuid,
    other_org: Uuid,
    project: Uuid,
    empty_project: Uuid,
    other_project: Uuid,
    alice: User,
    bob: User,
    carol: User,
    eve: User,
    log: EventLog,
    projections: Projections,
    analytics: Projector,
    analytics_generation: i32,
    ch: TestClickHouse,
    pool: PgPool,
    database: TestDatabase,
    /// Where the log ends, every projection's checkpoint with it.
    checkpoint: LogPosition,
}

impl Reporting {
    async fn seed() -> Self {
        let (database, pool) = TestDatabase::migrated("queryapi_reports").await;
        let ch = TestClickHouse::migrated().await;
        let log = EventLog::new(&pool);
        let projections = Projections::start(&pool, &log).await;
        let analytics: Arc<dyn Projection> = Arc::new(Analytics::new(&ch.config).unwrap());
        let analytics_generation = generation::ensure_active(&pool, analytics.as_ref())
            .await
            .unwrap();
        let analytics = Projector::new(
            pool.clone(),
            log.store(),
            analytics,
            ProjectorConfig::default(),
        );

        let (org, other_org) = (Uuid::now_v7(), Uuid::now_v7());
        let (alice, bob, carol, eve) = (
            User::new("alice"),
            User::new("bob"),
            User::new("carol"),
            User::new("eve"),
        );
        let (project, empty_project, other_project) =
            (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let in_a = |t| By {
            org,
            actor: alice.id,
            at: t,
        };
        let in_b = |t| By {
            org: other_org,
            actor: carol.id,
            at: t,
        };
        log.append(
            &format!("org-{org}"),
            in_a(at(1, 9)),
            [
                OrgEvent::from(OrganizationCreated {
                    org_id: org,
                    name: "Acme".into(),
                    owner_id: alice.id,
                    owner_handle: "alice".into(),
                }),
                OrgEvent::from(MemberAdded {
                    user_id: bob.id,
                    handle: "bob".into(),
                    role: Role::Member,
                }),
            ],
        )
        .await;
        log.append(
            &format!("org-{other_org}"),
            in_b(at(1, 9)),
            [OrgEvent::from(OrganizationCreated {
                org_id: other_org,
                name: "Globex".into(),
                owner_id: carol.id,
                owner_handle: "carol".into(),
            })],
        )
        .await;
        for (id, o, key, by) in [
            (project, org, "WEB", in_a(at(1, 10))),
            (empty_project, org, "MOB", in_a(at(1, 10))),
            (other_project, other_org, "OPS", in_b(at(1, 10))),
        ] {
            log.append(
                &format!("project-{id}"),
                by,
                [ProjectEvent::from(ProjectCreated {
                    project_id: id,
                    org_id: o,
                    name: key.into(),
                    key: key.into(),
                    workflow: Workflow::default_workflow(),
                })],
            )
            .await;
        }

        let web1 = task(&log, in_a(at(2, 9)), project, 1, Some(bob.id)).await;
        task(&log, in_a(at(3, 9)), project, 2, None).await;
        log.append(&web1, in_a(at(2, 10)), [to("backlog", "todo")])
            .await;
        log.append(&web1, in_a(at(3, 10)), [to("todo", "in_progress")])
            .await;
        log.append(&web1, in_a(at(4, 12)), [to("in_progress", "done")])
            .await;
        let ops1 = task(&log, in_b(at(2, 9)), other_project, 1, Some(carol.id)).await;
        let last = log
            .append(
                &ops1,
                in_b(at(5, 9)),
                [
                    to("backlog", "todo"),
                    to("todo", "in_progress"),
                    to("in_progress", "done"),
                ],
            )
            .await;

        let world = Self {
            org,
            other_org,
            project,
            empty_project,
            other_project,
            alice,
            bob,
            carol,
            eve,
            log,
            projections,
            analytics,
            analytics_generation,
            ch,
            pool,
            database,
            checkpoint: last.position,
        };
        world.projections.catch_up(last.position).await;
        world.catch_up_analytics(last.position).await;
        world
    }

    /// Steps the `analytics` projection until it has applied `target`.
    async fn catch_up_analytics(&self, target: LogPosition) {
        for _ in 0..6000 {
            let outcome = self
                .analytics
                .project_next_batch(self.analytics_generation, true)
                .await
                .expect("analytics applies its batch");
            assert_eq!(outcome.parked, 0, "nothing is parked");
            if outcome.position >= target {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("analytics did not reach {target}");
    }

    /// The query API reading reports from this test's ClickHouse (or `clickhouse`).
    async fn app(&self, clickhouse: Option<&ClickHouseConfig>, wait: Duration) -> Api {
        let address = spawn_query_api_with_reports(
            self.pool.clone(),
            wait,
            Duration::from_millis(50),
            clickhouse,
        )
        .await;
        Api {
            address,
            client: reqwest::Client::new(),
        }
    }

    async fn teardown(self) {
        let Self {
            pool, database, ch, ..
        } = self;
        drop(ch);
        pool.close().await;
        database.drop_database().await;
    }
}

/// A task of `project` numbered `number`, created in the backlog; its stream.
async fn task(
    log: &EventLog,
    by: By,
    project: Uuid,
    number: u64,
    assignee: Option<Uuid>,
) -> String {
    let id = Uuid::now_v7();
    let stream = format!("task-{id}");
    let mut events = vec![TaskEvent::from(TaskCreated {
        task_id: id,
        org_id: by.org,
        project_id: project,
        number,
        key: format!("T-{number}"),
        title: format!("Task {number}"),
        description: String::new(),
        priority: Priority::Medium,
        due_date: None,
        status: "backlog".into(),
        status_category: StatusCategory::Backlog,
        created_by: by.actor,
    })];
    if let Some(assignee) = assignee {
        events.push(TaskEvent::from(TaskAssigned {
            assignee,
            previous: None,
        }));
    }
    log.append(&stream, by, events).await;
    stream
}

/// A move along the default workflow.
fn to(from: &str, to: &str) -> TaskEvent {
    let category = |s: &str| match s {
        "backlog" => StatusCategory::Backlog,
        "todo" => StatusCategory::Unstarted,
        "in_progress" | "in_review" => StatusCategory::Started,
        "done" => StatusCategory::Completed,
        _ => StatusCategory::Cancelled,
    };
    TaskEvent::from(TaskStatusChanged {
        from: from.into(),
        to: to.into(),
        from_category: category(from),
        to_category: category(to),
    })
}

struct Api {
    address: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, user: &User, headers: &[(&str, &str)]) -> Response {
        let mut req = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(&user.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("the API answers")
    }

    async fn json(&self, path: &str, user: &User) -> Value {
        let r = self.get(path, user, &[]).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// Every report route of `org` over the first week of March, for `project`.
fn every_report(org: Uuid, project: Uuid) -> Vec<String> {
    let range = format!("project={project}&from=2026-03-02&to=2026-03-08");
    [
        format!("cumulative-flow?{range}"),
        format!("cycle-time?{range}"),
        format!("throughput?{range}"),
        format!("created-vs-resolved?{range}"),
        format!("workload?project={project}"),
        "workload".to_owned(),
    ]
    .into_iter()
    .map(|suffix| format!("/v1/orgs/{org}/reports/{suffix}"))
    .collect()
}

#[tokio::test]
async fn a_member_reads_their_organizations_figures_from_the_reporting_views() {
    let w = Reporting::seed().await;
    let app = w.app(Some(&w.ch.config), Duration::from_secs(2)).await;
    let (org, project, bob) = (w.org, w.project, w.bob.id);
    let range = |from: &str, to: &str| format!("project={project}&from={from}&to={to}");

    let flow = app
        .json(
            &format!(
                "/v1/orgs/{org}/reports/cumulative-flow?{}",
                range("2026-03-02", "2026-03-04")
            ),
            &w.bob,
        )
        .await;
    let counts: Vec<(String, String, u64)> = flow["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["tasks"] != 0)
        .map(|r| {
            (
                r["day"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
                r["tasks"].as_u64().unwrap(),
            )
        })
        .collect();
    let row = |day: &str, status: &str, n| (day.to_owned(), status.to_owned(), n);
    assert_eq!(
        counts,
        [
            // WEB-1 entered and left the backlog on Monday: only `todo` counts.
            row("2026-03-02", "todo", 1),
            row("2026-03-03", "backlog", 1),
            row("2026-03-03", "in_progress", 1),
            row("2026-03-04", "backlog", 1),
            row("2026-03-04", "done", 1),
        ],
        "{flow}"
    );
    assert_eq!(flow["project"], json!(project));
    assert_eq!(
        (&flow["from"], &flow["to"]),
        (&json!("2026-03-02"), &json!("2026-03-04"))
    );
    let statuses_each_day: Vec<&Value> = flow["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["day"] == "2026-03-02")
        .map(|r| &r["status"])
        .collect();
    assert_eq!(
        statuses_each_day,
        ["backlog", "done", "in_progress", "todo"],
        "a row for every status the project used, zeros included, by name"
    );
    assert!(flow["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(
            |r| r["day"].as_str() <= Some("2026-03-04") && r["day"].as_str() >= Some("2026-03-02")
        ));
    let done = flow["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "done")
        .unwrap();
    assert_eq!(done["category"], "completed");

    let throughput = app
        .json(
            &format!(
                "/v1/orgs/{org}/reports/throughput?{}",
                range("2026-03-01", "2026-03-31")
            ),
            &w.alice,
        )
        .await;
    assert_eq!(
        throughput["rows"],
        json!([{ "week": "2026-03-02", "assignee": bob, "completed": 1 }]),
        "credited to the assignee at completion, in the week of its Monday"
    );
    let next_week = app
        .json(
            &format!(
                "/v1/orgs/{org}/reports/throughput?{}",
                range("2026-03-09", "2026-03-31")
            ),
            &w.alice,
        )
        .await;
    assert_eq!(next_week["rows"], json!([]));
    // A range that starts mid-week covers the whole week.
    let mid_week = app
        .json(
            &format!(
                "/v1/orgs/{org}/reports/throughput?{}",
                range("2026-03-04", "2026-03-04")
            ),
            &w.alice,
        )
        .await;
    assert_eq!(mid_week["rows"], throughput["rows"]);

    let cycle = app
        .json(
            &format!(
                "/v1/orgs/{org}/reports/cycle-time?{}",
                range("2026-03-01", "2026-03-31")
            ),
            &w.alice,
        )
        .await;
    // Lead: Monday 09:00 to Wednesday 12:00; cycle: Tuesday 10:00 to Wednesday 12:00.
    let (lead, cycle_s) = (51 * 3600, 26 * 3600);
    assert_eq!(
        cycle["rows"],
        json!([{
            "week": "2026-03-02",
            "completed": 1,
            "lead_time_p50_seconds": lead,
            "lead_time_p85_seconds": lead,
            "lead_time_p95_seconds": lead,
            "cycle_samples": 1,
            "cycle_time_p50_seconds": cycle_s,
            "cycle_time_p85_seconds": cycle_s,
            "cycle_time_p95_seconds": cycle_s,
        }])
    );

    let resolved = app
        .json(
            &format!(
                "/v1/orgs/{org}/reports/created-vs-resolved?{}",
                range("2026-03-02", "2026-03-05")
            ),
            &w.alice,
        )
        .await;
    let day = |d: &str, created: u64, completed: u64| {
        json!({ "day": d, "created": created, "completed": completed,
                "cancelled": 0, "reopened": 0, "archived": 0 })
    };
    assert_eq!(
        resolved["rows"],
        json!([
            day("2026-03-02", 1, 0),
            day("2026-03-03", 1, 0),
            day("2026-03-04", 0, 1),
            day("2026-03-05", 0, 0),
        ])
    );

    let open = json!([{
        "project": project,
        "assignee": null,
        "status": "backlog",
        "category": "backlog",
        "open_tasks": 1,
        "overdue_tasks": 0,
    }]);
    let workload = app
        .json(&format!("/v1/orgs/{org}/reports/workload"), &w.alice)
        .await;
    assert_eq!(
        workload,
        json!({ "project": null, "rows": open }),
        "the whole organization"
    );
    let workload = app
        .json(
            &format!("/v1/orgs/{org}/reports/workload?project={project}"),
            &w.alice,
        )
        .await;
    assert_eq!(workload, json!({ "project": project, "rows": open }));

    w.teardown().await;
}

#[tokio::test]
async fn a_non_member_gets_the_same_forbidden_answer_as_every_other_read_whether_or_not_the_org_exists(
) {
    let w = Reporting::seed().await;
    let app = w.app(Some(&w.ch.config), Duration::from_secs(2)).await;
    let missing = Uuid::now_v7();
    // What every other route answers a non-member.
    let projects = app
        .get(&format!("/v1/orgs/{}/projects", w.org), &w.eve, &[])
        .await;
    let forbidden = assert_problem(projects, 403, "forbidden").await;

    for user in [&w.eve, &w.carol] {
        for org in [w.org, missing] {
            let mut paths = every_report(org, w.project);
            // Membership is decided before the request's own parameters.
            paths.push(format!("/v1/orgs/{org}/reports/throughput"));
            paths.push(format!(
                "/v1/orgs/{org}/reports/cycle-time?project={}&from=2026-03-09&to=2026-03-01",
                w.project
            ));
            for path in paths {
                for headers in [&[][..], &[("x-consistency-token", "999999999.0")][..]] {
                    let r = app.get(&path, user, headers).await;
                    let body = assert_problem(r, 403, "forbidden").await;
                    assert_eq!(body, forbidden, "GET {path} {headers:?}");
                }
            }
        }
    }
    // And carol reads her own organization's reports.
    for path in every_report(w.other_org, w.other_project) {
        assert_eq!(
            app.get(&path, &w.carol, &[]).await.status(),
            200,
            "GET {path}"
        );
    }

    w.teardown().await;
}

#[tokio::test]
async fn another_organizations_project_reads_exactly_like_an_unknown_or_empty_one() {
    let w = Reporting::seed().await;
    let app = w.app(Some(&w.ch.config), Duration::from_secs(2)).await;
    let (foreign, unknown, empty) = (w.other_project, Uuid::now_v7(), w.empty_project);

    let paths = |project| every_report(w.org, project);
    for ((theirs, none), nothing) in paths(foreign).iter().zip(paths(unknown)).zip(paths(empty)) {
        let theirs = app.json(theirs, &w.alice).await;
        let none = app.json(&none, &w.alice).await;
        let nothing = app.json(&nothing, &w.alice).await;
        if theirs["project"].is_null() {
            // The whole organization's workload: alice's own only.
            assert!(theirs["rows"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["project"] == json!(w.project)));
            continue;
        }
        for body in [&theirs, &none, &nothing] {
            assert_eq!(body["rows"], json!([]), "{body}");
        }
        let redacted = |mut b: Value| {
            b["project"] = Value::Null;
            b
        };
        assert_eq!(redacted(theirs.clone()), redacted(none));
        assert_eq!(redacted(theirs), redacted(nothing));
    }
    // Carol's project does have figures, in her organization.
    let theirs = app
        .json(
            &format!(
                "/v1/orgs/{}/reports/throughput?project={foreign}&from=2026-03-01&to=2026-03-31",
                w.other_org
            ),
            &w.carol,
        )
        .await;
    assert_eq!(
        theirs["rows"],
        json!([{ "week": "2026-03-02", "assignee": w.carol.id, "completed": 1 }])
    );

    w.teardown().await;
}

#[tokio::test]
async fn malformed_missing_or_unbounded_report_parameters_are_422_naming_the_field() {
    let w = Reporting::seed().await;
    let app = w.app(Some(&w.ch.config), Duration::from_secs(2)).await;
    let (org, p) = (w.org, w.project);
    let cases: Vec<(String, &str)> = vec![
        (
            "cumulative-flow?from=2026-03-01&to=2026-03-02".to_owned(),
            "project",
        ),
        (format!("cumulative-flow?project={p}&to=2026-03-02"), "from"),
        (format!("cumulative-flow?project={p}&from=2026-03-01"), "to"),
        (
            "cumulative-flow?project=web&from=2026-03-01&to=2026-03-02".to_owned(),
            "project",
        ),
        (
            format!("throughput?project={p}&from=2026-3-1&to=2026-03-02"),
            "from",
        ),
        (
            format!("throughput?project={p}&from=2026-03-01&to=03/02/2026"),
            "to",
        ),
        (
            format!("cycle-time?project={p}&from=2026-03-02&to=2026-03-01"),
            "to",
        ),
        (
            format!("created-vs-resolved?project={p}&from=2025-01-01&to=2026-01-02"),
            "to",
        ),
        (
            format!("cycle-time?project={p}&from=2020-01-01&to=2026-01-01"),
            "to",
        ),
        (
            format!("throughput?project={p}&from=1969-12-29&to=1970-01-04"),
            "from",
        ),
        (
            format!("created-vs-resolved?project={p}&from=2099-12-31&to=2100-01-01"),
            "to",
        ),
        (
            format!("cumulative-flow?project={p}&from=2026-03-01&to=2026-03-02&limit=5"),
            "limit",
        ),
        (
            format!("cumulative-flow?project={p}&project={p}&from=2026-03-01&to=2026-03-02"),
            "project",
        ),
        ("workload?project=none".to_owned(), "project"),
        ("workload?from=2026-03-01".to_owned(), "from"),
    ];
    for (suffix, field) in cases {
        let path = format!("/v1/orgs/{org}/reports/{suffix}");
        let r = app.get(&path, &w.alice, &[]).await;
        let body = assert_problem(r, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], field, "GET {path}: {body}");
    }
    // Everything missing: each one named.
    let r = app
        .get(&format!("/v1/orgs/{org}/reports/cycle-time"), &w.alice, &[])
        .await;
    let body = assert_problem(r, 422, "validation_failed").await;
    let named: Vec<&Value> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["field"])
        .collect();
    assert_eq!(named, ["project", "from", "to"], "{body}");
    // The longest ranges are allowed.
    for suffix in [
        format!("cumulative-flow?project={p}&from=2024-01-01&to=2024-12-31"),
        format!("throughput?project={p}&from=2023-01-01&to=2026-01-01"),
    ] {
        app.json(&format!("/v1/orgs/{org}/reports/{suffix}"), &w.alice)
            .await;
    }

    w.teardown().await;
}

#[tokio::test]
async fn a_consistency_token_waits_for_the_analytics_projection_then_is_answered() {
    let w = Reporting::seed().await;
    let app = w.app(Some(&w.ch.config), Duration::from_millis(200)).await;
    let path = format!(
        "/v1/orgs/{}/reports/created-vs-resolved?project={}&from=2026-03-02&to=2026-03-09",
        w.org, w.project
    );
    // Applied already: answered.
    let applied = w.checkpoint.to_string();
    let r = app
        .get(&path, &w.alice, &[("x-consistency-token", &applied)])
        .await;
    assert_eq!(r.status(), 200);

    // A task created on the 9th, which every PostgreSQL projection applies
    // but analytics not yet.
    let by = By {
        org: w.org,
        actor: w.alice.id,
        at: at(9, 9),
    };
    task(&w.log, by, w.project, 3, None).await;
    let token = w
        .log
        .append(
            &format!("org-{}", w.org),
            by,
            [OrgEvent::from(MemberAdded {
                user_id: Uuid::now_v7(),
                handle: "zed".into(),
                role: Role::Viewer,
            })],
        )
        .await
        .position;
    w.projections.catch_up(token).await;
    let token = token.to_string();
    let r = app
        .get(&path, &w.alice, &[("x-consistency-token", &token)])
        .await;
    assert_eq!(r.headers()["retry-after"], "1");
    let body = assert_problem(r, 503, "not_yet_consistent").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("(behind: analytics)"),
        "{body}"
    );

    w.catch_up_analytics(token.parse().unwrap()).await;
    let r = app
        .get(&path, &w.alice, &[("x-consistency-token", &token)])
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let ninth = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["day"] == "2026-03-09")
        .cloned();
    assert_eq!(
        ninth.map(|r| r["created"].clone()),
        Some(json!(1)),
        "{body}"
    );

    w.teardown().await;
}

#[tokio::test]
async fn reports_are_503_while_clickhouse_is_unreachable_and_every_other_read_is_unaffected() {
    let w = Reporting::seed().await;
    let mut closed = w.ch.config.clone();
    closed.url = format!("http://127.0.0.1:{}", free_port());
    // Unreachable, and not configured at all.
    for config in [Some(&closed), None] {
        let app = w.app(config, Duration::from_secs(2)).await;
        for path in every_report(w.org, w.project) {
            let r = app.get(&path, &w.alice, &[]).await;
            assert_eq!(r.headers()["retry-after"], "1", "GET {path}");
            let body = assert_problem(r, 503, "analytics_unavailable").await;
            assert_eq!(body["title"], "Analytics unavailable");
            // Nothing about the server leaks.
            assert!(
                !body["detail"].as_str().unwrap().contains("127.0.0.1"),
                "{body}"
            );
        }
        // Membership is still decided first.
        let r = app
            .get(&every_report(w.org, w.project)[0], &w.eve, &[])
            .await;
        assert_problem(r, 403, "forbidden").await;
        app.json(
            &format!("/v1/orgs/{}/projects/{}/tasks", w.org, w.project),
            &w.alice,
        )
        .await;
        let ready = app.json("/readyz", &w.alice).await;
        assert_eq!(ready["status"], "ready");
    }

    w.teardown().await;
}
