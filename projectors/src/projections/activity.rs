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
        for e in events {
            let (category, task) = stream_parts(e)?;
            if category != "task" {
                continue;
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
        Ok(())
    }
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
