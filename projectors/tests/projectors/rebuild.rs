//! Rebuilds: a new generation filled while the old serves, then switched.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tasklog_projectors::{generation, status, ProjectorError};

use crate::{projector, tasks_caught_up};

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_rebuild_fills_a_new_generation_and_switches_reads_in_one_step(pool: PgPool) {
    let (store, w, tasks, g1) = tasks_caught_up(&pool).await;
    let before: Value =
        sqlx::query_scalar("SELECT to_jsonb(t) - 'search' FROM read.tasks t WHERE task_id = $1")
            .bind(w.task)
            .fetch_one(&pool)
            .await
            .unwrap();

    let progress = std::sync::Mutex::new(Vec::new());
    let g2 = status::rebuild(&pool, store.clone(), tasks.clone(), 2, |p| {
        progress.lock().unwrap().push(p.applied)
    })
    .await
    .unwrap();
    assert_eq!(g2, g1 + 1);
    assert!(
        progress.lock().unwrap().len() > 1,
        "progress is reported batch by batch"
    );
    let after: Value =
        sqlx::query_scalar("SELECT to_jsonb(t) - 'search' FROM read.tasks t WHERE task_id = $1")
            .bind(w.task)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(before, after);
    let old_schema: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
            .bind(generation::schema("tasks", g1))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(old_schema, 0, "the old generation is gone");
    // A live projector on the old generation learns of the switch.
    let live = projector(&pool, &store, tasks.clone())
        .project_next_batch(g1, true)
        .await;
    assert!(
        matches!(live, Err(ProjectorError::GenerationChanged(_, g)) if g == g2),
        "{live:?}"
    );
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_rebuild_drops_the_old_generation_only_after_live_batches_on_it_commit(pool: PgPool) {
    let (store, _, tasks, g1) = tasks_caught_up(&pool).await;

    // A live batch in flight holds the switch lock shared, as the runner's does.
    let mut batch = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('tasklog.projection.switch.tasks', 0))",
    )
    .execute(&mut *batch)
    .await
    .unwrap();
    let rebuild = tokio::spawn({
        let (pool, store, tasks) = (pool.clone(), store.clone(), tasks.clone());
        async move { status::rebuild(&pool, store, tasks, 100, |_| {}).await }
    });
    let old_schema_exists = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
        )
        .bind(generation::schema("tasks", g1))
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let waited = std::time::Instant::now();
    while generation::active(&pool, "tasks").await.unwrap() == Some(g1) {
        assert!(waited.elapsed() < Duration::from_secs(20), "no switch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(old_schema_exists().await, "dropped under a live batch");
    assert!(!rebuild.is_finished());

    batch.commit().await.unwrap();
    let g2 = rebuild.await.unwrap().unwrap();
    assert_eq!(g2, g1 + 1);
    assert!(!old_schema_exists().await, "the old generation is gone");
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_runner_rebuilds_a_generation_built_from_other_ddl_before_applying_to_it(pool: PgPool) {
    let (store, w, tasks, g1) = tasks_caught_up(&pool).await;
    // As an older release left it: without a table today's code writes, and
    // from before generations kept the hash of their DDL.
    let old_schema = generation::schema("tasks", g1);
    sqlx::query(&format!("DROP TABLE {old_schema}.task_recency CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE projection_checkpoints SET ddl_hash = NULL WHERE projection = 'tasks'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(generation::outdated(&pool, tasks.as_ref(), g1)
        .await
        .unwrap());
    w.reassign_to_owner(&store).await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(projector(&pool, &store, tasks.clone()).run(stopped));
    let mut rebuilt = None;
    for _ in 0..500 {
        let g = generation::active(&pool, "tasks").await.unwrap().unwrap();
        let assignee: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT t.assignee FROM read.tasks t JOIN read.task_recency USING (task_id) \
              WHERE task_id = $1",
        )
        .bind(w.task)
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten();
        if g != g1 && assignee == Some(w.owner) {
            rebuilt = Some(g);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    let g2 = rebuilt.expect("the runner rebuilt the projection and went on live");
    assert!(!generation::outdated(&pool, tasks.as_ref(), g2)
        .await
        .unwrap());
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(parked, 0, "no event was applied to the old tables");
}
