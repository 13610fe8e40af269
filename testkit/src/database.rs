//! The test database: a fresh one per test, or one a test binary shares.

use std::sync::OnceLock;

use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use uuid::Uuid;

/// The server the tests create their databases on, as its superuser;
/// `DATABASE_URL` overrides it.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A port nothing listens on now (the OS picks it; a process may bind it
/// again after every restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// How to connect to `pool`'s database as the application role.
pub fn as_app_role(pool: &PgPool) -> PgConnectOptions {
    (*pool.connect_options()).clone().username("tasklog_app")
}

/// Runs `statements` in one transaction as the superuser with every trigger
/// off (`session_replication_role = replica`), as someone with full database
/// access could: the tampering the audit tests must detect.
pub async fn tamper<S: AsRef<str>>(owner: &PgPool, statements: &[S]) {
    let mut tx = owner.begin().await.expect("a transaction");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("the superuser may turn triggers off");
    for s in statements {
        sqlx::query(s.as_ref())
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", s.as_ref()));
    }
    tx.commit().await.expect("the tampering commits");
}

/// A database of the tests: its name and how to connect to it.
#[derive(Clone, Debug)]
pub struct TestDatabase {
    pub name: String,
    /// As its owner (the superuser): migrations, and looking at what was stored.
    pub owner_url: String,
    /// As the application role, as `tasklog` connects in production.
    pub app_url: String,
}

impl TestDatabase {
    fn named(name: String) -> Self {
        let admin = admin_url();
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin);
        Self {
            owner_url: format!("{base}/{name}"),
            app_url: format!(
                "{}/{name}",
                base.replacen("postgres://postgres@", "postgres://tasklog_app@", 1)
            ),
            name,
        }
    }

    /// An empty database of one test's own, `{prefix}_{uuid}`, not migrated.
    pub async fn empty(prefix: &str) -> Self {
        let db = Self::named(format!("{prefix}_{}", Uuid::now_v7().simple()));
        let server = PgPool::connect(&admin_url())
            .await
            .expect("PostgreSQL answers at DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {}", db.name))
            .execute(&server)
            .await
            .unwrap_or_else(|e| panic!("creating database {}: {e}", db.name));
        server.close().await;
        db
    }

    /// A fresh database of one test's own with every migration applied, and
    /// a pool to it as its owner.
    pub async fn migrated(prefix: &str) -> (Self, PgPool) {
        let db = Self::empty(prefix).await;
        let owner = db.migrate().await;
        (db, owner)
    }

    /// The database the tests of a binary share, `{prefix}_{fingerprint}`:
    /// one per set of migrations, created by the first test that asks and
    /// migrated (a no-op once done). Tests that share it keep apart by
    /// making their own organizations.
    pub async fn shared(prefix: &str) -> (Self, PgPool) {
        static FINGERPRINT: OnceLock<String> = OnceLock::new();
        let fingerprint = FINGERPRINT.get_or_init(|| {
            use std::hash::{Hash, Hasher};
            let texts: Vec<String> = tasklog::MIGRATOR
                .iter()
                .map(|m| format!("{}{}", m.version, m.sql))
                .collect();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            texts.hash(&mut h);
            format!("{:016x}", h.finish())
        });
        let db = Self::named(format!("{prefix}_{fingerprint}"));
        let server = PgPool::connect(&admin_url())
            .await
            .expect("PostgreSQL answers at DATABASE_URL");
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&db.name)
                .fetch_one(&server)
                .await
                .expect("pg_database answers");
        if !exists {
            // Parallel test processes race here; losing the race is fine.
            let _ = sqlx::query(&format!("CREATE DATABASE {}", db.name))
                .execute(&server)
                .await;
        }
        server.close().await;
        let owner = db.migrate().await;
        (db, owner)
    }

    /// Applies every migration as the owner; returns the owner's pool.
    pub async fn migrate(&self) -> PgPool {
        let owner = self.owner().await;
        tasklog::MIGRATOR
            .run(&owner)
            .await
            .expect("migrations apply");
        owner
    }

    /// A pool to it as its owner.
    pub async fn owner(&self) -> PgPool {
        PgPool::connect(&self.owner_url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name))
    }

    /// Drops it, closing whatever is still connected.
    pub async fn drop_database(self) {
        let server = PgPool::connect(&admin_url())
            .await
            .expect("PostgreSQL answers at DATABASE_URL");
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&server)
        .await;
        server.close().await;
    }
}
