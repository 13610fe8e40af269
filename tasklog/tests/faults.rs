//! Faults: PostgreSQL restarting under load, a process dying while it holds
//! an `Idempotency-Key`, clients that hold connections open, and a process
//! short of file descriptors (the binary under util-linux `prlimit`).
//!
//! The restart test runs its own PostgreSQL cluster (initdb into a temporary
//! directory, a free port): it must never restart the shared one.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use tasklog::{CommandApi, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use uuid::Uuid;

use tasklog_testkit::{admin_url, free_port, TestClickHouse, TestDatabase};

fn token(user: Uuid) -> String {
    tasklog_testkit::token(user, "ann")
}

/// A PostgreSQL cluster of this test's own, stopped and removed on drop.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// `program` from PostgreSQL's bin directory; as user postgres when
    /// running as root (PostgreSQL refuses to run as root).
    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        let mut c = if Self::is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        };
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    fn run(&self, program: &str, args: &[&str]) {
        let status = self.command(program).args(args).status().unwrap();
        assert!(status.success(), "{program} {args:?} failed");
    }

    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max_by_key(|p| {
                p.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .expect("an initdb");
        let dir = std::env::temp_dir().join(format!("tasklog-pg-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = Self {
            bin,
            dir,
            port: free_port(),
        };
        if Self::is_root() {
            let status = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cluster.dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            cluster.port,
            cluster.dir.display()
        );
        let log = cluster.dir.join("log").display().to_string();
        cluster.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/postgres", self.port)
    }

    /// A routine restart: sessions are terminated (57P01), the server is
    /// down for a moment, then accepts connections again.
    fn restart_fast(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "fast", "-w", "restart"],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `tasklog serve` against `cluster`, on free ports.
struct Served {
    _child: Child,
    /// Its analytics store's databases, dropped with it.
    _clickhouse: TestClickHouse,
    command: String,
    query: String,
}

async fn serve(cluster: &Cluster) -> Served {
    let (command_port, query_port) = (free_port(), free_port());
    let clickhouse = TestClickHouse::migrated().await;
    let log = std::fs::File::create(cluster.dir.join("serve.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .arg("serve")
        .env("TASKLOG_DATABASE_URL", cluster.url("tasklog_app"))
        .env("TASKLOG_ADMIN_DATABASE_URL", cluster.url("postgres"))
        .env("TASKLOG_COMMAND_ADDR", format!("127.0.0.1:{command_port}"))
        .env("TASKLOG_QUERY_ADDR", format!("127.0.0.1:{query_port}"))
        .env("TASKLOG_AUDIT_ADDR", "127.0.0.1:0")
        .envs(clickhouse.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the tasklog binary starts");
    let served = Served {
        _child: child,
        _clickhouse: clickhouse,
        command: format!("http://127.0.0.1:{command_port}"),
        query: format!("http://127.0.0.1:{query_port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let up = |base: &str| http.get(format!("{base}/readyz")).send();
        if let (Ok(a), Ok(b)) = (up(&served.command).await, up(&served.query).await) {
            if a.status().is_success() && b.status().is_success() {
                return served;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("tasklog serve did not become ready");
}

/// One request of the load: a command, a list read, a detail read, in turn.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    served: (String, String),
    token: String,
    org: String,
    project: String,
    task: String,
}

impl Client {
    /// (what, status, has Retry-After); `None` when no HTTP answer came.
    async fn send(&self, n: usize) -> Option<(String, u16, bool)> {
        let (command, query) = &self.served;
        let (what, request) = match n % 3 {
            0 => (
                "create task",
                self.http
                    .post(format!(
                        "{command}/v1/orgs/{}/projects/{}/tasks",
                        self.org, self.project
                    ))
                    .json(&json!({"title": format!("load {n}")})),
            ),
            1 => (
                "list tasks",
                self.http.get(format!(
                    "{query}/v1/orgs/{}/projects/{}/tasks",
                    self.org, self.project
                )),
            ),
            _ => (
                "comment",
                self.http
                    .post(format!(
                        "{command}/v1/orgs/{}/tasks/{}/comments",
                        self.org, self.task
                    ))
                    .json(&json!({"body": format!("comment {n}")})),
            ),
        };
        let r = request
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .ok()?;
        Some((
            what.to_owned(),
            r.status().as_u16(),
            r.headers().contains_key("retry-after"),
        ))
    }

    /// The first request and the next 40 succeed.
    async fn all_succeed(&self, when: &str) {
        for n in 0..41 {
            let answer = self.send(n).await;
            assert!(
                matches!(&answer, Some((_, s, _)) if (200..300).contains(s)),
                "{when}: request {n} after recovery answered {answer:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_answers_503_with_retry_after_and_the_first_request_after_it_succeeds() {
    let cluster = Cluster::start();
    let served = serve(&cluster).await;
    let http = reqwest::Client::new();
    let user = Uuid::now_v7();
    let token = token(user);
    let post = |url: String, body: Value| http.post(url).bearer_auth(&token).json(&body).send();
    let org: Value = post(
        format!("{}/v1/orgs", served.command),
        json!({"name": "Faults"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let org = org["id"].as_str().unwrap().to_owned();
    let project: Value = post(
        format!("{}/v1/orgs/{org}/projects", served.command),
        json!({"name": "P", "key": "FT"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let project = project["id"].as_str().unwrap().to_owned();
    let task: Value = post(
        format!("{}/v1/orgs/{org}/projects/{project}/tasks", served.command),
        json!({"title": "t"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let client = Client {
        http: http.clone(),
        served: (served.command.clone(), served.query.clone()),
        token: token.clone(),
        org,
        project,
        task: task["id"].as_str().unwrap().to_owned(),
    };
    // The read model has the project before the load starts.
    for _ in 0..300 {
        if matches!(client.send(1).await, Some((_, 200, _))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Load from 8 clients across a restart.
    let running = Arc::new(AtomicBool::new(true));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (0..8)
        .map(|c| {
            let (client, running, answers) = (client.clone(), running.clone(), answers.clone());
            tokio::spawn(async move {
                let mut n = c;
                while running.load(Ordering::SeqCst) {
                    let answer = client.send(n).await;
                    answers.lock().unwrap().push(answer);
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (data, mut pg_ctl) = (cluster.data(), cluster.command("pg_ctl"));
    tokio::task::spawn_blocking(move || {
        let status = pg_ctl
            .args(["-D", &data, "-m", "fast", "-w", "restart"])
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl restart");
    })
    .await
    .unwrap();
    running.store(false, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let unavailable = answers
        .iter()
        .filter(|a| matches!(a, Some((_, 503, _))))
        .count();
    for answer in &answers {
        match answer {
            Some((_, s, _)) if (200..300).contains(s) => {}
            Some((_, 503, true)) => {}
            other => panic!("during the restart a request answered {other:?}"),
        }
    }
    assert!(
        answers.len() > 20,
        "the load ran ({} requests)",
        answers.len()
    );
    eprintln!(
        "restart under load: {} requests, {unavailable} answered 503",
        answers.len()
    );
    client.all_succeed("after a restart under load").await;

    // A restart while nothing runs: every pooled connection dies idle.
    cluster.restart_fast();
    client.all_succeed("after a restart while idle").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart_fast();
    tokio::time::sleep(Duration::from_secs(2)).await;
    client
        .all_succeed("a while after a restart while idle")
        .await;
    drop(served);
}

/// A fresh, migrated database on the shared server: (owner pool, app url, the database).
async fn database() -> (PgPool, String, TestDatabase) {
    let (db, owner) = TestDatabase::migrated("tasklog_faults").await;
    (owner, db.app_url.clone(), db)
}

async fn drop_database(owner: PgPool, db: TestDatabase) {
    owner.close().await;
    db.drop_database().await;
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_key_holders_process_died_proceeds_at_once_and_appends_once() {
    let (owner, app_url, db) = database().await;
    // The process that will die: the real binary.
    let port = free_port();
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .arg("command-api")
        .env("TASKLOG_DATABASE_URL", &app_url)
        .env("TASKLOG_COMMAND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let doomed_url = format!("http://127.0.0.1:{port}");
    // The process the client retries against.
    let settings = Settings::local(&app_url);
    let pool = tasklog::connect(&app_url, 8).await.unwrap();
    let api = CommandApi::build(&settings, pool).await.unwrap();
    let survivor_url = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());

    let http = reqwest::Client::new();
    let user = Uuid::now_v7();
    let token = token(user);
    wait_for("the doomed process to answer", async || {
        http.get(format!("{doomed_url}/healthz"))
            .send()
            .await
            .is_ok()
    })
    .await;
    let post = |base: &str, path: String, body: Value, key: Option<&str>| {
        let mut r = http
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body);
        if let Some(key) = key {
            r = r.header("idempotency-key", key);
        }
        r.send()
    };
    let org: Value = post(&survivor_url, "/v1/orgs".into(), json!({"name": "K"}), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = org["id"].as_str().unwrap().to_owned();
    let project: Value = post(
        &survivor_url,
        format!("/v1/orgs/{org}/projects"),
        json!({"name": "P", "key": "KD"}),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let project = project["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orgs/{org}/projects/{project}/tasks");

    // Appends wait while this transaction holds the table: the first attempt
    // stops in the middle of its command, holding its key.
    let mut blocker = owner.begin().await.unwrap();
    sqlx::query("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let first = tokio::spawn(post(
        &doomed_url,
        path.clone(),
        json!({"title": "exactly once"}),
        Some("die"),
    ));
    let waiting_appends = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
               AND (query ILIKE '%append_batch%' OR query ILIKE '%append_events%')",
        )
        .fetch_one(&owner)
        .await
        .unwrap()
    };
    wait_for("the first attempt to wait to append", async || {
        waiting_appends().await == 1
    })
    .await;

    // The process dies (SIGKILL): its connections go with it.
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    assert!(
        first.await.unwrap().is_err(),
        "the first attempt got no answer"
    );

    // The client retries at once, elsewhere: it runs, not 409.
    let retry = tokio::spawn(post(
        &survivor_url,
        path.clone(),
        json!({"title": "exactly once"}),
        Some("die"),
    ));
    wait_for("the retry to answer or wait to append", async || {
        retry.is_finished() || waiting_appends().await == 2
    })
    .await;
    blocker.rollback().await.unwrap();
    let retry = retry.await.unwrap().unwrap();
    assert_eq!(retry.status(), 201, "the retry ran");
    let retry: Value = retry.json().await.unwrap();

    let created: Vec<(String, Value)> = sqlx::query_as(
        "SELECT stream_id, payload FROM events WHERE event_type = 'TaskCreated' AND org_id = $1::uuid",
    )
    .bind(&org)
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(created.len(), 1, "one task: {created:?}");
    assert_eq!(
        created[0].0,
        format!("task-{}", retry["id"].as_str().unwrap()),
        "the task the retry answered with"
    );
    let reserved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_id = $1 AND event_type <> 'ProjectCreated'",
    )
    .bind(format!("project-{project}"))
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(reserved, 1, "one task number reserved");

    // And a further retry replays the answer.
    let again = post(
        &survivor_url,
        path,
        json!({"title": "exactly once"}),
        Some("die"),
    )
    .await
    .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), retry);
    drop_database(owner, db).await;
}

/// The command API with these connection limits (no database needed: the
/// tests only ask `/healthz`).
async fn limited_api(max_connections: usize, idle_timeout_secs: u64) -> String {
    let mut settings = Settings::local(&format!("{}x", admin_url()));
    settings.http_max_connections = max_connections;
    settings.http_idle_timeout_secs = idle_timeout_secs;
    let pool = tasklog::startup::pool_options(2)
        .connect_lazy(&admin_url())
        .unwrap();
    let api = CommandApi::build(&settings, pool).await.unwrap();
    let addr = api.addr().to_string();
    tokio::spawn(api.run_until_stopped());
    addr
}

/// Sends one keep-alive request and reads its whole response.
async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("\"ok\"") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed before answering: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

/// True when the server closes `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let addr = limited_api(100, 1).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    assert!(healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut stream, Duration::from_secs(10)).await,
        "the idle connection was closed"
    );
}

#[tokio::test]
async fn a_client_trickling_its_request_head_is_cut_off() {
    let addr = limited_api(100, 1).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut cut = false;
    for i in 0..50 {
        // One header byte every 200 ms: activity, but never a whole head.
        if stream.write_all(&[b'a' + (i % 26) as u8]).await.is_err() {
            cut = true;
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(200)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "a 10-second trickle was cut off");
}

#[tokio::test]
async fn past_the_connection_cap_a_new_client_is_served_and_the_longest_idle_connection_closed() {
    let cap = 4;
    let addr = limited_api(cap, 60).await;
    let mut idle = Vec::new();
    for _ in 0..cap {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        assert!(healthz(&mut s).await.starts_with("HTTP/1.1 200"));
        idle.push(s);
    }
    // Three more clients than the cap, one after the other: each is served.
    for _ in 0..3 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        assert!(healthz(&mut s).await.starts_with("HTTP/1.1 200"));
        idle.push(s);
    }
    // The three idle the longest made room; the newest stay open.
    for (i, s) in idle.iter_mut().enumerate() {
        let closed = closed_within(s, Duration::from_millis(500)).await;
        assert_eq!(closed, i < 3, "connection {i}: closed {closed}");
    }
}

#[tokio::test]
async fn past_the_connection_cap_with_every_connection_busy_a_new_client_gets_a_503_problem_at_once(
) {
    let cap = 2;
    let addr = limited_api(cap, 60).await;
    let token = token(Uuid::now_v7());
    // Requests whose bodies never finish arriving keep their connections busy.
    let mut busy = Vec::new();
    for _ in 0..cap {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/orgs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        busy.push(s);
    }
    // Until the server has read those heads they count as idle, and a
    // newcomer would be served in place of one: give it the time to.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut late = TcpStream::connect(&addr).await.unwrap();
    late.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), late.read_to_end(&mut answer))
        .await
        .expect("answered and closed at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 503"), "{answer}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(head.contains("retry-after: 1"), "{answer}");
    let problem: Value = serde_json::from_str(body).expect("a JSON problem");
    assert_eq!(problem["code"], "unavailable");
    assert_eq!(problem["status"], 503);
    for (i, s) in busy.iter_mut().enumerate() {
        assert!(
            !closed_within(s, Duration::from_millis(200)).await,
            "busy connection {i} was kept"
        );
    }
}

/// `tasklog command-api` started by `prlimit --nofile=<soft>:<hard>` (which
/// sets the limits, then becomes the server: the same process), with
/// connections idle for up to a minute; its log goes to `log`. Answers
/// `/healthz` (which needs no tables) when this returns.
struct Limited {
    child: Child,
    addr: String,
}

impl Limited {
    async fn start(soft: u64, hard: u64, log: &std::path::Path) -> Self {
        let port = free_port();
        let child = Command::new("prlimit")
            .arg(format!("--nofile={soft}:{hard}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_tasklog"))
            .arg("command-api")
            .env("TASKLOG_DATABASE_URL", admin_url())
            .env("TASKLOG_COMMAND_ADDR", format!("127.0.0.1:{port}"))
            .env("TASKLOG_HTTP_IDLE_TIMEOUT_SECS", "60")
            .env("RUST_LOG", "warn")
            // Its logs go to stdout.
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("prlimit (util-linux) starts the tasklog binary");
        let addr = format!("127.0.0.1:{port}");
        wait_for("the server to answer", async || {
            match TcpStream::connect(&addr).await {
                Ok(mut s) => healthz(&mut s).await.starts_with("HTTP/1.1 200"),
                Err(_) => false,
            }
        })
        .await;
        Self { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the server runs")
    }

    /// (soft, hard) limit on open files, as the kernel holds them for it.
    fn open_files_limit(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or_else(|| panic!("no open-files line in {limits}"));
        let values: Vec<u64> = line
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        (values[0], values[1])
    }

    /// Descriptors it has open now.
    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

/// This process's hard limit on open files.
fn own_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
    let hard = limit.rlim_max as u64;
    hard
}

#[tokio::test]
async fn the_server_raises_its_soft_open_files_limit_to_the_hard_limit_at_start() {
    let hard = own_hard_limit().min(65_536);
    let soft = 200;
    assert!(
        hard > soft,
        "a hard limit above {soft} to raise to (have {hard})"
    );
    let log = std::env::temp_dir().join(format!("tasklog-fd-{}.log", Uuid::now_v7().simple()));
    let server = Limited::start(soft, hard, &log).await;
    let exe = std::fs::read_link(format!("/proc/{}/exe", server.pid())).unwrap();
    assert!(
        exe.ends_with("tasklog"),
        "the limits read are the server's own, not prlimit's: {exe:?}"
    );
    assert_eq!(
        server.open_files_limit(),
        (hard, hard),
        "started with {soft}:{hard}, it runs with the hard limit as its soft one"
    );
    drop(server);
    let _ = std::fs::remove_file(log);
}

/// Opens `n` keep-alive clients one after the other, each answered 200, and
/// leaves them idle.
async fn idle_clients(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut idle = Vec::new();
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let answer = healthz(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "client {i}: {answer}");
        idle.push(s);
    }
    idle
}

/// After `idle_clients`: room was made by closing the connection idle the
/// longest, the newest is still served, and so is a fresh client.
async fn assert_room_was_made(addr: &str, idle: &mut [TcpStream]) {
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(10)).await,
        "the connection idle the longest was closed"
    );
    let newest = idle.last_mut().unwrap();
    assert!(healthz(newest).await.starts_with("HTTP/1.1 200"));
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(&mut fresh).await.starts_with("HTTP/1.1 200"));
}

/// With a low open-files limit the connection cap is cut to fit it (16
/// here): more idle keep-alive clients than that are each served, by
/// closing the connection idle the longest, and `accept` never runs out of
/// descriptors.
#[tokio::test]
async fn with_a_low_open_files_limit_the_connection_cap_fits_it_and_accept_never_runs_out() {
    let limit = 64;
    let log = std::env::temp_dir().join(format!("tasklog-cap-{}.log", Uuid::now_v7().simple()));
    let server = Limited::start(limit, limit, &log).await;
    assert_eq!(server.open_files_limit(), (limit, limit));
    let spare = limit as usize - server.open_files();
    assert!(
        spare > 16,
        "more spare descriptors ({spare}) than the cap of 16"
    );

    let mut idle = idle_clients(&server.addr, 2 * spare).await;
    assert_room_was_made(&server.addr, &mut idle).await;
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("fewer HTTP connections than configured fit"),
        "the cap was cut to the limit: {log_text}"
    );
    assert!(
        !log_text.contains("accept failed"),
        "accept never ran out of descriptors: {log_text}"
    );
    drop(server);
    let _ = std::fs::remove_file(log);
}

/// With fewer descriptors than even the smallest cap (16) needs, idle
/// keep-alive clients exhaust them and `accept` fails (EMFILE): the server
/// closes the connection idle the longest and serves the newcomer, every
/// time, instead of leaving new clients waiting until someone hangs up.
#[tokio::test]
async fn when_accept_runs_out_of_descriptors_the_longest_idle_connection_makes_room_for_a_new_client(
) {
    let limit = 24;
    let log = std::env::temp_dir().join(format!("tasklog-emfile-{}.log", Uuid::now_v7().simple()));
    let server = Limited::start(limit, limit, &log).await;
    assert_eq!(server.open_files_limit(), (limit, limit));
    let spare = limit as usize - server.open_files();
    assert!(
        spare < 16,
        "the descriptors ({spare} spare) run out before the connection cap of 16"
    );

    // Twice as many idle clients as there are spare descriptors.
    let mut idle = idle_clients(&server.addr, 2 * spare).await;
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("accept failed") && log_text.contains("Too many open files"),
        "accept ran out of descriptors (EMFILE): {log_text}"
    );
    assert_room_was_made(&server.addr, &mut idle).await;
    drop(server);
    let _ = std::fs::remove_file(log);
}
