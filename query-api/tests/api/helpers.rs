//! Starts the real query API on a random port against a fresh PostgreSQL
//! database whose read models are seeded directly (as the projectors would
//! have written them), and a small world to read.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use reqwest::Response;
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::{Executor, PgPool};
use tasklog_http::auth::{mint_hs256, AuthConfig, Authenticator};
use tasklog_query_api::{router, QueryState};
use uuid::Uuid;

const SECRET: &str = "test-secret";

/// Where every projection's checkpoint starts in the tests.
pub const CHECKPOINT: (i64, i64) = (100, 50);

const PROJECTION_DDL: &[(&str, &str)] = &[
    (
        "directory",
        include_str!("../../../migrations/projections/directory.sql"),
    ),
    (
        "tasks",
        include_str!("../../../migrations/projections/tasks.sql"),
    ),
    (
        "activity",
        include_str!("../../../migrations/projections/activity.sql"),
    ),
    (
        "notifications",
        include_str!("../../../migrations/projections/notifications.sql"),
    ),
];

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct User {
    pub id: Uuid,
    pub token: String,
}

impl User {
    pub fn new(handle: &str) -> Self {
        let id = Uuid::now_v7();
        Self {
            id,
            token: mint_hs256(SECRET, id, Some(handle), 3600).unwrap(),
        }
    }
}

/// One seeded task, as the tests expect to read it back.
#[derive(Clone, Debug)]
pub struct SeededTask {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    pub priority: &'static str,
    pub rank: i16,
    pub assignee: Option<Uuid>,
    pub due: Option<NaiveDate>,
    pub tags: Vec<Uuid>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Organization A (alice owner, bob member, dave viewer) with project WEB and
/// its tasks, tags, comments, activity and notifications; organization B
/// (carol) with project OPS and one task.
pub struct World {
    pub org: Uuid,
    pub other_org: Uuid,
    pub alice: User,
    pub bob: User,
    pub carol: User,
    /// In no organization.
    pub eve: User,
    pub project: Uuid,
    pub empty_project: Uuid,
    pub other_project: Uuid,
    pub tasks: Vec<SeededTask>,
    pub other_task: Uuid,
    pub bug: Uuid,
    pub ui: Uuid,
    pub chore: Uuid,
    pub comments: Vec<Uuid>,
    pub deleted_comment: Uuid,
    /// Alice's notifications in org A, oldest first; the first is read.
    pub notifications: Vec<Uuid>,
}

impl World {
    /// The seeded task titled `title`.
    pub fn task(&self, title: &str) -> &SeededTask {
        self.tasks
            .iter()
            .find(|t| t.title == title)
            .unwrap_or_else(|| panic!("no task {title}"))
    }
}

pub struct TestApp<W = World> {
    pub address: String,
    pub client: reqwest::Client,
    /// Owner connection to this test's database.
    pub db: PgPool,
    pub world: W,
    db_name: String,
}

/// The query API over `db` (whatever it holds), waits bounded by `wait`,
/// the fallback read every `poll`; returns its address.
pub async fn serve(db: &PgPool, wait: Duration, poll: Duration) -> String {
    let auth = Authenticator::new(&AuthConfig::Hs256 {
        secret: SecretString::from(SECRET),
    })
    .unwrap();
    let store = tasklog_event_store_postgres::PgEventStore::open(db.clone());
    let mut state = QueryState::new(db.clone(), store, Arc::new(auth));
    state.consistency_wait = wait;
    state.consistency_poll = poll;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    address
}

impl<W> TestApp<W> {
    /// An app over `db` with `world`, as [`serve`] starts it.
    pub async fn over(
        db_name: String,
        db: PgPool,
        world: W,
        wait: Duration,
        poll: Duration,
    ) -> Self {
        Self {
            address: serve(&db, wait, poll).await,
            client: reqwest::Client::new(),
            db,
            world,
            db_name,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_waiting(Duration::from_secs(2)).await
}

/// The app, with `X-Consistency-Token` waits bounded by `wait`.
pub async fn spawn_app_waiting(wait: Duration) -> TestApp {
    spawn_app_polling(wait, Duration::from_millis(100)).await
}

/// The app, with waits bounded by `wait` and the fallback read every `poll`.
pub async fn spawn_app_polling(wait: Duration, poll: Duration) -> TestApp {
    let (db_name, db) = fresh_database().await;
    let world = seed(&db).await;
    TestApp::over(db_name, db, world, wait, poll).await
}

/// A fresh database with the event store's migrations and nothing else.
pub async fn migrated_database() -> (String, PgPool) {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin.clone());
    let name = format!("queryapi_test_{}", Uuid::new_v4().simple());
    let server = PgPool::connect(&admin)
        .await
        .expect("PostgreSQL answers at DATABASE_URL");
    server
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    server.close().await;
    let db = PgPool::connect(&format!("{base}/{name}")).await.unwrap();
    sqlx::migrate!("../migrations/postgres")
        .run(&db)
        .await
        .expect("migrations apply");
    (name, db)
}

async fn fresh_database() -> (String, PgPool) {
    let (name, db) = migrated_database().await;
    // The read models as a projector would build them: tables in a schema of
    // their own, served through views in `read`.
    let mut conn = db.acquire().await.unwrap();
    conn.execute("CREATE SCHEMA rm_seed").await.unwrap();
    for (projection, ddl) in PROJECTION_DDL {
        sqlx::raw_sql(&format!(
            "SET search_path TO rm_seed; {ddl}; RESET search_path;"
        ))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("projection {projection} DDL applies: {e}"));
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'rm_seed'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for table in tables {
        conn.execute(format!("CREATE VIEW read.{table} AS SELECT * FROM rm_seed.{table}").as_str())
            .await
            .unwrap();
    }
    for (projection, _) in PROJECTION_DDL {
        sqlx::query("INSERT INTO projections (name, active_generation) VALUES ($1, 1)")
            .bind(projection)
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, generation, commit_id, event_position)
             VALUES ($1, 1, $2, $3)",
        )
        .bind(projection)
        .bind(CHECKPOINT.0)
        .bind(CHECKPOINT.1)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    (name, db)
}

pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn workflow() -> Value {
    json!({
        "statuses": [
            { "name": "todo", "category": "unstarted" },
            { "name": "doing", "category": "started" },
            { "name": "done", "category": "completed" }
        ],
        "transitions": [["todo", "doing"], ["doing", "done"], ["done", "todo"]],
        "initial": "todo"
    })
}

fn category(status: &str) -> &'static str {
    match status {
        "todo" => "unstarted",
        "doing" => "started",
        _ => "completed",
    }
}

async fn seed(db: &PgPool) -> World {
    let (org, other_org) = (Uuid::now_v7(), Uuid::now_v7());
    let (alice, bob, carol, dave, eve) = (
        User::new("alice"),
        User::new("bob"),
        User::new("carol"),
        User::new("dave"),
        User::new("eve"),
    );
    for (id, name) in [(org, "Acme"), (other_org, "Globex")] {
        sqlx::query("INSERT INTO rm_seed.organizations VALUES ($1, $2, $3, 1)")
            .bind(id)
            .bind(name)
            .bind(at(0))
            .execute(db)
            .await
            .unwrap();
    }
    for (o, user, handle, role, joined) in [
        (org, &bob, "bob", "member", 2),
        (org, &alice, "alice", "owner", 1),
        (org, &dave, "dave", "viewer", 3),
        (other_org, &carol, "carol", "owner", 1),
    ] {
        sqlx::query("INSERT INTO rm_seed.members VALUES ($1, $2, $3, $4, $5)")
            .bind(o)
            .bind(user.id)
            .bind(handle)
            .bind(role)
            .bind(at(joined))
            .execute(db)
            .await
            .unwrap();
    }
    let (project, empty_project, other_project) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for (id, o, name, key, version, created) in [
        (project, org, "Website", "WEB", 4, 1),
        (empty_project, org, "Mobile", "MOB", 1, 2),
        (other_project, other_org, "Operations", "OPS", 1, 1),
    ] {
        sqlx::query(
            "INSERT INTO rm_seed.projects
                 (project_id, org_id, name, key, workflow, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
        )
        .bind(id)
        .bind(o)
        .bind(name)
        .bind(key)
        .bind(workflow())
        .bind(at(created))
        .bind(version)
        .execute(db)
        .await
        .unwrap();
    }
    let (bug, ui, chore, other_tag) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    for (id, o, name, color) in [
        (ui, org, "ui", Some("#0000ff")),
        (bug, org, "bug", Some("#ff0000")),
        (chore, org, "chore", None),
        (other_tag, other_org, "secret", None),
    ] {
        sqlx::query("INSERT INTO rm_seed.tags VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(o)
            .bind(name)
            .bind(color)
            .bind(at(0))
            .execute(db)
            .await
            .unwrap();
    }
    for (tag, n) in [(bug, 3_i64), (ui, 2)] {
        sqlx::query("INSERT INTO rm_seed.tag_usage VALUES ($1, $2, $3)")
            .bind(org)
            .bind(tag)
            .bind(n)
            .execute(db)
            .await
            .unwrap();
    }

    let rank = |p: &str| match p {
        "none" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        _ => 4,
    };
    let a = Some(alice.id);
    let b = Some(bob.id);
    // (title, status, priority, assignee, due, tags, archived, updated minute)
    #[allow(clippy::type_complexity)]
    let specs: Vec<(
        &str,
        &str,
        &'static str,
        Option<Uuid>,
        Option<&str>,
        Vec<Uuid>,
        bool,
        i64,
    )> = vec![
        (
            "Fix login redirect",
            "todo",
            "high",
            a,
            Some("2026-03-01"),
            vec![bug],
            false,
            500,
        ),
        (
            "Write onboarding docs",
            "todo",
            "low",
            b,
            None,
            vec![],
            false,
            30,
        ),
        (
            "Crash on save",
            "doing",
            "urgent",
            a,
            Some("2026-02-15"),
            vec![bug, ui],
            false,
            900,
        ),
        (
            "Polish dashboard colors",
            "doing",
            "medium",
            None,
            Some("2026-03-01"),
            vec![ui],
            false,
            40,
        ),
        (
            "Release notes",
            "done",
            "high",
            b,
            Some("2026-01-20"),
            vec![],
            false,
            700,
        ),
        (
            "Investigate flaky test",
            "todo",
            "none",
            None,
            None,
            vec![],
            false,
            60,
        ),
        (
            "Login timeout bug",
            "done",
            "medium",
            a,
            None,
            vec![bug],
            false,
            800,
        ),
        (
            "Dashboard export",
            "todo",
            "high",
            b,
            Some("2026-04-10"),
            vec![],
            false,
            80,
        ),
        (
            "Refactor billing",
            "doing",
            "low",
            a,
            Some("2026-02-15"),
            vec![],
            false,
            600,
        ),
        (
            "Old login flow",
            "todo",
            "urgent",
            a,
            Some("2026-02-01"),
            vec![bug],
            true,
            100,
        ),
        (
            "Plan sprint",
            "todo",
            "medium",
            None,
            None,
            vec![],
            false,
            110,
        ),
    ];
    let mut tasks = Vec::new();
    for (i, (title, status, priority, assignee, due, tags, archived, updated)) in
        specs.into_iter().enumerate()
    {
        let task = SeededTask {
            id: Uuid::new_v4(),
            title: title.to_owned(),
            status: status.to_owned(),
            priority,
            rank: rank(priority),
            assignee,
            due: due.map(date),
            tags,
            archived,
            created_at: at(10 + i as i64),
            updated_at: at(updated),
        };
        insert_task(db, org, project, "WEB", i as i64 + 1, &task, &alice).await;
        tasks.push(task);
    }
    let other = SeededTask {
        id: Uuid::new_v4(),
        title: "Login secret".into(),
        status: "todo".into(),
        priority: "high",
        rank: 3,
        assignee: Some(carol.id),
        due: None,
        tags: vec![other_tag],
        archived: false,
        created_at: at(10),
        updated_at: at(10),
    };
    insert_task(db, other_org, other_project, "OPS", 1, &other, &carol).await;

    let crash = tasks[2].id;
    let (c1, c2, c3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for (id, author, body, mentions, created, edited, deleted) in [
        (
            c3,
            &alice,
            "Fixed in #12, @bob please verify",
            vec![bob.id],
            120,
            Some(130),
            false,
        ),
        (c1, &bob, "Repro attached", vec![], 60, None, false),
        (c2, &alice, "spam", vec![], 90, None, true),
    ] {
        sqlx::query("INSERT INTO rm_seed.comments VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(id)
            .bind(crash)
            .bind(org)
            .bind(author.id)
            .bind(body)
            .bind(mentions)
            .bind(at(created))
            .bind(edited.map(at))
            .bind(deleted)
            .execute(db)
            .await
            .unwrap();
    }

    // Alice's notifications in A (first one read), one of bob's, one of alice's elsewhere.
    let notifications: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let rows = [
        (
            notifications[0],
            alice.id,
            org,
            "assigned",
            tasks[0].id,
            None,
            20,
            true,
        ),
        (
            notifications[1],
            alice.id,
            org,
            "mentioned",
            crash,
            Some(c3),
            120,
            false,
        ),
        (
            notifications[2],
            alice.id,
            org,
            "assigned",
            tasks[8].id,
            None,
            200,
            false,
        ),
        (
            notifications[3],
            alice.id,
            org,
            "assigned",
            tasks[6].id,
            None,
            300,
            false,
        ),
        (
            Uuid::now_v7(),
            bob.id,
            org,
            "mentioned",
            crash,
            Some(c3),
            120,
            false,
        ),
        (
            Uuid::now_v7(),
            alice.id,
            other_org,
            "assigned",
            other.id,
            None,
            400,
            false,
        ),
    ];
    for (id, user, o, kind, task, comment, created, read) in rows {
        sqlx::query(
            "INSERT INTO rm_seed.notifications VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(user)
        .bind(o)
        .bind(kind)
        .bind(task)
        .bind(comment)
        .bind(bob.id)
        .bind(at(created))
        .bind(read.then(|| at(created + 5)))
        .execute(db)
        .await
        .unwrap();
    }

    World {
        org,
        other_org,
        alice,
        bob,
        carol,
        eve,
        project,
        empty_project,
        other_project,
        tasks,
        other_task: other.id,
        bug,
        ui,
        chore,
        comments: vec![c1, c3],
        deleted_comment: c2,
        notifications,
    }
}

async fn insert_task(
    db: &PgPool,
    org: Uuid,
    project: Uuid,
    key: &str,
    number: i64,
    t: &SeededTask,
    creator: &User,
) {
    sqlx::query(
        "INSERT INTO rm_seed.tasks (task_id, org_id, project_id, number, key, title,
             description, status, status_category, priority, priority_rank, assignee,
             due_date, tags, comment_count, archived, created_by, created_at, updated_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $19, $20)",
    )
    .bind(t.id)
    .bind(org)
    .bind(project)
    .bind(number)
    .bind(format!("{key}-{number}"))
    .bind(&t.title)
    .bind(format!("Details about {}", t.title.to_lowercase()))
    .bind(&t.status)
    .bind(category(&t.status))
    .bind(t.priority)
    .bind(t.rank)
    .bind(t.assignee)
    .bind(t.due)
    .bind(&t.tags)
    .bind(if number == 3 { 2 } else { 0 })
    .bind(t.archived)
    .bind(creator.id)
    .bind(t.created_at)
    .bind(t.updated_at)
    .bind(3_i64)
    .execute(db)
    .await
    .unwrap();
}

/// Inserts activity rows `(commit, event)` for `task` in `org`; the earliest is its creation.
pub async fn seed_activity(
    db: &PgPool,
    org: Uuid,
    task: Uuid,
    positions: &[(i64, i64)],
) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let first = positions.iter().min();
    for (i, (commit, event)) in positions.iter().enumerate() {
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO rm_seed.activity VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)")
            .bind(id)
            .bind(org)
            .bind(task)
            .bind(commit)
            .bind(event)
            .bind(if Some(&(*commit, *event)) == first {
                "TaskCreated"
            } else {
                "TaskUpdated"
            })
            .bind(at(i as i64))
            .bind(json!({ "n": i }))
            .execute(db)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

impl<W> TestApp<W> {
    pub async fn get_as(&self, path: &str, user: &User, headers: &[(&str, &str)]) -> Response {
        let mut req = self
            .client
            .get(format!("{}{}", self.address, path))
            .bearer_auth(&user.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("the API answers")
    }

    pub async fn get(&self, path: &str, user: &User) -> Response {
        self.get_as(path, user, &[]).await
    }

    /// The JSON body of a 200 answer to `path`.
    pub async fn json(&self, path: &str, user: &User) -> Value {
        let r = self.get(path, user).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Moves `projection`'s checkpoint to `(commit, event)`.
    pub async fn set_checkpoint(&self, projection: &str, commit: i64, event: i64) {
        sqlx::query(
            "UPDATE projection_checkpoints SET commit_id = $2, event_position = $3
              WHERE projection = $1",
        )
        .bind(projection)
        .bind(commit)
        .bind(event)
        .execute(&self.db)
        .await
        .unwrap();
    }

    /// Drops this test's database.
    pub async fn teardown(self) {
        self.db.close().await;
        let server = PgPool::connect(&admin_url()).await.unwrap();
        let _ = server
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name).as_str())
            .await;
        server.close().await;
    }
}

/// The `id`s of a list's items.
pub fn ids(body: &Value) -> Vec<Uuid> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Asserts a problem+json answer with `status` and `code`; returns its body.
pub async fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("https://tasklog.dev/problems/{code}"));
    body
}
