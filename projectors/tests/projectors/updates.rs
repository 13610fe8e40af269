//! What an update of a read model writes: a change to no indexed column
//! stays a heap-only (HOT) update, which adds no index entries.

use sqlx::PgPool;
use tasklog_domain::{CommentAdded, Priority, TaskDetailsEdited};
use tasklog_projectors::generation;
use uuid::Uuid;

use std::sync::Arc;

use tasklog_event_store::{EventStore, LogPosition};
use tasklog_projectors::Projector;

use crate::{catch_up, projector, tasks_caught_up, wait_readable};

/// Waits until `projector` has applied the log up to `position`.
async fn applied(
    store: &Arc<dyn EventStore>,
    projector: &Projector,
    generation: i32,
    position: LogPosition,
) {
    wait_readable(store, position).await;
    catch_up(projector, generation, position).await;
}

/// Whether the current version of the task's row is a heap-only tuple
/// (`HEAP_ONLY_TUPLE`, 0x8000 in `t_infomask2`): no index points at it.
async fn task_row_is_heap_only(pool: &PgPool, generation: i32, task: Uuid) -> bool {
    let table = generation::schema("tasks", generation) + ".tasks";
    sqlx::query_scalar(&format!(
        "SELECT (p.t_infomask2 & 32768) <> 0 \
           FROM {table} t, \
                heap_page_items(get_raw_page('{table}', (t.ctid::text::point)[0]::int)) p \
          WHERE t.task_id = $1 AND p.lp = (t.ctid::text::point)[1]::int"
    ))
    .bind(task)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_comment_updates_the_task_row_without_index_entries_and_moves_its_updated_order(
    pool: PgPool,
) {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .execute(&pool)
        .await
        .unwrap();
    let (store, w, tasks, g) = tasks_caught_up(&pool).await;
    let projector = projector(&pool, &store, tasks);

    // A reassignment changes an indexed column: every index takes an entry.
    let reassigned = w.reassign_to_owner(&store).await;
    applied(&store, &projector, g, reassigned).await;
    assert!(!task_row_is_heap_only(&pool, g, w.task).await);

    let commented = w
        .on_task(
            &store,
            CommentAdded {
                comment_id: Uuid::now_v7(),
                author: w.owner,
                body: "done?".into(),
                mentions: vec![],
            },
        )
        .await;
    applied(&store, &projector, g, commented).await;
    assert!(task_row_is_heap_only(&pool, g, w.task).await);

    // The `updated` order, kept beside the row, moved with it.
    let (row, order): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT t.updated_at, r.updated_at FROM read.tasks t \
               JOIN read.task_recency r USING (task_id) WHERE task_id = $1",
        )
        .bind(w.task)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(row, order);
    let comments: i32 =
        sqlx::query_scalar("SELECT comment_count FROM read.tasks WHERE task_id = $1")
            .bind(w.task)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(comments, 2);
}

/// Which of `words` the task's search column matches.
async fn found(pool: &PgPool, task: Uuid, words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for word in words {
        let hit: bool = sqlx::query_scalar(
            "SELECT search @@ plainto_tsquery('simple', $2) FROM read.tasks WHERE task_id = $1",
        )
        .bind(task)
        .bind(word)
        .fetch_one(pool)
        .await
        .unwrap();
        if hit {
            found.push(word.to_string());
        }
    }
    found
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn the_search_column_follows_the_title_and_description_through_edits(pool: PgPool) {
    let (store, w, tasks, g) = tasks_caught_up(&pool).await;
    let projector = projector(&pool, &store, tasks);
    let words = ["ship", "it", "release", "notes", "look"];
    // Created as "Ship" / "it"; the comment's words are not the task's.
    assert_eq!(found(&pool, w.task, &words).await, ["ship", "it"]);

    let edited = w
        .on_task(
            &store,
            TaskDetailsEdited {
                title: "Release".into(),
                description: "with notes".into(),
                priority: Priority::High,
                due_date: None,
            },
        )
        .await;
    applied(&store, &projector, g, edited).await;
    assert_eq!(found(&pool, w.task, &words).await, ["release", "notes"]);

    let reassigned = w.reassign_to_owner(&store).await;
    applied(&store, &projector, g, reassigned).await;
    assert_eq!(found(&pool, w.task, &words).await, ["release", "notes"]);
}
