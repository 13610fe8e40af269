use async_trait::async_trait;
use sqlx::PgConnection;
use tasklog_event_store::RecordedEvent;

use super::stream_parts;
use crate::{ApplyError, Projection};

/// Each task's history, one row per event.
pub struct Activity;

#[async_trait]
impl Projection for Activity {
    fn name(&self) -> &'static str {
        "activity"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../../migrations/projections/activity.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        &["activity"]
    }
    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&["task"])
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        let mut rows = Rows::default();
        let mut deleted = Deleted::default();
        for e in events {
            let (category, task) = stream_parts(e)?;
            if category != "task" {
                continue;
            }
            if e.event_type == "CommentDeleted" {
                let comment = e.payload["comment_id"].as_str().ok_or_else(|| {
                    ApplyError::Failed(format!("CommentDeleted {} has no comment_id", e.event_id))
                })?;
                deleted.task_id.push(task);
                deleted.comment_id.push(comment);
            }
            rows.event_id.push(e.event_id);
            rows.org_id.push(e.metadata.org_id);
            rows.task_id.push(task);
            rows.commit_id.push(e.position.commit as i64);
            rows.event_position.push(e.position.event as i64);
            rows.event_type.push(&e.event_type);
            rows.actor.push(e.metadata.actor_id);
            rows.occurred_at.push(e.metadata.occurred_at);
            rows.data.push(e.payload.to_string());
        }
        if rows.event_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO activity (event_id, org_id, task_id, commit_id, event_position, event_type, actor, occurred_at, data) \
             SELECT e, o, t, c, p, ty, a, at, d::jsonb FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], \
                $5::int8[], $6::text[], $7::uuid[], $8::timestamptz[], $9::text[]) AS r(e, o, t, c, p, ty, a, at, d)",
        )
        .bind(&rows.event_id)
        .bind(&rows.org_id)
        .bind(&rows.task_id)
        .bind(&rows.commit_id)
        .bind(&rows.event_position)
        .bind(&rows.event_type)
        .bind(&rows.actor)
        .bind(&rows.occurred_at)
        .bind(&rows.data)
        .execute(&mut *tx)
        .await?;
        if !deleted.task_id.is_empty() {
            // After the insert, so that it covers this batch's rows as well.
            sqlx::query(REDACT)
                .bind(&deleted.task_id)
                .bind(&deleted.comment_id)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

/// A deleted comment's text (and whom it mentioned) leaves the history of
/// its task: the rows of its `CommentAdded` and `CommentEdited` keep the
/// comment's id and author and say `"redacted": true`. The event log keeps
/// the text for auditors.
const REDACT: &str = "\
UPDATE activity a SET data = (a.data - 'body' - 'mentions') || '{\"redacted\": true}'::jsonb
  FROM UNNEST($1::uuid[], $2::text[]) AS d(task_id, comment_id)
 WHERE a.task_id = d.task_id
   AND a.event_type IN ('CommentAdded', 'CommentEdited')
   AND a.data->>'comment_id' = d.comment_id";

/// The comments a batch deletes, with their tasks (the index leads with the task).
#[derive(Default)]
struct Deleted<'a> {
    task_id: Vec<uuid::Uuid>,
    comment_id: Vec<&'a str>,
}

/// The batch's rows, column by column (the shape UNNEST takes).
#[derive(Default)]
struct Rows<'a> {
    event_id: Vec<uuid::Uuid>,
    org_id: Vec<uuid::Uuid>,
    task_id: Vec<uuid::Uuid>,
    commit_id: Vec<i64>,
    event_position: Vec<i64>,
    event_type: Vec<&'a str>,
    actor: Vec<Option<uuid::Uuid>>,
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    data: Vec<String>,
}
