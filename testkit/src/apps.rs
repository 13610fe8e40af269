//! The command and query APIs on a random port, as the tests run them.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tasklog::{CommandApi, Settings};
use tasklog_analytics::ClickHouseConfig;
use tasklog_http::Authenticator;

use crate::TestDatabase;

/// Logs go to the test's output when `TEST_LOG` is set.
fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        tasklog::init_tracing();
    }
}

/// A pool of `size` to `db` as the application role, set up as `tasklog`
/// sets up its own.
pub async fn app_pool(db: &TestDatabase, size: u32) -> PgPool {
    tasklog::connect(&db.app_url, size)
        .await
        .expect("the application role connects")
}

/// How the kit's apps verify tokens: with [`crate::SECRET`].
pub fn authenticator() -> Authenticator {
    let settings = Settings::local("");
    Authenticator::new(&settings.auth().expect("HS256 settings")).expect("an HS256 authenticator")
}

/// The command API exactly as `tasklog` serves it (its connection limits
/// included), on a random port, over `pool`; its base URL.
pub async fn spawn_command_api(pool: PgPool) -> String {
    init_logs();
    let api = CommandApi::build(&Settings::local(""), pool)
        .await
        .expect("the command API starts");
    let address = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());
    address
}

/// The auditor API exactly as `tasklog` serves it, on a random port, over
/// `pool`; its base URL.
pub async fn spawn_audit_api(pool: PgPool) -> String {
    init_logs();
    let api = tasklog::AuditApi::build(&Settings::local(""), pool)
        .await
        .expect("the auditor API starts");
    let address = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());
    address
}

/// The query API over `pool`, its read-your-writes waits bounded by `wait`
/// and the fallback read every `poll`, on a random port; its base URL.
/// No ClickHouse: its report routes answer 503.
pub async fn spawn_query_api(pool: PgPool, wait: Duration, poll: Duration) -> String {
    spawn_query_api_with_reports(pool, wait, poll, None).await
}

/// [`spawn_query_api`], reading its reports from the reporting views of
/// `clickhouse` (as `tasklog` sets them up from its settings) when given.
pub async fn spawn_query_api_with_reports(
    pool: PgPool,
    wait: Duration,
    poll: Duration,
    clickhouse: Option<&ClickHouseConfig>,
) -> String {
    init_logs();
    let store = crate::store(&pool);
    let reports = clickhouse.map(|config| {
        tasklog::QueryApi::reports(config).expect("a valid ClickHouse configuration")
    });
    let mut state = tasklog_query_api::QueryState::new(pool, store, Arc::new(authenticator()))
        .with_reports(reports);
    state.consistency_wait = wait;
    state.consistency_poll = poll;
    serve(tasklog_query_api::router(state)).await
}

/// Serves `router` on a random port; its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = format!(
        "http://{}",
        listener
            .local_addr()
            .expect("a bound listener has an address")
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}
