//! The sealer: follows the global log and appends every event, in log
//! order, as a leaf of one Merkle tree; every N events or T seconds it signs
//! a tree head and publishes it (a JSON line in the heads file, a log line,
//! and a POST to a webhook). See docs/audit.md, "Seals".
//!
//! Not a projection of the projectors' runner, though it works like one (a
//! lease, gap-safe reads through the store, live on the appends signal):
//! a projection parks an event that keeps failing and moves on, and a
//! sealer that skipped an event would seal a different log; its checkpoint
//! would be a row the application role may move; and a head due by time
//! must be signed when no event comes. Here the checkpoint *is* the last
//! leaf, written in the same transaction as the leaves, so a crash at any
//! point repeats nothing and loses nothing; and only the role
//! `tasklog_sealer` (not the application's) may insert seals.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use sqlx::{Connection, PgConnection, PgPool};
use tasklog_event_store::seal::{Hex, SignedTreeHead, TreeHead};
use tasklog_event_store::EventStore;
use tasklog_event_store_postgres::seals::{self, SealedTree};
use tokio::sync::watch;
use tokio::time::Instant;

mod webhook;

pub use webhook::{signature, HeadWebhook, WebhookConfig, SIGNATURE_HEADER};

/// Events sealed in one transaction at most.
const SEAL_BATCH: u64 = 2_000;

/// How the sealer runs (from [`crate::Settings::sealer`]).
#[derive(Clone)]
pub struct SealerConfig {
    pub key: SigningKey,
    /// A head once this many events were sealed since the last one...
    pub every_events: u64,
    /// ...or this long after the last one, when events came meanwhile.
    pub every: Duration,
    /// Where heads are appended as JSON lines.
    pub heads_file: Option<PathBuf>,
    /// Where heads are POSTed.
    pub webhook: Option<WebhookConfig>,
    /// How long a caught-up sealer waits for an announcement before it
    /// looks again anyway.
    pub idle_wait: Duration,
    /// The least time between the starts of two steps once caught up: an
    /// announcement then waits this long, so that one transaction seals
    /// whatever came meanwhile instead of one per command. A head due by
    /// time is not held back, nor is a sealer that is behind.
    pub min_step_interval: Duration,
    /// How often a standby sealer asks for the lease.
    pub lease_retry: Duration,
}

impl SealerConfig {
    pub fn new(key: SigningKey) -> Self {
        Self {
            key,
            every_events: 1_000,
            every: Duration::from_secs(10),
            heads_file: None,
            webhook: None,
            idle_wait: Duration::from_millis(500),
            lease_retry: Duration::from_secs(1),
            min_step_interval: DEFAULT_STEP_INTERVAL,
        }
    }
}

/// The default [`SealerConfig::min_step_interval`]. Leaves are proven only
/// against a head, and heads come every 1,000 events or 10 s: sealing a
/// quarter of a second later delays no proof anyone can ask for yet.
pub const DEFAULT_STEP_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the sealer until `stop` turns true; when `config` is `None` (no
/// signing key), says so and returns.
pub async fn run_sealer(
    pool: PgPool,
    config: Option<SealerConfig>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(config) = config else {
        tracing::warn!(
            "seals: TASKLOG_SEAL_SIGNING_KEY is not set, so the sealer does not run and no tree head is signed"
        );
        return Ok(());
    };
    // Sessions of the sealer role: the only one that may insert seals.
    let pool = seals::sealer_pool(&pool, 2);
    let store = crate::event_store(&pool);
    let webhook = match &config.webhook {
        Some(webhook) => Some(HeadWebhook::spawn(webhook.clone(), stop.clone())?),
        None => None,
    };
    let publisher = webhook.as_ref().map(|(publisher, _)| publisher);
    while !*stop.borrow() {
        let Some(lease) = take_lease(&pool, &config, &mut stop).await else {
            break;
        };
        if let Err(e) = follow(lease, store.clone(), &config, publisher, &mut stop).await {
            tracing::warn!(error = format!("{e:#}"), "sealer stopped; restarting");
            tokio::time::sleep(config.lease_retry).await;
        }
    }
    pool.close().await;
    // Stopping: heads still queued or being retried are not sent.
    if let Some((_, task)) = webhook {
        task.abort();
    }
    Ok(())
}

/// The sealer's lease: a session advisory lock, which dies with its
/// connection; every write goes through that connection, so a sealer that
/// lost it cannot write. `None` on stop.
async fn take_lease(
    pool: &PgPool,
    config: &SealerConfig,
    stop: &mut watch::Receiver<bool>,
) -> Option<PgConnection> {
    loop {
        if *stop.borrow() {
            return None;
        }
        let attempt = async {
            let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
            let got: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtextextended('tasklog.sealer', 0))",
            )
            .fetch_one(&mut conn)
            .await?;
            Ok::<_, sqlx::Error>(got.then_some(conn))
        };
        match attempt.await {
            Ok(Some(conn)) => {
                tracing::info!("sealer: lease taken");
                return Some(conn);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "sealer: could not ask for the lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.lease_retry) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Whether a head is due: events sealed since the last one, and either
/// enough of them or enough time.
fn head_due(tree: &SealedTree, config: &SealerConfig, last_signed: Instant) -> bool {
    let unsigned = tree.frontier.size() - tree.last_head.as_ref().map_or(0, |h| h.tree_size);
    unsigned > 0 && (unsigned >= config.every_events || last_signed.elapsed() >= config.every)
}

fn sign(tree: &SealedTree, key: &SigningKey) -> SignedTreeHead {
    let now = Utc::now();
    TreeHead {
        tree_size: tree.frontier.size(),
        root_hash: Hex(tree.frontier.root()),
        last_position: tree.last,
        // Stored to the microsecond: sign exactly what is stored.
        sealed_at: DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now),
    }
    .sign(key)
}

async fn follow(
    mut lease: PgConnection,
    store: Arc<dyn EventStore>,
    config: &SealerConfig,
    webhook: Option<&HeadWebhook>,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut appends = store.appends();
    let mut tree = seals::load_tree(&mut lease).await?;
    publish_missed(&mut lease, config).await?;
    let mut last_signed = Instant::now();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let step_started = Instant::now();
        // Up to the next head by count, so heads fall on multiples of N.
        let unsigned = tree.frontier.size() - tree.last_head.as_ref().map_or(0, |h| h.tree_size);
        let room = config
            .every_events
            .saturating_sub(unsigned)
            .clamp(1, SEAL_BATCH) as usize;
        let page = store.read_page(tree.last, room).await?;
        if !page.events.is_empty() || head_due(&tree, config, last_signed) {
            let mut next = tree.clone();
            let mut tx = lease.begin().await?;
            seals::seal_events(&mut tx, &mut next, &page.events).await?;
            let head = head_due(&next, config, last_signed).then(|| sign(&next, &config.key));
            if let Some(head) = &head {
                seals::record_head(&mut tx, head).await?;
                next.last_head = Some(head.head.clone());
            } else {
                // Leaves alone need not wait for the disk, which every
                // command's append waits for too: a crash loses them with
                // the frontier they moved (one transaction), and they are
                // sealed again. A head's commit waits, and with it every
                // earlier one, before the head is published.
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            tree = next;
            if let Some(head) = head {
                last_signed = Instant::now();
                publish(config, webhook, &head);
            }
        }
        if page.events.len() == room {
            continue;
        }
        // Caught up: wait for appends, and wake when a head falls due by time.
        let wait = if page.held_back {
            Duration::from_millis(20)
        } else if tree.frontier.size() > tree.last_head.as_ref().map_or(0, |h| h.tree_size) {
            config
                .every
                .saturating_sub(last_signed.elapsed())
                .min(config.idle_wait)
        } else {
            config.idle_wait
        };
        tokio::select! {
            _ = appends.next() => {
                // Let more come, unless a head falls due by time first.
                let until = (step_started + config.min_step_interval)
                    .min(last_signed + config.every);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stop.changed() => {}
                }
            }
            _ = tokio::time::sleep(wait) => {
                // Still holding the lease? It dies with its connection.
                sqlx::query("SELECT 1").execute(&mut lease).await?;
            }
            _ = stop.changed() => {}
        }
    }
}

/// Publishes a signed head outside the database: a structured log line and,
/// when configured, a line of the heads file and the same document POSTed
/// to the webhook (queued: this never waits for it).
fn publish(config: &SealerConfig, webhook: Option<&HeadWebhook>, head: &SignedTreeHead) {
    let line = serde_json::to_string(head).expect("a head serializes");
    tracing::info!(
        tree_size = head.head.tree_size,
        root_hash = %head.head.root_hash,
        last_position = %head.head.last_position,
        head = %line,
        "seals: tree head signed"
    );
    if let Some(path) = &config.heads_file {
        if let Err(e) = append_line(path, &line) {
            tracing::error!(file = %path.display(), error = %e, head = %line, "seals: could not append the head to the heads file");
        }
    }
    if let Some(webhook) = webhook {
        webhook.publish(head.head.tree_size, line);
    }
}

fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

/// Appends to the heads file the recorded heads it lacks (a crash between a
/// head's commit and its line, or a file started late).
async fn publish_missed(conn: &mut PgConnection, config: &SealerConfig) -> anyhow::Result<()> {
    let Some(path) = &config.heads_file else {
        return Ok(());
    };
    let last_size = match std::fs::File::open(path) {
        Ok(file) => std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<SignedTreeHead>(&l).ok())
            .map(|h| h.head.tree_size)
            .max(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    for head in seals::heads(&mut *conn, last_size).await? {
        append_line(path, &serde_json::to_string(&head)?)?;
    }
    Ok(())
}
