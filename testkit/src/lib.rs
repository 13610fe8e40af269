//! What every test suite of the workspace shares, written once: the test
//! database (fresh or shared, migrated, as owner and as the application
//! role), tokens, the command and query APIs on a random port, domain events
//! written through the event store and projected by the real projectors, and
//! problem+json assertions and snapshots.
//!
//! A regular library used only as a dev-dependency. The kit names the other
//! crates' paths in few places: the store in [`store`], the APIs in [`apps`],
//! tokens in [`tokens`].

pub mod apps;
pub mod clickhouse;
pub mod clickhouse_server;
pub mod database;
pub mod log;
pub mod problem;
pub mod tokens;

pub use apps::{
    app_pool, authenticator, serve, spawn_audit_api, spawn_command_api, spawn_query_api,
    spawn_query_api_with_reports,
};
pub use clickhouse::{clickhouse_url, TestClickHouse};
pub use clickhouse_server::ClickHouseServer;
pub use database::{admin_url, as_app_role, free_port, tamper, TestDatabase};
pub use log::{store, Appended, By, EventLog, Projections};
pub use problem::{assert_problem, problem_body, redact};
pub use tokens::{token, token_expiring_at, token_signed_with, User, SECRET};

/// The migrations of the PostgreSQL schema: adapter tests take their fresh
/// database from `#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]`.
pub use tasklog::MIGRATOR;

/// The id the notifications projection gives a notification, so tests of
/// the read side can name one without depending on the projectors.
pub use tasklog_projectors::projections::notification_id;

/// Re-exported for [`assert_problem_snapshot!`] and for snapshot tests of
/// other bodies.
pub use insta;
