//! The whole system in one process: commands in, projectors, queries out.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tasklog_testkit::{app_pool, spawn_command_api, spawn_query_api, TestDatabase};
use tokio::sync::watch;
use uuid::Uuid;

use crate::helpers::{TestApp, User};

pub struct System {
    pub app: TestApp,
    pub query: String,
    stop: watch::Sender<bool>,
    database: TestDatabase,
}

/// A fresh database with the command API, the query API and the projectors.
pub async fn spawn_system() -> System {
    let (database, db) = TestDatabase::migrated("tasklog_sys").await;
    let pool = app_pool(&database, 12).await;
    let address = spawn_command_api(pool.clone()).await;
    let query = spawn_query_api(
        pool.clone(),
        Duration::from_secs(10),
        Duration::from_millis(100),
    )
    .await;

    let (stop, stopped) = watch::channel(false);
    let config = tasklog_projectors::ProjectorConfig {
        idle_wait: Duration::from_millis(100),
        lease_retry: Duration::from_millis(100),
        ..Default::default()
    };
    let audit_address = tasklog_testkit::spawn_audit_api(pool.clone()).await;
    tokio::spawn(tasklog::run_projectors(pool, None, config, stopped));
    System {
        app: TestApp {
            address,
            audit_address,
            client: reqwest::Client::new(),
            db,
            owner_url: database.owner_url.clone(),
            database: database.clone(),
        },
        query,
        stop,
        database,
    }
}

impl System {
    pub async fn get(&self, path: &str, user: &User, token: Option<&str>) -> reqwest::Response {
        let mut req = self
            .app
            .client
            .get(format!("{}{path}", self.query))
            .bearer_auth(&user.token);
        if let Some(token) = token {
            req = req.header("x-consistency-token", token);
        }
        req.send().await.unwrap()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.app.db.close().await;
        self.database.drop_database().await;
    }
}

async fn token_of(r: reqwest::Response) -> (Uuid, String) {
    let body: Value = r.json().await.unwrap();
    (
        body["id"].as_str().unwrap().parse().unwrap(),
        body["consistency_token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_read_with_the_commands_consistency_token_sees_that_command() {
    let sys = spawn_system().await;
    let app = &sys.app;
    let (org, owner) = app.org().await;
    let project = app.project(org, &owner, "WEB").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects/{project}/tasks"),
            &owner,
            json!({"title": "Fresh"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (task, token) = token_of(r).await;

    let r = sys
        .get(
            &format!("/v1/orgs/{org}/tasks/{task}"),
            &owner,
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The ETag names the version and a digest of the body.
    assert!(r.headers()["etag"].to_str().unwrap().starts_with("\"1-"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["title"], "Fresh");
    assert_eq!(body["key"], "WEB-1");

    let r = app
        .patch(
            &format!("/v1/orgs/{org}/tasks/{task}"),
            &owner,
            json!({"title": "Edited"}),
        )
        .await;
    let (_, token) = token_of(r).await;
    let r = sys
        .get(
            &format!("/v1/orgs/{org}/projects/{project}/tasks"),
            &owner,
            Some(&token),
        )
        .await;
    let list: Value = r.json().await.unwrap();
    assert_eq!(
        list["items"][0]["title"], "Edited",
        "never the stale title once the token is given"
    );
    sys.stop().await;
}

#[tokio::test]
async fn a_mention_notifies_the_member_who_can_mark_it_read() {
    let sys = spawn_system().await;
    let app = &sys.app;
    let (org, owner) = app.org().await;
    let bob = app.member(org, &owner, "bob", "member").await;
    let project = app.project(org, &owner, "WEB").await;
    let task = app.task(org, project, &owner, "Review").await;
    let r = app
        .post(
            &format!("/v1/orgs/{org}/tasks/{task}/comments"),
            &owner,
            json!({"body": "@bob please review"}),
        )
        .await;
    let (_, token) = token_of(r).await;

    let r = sys
        .get(
            &format!("/v1/orgs/{org}/me/notifications?unread=true"),
            &bob,
            Some(&token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let inbox: Value = r.json().await.unwrap();
    assert_eq!(inbox["items"].as_array().unwrap().len(), 1);
    assert_eq!(inbox["items"][0]["kind"], "mentioned");
    assert_eq!(inbox["items"][0]["task_key"], "WEB-1");
    let notification = inbox["items"][0]["id"].as_str().unwrap().to_owned();

    // It is Bob's: the owner cannot mark it read, and her inbox gets nothing.
    let r = app
        .request(
            Method::POST,
            &format!("/v1/orgs/{org}/me/notifications/{notification}/read"),
            &owner,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 404);
    let inbox = format!("inbox-{}", tasklog_domain::inbox_id(org, owner.id));
    assert!(app.stream(&inbox).await.is_empty());

    let r = app
        .request(
            Method::POST,
            &format!("/v1/orgs/{org}/me/notifications/{notification}/read"),
            &bob,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let (_, token) = token_of(r).await;
    let r = sys
        .get(
            &format!("/v1/orgs/{org}/me/notifications?unread=true"),
            &bob,
            Some(&token),
        )
        .await;
    let inbox: Value = r.json().await.unwrap();
    assert_eq!(
        inbox["items"],
        json!([]),
        "read notifications leave the unread list"
    );
    sys.stop().await;
}

/// An auditor's read appends `AuditLogRead` to `audit-<org>`; every
/// projection passes over it (none parks it) and goes on to what follows.
#[tokio::test]
async fn the_projectors_pass_over_recorded_audit_reads() {
    let sys = spawn_system().await;
    let app = &sys.app;
    let (org, owner) = app.org().await;
    let r = app
        .audit_get(&format!("/v1/orgs/{org}/audit/events"), &owner)
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            &format!("/v1/orgs/{org}/projects"),
            &owner,
            json!({"name": "After", "key": "AFT"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (project, token) = token_of(r).await;
    let r = sys
        .get(
            &format!("/v1/orgs/{org}/projects/{project}"),
            &owner,
            Some(&token),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "every projection applied what followed the read"
    );
    let reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_id = $1 AND event_type = 'AuditLogRead'",
    )
    .bind(format!("audit-{org}"))
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(reads, 1);
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(parked, 0);
    sys.stop().await;
}
