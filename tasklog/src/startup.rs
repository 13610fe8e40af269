//! Builds each role from [`Settings`] and runs it until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tasklog_command_api::Authenticator;
use tasklog_event_store::{EventStore, PgEventStore};
use tokio::net::TcpListener;

use crate::config::Settings;

/// The migrations of the PostgreSQL schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A pool to `url`.
pub async fn connect(url: &str, size: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        // A broken connection shows on first use; a ping before every query
        // would cost a round trip per statement.
        .test_before_acquire(false)
        .connect_with(options.application_name("tasklog"))
        .await
        .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {e}"))?;
    Ok(pool)
}

/// Applies every pending migration as the schema owner.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = connect(&settings.admin_database_url, 2).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// The command API, bound and ready to serve.
pub struct CommandApi {
    listener: TcpListener,
    router: axum::Router,
}

impl CommandApi {
    pub async fn build(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
        let auth = Authenticator::new(&settings.auth()?)?;
        let router = tasklog_command_api::router(tasklog_command_api::state(pool, store, auth));
        let listener = TcpListener::bind(settings.command_addr).await?;
        Ok(Self { listener, router })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr(), "command API listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok(())
    }
}

/// The query API, bound and ready to serve.
pub struct QueryApi {
    listener: TcpListener,
    router: axum::Router,
}

impl QueryApi {
    pub async fn build(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let auth = Arc::new(Authenticator::new(&settings.auth()?)?);
        let router = tasklog_query_api::router(tasklog_query_api::QueryState::new(pool, auth));
        let listener = TcpListener::bind(settings.query_addr).await?;
        Ok(Self { listener, router })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr(), "query API listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        Ok(())
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
