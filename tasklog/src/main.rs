//! `tasklog`: run any role of the system, or all of them in one process.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tasklog::{config::DEV_JWT_SECRET, AuditApi, CommandApi, QueryApi, Settings};
use tasklog_event_store_postgres::seals::LeafRef;
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: tasklog::allocator::Allocator = tasklog::allocator::Allocator;

#[derive(Parser)]
#[command(
    name = "tasklog",
    version,
    about = "Tasklog: an event-sourced project-management backend"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Apply the database migrations, then run every role in this process
    /// (the command, query and auditor APIs, and the projectors).
    Serve,
    /// Run only the command API.
    CommandApi,
    /// Run only the query API.
    QueryApi,
    /// Run only the auditor API.
    AuditApi,
    /// Run only the projectors (every projection; a second instance stands by).
    Projectors,
    /// Inspect and manage projections.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
    /// Apply the PostgreSQL migrations (as the schema owner).
    Migrate,
    /// Mint a development bearer token (HS256, signed with TASKLOG_JWT_SECRET).
    Token {
        /// The user id (a new one when omitted).
        #[arg(long)]
        user: Option<Uuid>,
        /// The user's handle, e.g. alice.
        #[arg(long)]
        handle: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 24 * 3600)]
        ttl: u64,
    },
    /// Event store state: how far readers can safely read, and what holds them back.
    Store,
    /// Check the stored events (hash chains and versions) or an export; export an organization's events; replay its read models and compare (see docs/audit.md).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Write a realistic, valid event log straight into `events` (COPY, as the schema owner).
    Generate {
        /// Organizations.
        #[arg(long, default_value_t = 100)]
        orgs: usize,
        /// Events in all (raised to fit --tasks).
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Exactly this many tasks (the rest of the events become follow-ups).
        #[arg(long)]
        tasks: Option<usize>,
        /// Seed of the generator (same seed, same day: same log).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Recompute every stream's hash chain as the schema owner; print one
    /// line per finding and a summary; exit 1 on any finding, 2 when it
    /// could not check.
    Verify {
        /// Only the streams of this organization.
        #[arg(long)]
        org: Option<Uuid>,
        /// Verify an export file instead, with no database (`-`: standard input).
        #[arg(long, conflicts_with = "org")]
        file: Option<PathBuf>,
        /// Also check the recorded tree heads' signatures with this public
        /// key (64 hex digits; default: the configured signing key's).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// The latest signed tree head, as one JSON line.
    Head,
    /// An event's inclusion proof against a signed tree head, as JSON.
    Prove {
        /// The event's id.
        #[arg(
            long,
            required_unless_present = "position",
            conflicts_with = "position"
        )]
        event: Option<Uuid>,
        /// Or its log position, `<commit>.<event>`.
        #[arg(long)]
        position: Option<tasklog_event_store::LogPosition>,
        /// The size of the signed head to prove against (default: the latest).
        #[arg(long)]
        size: Option<u64>,
    },
    /// The consistency proof between two signed tree heads, as JSON.
    ProveConsistency {
        /// The older head's size.
        #[arg(long)]
        from: u64,
        /// The newer head's size (default: the latest).
        #[arg(long)]
        to: Option<u64>,
    },
    /// The public key of TASKLOG_SEAL_SIGNING_KEY (64 hex digits), for auditors.
    PublicKey,
    /// Check signed tree heads (one head, or a heads file of JSON lines)
    /// offline with the public key only; exit 1 on a finding, 2 when it
    /// could not check.
    VerifyHead {
        /// The file (`-`: standard input).
        file: PathBuf,
        #[arg(long)]
        public_key: String,
    },
    /// Check an inclusion proof (from `prove`) offline with the public key only.
    VerifyInclusion {
        file: PathBuf,
        #[arg(long)]
        public_key: String,
        /// The event's `hash` as the auditor holds it (e.g. from an export):
        /// the proof must be for it.
        #[arg(long)]
        event_hash: Option<String>,
    },
    /// Check a consistency proof (from `prove-consistency`) offline with the public key only.
    VerifyConsistency {
        file: PathBuf,
        #[arg(long)]
        public_key: String,
    },
    /// Write an organization's events as NDJSON (tasklog-export-v1), with
    /// their hashes, for `verify --file` or an auditor's own tools.
    Export {
        /// The organization.
        #[arg(long)]
        org: Uuid,
        /// The file to write (standard output when omitted).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Events read from the database at a time.
        #[arg(long, default_value_t = tasklog_event_store_postgres::export::EXPORT_PAGE)]
        page_size: usize,
    },
    /// Rebuild an organization's rows of every PostgreSQL projection in
    /// scratch schemas from its events, with the same projection code, and
    /// compare them with the live read models; print each difference; exit
    /// 1 on any, 2 when it could not compare.
    Replay {
        /// The organization.
        #[arg(long)]
        org: Uuid,
        /// Keep the scratch schemas (`replay_<projection>_<id>`) for inspection.
        #[arg(long)]
        keep: bool,
        /// Seconds to wait, in all, for live projections to reach the log
        /// position the replay stops at.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
        /// Differences listed per table (all are counted).
        #[arg(long, default_value_t = 20)]
        max_listed: usize,
    },
}

#[derive(Subcommand)]
enum ProjectionsAction {
    /// Each projection's generation, checkpoint, lag and parked events.
    Status,
    /// Replay the whole log into fresh tables, then switch reads to them.
    Rebuild {
        /// directory | tasks | activity | notifications
        name: String,
        /// Events per transaction.
        #[arg(long, default_value_t = tasklog_projectors::status::REBUILD_BATCH)]
        batch: usize,
    },
    /// List parked (dead-letter) events.
    Parked,
    /// Apply a parked event again, after a fix.
    Replay {
        /// The parked event's id (see `parked`).
        id: i64,
    },
}

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads start allocating.
    tasklog::allocator::configure();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tasklog::init_tracing();
    let settings = cli.settings;
    match cli.command {
        Action::Serve => {
            warn_on_dev_secret(&settings);
            // ClickHouse down must not keep the system from starting: the
            // analytics projection migrates it when it comes.
            tasklog::startup::migrate_postgres(&settings).await?;
            let pool =
                tasklog::connect(&settings.database_url, settings.database_pool_size).await?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            // The projectors get a runtime of their own, as their own process
            // would have: a burst of requests queued on this runtime's
            // workers would otherwise delay every step of theirs.
            let projectors = {
                let pool = pool.clone();
                let analytics = Some(settings.clickhouse());
                let tuning = settings.projectors();
                let sealer = settings.sealer()?;
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .thread_name("projectors")
                        .build()?
                        .block_on(async move {
                            let (projected, sealed) = tokio::join!(
                                tasklog::run_projectors(
                                    pool.clone(),
                                    analytics,
                                    tuning,
                                    stopped.clone()
                                ),
                                tasklog::seals::run_sealer(pool, sealer, stopped)
                            );
                            projected.and(sealed)
                        })
                })
            };
            let query = QueryApi::build(&settings, pool.clone()).await?;
            let query = tokio::spawn(query.run_until_stopped());
            let audit = AuditApi::build(&settings, pool.clone()).await?;
            let audit = tokio::spawn(audit.run_until_stopped());
            let commands = CommandApi::build(&settings, pool)
                .await?
                .run_until_stopped()
                .await;
            let _ = stop.send(true);
            tokio::task::spawn_blocking(move || projectors.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the projectors' thread panicked"))??;
            query.await??;
            audit.await??;
            commands
        }
        Action::QueryApi => {
            let pool =
                tasklog::connect(&settings.database_url, settings.database_pool_size).await?;
            QueryApi::build(&settings, pool)
                .await?
                .run_until_stopped()
                .await
        }
        Action::AuditApi => {
            let pool =
                tasklog::connect(&settings.database_url, settings.database_pool_size).await?;
            AuditApi::build(&settings, pool)
                .await?
                .run_until_stopped()
                .await
        }
        Action::Projectors => {
            let pool =
                tasklog::connect(&settings.database_url, settings.database_pool_size).await?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let run = tokio::spawn(tasklog::run_projectors(
                pool.clone(),
                Some(settings.clickhouse()),
                settings.projectors(),
                stopped.clone(),
            ));
            let sealer = tokio::spawn(tasklog::seals::run_sealer(
                pool,
                settings.sealer()?,
                stopped,
            ));
            tasklog::startup::shutdown_signal().await;
            let _ = stop.send(true);
            sealer.await??;
            run.await?
        }
        Action::Projections { action } => {
            let pool = tasklog::connect(&settings.database_url, 4).await?;
            let sealing = settings.seal_signing_key.is_some();
            tasklog::projections_cli(
                pool,
                Some(settings.clickhouse()),
                action_of(action),
                sealing,
            )
            .await
        }
        Action::CommandApi => {
            warn_on_dev_secret(&settings);
            let pool =
                tasklog::connect(&settings.database_url, settings.database_pool_size).await?;
            CommandApi::build(&settings, pool)
                .await?
                .run_until_stopped()
                .await
        }
        Action::Migrate => {
            tasklog::migrate(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Action::Token { user, handle, ttl } => {
            let user = user.unwrap_or_else(Uuid::now_v7);
            let token = tasklog_http::auth::mint_hs256(
                settings.jwt_secret.expose_secret(),
                user,
                handle.as_deref(),
                ttl,
            )?;
            println!("{token}");
            eprintln!("user id: {user}");
            Ok(())
        }
        Action::Generate {
            orgs,
            events,
            tasks,
            seed,
        } => {
            let options = tasklog::generate::GenerateOptions {
                tasks,
                seed,
                ..tasklog::generate::GenerateOptions::new(orgs, events)
            };
            tasklog::generate::cli(&settings.admin_database_url, options).await
        }
        Action::Audit {
            action:
                AuditAction::Verify {
                    org,
                    file,
                    public_key,
                },
        } => {
            let verified = match file {
                Some(file) => tasklog::audit::verify_file_cli(&file),
                None => match verifying_key(&settings, public_key.as_deref()) {
                    Ok(key) => {
                        tasklog::audit::verify_cli(&settings.admin_database_url, org, key.as_ref())
                            .await
                    }
                    Err(e) => Err(e),
                },
            };
            exit_as_diff(verified)
        }
        Action::Audit {
            action: AuditAction::Head,
        } => tasklog::audit::head_cli(&settings.database_url).await,
        Action::Audit {
            action:
                AuditAction::Prove {
                    event,
                    position,
                    size,
                },
        } => {
            let leaf = match (event, position) {
                (Some(id), _) => LeafRef::Event(id),
                (None, Some(p)) => LeafRef::Position(p),
                (None, None) => anyhow::bail!("--event or --position"),
            };
            tasklog::audit::prove_cli(&settings.database_url, leaf, size).await
        }
        Action::Audit {
            action: AuditAction::ProveConsistency { from, to },
        } => tasklog::audit::prove_consistency_cli(&settings.database_url, from, to).await,
        Action::Audit {
            action: AuditAction::PublicKey,
        } => {
            let config = settings
                .sealer()?
                .ok_or_else(|| anyhow::anyhow!("TASKLOG_SEAL_SIGNING_KEY is not set"))?;
            println!("{}", hex::encode(config.key.verifying_key().as_bytes()));
            Ok(())
        }
        Action::Audit {
            action: AuditAction::VerifyHead { file, public_key },
        } => exit_as_diff(
            parse_key(&public_key).and_then(|k| tasklog::audit::verify_head_cli(&file, &k)),
        ),
        Action::Audit {
            action:
                AuditAction::VerifyInclusion {
                    file,
                    public_key,
                    event_hash,
                },
        } => {
            exit_as_diff(parse_key(&public_key).and_then(|k| {
                tasklog::audit::verify_inclusion_cli(&file, &k, event_hash.as_deref())
            }))
        }
        Action::Audit {
            action: AuditAction::VerifyConsistency { file, public_key },
        } => exit_as_diff(
            parse_key(&public_key).and_then(|k| tasklog::audit::verify_consistency_cli(&file, &k)),
        ),
        Action::Audit {
            action:
                AuditAction::Export {
                    org,
                    output,
                    page_size,
                },
        } => {
            tasklog::audit::export_cli(
                &settings.admin_database_url,
                org,
                output.as_deref(),
                page_size,
            )
            .await
        }
        Action::Audit {
            action:
                AuditAction::Replay {
                    org,
                    keep,
                    wait_secs,
                    max_listed,
                },
        } => {
            let options = tasklog::audit::ReplayOptions {
                keep,
                wait: std::time::Duration::from_secs(wait_secs),
                listed: max_listed,
            };
            exit_as_diff(
                tasklog::audit::replay_cli(&settings.admin_database_url, org, &options).await,
            )
        }
        Action::Store => {
            let pool = tasklog::connect(&settings.database_url, 2).await?;
            let hwm = tasklog::event_store(&pool).high_water_mark().await?;
            println!("{}", serde_json::to_string_pretty(&hwm)?);
            Ok(())
        }
    }
}

/// As diff does: 0 clean, 1 when something was found, 2 when it could not check.
fn exit_as_diff(verified: anyhow::Result<bool>) -> anyhow::Result<()> {
    match verified {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(2)
        }
    }
}

fn parse_key(hex: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    tasklog_event_store::seal::verifying_key_from_hex(hex)
        .map_err(|e| anyhow::anyhow!("--public-key: {e}"))
}

/// The key heads are checked with: the one given, else the configured signing key's.
fn verifying_key(
    settings: &Settings,
    given: Option<&str>,
) -> anyhow::Result<Option<ed25519_dalek::VerifyingKey>> {
    match given {
        Some(hex) => parse_key(hex).map(Some),
        None => Ok(settings.sealer()?.map(|c| c.key.verifying_key())),
    }
}

fn action_of(a: ProjectionsAction) -> tasklog::ProjectionsCommand {
    match a {
        ProjectionsAction::Status => tasklog::ProjectionsCommand::Status,
        ProjectionsAction::Rebuild { name, batch } => {
            tasklog::ProjectionsCommand::Rebuild { name, batch }
        }
        ProjectionsAction::Parked => tasklog::ProjectionsCommand::Parked,
        ProjectionsAction::Replay { id } => tasklog::ProjectionsCommand::Replay { id },
    }
}

fn warn_on_dev_secret(settings: &Settings) {
    if settings.jwt_public_key_file.is_none()
        && settings.jwt_secret.expose_secret() == DEV_JWT_SECRET
    {
        tracing::warn!("TASKLOG_JWT_SECRET is the development default: set it in production");
    }
}
