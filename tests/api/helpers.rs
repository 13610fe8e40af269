//! Starts the real command API on a random port against real PostgreSQL.
//!
//! Every test gets its own organizations (ids are fresh), so tests share one
//! migrated database per migration set and run in parallel.

use reqwest::{Method, Response};
use serde_json::Value;
use sqlx::PgPool;
use tasklog_testkit::{app_pool, spawn_audit_api, spawn_command_api, TestDatabase};
use uuid::Uuid;

pub use tasklog_testkit::{assert_problem, User};

pub struct TestApp {
    pub address: String,
    /// The auditor API's, over the same database.
    pub audit_address: String,
    pub client: reqwest::Client,
    /// Owner connection, for looking at what was stored.
    pub db: PgPool,
    /// How to connect as the owner (the schema owner's CLI commands).
    pub owner_url: String,
    pub database: TestDatabase,
}

pub async fn spawn_app() -> TestApp {
    let (database, db) = TestDatabase::shared("tasklog_e2e").await;
    spawn_app_over(database, db).await
}

/// The app over a database of its own (for what covers the whole log, as
/// the seals do); the test drops the database.
pub async fn spawn_app_alone(prefix: &str) -> (TestApp, TestDatabase) {
    let (database, db) = TestDatabase::migrated(prefix).await;
    (spawn_app_over(database.clone(), db).await, database)
}

async fn spawn_app_over(database: TestDatabase, db: PgPool) -> TestApp {
    // The app runs as the application role, exactly as in production.
    let pool = app_pool(&database, 8).await;
    let address = spawn_command_api(pool.clone()).await;
    let audit_address = spawn_audit_api(pool).await;
    TestApp {
        address,
        audit_address,
        client: reqwest::Client::new(),
        db,
        owner_url: database.owner_url.clone(),
        database,
    }
}

impl TestApp {
    /// The same APIs over the same database, as a second process runs them:
    /// pools, caches and in-process locks of their own.
    pub async fn another_process(&self) -> TestApp {
        spawn_app_over(self.database.clone(), self.db.clone()).await
    }

    pub fn user(&self, handle: &str) -> User {
        User::new(handle)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        user: &User,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.address, path))
            .bearer_auth(&user.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("the API answers")
    }

    /// `GET path` on the auditor API as `user`.
    pub async fn audit_get(&self, path: &str, user: &User) -> Response {
        self.client
            .get(format!("{}{}", self.audit_address, path))
            .bearer_auth(&user.token)
            .send()
            .await
            .expect("the auditor API answers")
    }

    pub async fn post(&self, path: &str, user: &User, body: Value) -> Response {
        self.request(Method::POST, path, user, Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, user: &User, body: Value) -> Response {
        self.request(Method::PATCH, path, user, Some(body), &[])
            .await
    }

    /// Creates an organization owned by a new user.
    pub async fn org(&self) -> (Uuid, User) {
        let owner = self.user(&format!(
            "owner{}",
            &Uuid::now_v7().simple().to_string()[20..]
        ));
        let r = self
            .post("/v1/orgs", &owner, serde_json::json!({ "name": "Acme" }))
            .await;
        assert_eq!(r.status(), 201);
        (id_of(r).await, owner)
    }

    /// Adds a new user to `org` with `role`.
    pub async fn member(&self, org: Uuid, owner: &User, handle: &str, role: &str) -> User {
        let user = self.user(handle);
        let r = self
            .post(
                &format!("/v1/orgs/{org}/members"),
                owner,
                serde_json::json!({ "user_id": user.id, "handle": handle, "role": role }),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        user
    }

    /// A project `key` in `org`.
    pub async fn project(&self, org: Uuid, owner: &User, key: &str) -> Uuid {
        let r = self
            .post(
                &format!("/v1/orgs/{org}/projects"),
                owner,
                serde_json::json!({ "name": "Website", "key": key }),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        id_of(r).await
    }

    pub async fn task(&self, org: Uuid, project: Uuid, user: &User, title: &str) -> Uuid {
        let r = self
            .post(
                &format!("/v1/orgs/{org}/projects/{project}/tasks"),
                user,
                serde_json::json!({ "title": title }),
            )
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        id_of(r).await
    }

    /// Events stored for an organization.
    pub async fn event_count(&self, org: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE org_id = $1")
            .bind(org)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// The payloads of a stream's events, with their types.
    pub async fn stream(&self, stream: &str) -> Vec<(String, Value)> {
        sqlx::query_as(
            "SELECT event_type, payload FROM events WHERE stream_id = $1 ORDER BY stream_version",
        )
        .bind(stream)
        .fetch_all(&self.db)
        .await
        .unwrap()
    }
}

pub async fn id_of(r: Response) -> Uuid {
    let body: Value = r.json().await.unwrap();
    body["id"].as_str().expect("an id").parse().unwrap()
}

/// Inserts into `events` of `event_type` events of `org` fail with
/// `sqlstate` and `message` until [`InsertRefusal::end`]: PostgreSQL itself
/// refusing a real statement, met only by one test's organization.
pub struct InsertRefusal {
    name: String,
}

impl InsertRefusal {
    pub async fn begin(
        app: &TestApp,
        org: Uuid,
        event_type: &str,
        sqlstate: &str,
        message: &str,
    ) -> Self {
        let name = format!("test_refusal_{}", Uuid::now_v7().simple());
        sqlx::query(&format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION '{message}' USING ERRCODE = '{sqlstate}'; END $$"
        ))
        .execute(&app.db)
        .await
        .unwrap();
        sqlx::query(&format!(
            "CREATE TRIGGER {name} BEFORE INSERT ON events FOR EACH ROW \
             WHEN (NEW.org_id = '{org}' AND NEW.event_type = '{event_type}') \
             EXECUTE FUNCTION {name}()"
        ))
        .execute(&app.db)
        .await
        .unwrap();
        Self { name }
    }

    pub async fn end(self, app: &TestApp) {
        let name = &self.name;
        sqlx::query(&format!("DROP TRIGGER {name} ON events"))
            .execute(&app.db)
            .await
            .unwrap();
        sqlx::query(&format!("DROP FUNCTION {name}()"))
            .execute(&app.db)
            .await
            .unwrap();
    }
}
