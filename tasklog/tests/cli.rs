//! The operator's commands, run as the binary against a database of their
//! own with the deployment's roles: the application role's URL, from which
//! the projections commands take the projector role.

use std::process::{Command, Output};

use tasklog_testkit::{TestClickHouse, TestDatabase};

fn tasklog(db: &TestDatabase, ch: &TestClickHouse, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .args(args)
        .env("TASKLOG_DATABASE_URL", &db.app_url)
        .env("TASKLOG_ADMIN_DATABASE_URL", &db.owner_url)
        .envs(ch.env())
        .env("RUST_LOG", "warn")
        .output()
        .expect("the tasklog binary runs");
    assert!(
        out.status.success(),
        "tasklog {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn a_rebuild_by_the_cli_switches_each_projection_to_a_new_generation_the_live_projectors_can_write(
) {
    let (db, owner) = TestDatabase::migrated("tasklog_cli").await;
    let ch = TestClickHouse::migrated().await;
    let all = [
        "directory",
        "tasks",
        "activity",
        "notifications",
        "analytics",
    ];
    tasklog(&db, &ch, &["generate", "--orgs", "2", "--events", "400"]);
    for name in all {
        tasklog(&db, &ch, &["projections", "rebuild", name]);
    }
    let status = String::from_utf8(tasklog(&db, &ch, &["projections", "status"]).stdout).unwrap();
    for name in all {
        let row = status
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in the status:\n{status}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            columns[1], "2",
            "{name} is on its new generation:\n{status}"
        );
        assert_eq!(columns[6], "0", "{name} parked nothing:\n{status}");
    }
    // What a rebuild creates belongs to the role the live projectors log in as.
    let foreign: Vec<(String, String)> = sqlx::query_as(
        "SELECT nspname::text, pg_get_userbyid(nspowner)::text FROM pg_namespace \
         WHERE nspname LIKE 'rm\\_%' AND pg_get_userbyid(nspowner) <> 'tasklog_projector'",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(foreign, [], "generation schemas owned by another role");
    // The analytics rebuild wrote the whole log to ClickHouse.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(
        ch.tsv("SELECT count() FROM events FINAL").await.trim(),
        events.to_string()
    );
    owner.close().await;
    db.drop_database().await;
}
