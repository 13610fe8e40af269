//! The analyst's access: the read-only ClickHouse user `analyst` that the
//! setup creates (`scripts/services.sh`, `compose.yaml`, from
//! `deploy/clickhouse/users.d/analyst.xml`) reads the reporting views and
//! changes nothing. Run against the server `scripts/services.sh` started,
//! with the default database names that user is granted.

use tasklog_analytics::ClickHouseConfig;
use tasklog_testkit::{clickhouse_url, TestClickHouse};

/// The deployment's databases, migrated (idempotent), and the analyst's client.
async fn analyst() -> clickhouse::Client {
    let mut config = ClickHouseConfig::local("tasklog", "reporting");
    config.url = clickhouse_url();
    // Tests of this file migrate side by side: one that lost a race to
    // create a table finds it there on its next try.
    let mut tries = 0;
    while let Err(e) = tasklog_analytics::migrate::migrate(&config).await {
        tries += 1;
        assert!(tries < 5, "ClickHouse takes the migrations: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    config.user = "analyst".into();
    config.password = std::env::var("TASKLOG_CLICKHOUSE_ANALYST_PASSWORD")
        .unwrap_or_else(|_| "analyst-dev-only".into());
    config.client()
}

async fn run(client: &clickhouse::Client, sql: &str) -> Result<(), String> {
    client
        .query_raw(sql)
        .fetch_bytes("TabSeparated")
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_analyst_reads_every_reporting_view() {
    let client = analyst().await;
    let views: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = 'reporting'")
        .fetch_all()
        .await
        .expect("the analyst logs in with the configured password");
    assert!(views.len() >= 10, "{views:?}");
    for view in views {
        run(&client, &format!("SELECT * FROM reporting.{view} LIMIT 1"))
            .await
            .unwrap_or_else(|e| panic!("reporting.{view}: {e}"));
    }
}

#[tokio::test]
async fn the_analyst_can_change_nothing() {
    let client = analyst().await;
    for sql in [
        "CREATE TABLE reporting.mine (a UInt8) ENGINE = Memory",
        "DROP TABLE reporting.event_log",
        "INSERT INTO tasklog.tags (org_id, tag_id, name, color, deleted, version) \
         VALUES (generateUUIDv4(), generateUUIDv4(), 'x', '', 0, 1)",
        "OPTIMIZE TABLE tasklog.events FINAL",
    ] {
        let refused = run(&client, sql).await.expect_err(sql);
        assert!(refused.contains("readonly"), "{sql}: {refused}");
    }
}

#[tokio::test]
async fn the_analyst_reads_no_other_database() {
    let client = analyst().await;
    let other = TestClickHouse::migrated().await;
    let refused = run(
        &client,
        &format!("SELECT count() FROM {}.events", other.config.database),
    )
    .await
    .expect_err("another database is out of reach");
    assert!(refused.contains("Access denied"), "{refused}");
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let mut config = ClickHouseConfig::local("tasklog", "reporting");
    config.url = clickhouse_url();
    config.user = "analyst".into();
    config.password = "not-the-password".into();
    let refused = run(&config.client(), "SELECT 1")
        .await
        .expect_err("refused");
    assert!(refused.contains("password"), "{refused}");
}
