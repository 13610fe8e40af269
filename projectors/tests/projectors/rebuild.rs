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
    let rebuilt = rebuilt_by_runner(&pool, g1, &w).await;
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

/// Waits (10 s at most) until a runner has rebuilt `tasks` past `g1` into
/// today's tables, finished its rebuild, and applied `w`'s reassignment.
async fn rebuilt_by_runner(pool: &PgPool, g1: i32, w: &crate::World) -> Option<i32> {
    for _ in 0..500 {
        let g = generation::active(pool, "tasks").await.unwrap().unwrap();
        let assignee: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT t.assignee FROM read.tasks t JOIN read.task_recency USING (task_id) \
              WHERE task_id = $1",
        )
        .bind(w.task)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten();
        // The rebuild's last step drops the old generation's checkpoint.
        let (_, checkpoints) = generations_of(pool, "tasks").await;
        if g != g1 && assignee == Some(w.owner) && checkpoints == 1 {
            return Some(g);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn generations_of(pool: &PgPool, projection: &str) -> (Vec<String>, i64) {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 ORDER BY nspname",
    )
    .bind(format!("rm\\_{projection}\\_g%"))
    .fetch_all(pool)
    .await
    .unwrap();
    let checkpoints: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints WHERE projection = $1")
            .bind(projection)
            .fetch_one(pool)
            .await
            .unwrap();
    (schemas, checkpoints)
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_rebuild_is_refused_while_another_rebuild_of_the_projection_runs(pool: PgPool) {
    let (store, _, tasks, g1) = tasks_caught_up(&pool).await;
    let before = generations_of(&pool, "tasks").await;

    let running = status::RebuildLock::try_take(&pool, "tasks")
        .await
        .unwrap()
        .expect("no rebuild runs yet");
    assert!(status::RebuildLock::try_take(&pool, "tasks")
        .await
        .unwrap()
        .is_none());
    assert!(
        status::RebuildLock::try_take(&pool, "activity")
            .await
            .unwrap()
            .is_some(),
        "another projection's rebuild is not held up"
    );
    let refused = status::rebuild(&pool, store.clone(), tasks.clone(), 2, |_| {}).await;
    assert!(
        matches!(&refused, Err(ProjectorError::RebuildRunning(p)) if p == "tasks"),
        "{refused:?}"
    );
    assert_eq!(
        generations_of(&pool, "tasks").await,
        before,
        "a refused rebuild creates no generation"
    );
    assert_eq!(generation::active(&pool, "tasks").await.unwrap(), Some(g1));

    running.release().await.unwrap();
    let g2 = status::rebuild(&pool, store, tasks, 2, |_| {})
        .await
        .unwrap();
    assert_eq!(g2, g1 + 1);
    assert_eq!(
        generations_of(&pool, "tasks").await,
        (vec![generation::schema("tasks", g2)], 1)
    );
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_runner_waits_for_a_rebuild_already_running_before_rebuilding_an_outdated_generation(
    pool: PgPool,
) {
    let (store, w, tasks, g1) = tasks_caught_up(&pool).await;
    sqlx::query("UPDATE projection_checkpoints SET ddl_hash = NULL WHERE projection = 'tasks'")
        .execute(&pool)
        .await
        .unwrap();
    w.reassign_to_owner(&store).await;
    let before = generations_of(&pool, "tasks").await;
    let running = status::RebuildLock::try_take(&pool, "tasks")
        .await
        .unwrap()
        .expect("no rebuild runs yet");

    let mut config = crate::fast();
    config.lease_retry = Duration::from_millis(20);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(
        tasklog_projectors::Projector::new(pool.clone(), store.clone(), tasks.clone(), config)
            .run(stopped),
    );
    // Many of its retries: it neither starts a generation of its own nor
    // applies to the outdated one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(generations_of(&pool, "tasks").await, before);
    assert_eq!(generation::active(&pool, "tasks").await.unwrap(), Some(g1));

    running.release().await.unwrap();
    let rebuilt = rebuilt_by_runner(&pool, g1, &w).await;
    stop.send(true).unwrap();
    runner.await.unwrap().unwrap();
    let g2 = rebuilt.expect("the runner rebuilt once the other rebuild was gone");
    assert_eq!(g2, g1 + 1);
    assert_eq!(
        generations_of(&pool, "tasks").await,
        (vec![generation::schema("tasks", g2)], 1)
    );
}
