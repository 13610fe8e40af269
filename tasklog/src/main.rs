//! `tasklog`: run any role of the system, or all of them in one process.

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tasklog::{config::DEV_JWT_SECRET, CommandApi, Settings};
use tasklog_event_store::{EventStore, PgEventStore};
use uuid::Uuid;

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
    /// Apply the database migrations, then run every role in this process.
    Serve,
    /// Run only the command API.
    CommandApi,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tasklog::init_tracing();
    let settings = cli.settings;
    match cli.command {
        Action::Serve => {
            warn_on_dev_secret(&settings);
            tasklog::migrate(&settings).await?;
            let pool =
                tasklog::connect(&settings.database_url, settings.database_pool_size).await?;
            CommandApi::build(&settings, pool)
                .await?
                .run_until_stopped()
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
            let token = tasklog_command_api::auth::mint_hs256(
                settings.jwt_secret.expose_secret(),
                user,
                handle.as_deref(),
                ttl,
            )?;
            println!("{token}");
            eprintln!("user id: {user}");
            Ok(())
        }
        Action::Store => {
            let pool = tasklog::connect(&settings.database_url, 2).await?;
            let hwm = PgEventStore::new(pool).high_water_mark().await?;
            println!("{}", serde_json::to_string_pretty(&hwm)?);
            Ok(())
        }
    }
}

fn warn_on_dev_secret(settings: &Settings) {
    if settings.jwt_public_key_file.is_none()
        && settings.jwt_secret.expose_secret() == DEV_JWT_SECRET
    {
        tracing::warn!("TASKLOG_JWT_SECRET is the development default: set it in production");
    }
}
