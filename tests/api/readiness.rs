//! `/readyz` shows what holds readers of the log back, with real ages.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn readyz_reports_the_real_age_of_another_roles_open_transaction() {
    let app = spawn_app().await;
    // A transaction of another role (the owner), holding a transaction id.
    let mut tx = app.db.begin().await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let body: Value = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let oldest = &body["event_store"]["oldest_open_transaction"];
    assert!(
        oldest["age_seconds"].as_f64().unwrap() >= 1.0,
        "the oldest open transaction has a real age: {body}"
    );
    // The application role sees this session's age too.
    let app_pool = sqlx::PgPool::connect_with(tasklog_testkit::as_app_role(&app.db))
        .await
        .unwrap();
    let age: Option<f64> =
        sqlx::query_scalar("SELECT age_seconds FROM tasklog_open_transactions() WHERE pid = $1")
            .bind(pid)
            .fetch_optional(&app_pool)
            .await
            .unwrap();
    assert!(age.is_some_and(|a| a >= 1.0), "{age:?}");
    tx.rollback().await.unwrap();
}
