//! Builds each role from [`Settings`] and runs it until stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tasklog_event_store::EventStore;
use tasklog_event_store_postgres::{Grouping, PgEventStore};
use tasklog_http::Authenticator;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::http::Limits;

/// The migrations of the PostgreSQL schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// A pooled connection idle for longer than this is pinged before it is
/// handed out. A connection that was idle while PostgreSQL restarted is dead,
/// and it has been idle at least as long as the outage; one in use then
/// failed its statement and was dropped (sqlx pings every connection it takes
/// back). Busy connections (reused within this window) skip the round trip,
/// as HikariCP's `aliveBypassWindowMs` does.
pub const IDLE_PING_AFTER: Duration = Duration::from_millis(100);

/// A pool to `url`.
pub async fn connect(url: &str, size: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse()?;
    let pool = pool_options(size)
        .connect_with(options.application_name("tasklog"))
        .await
        .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {e}"))?;
    Ok(pool)
}

/// How every pool of the application is set up.
pub fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(5))
        // Not a ping before every statement (a round trip each): only
        // connections that sat idle, see IDLE_PING_AFTER.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < IDLE_PING_AFTER {
                    return Ok(true);
                }
                // A dead connection is dropped and the pool takes or opens another.
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
}

/// Applies every pending migration: PostgreSQL's as the schema owner, then
/// the analytics store's in ClickHouse.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    migrate_postgres(settings).await?;
    let applied = tasklog_analytics::migrate::migrate(&settings.clickhouse())
        .await
        .map_err(|e| anyhow::anyhow!("migrating ClickHouse at {}: {e}", settings.clickhouse_url))?;
    tracing::info!(?applied, "ClickHouse migrations applied");
    Ok(())
}

/// PostgreSQL's migrations only (`serve` needs them; ClickHouse may come
/// later, and the analytics projection migrates it when it does).
pub async fn migrate_postgres(settings: &Settings) -> anyhow::Result<()> {
    let pool = connect(&settings.admin_database_url, 2).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// The event store over `pool`: the one place that chooses the backend
/// (a second backend is picked here, from the settings).
pub fn event_store(pool: &PgPool) -> Arc<dyn EventStore> {
    grouped_event_store(pool, Some(Grouping::default()))
}

/// [`event_store`] with its appends grouped as given (`None`: each alone).
pub fn grouped_event_store(pool: &PgPool, grouping: Option<Grouping>) -> Arc<dyn EventStore> {
    PgEventStore::open_with(pool.clone(), grouping)
}

/// One of the HTTP APIs, bound and ready to serve.
pub struct Listening {
    name: &'static str,
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
}

impl Listening {
    async fn bind(
        name: &'static str,
        settings: &Settings,
        addr: SocketAddr,
        router: axum::Router,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            name,
            listener: TcpListener::bind(addr).await?,
            router,
            limits: settings.http_limits(),
        })
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
        tracing::info!(addr = %self.addr(), "{} listening", self.name);
        crate::http::serve(self.listener, self.router, self.limits, shutdown_signal()).await?;
        Ok(())
    }
}

/// The command API.
pub struct CommandApi;

impl CommandApi {
    pub async fn build(settings: &Settings, pool: PgPool) -> anyhow::Result<Listening> {
        let store = grouped_event_store(&pool, settings.grouping());
        let auth = Authenticator::new(&settings.auth()?)?;
        let router = tasklog_command_api::router(tasklog_command_api::state(pool, store, auth));
        Listening::bind("command API", settings, settings.command_addr, router).await
    }
}

/// The query API.
pub struct QueryApi;

impl QueryApi {
    pub async fn build(settings: &Settings, pool: PgPool) -> anyhow::Result<Listening> {
        let auth = Arc::new(Authenticator::new(&settings.auth()?)?);
        let store = event_store(&pool);
        let reports = Self::reports(&settings.clickhouse())?;
        let state =
            tasklog_query_api::QueryState::new(pool, store, auth).with_reports(Some(reports));
        let router = tasklog_query_api::router(state);
        Listening::bind("query API", settings, settings.query_addr, router).await
    }

    /// Where the query API reads its reports: the reporting views of
    /// `config`. Nothing is sent to ClickHouse here; it is first asked by
    /// a report request, so the query API starts and serves everything
    /// else without it.
    pub fn reports(
        config: &tasklog_analytics::ClickHouseConfig,
    ) -> anyhow::Result<tasklog_query_api::Reports> {
        config.validate()?;
        Ok(tasklog_query_api::Reports::new(
            config.client(),
            &config.reporting,
            config.timeout,
        ))
    }
}

/// The auditor API.
pub struct AuditApi;

impl AuditApi {
    pub async fn build(settings: &Settings, pool: PgPool) -> anyhow::Result<Listening> {
        let auth = Arc::new(Authenticator::new(&settings.auth()?)?);
        let store = event_store(&pool);
        let router =
            tasklog_audit_api::router(tasklog_audit_api::AuditState::new(pool, store, auth));
        Listening::bind("auditor API", settings, settings.audit_addr, router).await
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
