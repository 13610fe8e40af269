//! Each event applied once, with the checkpoint in its transaction.

use std::time::Duration;

use sqlx::PgPool;
use tasklog_projectors::generation;
use uuid::Uuid;

use crate::{activity_rows, catch_up, projector, wait_readable, world};

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn every_projection_applies_each_event_once_and_moves_its_checkpoint_with_it(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    let w = world(&store).await;
    for p in tasklog_projectors::all() {
        let g = generation::ensure_active(&pool, p.as_ref()).await.unwrap();
        let projector = projector(&pool, &store, p.clone());
        catch_up(&projector, g, w.last).await;
        // Another step applies nothing again.
        let again = projector.project_next_batch(g, true).await.unwrap();
        assert_eq!(again.applied, 0);
    }
    let parked: Vec<String> =
        sqlx::query_scalar("SELECT projection || ': ' || error FROM projection_dead_letters")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(parked.is_empty(), "{parked:?}");
    let task: (String, String, Option<Uuid>, i32, i64) = sqlx::query_as(
        "SELECT key, priority, assignee, comment_count, version FROM read.tasks WHERE task_id = $1",
    )
    .bind(w.task)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(task, ("WEB-1".into(), "high".into(), Some(w.bob), 1, 3));
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM read.members WHERE org_id = $1")
        .bind(w.org)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(members, 2);
    let activity: Vec<String> = sqlx::query_scalar("SELECT event_type FROM read.activity WHERE task_id = $1 ORDER BY commit_id, event_position")
        .bind(w.task).fetch_all(&pool).await.unwrap();
    assert_eq!(activity, ["TaskCreated", "TaskAssigned", "CommentAdded"]);
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM read.notifications WHERE user_id = $1 ORDER BY kind")
            .bind(w.bob)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        kinds,
        ["assigned", "mentioned"],
        "Bob hears of both; the owner of neither"
    );
    let owner_notes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM read.notifications WHERE user_id = $1")
            .bind(w.owner)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(owner_notes, 0);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn every_checkpoint_move_is_announced_when_its_batch_commits(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    let w = world(&store).await;
    wait_readable(&store, w.last).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener
        .listen(tasklog_projectors::CHECKPOINT_CHANNEL)
        .await
        .unwrap();
    let tasks = tasklog_projectors::by_name("tasks").unwrap();
    let g = generation::ensure_active(&pool, tasks.as_ref())
        .await
        .unwrap();
    let moved = projector(&pool, &store, tasks)
        .project_next_batch(g, true)
        .await
        .unwrap();
    assert!(moved.applied > 0);
    let announced = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(
        tasklog_projectors::parse_checkpoint(announced.payload()),
        Some(("tasks", g, moved.position))
    );
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_batch_without_events_the_projection_applies_only_moves_its_checkpoint(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    let w = world(&store).await;
    let directory = tasklog_projectors::by_name("directory").unwrap();
    let g = generation::ensure_active(&pool, directory.as_ref())
        .await
        .unwrap();
    let projector = projector(&pool, &store, directory);
    catch_up(&projector, g, w.last).await;
    let orgs = || async {
        sqlx::query_scalar::<_, String>("SELECT to_jsonb(o)::text FROM read.organizations o")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    let before = orgs().await;
    w.reassign_to_owner(&store).await;
    let head = store.high_water_mark().await.unwrap().head.unwrap();
    wait_readable(&store, head).await;
    let moved = projector.project_next_batch(g, true).await.unwrap();
    assert_eq!((moved.applied, moved.position), (1, head));
    assert_eq!(projector.checkpoint(g).await.unwrap(), head);
    assert_eq!(orgs().await, before);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn two_writers_from_the_same_checkpoint_apply_a_batch_only_once(pool: PgPool) {
    let store = tasklog_testkit::store(&pool);
    let w = world(&store).await;
    let activity = tasklog_projectors::by_name("activity").unwrap();
    let g = generation::ensure_active(&pool, activity.as_ref())
        .await
        .unwrap();
    let (a, b) = (
        projector(&pool, &store, activity.clone()),
        projector(&pool, &store, activity.clone()),
    );
    let (ra, rb) = tokio::join!(a.project_next_batch(g, true), b.project_next_batch(g, true));
    // Either one lost the race, or they ran one after the other and the
    // second found nothing left: never both applied the batch.
    let applied = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Ok(o) if o.applied > 0))
        .count();
    assert_eq!(applied, 1, "{ra:?} {rb:?}");
    catch_up(&a, g, w.last).await;
    let rows = activity_rows(&pool, w.task).await.unwrap();
    assert_eq!(rows, 3);
}
