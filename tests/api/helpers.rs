//! Starts the real command API on a random port against real PostgreSQL.
//!
//! Every test gets its own organizations (ids are fresh), so tests share one
//! migrated database per migration set and run in parallel.

use std::sync::OnceLock;

use reqwest::{Method, Response};
use serde_json::Value;
use sqlx::PgPool;
use tasklog::{CommandApi, Settings};
use uuid::Uuid;

/// The admin connection tests use, overridable with DATABASE_URL.
fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// Owner connection, for looking at what was stored.
    pub db: PgPool,
}

pub struct User {
    pub id: Uuid,
    pub token: String,
}

/// A short name that changes whenever a migration does.
fn fingerprint(texts: &[String]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    texts.hash(&mut h);
    format!("{:016x}", h.finish())
}

static DB_NAME: OnceLock<String> = OnceLock::new();

fn db_name() -> &'static str {
    DB_NAME.get_or_init(|| {
        let texts: Vec<String> = tasklog::MIGRATOR
            .iter()
            .map(|m| format!("{}{}", m.version, m.sql))
            .collect();
        format!("tasklog_e2e_{}", fingerprint(&texts))
    })
}

/// Creates (once) and migrates the shared test database.
async fn database() -> (String, PgPool) {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin.clone());
    let server = PgPool::connect(&admin)
        .await
        .expect("PostgreSQL answers at DATABASE_URL");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db_name())
            .fetch_one(&server)
            .await
            .unwrap();
    if !exists {
        // Parallel test processes race here; losing the race is fine.
        let _ = sqlx::query(&format!("CREATE DATABASE {}", db_name()))
            .execute(&server)
            .await;
    }
    server.close().await;
    let owner_url = format!("{base}/{}", db_name());
    let owner = PgPool::connect(&owner_url).await.unwrap();
    tasklog::MIGRATOR
        .run(&owner)
        .await
        .expect("migrations apply");
    (base, owner)
}

pub async fn spawn_app() -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        tasklog::init_tracing();
    }
    let (base, db) = database().await;
    // The app runs as the application role, exactly as in production.
    let app_url = format!(
        "{}/{}",
        base.replacen("postgres://postgres@", "postgres://tasklog_app@", 1),
        db_name()
    );
    let settings = Settings::local(&app_url);
    let pool = tasklog::connect(&settings.database_url, 8).await.unwrap();
    let api = CommandApi::build(&settings, pool).await.unwrap();
    let address = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
    }
}

impl TestApp {
    pub fn user(&self, handle: &str) -> User {
        let id = Uuid::now_v7();
        User {
            id,
            token: tasklog_http::auth::mint_hs256(
                tasklog::config::DEV_JWT_SECRET,
                id,
                Some(handle),
                3600,
            )
            .unwrap(),
        }
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

/// Asserts an RFC 9457 problem with `status` and `code`; returns its body.
pub async fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("https://tasklog.dev/problems/{code}"));
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    body
}
