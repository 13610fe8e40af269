//! A projector killed with SIGKILL at random moments, under a stream of
//! commands, loses no event and applies none twice: after it catches up, the
//! read models equal the ones a rebuild from scratch produces.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tasklog::{CommandApi, Settings};
use tasklog_event_store::{EventStore, LogPosition, PgEventStore};
use tokio::process::{Child, Command};
use uuid::Uuid;

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn start_projector(app_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .arg("projectors")
        .env("TASKLOG_DATABASE_URL", app_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the tasklog binary starts")
}

/// Every read-model row, as sorted JSON, table by table.
async fn snapshot(pool: &PgPool) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for p in tasklog_projectors::all() {
        for table in p.tables() {
            let rows: Vec<Value> = sqlx::query_scalar(&format!(
                "SELECT to_jsonb(t) FROM read.{table} t ORDER BY to_jsonb(t)::text"
            ))
            .fetch_all(pool)
            .await
            .unwrap();
            out.push((table.to_string(), rows));
        }
    }
    out
}

async fn caught_up(pool: &PgPool, head: LogPosition) -> bool {
    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM projections p JOIN projection_checkpoints c \
           ON c.projection = p.name AND c.generation = p.active_generation \
         WHERE (c.commit_id, c.event_position) < ($1, $2)",
    )
    .bind(head.commit as i64)
    .bind(head.event as i64)
    .fetch_one(pool)
    .await
    .unwrap();
    let known: i64 = sqlx::query_scalar("SELECT count(*) FROM projections")
        .fetch_one(pool)
        .await
        .unwrap();
    behind == 0 && known == tasklog_projectors::all().len() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_run_neither_loses_nor_repeats_an_event() {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let server = PgPool::connect(&admin).await.unwrap();
    let name = format!("tasklog_crash_{}", Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&server)
        .await
        .unwrap();
    let owner_db = PgPool::connect(&format!("{base}/{name}")).await.unwrap();
    tasklog::MIGRATOR.run(&owner_db).await.unwrap();
    let app_url = format!(
        "{}/{name}",
        base.replacen("postgres://postgres@", "postgres://tasklog_app@", 1)
    );
    let settings = Settings::local(&app_url);
    let pool = tasklog::connect(&app_url, 8).await.unwrap();
    let api = CommandApi::build(&settings, pool.clone()).await.unwrap();
    let address = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());

    // A stream of commands: tasks, assignments, comments with mentions, status changes.
    let http = reqwest::Client::new();
    let user = Uuid::now_v7();
    let token = tasklog_command_api::auth::mint_hs256(
        tasklog::config::DEV_JWT_SECRET,
        user,
        Some("ann"),
        3600,
    )
    .unwrap();
    let post = |path: String, body: Value| {
        http.post(format!("{address}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let org: Value = post("/v1/orgs".into(), json!({"name": "Crash"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = org["id"].as_str().unwrap().to_owned();
    let bob = Uuid::now_v7();
    post(
        format!("/v1/orgs/{org}/members"),
        json!({"user_id": bob, "handle": "bob", "role": "member"}),
    )
    .await
    .unwrap();
    let project: Value = post(
        format!("/v1/orgs/{org}/projects"),
        json!({"name": "P", "key": "CR"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let project = project["id"].as_str().unwrap().to_owned();

    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let (running, sent, http, address, token, org, project) = (
            running.clone(),
            sent.clone(),
            http.clone(),
            address.clone(),
            token.clone(),
            org.clone(),
            project.clone(),
        );
        tokio::spawn(async move {
            let post = |path: String, body: Value| {
                http.post(format!("{address}{path}"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
            };
            let mut i = 0u64;
            while running.load(Ordering::SeqCst) {
                let task: Value = post(
                    format!("/v1/orgs/{org}/projects/{project}/tasks"),
                    json!({"title": format!("task {i}")}),
                )
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
                let task = task["id"].as_str().unwrap().to_owned();
                post(
                    format!("/v1/orgs/{org}/tasks/{task}/assignee"),
                    json!({"assignee": bob}),
                )
                .await
                .unwrap();
                post(
                    format!("/v1/orgs/{org}/tasks/{task}/comments"),
                    json!({"body": format!("@bob number {i}")}),
                )
                .await
                .unwrap();
                post(
                    format!("/v1/orgs/{org}/tasks/{task}/status"),
                    json!({"status": "todo"}),
                )
                .await
                .unwrap();
                sent.fetch_add(4, Ordering::SeqCst);
                i += 1;
            }
        })
    };

    // Kill the projector with SIGKILL at uneven moments, and start it again.
    let mut projector = start_projector(&app_url);
    for pause_ms in [700u64, 350, 1100, 500, 900] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        projector.start_kill().unwrap();
        projector.wait().await.unwrap();
        projector = start_projector(&app_url);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::SeqCst);
    load.await.unwrap();
    assert!(sent.load(Ordering::SeqCst) > 40, "the load ran");

    let store = PgEventStore::new(pool.clone());
    let head = store.high_water_mark().await.unwrap().head.unwrap();
    let mut waited = 0;
    while !caught_up(&pool, head).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        assert!(waited < 300, "the restarted projector catches up");
    }
    projector.start_kill().unwrap();
    projector.wait().await.unwrap();

    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parked, 0);
    let survived = snapshot(&pool).await;
    let store: Arc<dyn EventStore> = Arc::new(store);
    for p in tasklog_projectors::all() {
        tasklog_projectors::status::rebuild(&pool, store.clone(), p, 1000, |_| {})
            .await
            .unwrap();
    }
    let rebuilt = snapshot(&pool).await;
    for ((table, a), (_, b)) in survived.iter().zip(&rebuilt) {
        assert_eq!(
            a.len(),
            b.len(),
            "{table}: same number of rows as a rebuild"
        );
        assert_eq!(a, b, "{table}: same rows as a rebuild");
    }
    let tasks = &survived.iter().find(|(t, _)| t == "tasks").unwrap().1;
    assert!(
        tasks.len() > 10,
        "the crashes happened under real load ({} tasks)",
        tasks.len()
    );

    pool.close().await;
    owner_db.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&server)
        .await;
}
