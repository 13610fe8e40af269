//! `tasklog serve` killed with SIGKILL again and again under a stream of
//! commands. Every kill comes once the restarted process answers and its
//! projectors have applied some events since it started (so start-up cannot
//! absorb it), after a few more events drawn at random. Then:
//! - no answer the load got is a server error: a refused or cut connection is
//!   the process being down, a 5xx is a bug;
//! - every acknowledged command's events are stored exactly once, and no
//!   command's twice;
//! - once caught up, the read models equal a rebuild from scratch, and the
//!   analytics store's reporting views a fresh projection of the log.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use tasklog_event_store::LogPosition;
use tokio::process::{Child, Command};
use uuid::Uuid;

use tasklog_testkit::{free_port, TestClickHouse, TestDatabase};

/// How many times the process is killed.
const KILLS: usize = 20;

/// Where `tasklog serve` runs, and how to start it again.
struct Serve {
    app_url: String,
    owner_url: String,
    command_port: u16,
    query_port: u16,
    log: std::path::PathBuf,
    /// The analytics store's databases, the test's own.
    clickhouse: [(&'static str, String); 3],
}

impl Serve {
    fn start(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_tasklog"))
            .arg("serve")
            .env("TASKLOG_DATABASE_URL", &self.app_url)
            .env("TASKLOG_ADMIN_DATABASE_URL", &self.owner_url)
            .env("TASKLOG_DATABASE_POOL_SIZE", "8")
            .env(
                "TASKLOG_COMMAND_ADDR",
                format!("127.0.0.1:{}", self.command_port),
            )
            .env(
                "TASKLOG_QUERY_ADDR",
                format!("127.0.0.1:{}", self.query_port),
            )
            // Not read here: any free port, so runs side by side never collide.
            .env("TASKLOG_AUDIT_ADDR", "127.0.0.1:0")
            .envs(self.clickhouse.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the tasklog binary starts")
    }
}

/// A small seeded generator: the seed is printed, so a run can be repeated.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
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
    // Every PostgreSQL projection, and the analytics store's.
    behind == 0 && known == tasklog_projectors::all().len() as i64 + 1
}

/// Events every projection has taken in (applied or passed), in all.
async fn least_applied(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(min(c.events_applied), 0)::int8 FROM projections p \
         JOIN projection_checkpoints c ON c.projection = p.name AND c.generation = p.active_generation",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Polls until the process answers `/readyz` with 200.
async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "tasklog serve never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A command the load sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sent {
    Create,
    Assign,
    Comment,
    Status,
}

/// What the load saw: every answer's status per command, and what it
/// learned from the acknowledged ones.
#[derive(Default)]
struct Seen {
    /// (command, status) -> how many answers.
    statuses: BTreeMap<(Sent, u16), u64>,
    /// Requests that got no answer: the connection was refused or cut.
    no_answer: u64,
    /// Requests that timed out while the process was up.
    timed_out: Vec<String>,
    /// Acknowledged commands: the task, and the comment's id for a comment.
    acknowledged: Vec<(Sent, Uuid, Option<Uuid>)>,
}

impl Seen {
    fn server_errors(&self) -> Vec<String> {
        self.statuses
            .iter()
            .filter(|((_, status), _)| *status >= 500)
            .map(|((sent, status), n)| format!("{sent:?}: {n} x {status}"))
            .collect()
    }
}

/// Sends one command with an idempotency key of its own; the body of a 2xx
/// answer, or `None`.
async fn send(
    http: &reqwest::Client,
    token: &str,
    url: String,
    body: Value,
    sent: Sent,
    seen: &mut Seen,
) -> Option<Value> {
    let answer = http
        .post(&url)
        .bearer_auth(token)
        .header("idempotency-key", Uuid::now_v7().to_string())
        .json(&body)
        .send()
        .await;
    let response = match answer {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            seen.timed_out.push(format!("{sent:?} {url}: {e}"));
            return None;
        }
        Err(_) => {
            seen.no_answer += 1;
            // Down: the next attempt comes a little later.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return None;
        }
    };
    let status = response.status();
    *seen.statuses.entry((sent, status.as_u16())).or_default() += 1;
    match response.json::<Value>().await {
        Ok(body) if status.is_success() => Some(body),
        // A cut half-way through the body: not an acknowledgement.
        _ => None,
    }
}

fn id(body: &Value) -> Uuid {
    body["id"].as_str().expect("an id").parse().expect("a uuid")
}

/// Creates tasks, each then assigned, commented on and moved, for as long as
/// `running`; a command that is not acknowledged ends its task's chain.
async fn load(
    http: reqwest::Client,
    base: String,
    token: String,
    org: String,
    project: String,
    bob: Uuid,
    running: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut i = 0u64;
    while running.load(Ordering::SeqCst) {
        i += 1;
        let url = |path: String| format!("{base}/v1/orgs/{org}{path}");
        let Some(task) = send(
            &http,
            &token,
            url(format!("/projects/{project}/tasks")),
            json!({"title": format!("task {i}")}),
            Sent::Create,
            &mut seen,
        )
        .await
        else {
            continue;
        };
        let task = id(&task);
        seen.acknowledged.push((Sent::Create, task, None));
        let follow_ups = [
            (Sent::Assign, "assignee", json!({"assignee": bob})),
            (
                Sent::Comment,
                "comments",
                json!({"body": format!("@bob number {i}")}),
            ),
            (Sent::Status, "status", json!({"status": "todo"})),
        ];
        for (sent, path, body) in follow_ups {
            let Some(answer) = send(
                &http,
                &token,
                url(format!("/tasks/{task}/{path}")),
                body,
                sent,
                &mut seen,
            )
            .await
            else {
                break;
            };
            let comment = (sent == Sent::Comment).then(|| id(&answer));
            seen.acknowledged.push((sent, task, comment));
        }
    }
    seen
}

/// How many events of `event_type` whose payload's `field` is `value`.
async fn count_events(pool: &PgPool, event_type: &str, field: &str, value: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1 AND payload->>$2 = $3")
        .bind(event_type)
        .bind(field)
        .bind(value.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn count_in_stream(pool: &PgPool, event_type: &str, task: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1 AND stream_id = $2")
        .bind(event_type)
        .bind(format!("task-{task}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasklog_serve_killed_under_load_answers_no_5xx_and_neither_loses_nor_repeats_an_event() {
    let db = TestDatabase::empty("tasklog_crash").await;
    let ch = TestClickHouse::migrated().await;
    let (name, owner_url) = (db.name.clone(), db.owner_url.clone());
    let serve = Serve {
        clickhouse: ch.env(),
        app_url: db.app_url.clone(),
        owner_url: owner_url.clone(),
        command_port: free_port(),
        query_port: free_port(),
        log: std::env::temp_dir().join(format!("{name}.log")),
    };
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Uuid::now_v7().as_u64_pair().1 | 1);
    eprintln!(
        "crash test: seed {seed} (CRASH_SEED to repeat), serve log {}",
        serve.log.display()
    );
    let mut draw = Draw(seed);

    let address = format!("http://127.0.0.1:{}", serve.command_port);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut process = serve.start();
    wait_ready(&http, &address).await;
    // The schema is the process's: look at it as its owner.
    let pool = PgPool::connect(&owner_url).await.unwrap();

    let user = Uuid::now_v7();
    let token = tasklog_testkit::token(user, "ann");
    let post = |path: &str, body: Value| {
        http.post(format!("{address}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let org: Value = post("/v1/orgs", json!({"name": "Crash"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = org["id"].as_str().unwrap().to_owned();
    let bob = Uuid::now_v7();
    let r = post(
        &format!("/v1/orgs/{org}/members"),
        json!({"user_id": bob, "handle": "bob", "role": "member"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let project: Value = post(
        &format!("/v1/orgs/{org}/projects"),
        json!({"name": "P", "key": "CR"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let project = project["id"].as_str().unwrap().to_owned();

    let running = Arc::new(AtomicBool::new(true));
    let load = tokio::spawn(load(
        http.clone(),
        address.clone(),
        token.clone(),
        org.clone(),
        project,
        bob,
        running.clone(),
    ));

    // Kill once the process serves and its projectors have moved since it
    // started, a random number of events later, at a random moment.
    for kill in 0..KILLS {
        wait_ready(&http, &address).await;
        let from = least_applied(&pool).await;
        let events = 5 + draw.below(60) as i64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while least_applied(&pool).await < from + events {
            assert!(
                Instant::now() < deadline,
                "kill {kill}: the projectors never applied {events} events after the start"
            );
            assert!(!load.is_finished(), "the load stopped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(draw.below(100))).await;
        process.start_kill().unwrap();
        process.wait().await.unwrap();
        process = serve.start();
    }
    // The last start serves and projects too before the load stops.
    wait_ready(&http, &address).await;
    let from = least_applied(&pool).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while least_applied(&pool).await < from + 20 {
        assert!(Instant::now() < deadline, "the last start never projected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.store(false, Ordering::SeqCst);
    let seen = load.await.unwrap();

    let store = tasklog_testkit::store(&pool);
    let head = store.high_water_mark().await.unwrap().head.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !caught_up(&pool, head).await {
        assert!(Instant::now() < deadline, "the projectors catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    process.start_kill().unwrap();
    process.wait().await.unwrap();
    eprintln!(
        "crash test: {KILLS} kills; answers {:?}; {} requests unanswered",
        seen.statuses, seen.no_answer
    );

    // Every answer the load got: acknowledged, or a server error (a bug).
    assert_eq!(seen.server_errors(), Vec::<String>::new(), "server errors");
    assert_eq!(seen.timed_out, Vec::<String>::new(), "requests timed out");
    let refused: Vec<_> = seen
        .statuses
        .iter()
        .filter(|((_, status), _)| !(200..300).contains(status))
        .collect();
    assert!(refused.is_empty(), "valid commands refused: {refused:?}");
    assert!(seen.no_answer > 0, "some requests met the process down");

    // Every acknowledged command's events, exactly once.
    for (sent, task, comment) in &seen.acknowledged {
        let (what, n) = match sent {
            Sent::Create => {
                let reserved = count_events(&pool, "TaskNumberReserved", "task_id", *task).await;
                assert_eq!(reserved, 1, "the number of task {task}, reserved once");
                (
                    "TaskCreated",
                    count_in_stream(&pool, "TaskCreated", *task).await,
                )
            }
            Sent::Assign => (
                "TaskAssigned",
                count_in_stream(&pool, "TaskAssigned", *task).await,
            ),
            Sent::Comment => (
                "CommentAdded",
                count_events(&pool, "CommentAdded", "comment_id", comment.unwrap()).await,
            ),
            Sent::Status => (
                "TaskStatusChanged",
                count_in_stream(&pool, "TaskStatusChanged", *task).await,
            ),
        };
        assert_eq!(n, 1, "{what} of task {task}: once");
    }
    // No command's events twice, acknowledged or not (each task gets each
    // command once; a number is reserved once per task and never reused).
    let twice: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id || ' ' || event_type || ' x' || count(*) FROM events \
         WHERE event_type IN ('TaskCreated', 'TaskAssigned', 'CommentAdded', 'TaskStatusChanged') \
         GROUP BY stream_id, event_type HAVING count(*) > 1 \
         UNION ALL \
         SELECT 'task ' || (payload->>'task_id') || ' reserved x' || count(*) FROM events \
         WHERE event_type = 'TaskNumberReserved' GROUP BY payload->>'task_id' HAVING count(*) > 1 \
         UNION ALL \
         SELECT 'number ' || (payload->>'number') || ' reserved x' || count(*) FROM events \
         WHERE event_type = 'TaskNumberReserved' GROUP BY stream_id, payload->>'number' HAVING count(*) > 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(twice, Vec::<String>::new(), "events stored twice");

    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parked, 0);
    let survived = snapshot(&pool).await;
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
    // The analytics store, fed without transactions across the same kills:
    // each event once, and every reporting view as a fresh projection of
    // the whole log into empty databases gives it.
    let fresh = TestClickHouse::migrated().await;
    let events = tasklog_analytics::project_afresh(&pool, store.as_ref(), &fresh.config)
        .await
        .unwrap();
    assert_eq!(
        ch.tsv("SELECT count() FROM events FINAL").await.trim(),
        events.to_string(),
        "every event in ClickHouse once"
    );
    let (live, afresh) = (ch.views().await, fresh.views().await);
    assert_eq!(live.len(), afresh.len(), "the same views");
    assert!(live.len() >= 10, "every reporting view: {live:?}");
    for ((view, a), (_, b)) in live.iter().zip(&afresh) {
        // The load creates, assigns, comments and moves to `todo`; nothing
        // it does completes a task.
        let completions = ["cycle_time_weekly", "throughput_weekly", "flow_efficiency"];
        assert!(
            !b.is_empty() || completions.contains(&view.as_str()),
            "{view} has figures"
        );
        assert_eq!(a, b, "{view}: the same figures as a fresh projection");
    }
    let created = seen
        .acknowledged
        .iter()
        .filter(|(sent, ..)| *sent == Sent::Create)
        .count();
    assert!(
        created > 10,
        "the kills happened under real load ({created} tasks acknowledged)"
    );

    pool.close().await;
    db.drop_database().await;
    let _ = std::fs::remove_file(&serve.log);
}
