//! Seals against a real database: the sealer seals a generated log, the CLI's
//! proofs check offline with the public key only, and `tasklog audit verify`
//! names the head that a superuser's tampering broke (triggers off), one
//! kind of tampering per test, each in a database of its own (the tree is
//! over the whole log). Heads POSTed to a webhook reach a real receiver in
//! order, and a receiver that fails, is down or hangs holds nothing up.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use sqlx::PgPool;
use tasklog::seals::{run_sealer, signature, SealerConfig, WebhookConfig, SIGNATURE_HEADER};
use tasklog_event_store::hash::{chain_hash, content_hash_of};
use tasklog_event_store::seal::{signing_key_from_hex, verify_heads, SignedTreeHead};
use tasklog_event_store_postgres::audit::read_stream_as_stored;
use tasklog_event_store_postgres::seals::{self, LeafRef, SealStoreError};
use tasklog_testkit::{as_app_role, free_port, serve, tamper, TestDatabase};
use uuid::Uuid;

const SEED: &str = "4c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5";

fn tasklog(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .args(args)
        .env("TASKLOG_DATABASE_URL", &db.app_url)
        .env("TASKLOG_ADMIN_DATABASE_URL", &db.owner_url)
        .env("TASKLOG_SEAL_SIGNING_KEY", SEED)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the tasklog binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn public_key() -> String {
    hex::encode(
        signing_key_from_hex(SEED)
            .unwrap()
            .verifying_key()
            .as_bytes(),
    )
}

fn config(heads_file: Option<&Path>) -> SealerConfig {
    SealerConfig {
        every_events: 64,
        every: Duration::from_millis(200),
        heads_file: heads_file.map(Path::to_path_buf),
        idle_wait: Duration::from_millis(100),
        lease_retry: Duration::from_millis(100),
        ..SealerConfig::new(signing_key_from_hex(SEED).unwrap())
    }
}

/// A migrated database of its own with a generated log of about `events`.
async fn generated(prefix: &str, events: usize) -> (TestDatabase, PgPool) {
    let (db, owner) = TestDatabase::migrated(prefix).await;
    let out = tasklog(
        &db,
        &["generate", "--orgs", "2", "--events", &events.to_string()],
    );
    assert!(out.status.success(), "{out:?}");
    (db, owner)
}

async fn count(owner: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(owner).await.unwrap()
}

/// Runs the sealer (as the application's pool would) until the latest head
/// covers the whole log.
async fn seal_all(db: &TestDatabase, owner: &PgPool, heads_file: Option<&Path>) {
    seal_all_with(db, owner, config(heads_file), || true).await
}

/// [`seal_all`] with `config`, until `also` holds too.
async fn seal_all_with(
    db: &TestDatabase,
    owner: &PgPool,
    config: SealerConfig,
    also: impl Fn() -> bool,
) {
    let app = PgPool::connect_lazy(&db.app_url).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sealer = tokio::spawn(run_sealer(app.clone(), Some(config), stopped));
    let events = count(owner, "SELECT count(*) FROM events").await;
    tokio::time::timeout(Duration::from_secs(60), async {
        while count(owner, "SELECT coalesce(max(tree_size), 0) FROM seal_heads").await < events
            || !also()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the sealer signs a head over the whole log");
    stop.send(true).unwrap();
    sealer.await.unwrap().unwrap();
    app.close().await;
}

/// `audit verify` exits 1 and names the latest head broken, and the first
/// differing leaf.
async fn assert_latest_head_broken(db: &TestDatabase, owner: &PgPool, first_leaf: i64) {
    let latest = count(owner, "SELECT max(tree_size) FROM seal_heads").await;
    let out = tasklog(db, &["audit", "verify"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{out:?}");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("seal broken: head of size {latest} ")))
        .unwrap_or_else(|| panic!("no finding names the head of size {latest}:\n{text}"));
    assert!(
        line.contains(&format!("first differing leaf {first_leaf}:")),
        "{line}"
    );
    // Heads sealed before the first changed leaf still hold.
    let intact = count(
        owner,
        &format!("SELECT count(*) FROM seal_heads WHERE tree_size <= {first_leaf}"),
    )
    .await;
    let broken = text
        .lines()
        .filter(|l| l.starts_with("seal broken"))
        .count() as i64;
    let heads = count(owner, "SELECT count(*) FROM seal_heads").await;
    assert_eq!(broken, heads - intact, "{text}");
}

/// The leaf index of the first event (in log order) matching `condition`.
async fn first_leaf_where(owner: &PgPool, condition: &str) -> i64 {
    count(
        owner,
        &format!(
            "SELECT min(l.leaf_index) FROM seal_leaves l \
             JOIN events e ON e.global_position = l.global_position WHERE {condition}"
        ),
    )
    .await
}

/// The event sealed as leaf `index`.
async fn event_at_leaf(owner: &PgPool, index: i64) -> Uuid {
    sqlx::query_scalar(
        "SELECT e.event_id FROM events e JOIN seal_leaves l ON l.global_position = e.global_position \
         WHERE l.leaf_index = $1",
    )
    .bind(index)
    .fetch_one(owner)
    .await
    .unwrap()
}

/// A stream of the generated log with at least `n` events.
async fn stream_with(owner: &PgPool, n: i64) -> String {
    sqlx::query_scalar(&format!(
        "SELECT stream_id FROM events GROUP BY stream_id HAVING count(*) >= {n} \
         ORDER BY stream_id LIMIT 1"
    ))
    .fetch_one(owner)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_sealed_log_verifies_and_its_proofs_check_offline_with_the_public_key_only() {
    let (db, owner) = generated("tasklog_seals_clean", 500).await;
    let dir = std::env::temp_dir().join(format!("tasklog-seals-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let heads_file = dir.join("heads.jsonl");
    seal_all(&db, &owner, Some(&heads_file)).await;
    let events = count(&owner, "SELECT count(*) FROM events").await;
    let key = public_key();

    // The database's own check, and the CLI's key.
    let out = tasklog(&db, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!(
        "over {events} leaves, signatures included: 0 findings"
    )));
    assert_eq!(stdout(&tasklog(&db, &["audit", "public-key"])).trim(), key);

    // Every head was published to the file, and the file checks.
    let heads = count(&owner, "SELECT count(*) FROM seal_heads").await;
    let published = std::fs::read_to_string(&heads_file).unwrap();
    assert_eq!(published.lines().count() as i64, heads);
    let out = tasklog(
        &db,
        &[
            "audit",
            "verify-head",
            heads_file.to_str().unwrap(),
            "--public-key",
            &key,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let latest = stdout(&tasklog(&db, &["audit", "head"]));
    assert_eq!(Some(latest.trim()), published.lines().last());

    // An inclusion proof against an older head, by event id.
    let event = event_at_leaf(&owner, 37).await;
    let prove = |event: Uuid, size: &str| {
        tasklog(
            &db,
            &[
                "audit",
                "prove",
                "--event",
                &event.to_string(),
                "--size",
                size,
            ],
        )
    };
    let out = prove(event, "128");
    assert!(out.status.success(), "{out:?}");
    let proof: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proof["leaf_index"], 37);
    // The same proof by log position; none against a head that does not
    // hold the event, or against a size no head was signed at.
    let position = proof["position"].as_str().unwrap();
    let by_position = tasklog(
        &db,
        &["audit", "prove", "--position", position, "--size", "128"],
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&by_position.stdout).unwrap(),
        proof
    );
    let out = prove(event_at_leaf(&owner, 100).await, "64");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not sealed in the tree of size 64"),
        "{out:?}"
    );
    let out = prove(event, "100");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no signed tree head of size 100"),
        "{out:?}"
    );
    let event_hash = proof["event_hash"].as_str().unwrap().to_owned();
    // Scoped to an organization (as the auditor API calls it): another
    // organization's event is not sealed there, exactly as a missing one.
    let org: Uuid = sqlx::query_scalar("SELECT org_id FROM events WHERE event_id = $1")
        .bind(event)
        .fetch_one(&owner)
        .await
        .unwrap();
    let app = PgPool::connect_with(as_app_role(&owner)).await.unwrap();
    let scoped = seals::inclusion_proof(&app, LeafRef::Event(event), Some(128), Some(org))
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(&scoped).unwrap(), proof);
    let foreign =
        seals::inclusion_proof(&app, LeafRef::Event(event), Some(128), Some(Uuid::now_v7())).await;
    assert!(
        matches!(foreign, Err(SealStoreError::NotSealed(..))),
        "{foreign:?}"
    );
    app.close().await;
    let file = dir.join("inclusion.json");
    let check = |doc: &serde_json::Value, extra: &[&str]| {
        std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
        let mut args = vec![
            "audit",
            "verify-inclusion",
            file.to_str().unwrap(),
            "--public-key",
            &key,
        ];
        args.extend_from_slice(extra);
        tasklog(&db, &args).status.code()
    };
    assert_eq!(check(&proof, &[]), Some(0));
    assert_eq!(check(&proof, &["--event-hash", &event_hash]), Some(0));
    assert_eq!(check(&proof, &["--event-hash", &"00".repeat(32)]), Some(1));
    for pointer in [
        "/path/3",
        "/event_hash",
        "/head/root_hash",
        "/head/signature",
    ] {
        let mut bad = proof.clone();
        let text = bad.pointer(pointer).unwrap().as_str().unwrap().to_owned();
        let flipped = if text.starts_with('0') { "1" } else { "0" };
        *bad.pointer_mut(pointer).unwrap() = format!("{flipped}{}", &text[1..]).into();
        assert_eq!(check(&bad, &[]), Some(1), "{pointer} changed");
    }
    let mut bad = proof.clone();
    bad["head"]["tree_size"] = 129.into();
    assert_eq!(check(&bad, &[]), Some(1), "the head's size changed");
    let mut bad = proof.clone();
    bad["leaf_index"] = 36.into();
    assert_eq!(check(&bad, &[]), Some(1), "the leaf index changed");
    let mut bad = proof.clone();
    bad["format"] = "tasklog-inclusion-proof-v9".into();
    assert_eq!(
        check(&bad, &[]),
        Some(2),
        "an unknown format cannot be checked"
    );

    // A consistency proof between two heads.
    let out = tasklog(&db, &["audit", "prove-consistency", "--from", "192"]);
    assert!(out.status.success(), "{out:?}");
    let proof: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(proof["to"]["tree_size"], events);
    let file = dir.join("consistency.json");
    let check = |doc: &serde_json::Value| {
        std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
        let args = [
            "audit",
            "verify-consistency",
            file.to_str().unwrap(),
            "--public-key",
            &key,
        ];
        tasklog(&db, &args).status.code()
    };
    assert_eq!(check(&proof), Some(0));
    for pointer in ["/path/0", "/from/root_hash", "/to/signature"] {
        let mut bad = proof.clone();
        let text = bad.pointer(pointer).unwrap().as_str().unwrap().to_owned();
        let flipped = if text.ends_with('0') { "1" } else { "0" };
        *bad.pointer_mut(pointer).unwrap() = format!("{}{flipped}", &text[..text.len() - 1]).into();
        assert_eq!(check(&bad), Some(1), "{pointer} changed");
    }
    // Another key's proofs do not pass.
    let other = hex::encode(
        signing_key_from_hex(&"11".repeat(32))
            .unwrap()
            .verifying_key()
            .as_bytes(),
    );
    let args = [
        "audit",
        "verify-consistency",
        file.to_str().unwrap(),
        "--public-key",
        &other,
    ];
    std::fs::write(&file, serde_json::to_vec(&proof).unwrap()).unwrap();
    assert_eq!(tasklog(&db, &args).status.code(), Some(1));

    std::fs::remove_dir_all(&dir).ok();
    owner.close().await;
    db.drop_database().await;
}

/// A generated log of its own, sealed whole.
async fn sealed(prefix: &str) -> (TestDatabase, PgPool) {
    let (db, owner) = generated(prefix, 400).await;
    seal_all(&db, &owner, None).await;
    (db, owner)
}

/// Tampers with `statements`; then the chains still verify, the seals do
/// not: the latest head is named broken from leaf `first` on, and the
/// output names `also` (when given). Drops the database.
async fn assert_only_the_seals_see(
    db: TestDatabase,
    owner: PgPool,
    first: i64,
    statements: &[String],
    also: Option<&str>,
) {
    tamper(&owner, statements).await;
    let text = stdout(&tasklog(&db, &["audit", "verify"]));
    assert!(
        text.contains(" events: 0 findings"),
        "the chains still verify: {text}"
    );
    if let Some(also) = also {
        assert!(text.contains(also), "{also} is not named: {text}");
    }
    assert_latest_head_broken(&db, &owner, first).await;
    owner.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn removing_a_streams_tail_breaks_the_heads_that_sealed_it() {
    let (db, owner) = sealed("tasklog_seals_tail").await;
    let stream = stream_with(&owner, 3).await;
    let tail = format!(
        "stream_id = '{stream}' AND stream_version >= \
         (SELECT max(stream_version) - 1 FROM events WHERE stream_id = '{stream}')"
    );
    let first = first_leaf_where(&owner, &tail.replacen("stream_id =", "e.stream_id =", 1)).await;
    let statements = [format!("DELETE FROM events WHERE {tail}")];
    assert_only_the_seals_see(db, owner, first, &statements, None).await;
}

#[tokio::test]
async fn removing_a_whole_stream_breaks_the_heads_that_sealed_it() {
    let (db, owner) = sealed("tasklog_seals_stream").await;
    let stream = stream_with(&owner, 2).await;
    let first = first_leaf_where(&owner, &format!("e.stream_id = '{stream}'")).await;
    let statements = [format!("DELETE FROM events WHERE stream_id = '{stream}'")];
    assert_only_the_seals_see(db, owner, first, &statements, None).await;
}

#[tokio::test]
async fn a_stream_rewritten_and_rehashed_consistently_breaks_the_heads_that_sealed_it() {
    let (db, owner) = sealed("tasklog_seals_rehash").await;
    let stream = stream_with(&owner, 3).await;
    let mut events = read_stream_as_stored(&owner, &stream).await.unwrap();
    // Rewrite the second event's payload, then re-hash it and every later
    // event of the stream by the public recipe.
    events[1].payload["rewritten"] = true.into();
    let mut statements = Vec::new();
    let mut prev: Option<Vec<u8>> = Some(events[0].hash.clone());
    for e in events.iter_mut().skip(1) {
        e.prev_hash = prev.clone();
        e.hash = chain_hash(
            prev.as_deref(),
            e.stream_version,
            &content_hash_of(e).unwrap(),
        );
        statements.push(format!(
            "UPDATE events SET payload = '{}'::jsonb, prev_hash = '\\x{}', hash = '\\x{}' WHERE event_id = '{}'",
            e.payload.to_string().replace('\'', "''"),
            hex::encode(e.prev_hash.as_ref().unwrap()),
            hex::encode(&e.hash),
            e.event_id
        ));
        prev = Some(e.hash.clone());
    }
    let first = first_leaf_where(&owner, &format!("e.event_id = '{}'", events[1].event_id)).await;
    assert_only_the_seals_see(db, owner, first, &statements, None).await;
}

#[tokio::test]
async fn an_event_inserted_into_the_sealed_log_breaks_the_heads_after_it() {
    let (db, owner) = sealed("tasklog_seals_insert").await;
    // A forged last event of a stream, chained correctly, put before every
    // sealed event in log order (the first sealed transaction, position 0).
    let stream = stream_with(&owner, 2).await;
    let events = read_stream_as_stored(&owner, &stream).await.unwrap();
    let last = events.last().unwrap();
    let mut forged = last.clone();
    forged.event_id = Uuid::now_v7();
    forged.stream_version += 1;
    forged.prev_hash = Some(last.hash.clone());
    forged.hash = chain_hash(
        Some(&last.hash),
        forged.stream_version,
        &content_hash_of(&forged).unwrap(),
    );
    let statements = [
        format!(
            "INSERT INTO events (global_position, transaction_id, event_id, stream_id, stream_version, event_type, \
                schema_version, occurred_at, recorded_at, org_id, actor_id, correlation_id, causation_id, payload, prev_hash, hash, \
                hash_scheme) \
             OVERRIDING SYSTEM VALUE \
             SELECT 0, (SELECT min(transaction_id) FROM events), '{}', stream_id, {}, event_type, schema_version, occurred_at, \
                recorded_at, org_id, actor_id, correlation_id, causation_id, payload, '\\x{}', '\\x{}', hash_scheme \
             FROM events WHERE event_id = '{}'",
            forged.event_id,
            forged.stream_version,
            hex::encode(&last.hash),
            hex::encode(&forged.hash),
            last.event_id
        ),
        // Its salts too, as a forger who read the recipe would.
        format!(
            "INSERT INTO event_salts SELECT '{}', salts FROM event_salts WHERE event_id = '{}'",
            forged.event_id, last.event_id
        ),
    ];
    let forged_id = forged.event_id.to_string();
    assert_only_the_seals_see(db, owner, 0, &statements, Some(&forged_id)).await;
}

#[tokio::test]
async fn the_sealer_resumes_after_a_crash_without_double_or_missing_leaves() {
    let (db, owner) = generated("tasklog_seals_crash", 3_000).await;
    let events = count(&owner, "SELECT count(*) FROM events").await;
    for _ in 0..3 {
        // Killed mid-way: its connections drop, an open batch rolls back.
        let app = PgPool::connect_lazy(&db.app_url).unwrap();
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let before = count(&owner, "SELECT count(*) FROM seal_leaves").await;
        let sealer = tokio::spawn(run_sealer(app.clone(), Some(config(None)), stopped));
        tokio::time::timeout(Duration::from_secs(30), async {
            while count(&owner, "SELECT count(*) FROM seal_leaves").await <= before {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap();
        sealer.abort();
        let _ = sealer.await;
        app.close().await;
    }
    let partial = count(&owner, "SELECT count(*) FROM seal_leaves").await;
    assert!(
        partial < events,
        "the crashes came before the end ({partial} of {events})"
    );
    seal_all(&db, &owner, None).await;
    assert_eq!(
        count(&owner, "SELECT count(*) FROM seal_leaves").await,
        events
    );
    assert_eq!(
        count(&owner, "SELECT max(leaf_index) + 1 FROM seal_leaves").await,
        events
    );
    assert_eq!(
        count(
            &owner,
            "SELECT count(DISTINCT global_position) FROM seal_leaves"
        )
        .await,
        events
    );
    let out = tasklog(&db, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    owner.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn only_the_sealer_role_may_write_seals_and_nobody_may_rewrite_them() {
    let (db, owner) = generated("tasklog_seals_grants", 100).await;
    seal_all(&db, &owner, None).await;
    let app = PgPool::connect_with(as_app_role(&owner)).await.unwrap();
    for statement in [
        "INSERT INTO seal_heads SELECT tree_size + 1, root_hash, last_commit, last_position, sealed_at, signature FROM seal_heads LIMIT 1",
        "UPDATE seal_heads SET root_hash = root_hash",
        "DELETE FROM seal_leaves",
        "INSERT INTO seal_nodes VALUES (40, 0, sha256(''))",
    ] {
        let e = sqlx::query(statement).execute(&app).await.unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{statement}: {e}");
    }
    // The schema owner too, as long as the triggers fire.
    for statement in [
        "UPDATE seal_heads SET root_hash = root_hash",
        "DELETE FROM seal_nodes",
        "TRUNCATE seal_leaves",
    ] {
        let e = sqlx::query(statement).execute(&owner).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{statement}: {e}");
    }
    app.close().await;
    owner.close().await;
    db.drop_database().await;
}

/// A request a webhook receiver got, and how it answered.
#[derive(Clone, Debug)]
struct Received {
    content_type: Option<String>,
    signature: Option<String>,
    body: String,
    status: StatusCode,
}

/// A webhook receiver on a random port that answers 500 to its first
/// `failures` requests, then 200.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    failures: Arc<AtomicUsize>,
}

impl Receiver {
    async fn spawn(failures: usize) -> (Self, reqwest::Url) {
        let receiver = Self {
            failures: Arc::new(AtomicUsize::new(failures)),
            ..Self::default()
        };
        let router = axum::Router::new()
            .route("/heads", axum::routing::post(receive))
            .with_state(receiver.clone());
        let url = format!("{}/heads", serve(router).await).parse().unwrap();
        (receiver, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The bodies answered 200, in order.
    fn accepted(&self) -> Vec<String> {
        self.got()
            .into_iter()
            .filter(|r| r.status == StatusCode::OK)
            .map(|r| r.body)
            .collect()
    }

    /// Whether the last head accepted covers `events`.
    fn has_head_of(&self, events: i64) -> bool {
        self.accepted().last().is_some_and(|body| {
            serde_json::from_str::<SignedTreeHead>(body)
                .unwrap()
                .head
                .tree_size
                == events as u64
        })
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let failing = receiver
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    receiver.got.lock().unwrap().push(Received {
        content_type: header("content-type"),
        signature: header(SIGNATURE_HEADER),
        body,
        status,
    });
    status
}

fn webhook(url: reqwest::Url) -> WebhookConfig {
    WebhookConfig {
        secret: Some("webhook-secret".into()),
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        ..WebhookConfig::new(url)
    }
}

/// A temporary directory's heads file.
fn heads_file() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tasklog-seals-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("heads.jsonl")
}

#[tokio::test]
async fn heads_posted_to_the_webhook_arrive_in_order_signed_and_verify_with_the_public_key() {
    let (db, owner) = generated("tasklog_seals_webhook", 400).await;
    let events = count(&owner, "SELECT count(*) FROM events").await;
    let (receiver, url) = Receiver::spawn(0).await;
    let file = heads_file();
    let config = SealerConfig {
        webhook: Some(webhook(url)),
        ..config(Some(&file))
    };

    seal_all_with(&db, &owner, config, || receiver.has_head_of(events)).await;

    // Exactly the published documents, every one, in order.
    let published: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(published.len() > 2, "{published:?}");
    assert_eq!(receiver.accepted(), published);
    for r in receiver.got() {
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            r.signature,
            Some(signature(b"webhook-secret", r.body.as_bytes()))
        );
    }
    let heads: Vec<SignedTreeHead> = receiver
        .accepted()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let key = signing_key_from_hex(SEED).unwrap().verifying_key();
    let mut findings = Vec::new();
    assert_eq!(
        verify_heads(&heads, &key, |e| findings.push(e)),
        published.len()
    );
    assert_eq!(findings, []);
    assert!(heads
        .windows(2)
        .all(|w| w[0].head.tree_size < w[1].head.tree_size));
    std::fs::remove_dir_all(file.parent().unwrap()).ok();
    owner.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_webhook_that_fails_twice_still_gets_the_head() {
    let (db, owner) = generated("tasklog_seals_webhook_retry", 200).await;
    let events = count(&owner, "SELECT count(*) FROM events").await;
    let (receiver, url) = Receiver::spawn(2).await;
    let file = heads_file();
    let config = SealerConfig {
        webhook: Some(webhook(url)),
        ..config(Some(&file))
    };

    seal_all_with(&db, &owner, config, || receiver.has_head_of(events)).await;

    let got = receiver.got();
    assert_eq!(
        got[..3].iter().map(|r| r.status).collect::<Vec<_>>(),
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::OK
        ]
    );
    assert!(got[..3].iter().all(|r| r.body == got[0].body));
    let published: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(receiver.accepted(), published);
    std::fs::remove_dir_all(file.parent().unwrap()).ok();
    owner.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_webhook_that_is_down_does_not_stop_heads_being_signed() {
    let (db, owner) = generated("tasklog_seals_webhook_down", 400).await;
    let down = format!("http://127.0.0.1:{}/heads", free_port())
        .parse()
        .unwrap();
    let config = SealerConfig {
        // Retried for as long as the test runs, and a queue that overflows.
        webhook: Some(WebhookConfig {
            attempts: u32::MAX,
            queue: 1,
            ..webhook(down)
        }),
        ..config(None)
    };

    seal_all_with(&db, &owner, config, || true).await;

    assert!(count(&owner, "SELECT count(*) FROM seal_heads").await > 2);
    let out = tasklog(&db, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    owner.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_webhook_that_never_answers_does_not_hold_sealing_up() {
    let (db, owner) = generated("tasklog_seals_webhook_hangs", 400).await;
    let router = axum::Router::new().route(
        "/heads",
        axum::routing::post(std::future::pending::<StatusCode>),
    );
    let hanging = format!("{}/heads", serve(router).await).parse().unwrap();
    let config = SealerConfig {
        webhook: Some(WebhookConfig {
            timeout: Duration::from_secs(3600),
            ..webhook(hanging)
        }),
        ..config(None)
    };

    seal_all_with(&db, &owner, config, || true).await;

    assert!(count(&owner, "SELECT count(*) FROM seal_heads").await > 2);
    owner.close().await;
    db.drop_database().await;
}

/// One event more in the log, announced as a command's append is.
async fn one_more_event(log: &tasklog_testkit::EventLog, task: Uuid) {
    let by = tasklog_testkit::By::now(Uuid::nil(), Uuid::nil());
    log.append(
        &format!("task-{task}"),
        by,
        [tasklog_domain::TaskEvent::from(
            tasklog_domain::CommentAdded {
                comment_id: Uuid::now_v7(),
                author: Uuid::nil(),
                body: "more".into(),
                mentions: vec![],
            },
        )],
    )
    .await;
}

/// The transactions that wrote the leaves from `from` on.
async fn sealing_transactions(owner: &PgPool, from: i64) -> i64 {
    count(
        owner,
        &format!("SELECT count(DISTINCT xmin::text) FROM seal_leaves WHERE leaf_index >= {from}"),
    )
    .await
}

async fn wait_for_leaves(owner: &PgPool, n: i64) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while count(owner, "SELECT count(*) FROM seal_leaves").await < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} leaves were never sealed"));
}

#[tokio::test]
async fn a_caught_up_sealer_seals_what_came_within_its_step_interval_in_one_transaction() {
    let (db, owner) = TestDatabase::migrated("tasklog_seals_floor").await;
    let app = PgPool::connect_lazy(&db.app_url).unwrap();
    let log = tasklog_testkit::EventLog::new(&app);
    let task = Uuid::now_v7();
    one_more_event(&log, task).await;
    let config = SealerConfig {
        min_step_interval: Duration::from_secs(5),
        // No head falls due by time meanwhile.
        every: Duration::from_secs(3600),
        ..config(None)
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let sealer = tokio::spawn(run_sealer(app.clone(), Some(config), stopped));
    wait_for_leaves(&owner, 1).await;

    // Eight appends, each announced, 50 ms apart: without the interval the
    // sealer wakes and commits for each of them.
    for _ in 0..8 {
        one_more_event(&log, task).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_leaves(&owner, 9).await;
    let transactions = sealing_transactions(&owner, 1).await;
    assert!(
        transactions <= 2,
        "8 appends within a 5 s interval were sealed in {transactions} transactions"
    );
    sealer.abort();
    let _ = sealer.await;
    app.close().await;
    owner.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_step_interval_neither_slows_a_sealer_that_is_behind_nor_holds_a_head_due_by_time() {
    let (db, owner) = generated("tasklog_seals_floor_behind", 1_000).await;
    let config = SealerConfig {
        min_step_interval: Duration::from_secs(3600),
        ..config(None)
    };
    // Pages of 64 up to each head, then a head by time (200 ms) over the
    // rest: within seal_all's minute only if neither waits an hour.
    seal_all_with(&db, &owner, config, || true).await;
    owner.close().await;
    db.drop_database().await;
}
