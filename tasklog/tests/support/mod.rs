//! What the tests that start `tasklog` as a process share: where PostgreSQL
//! is, free ports, and a fresh database of their own.

use sqlx::PgPool;
use uuid::Uuid;

/// The admin connection tests use, overridable with DATABASE_URL.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A port nothing listens on now (the OS picks it; a process may bind it
/// again after every restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An empty database created for one test, not yet migrated.
pub struct FreshDatabase {
    pub name: String,
    /// As its owner (the superuser).
    pub owner_url: String,
    /// As the application role, as `tasklog` connects in production.
    pub app_url: String,
}

/// Creates an empty database named `{prefix}_{uuid}`.
pub async fn fresh_database(prefix: &str) -> FreshDatabase {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let server = PgPool::connect(&admin).await.unwrap();
    let name = format!("{prefix}_{}", Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&server)
        .await
        .unwrap();
    server.close().await;
    FreshDatabase {
        owner_url: format!("{base}/{name}"),
        app_url: format!(
            "{}/{name}",
            base.replacen("postgres://postgres@", "postgres://tasklog_app@", 1)
        ),
        name,
    }
}
