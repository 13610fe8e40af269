//! `/readyz` shows what holds readers of the log back, with real ages.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tasklog_testkit::{app_pool, as_app_role, spawn_command_api, TestDatabase};

/// The transaction `/readyz` must name is this test's own, of another role
/// than the application's (the owner), in a database of its own. Transaction
/// ids are the whole server's, so another test's transaction, in any
/// database, may be older and rightly reported instead: then this test
/// holds a new transaction until its own is the oldest. It never accepts
/// another session's transaction in place of its own, so another test's
/// (of the application role, say, whose age was always visible) cannot
/// make it pass.
#[tokio::test]
async fn readyz_reports_the_real_age_of_another_roles_open_transaction() {
    let (database, owner) = TestDatabase::migrated("tasklog_ready").await;
    let address = spawn_command_api(app_pool(&database, 4).await).await;
    let client = reqwest::Client::new();

    let mut reported = Vec::new();
    for _ in 0..20 {
        // A transaction of another role (the owner), holding a transaction id.
        let mut tx = owner.begin().await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *tx)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;

        let body: Value = client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let oldest = body["event_store"]["oldest_open_transaction"].clone();
        let holder: Option<i32> = oldest["holder"]
            .as_str()
            .and_then(|h| h.strip_prefix("server process "))
            .and_then(|h| h.split(' ').next())
            .and_then(|p| p.parse().ok());
        match holder {
            Some(holder) if holder == pid => {
                assert!(
                    oldest["age_seconds"].as_f64().unwrap() >= 1.0,
                    "the oldest open transaction has its real age: {body}"
                );
                // The application role sees this session's age too.
                assert_app_role_sees_the_age_of(&owner, pid).await;
                tx.rollback().await.unwrap();
                owner.close().await;
                database.drop_database().await;
                return;
            }
            Some(holder) => {
                // Right only if that transaction is older than this one (or
                // has ended since, which says nothing): then try again.
                let older: Option<bool> = sqlx::query_scalar(
                    "SELECT age(a.backend_xid) > age(b.backend_xid) \
                     FROM pg_stat_activity a, pg_stat_activity b WHERE a.pid = $1 AND b.pid = $2",
                )
                .bind(holder)
                .bind(pid)
                .fetch_optional(&owner)
                .await
                .unwrap()
                .flatten();
                assert_ne!(
                    older,
                    Some(false),
                    "/readyz names a younger transaction than this test's ({pid}): {body}"
                );
                reported.push(oldest);
            }
            None => panic!("/readyz names no open transaction while this test holds one: {body}"),
        }
        tx.rollback().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("another transaction was always older than this test's: {reported:?}");
}

async fn assert_app_role_sees_the_age_of(owner: &PgPool, pid: i32) {
    let app_pool = PgPool::connect_with(as_app_role(owner)).await.unwrap();
    let age: Option<f64> =
        sqlx::query_scalar("SELECT age_seconds FROM tasklog_open_transactions() WHERE pid = $1")
            .bind(pid)
            .fetch_optional(&app_pool)
            .await
            .unwrap();
    assert!(age.is_some_and(|a| a >= 1.0), "{age:?}");
    app_pool.close().await;
}
