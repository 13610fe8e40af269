//! Starts the real query API on a random port against a fresh PostgreSQL
//! database, over read models the real projectors built from the events of a
//! small world (see `world.rs`).

use std::time::Duration;

use reqwest::Response;
use serde_json::Value;
use sqlx::PgPool;
use tasklog_testkit::{spawn_query_api, TestDatabase};
use uuid::Uuid;

pub use crate::world::{SeededTask, World};
pub use tasklog_testkit::{assert_problem, User};

pub struct TestApp<W = World> {
    pub address: String,
    pub client: reqwest::Client,
    /// Owner connection to this test's database.
    pub db: PgPool,
    pub world: W,
    database: TestDatabase,
}

impl<W> TestApp<W> {
    /// The query API over `db` with `world`, waits bounded by `wait`, the
    /// fallback read every `poll`.
    pub async fn over(
        database: TestDatabase,
        db: PgPool,
        world: W,
        wait: Duration,
        poll: Duration,
    ) -> Self {
        Self {
            address: spawn_query_api(db.clone(), wait, poll).await,
            client: reqwest::Client::new(),
            db,
            world,
            database,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_waiting(Duration::from_secs(2)).await
}

/// The app, with `X-Consistency-Token` waits bounded by `wait`.
pub async fn spawn_app_waiting(wait: Duration) -> TestApp {
    spawn_app_polling(wait, Duration::from_millis(100)).await
}

/// The app, with waits bounded by `wait` and the fallback read every `poll`.
pub async fn spawn_app_polling(wait: Duration, poll: Duration) -> TestApp {
    let (database, db) = TestDatabase::migrated("queryapi_test").await;
    let world = World::seed(&db).await;
    TestApp::over(database, db, world, wait, poll).await
}

impl<W> TestApp<W> {
    pub async fn get_as(&self, path: &str, user: &User, headers: &[(&str, &str)]) -> Response {
        let mut req = self
            .client
            .get(format!("{}{}", self.address, path))
            .bearer_auth(&user.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("the API answers")
    }

    pub async fn get(&self, path: &str, user: &User) -> Response {
        self.get_as(path, user, &[]).await
    }

    /// The JSON body of a 200 answer to `path`.
    pub async fn json(&self, path: &str, user: &User) -> Value {
        let r = self.get(path, user).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Drops this test's database.
    pub async fn teardown(self) {
        self.db.close().await;
        self.database.drop_database().await;
    }
}

/// The `id`s of a list's items.
pub fn ids(body: &Value) -> Vec<Uuid> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().parse().unwrap())
        .collect()
}
