//! `tasklog`: run any role of the system, or all of them in one process.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tasklog::{config::DEV_JWT_SECRET, AuditApi, CommandApi, QueryApi, Settings};
use uuid::Uuid;

// Many small allocations across threads (events, rows, JSON): mimalloc
// spends far less time in malloc and free than glibc's allocator here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Check the stored events (hash chains and versions) or an export; export an organization's events (see docs/audit.md).
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .thread_name("projectors")
                        .build()?
                        .block_on(tasklog::run_projectors(pool, analytics, stopped))
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
                pool,
                Some(settings.clickhouse()),
                stopped,
            ));
            tasklog::startup::shutdown_signal().await;
            let _ = stop.send(true);
            run.await?
        }
        Action::Projections { action } => {
            let pool = tasklog::connect(&settings.database_url, 4).await?;
            tasklog::projections_cli(pool, Some(settings.clickhouse()), action_of(action)).await
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
            action: AuditAction::Verify { org, file },
        } => {
            let verified = match file {
                Some(file) => tasklog::audit::verify_file_cli(&file),
                None => tasklog::audit::verify_cli(&settings.admin_database_url, org).await,
            };
            // As diff does: 1 when something was found, 2 when it could not check.
            match verified {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    std::process::exit(2)
                }
            }
        }
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
        Action::Store => {
            let pool = tasklog::connect(&settings.database_url, 2).await?;
            let hwm = tasklog::event_store(&pool).high_water_mark().await?;
            println!("{}", serde_json::to_string_pretty(&hwm)?);
            Ok(())
        }
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
