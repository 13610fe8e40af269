use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use tasklog_domain::TaskEvent;
use tasklog_event_store::RecordedEvent;
use uuid::Uuid;

use super::{decode, name_of, priority_rank, stream_parts, uuid_array_literal};
use crate::{ApplyError, Projection};

/// Tasks, comments, tag usage.
///
/// A batch reads the task and comment rows it changes in one query each,
/// folds its events over them in memory, and writes them back with one
/// insert (new rows) and one update (the others) each; tag usage moves by
/// one summed delta per tag.
pub struct Tasks;

/// A row of `tasks` (all but the search column, which the statements compute).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct TaskRow {
    task_id: Uuid,
    org_id: Uuid,
    project_id: Uuid,
    number: i64,
    key: String,
    title: String,
    description: String,
    status: String,
    status_category: String,
    priority: String,
    priority_rank: i16,
    assignee: Option<Uuid>,
    due_date: Option<NaiveDate>,
    tags: Vec<Uuid>,
    comment_count: i32,
    archived: bool,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// A row of `comments`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct CommentRow {
    comment_id: Uuid,
    task_id: Uuid,
    org_id: Uuid,
    author: Uuid,
    body: String,
    mentions: Vec<Uuid>,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    deleted: bool,
}

const TASK_COLUMNS: &str = "task_id, org_id, project_id, number, key, title, description, status, \
    status_category, priority, priority_rank, assignee, due_date, tags, comment_count, archived, \
    created_by, created_at, updated_at, version";
const COMMENT_COLUMNS: &str =
    "comment_id, task_id, org_id, author, body, mentions, created_at, edited_at, deleted";

/// A row the batch changes, and whether the batch created it.
struct Touched<R> {
    row: R,
    new: bool,
}

impl<R> Touched<R> {
    fn loaded(row: R) -> Self {
        Self { row, new: false }
    }
    fn created(row: R) -> Self {
        Self { row, new: true }
    }
}

/// What a batch changes, folded in memory.
#[derive(Default)]
struct Fold {
    tasks: HashMap<Uuid, Touched<TaskRow>>,
    comments: HashMap<Uuid, Touched<CommentRow>>,
    tag_usage: HashMap<(Uuid, Uuid), i64>,
}

impl Fold {
    /// Applies one event to the rows; `Err` when the event cannot apply.
    fn apply(
        &mut self,
        e: &RecordedEvent,
        task_id: Uuid,
        event: TaskEvent,
    ) -> Result<(), ApplyError> {
        let at = e.metadata.occurred_at;
        let org = e.metadata.org_id;
        if let TaskEvent::TaskCreated(c) = event {
            if self.tasks.contains_key(&c.task_id) {
                return Err(ApplyError::Failed(format!(
                    "task {} is created twice",
                    c.task_id
                )));
            }
            self.tasks.insert(
                c.task_id,
                Touched::created(TaskRow {
                    task_id: c.task_id,
                    org_id: c.org_id,
                    project_id: c.project_id,
                    number: c.number as i64,
                    key: c.key,
                    title: c.title,
                    description: c.description,
                    status: c.status,
                    status_category: name_of(&c.status_category),
                    priority: name_of(&c.priority),
                    priority_rank: priority_rank(c.priority),
                    assignee: None,
                    due_date: c.due_date,
                    tags: Vec::new(),
                    comment_count: 0,
                    archived: false,
                    created_by: c.created_by,
                    created_at: at,
                    updated_at: at,
                    version: e.stream_version as i64,
                }),
            );
            return Ok(());
        }
        let task = &mut self
            .tasks
            .get_mut(&task_id)
            .ok_or_else(|| ApplyError::Failed(format!("task {task_id} is not in the read model")))?
            .row;
        task.version = e.stream_version as i64;
        task.updated_at = at;
        match event {
            TaskEvent::TaskCreated(_) => unreachable!("handled above"),
            TaskEvent::TaskDetailsEdited(d) => {
                task.title = d.title;
                task.description = d.description;
                task.priority = name_of(&d.priority);
                task.priority_rank = priority_rank(d.priority);
                task.due_date = d.due_date;
            }
            TaskEvent::TaskAssigned(a) => task.assignee = Some(a.assignee),
            TaskEvent::TaskUnassigned(_) => task.assignee = None,
            TaskEvent::TaskStatusChanged(s) => {
                task.status = s.to;
                task.status_category = name_of(&s.to_category);
            }
            TaskEvent::TaskTagAdded(t) => {
                task.tags.push(t.tag_id);
                *self.tag_usage.entry((org, t.tag_id)).or_default() += 1;
            }
            TaskEvent::TaskTagRemoved(t) => {
                task.tags.retain(|id| *id != t.tag_id);
                *self.tag_usage.entry((org, t.tag_id)).or_default() -= 1;
            }
            TaskEvent::TaskArchived(_) => task.archived = true,
            TaskEvent::CommentAdded(c) => {
                if self.comments.contains_key(&c.comment_id) {
                    return Err(ApplyError::Failed(format!(
                        "comment {} is added twice",
                        c.comment_id
                    )));
                }
                task.comment_count += 1;
                self.comments.insert(
                    c.comment_id,
                    Touched::created(CommentRow {
                        comment_id: c.comment_id,
                        task_id,
                        org_id: org,
                        author: c.author,
                        body: c.body,
                        mentions: c.mentions,
                        created_at: at,
                        edited_at: None,
                        deleted: false,
                    }),
                );
            }
            TaskEvent::CommentEdited(c) => {
                if let Some(comment) = self.comments.get_mut(&c.comment_id) {
                    if !comment.row.deleted {
                        comment.row.body = c.body;
                        comment.row.mentions = c.mentions;
                        comment.row.edited_at = Some(at);
                    }
                }
            }
            TaskEvent::CommentDeleted(c) => {
                task.comment_count -= 1;
                // A deleted comment's text leaves every read model; the
                // event log keeps it for auditors.
                if let Some(comment) = self.comments.get_mut(&c.comment_id) {
                    comment.row.deleted = true;
                    comment.row.body = String::new();
                    comment.row.mentions = Vec::new();
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for Tasks {
    fn name(&self) -> &'static str {
        "tasks"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../../migrations/projections/tasks.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        &["tasks", "task_recency", "comments", "tag_usage"]
    }
    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&["task"])
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        let mut decoded = Vec::new();
        for e in events {
            let (category, id) = stream_parts(e)?;
            if category == "task" {
                decoded.push((e, id, decode::<TaskEvent>(e)?));
            }
        }
        if decoded.is_empty() {
            return Ok(());
        }
        let mut fold = Fold::default();
        load(tx, &decoded, &mut fold).await?;
        for (e, id, event) in decoded {
            fold.apply(e, id, event)?;
        }
        write(tx, fold).await
    }
}

/// Reads the rows the batch changes that earlier batches made: tasks it
/// does not create, comments it edits or deletes but does not add. Rows it
/// creates are plainly inserted, so creating one that exists fails, as it
/// would one event at a time.
async fn load(
    tx: &mut PgConnection,
    decoded: &[(&RecordedEvent, Uuid, TaskEvent)],
    fold: &mut Fold,
) -> Result<(), ApplyError> {
    let mut created = HashSet::new();
    let mut tasks = Vec::new();
    let mut added = HashSet::new();
    let mut comments = Vec::new();
    for (_, id, event) in decoded {
        match event {
            TaskEvent::TaskCreated(_) => {
                created.insert(*id);
            }
            TaskEvent::CommentAdded(c) => {
                added.insert(c.comment_id);
            }
            TaskEvent::CommentEdited(c) if !added.contains(&c.comment_id) => {
                comments.push(c.comment_id)
            }
            TaskEvent::CommentDeleted(c) if !added.contains(&c.comment_id) => {
                comments.push(c.comment_id)
            }
            _ => {}
        }
        if !created.contains(id) {
            tasks.push(*id);
        }
    }
    if !tasks.is_empty() {
        tasks.sort_unstable();
        tasks.dedup();
        let rows: Vec<TaskRow> = sqlx::query_as(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ANY($1)"
        ))
        .bind(&tasks)
        .fetch_all(&mut *tx)
        .await?;
        fold.tasks
            .extend(rows.into_iter().map(|r| (r.task_id, Touched::loaded(r))));
    }
    if !comments.is_empty() {
        let rows: Vec<CommentRow> = sqlx::query_as(&format!(
            "SELECT {COMMENT_COLUMNS} FROM comments WHERE comment_id = ANY($1)"
        ))
        .bind(&comments)
        .fetch_all(&mut *tx)
        .await?;
        fold.comments
            .extend(rows.into_iter().map(|r| (r.comment_id, Touched::loaded(r))));
    }
    Ok(())
}

/// Writes the folded rows back in one statement (one round trip): new rows
/// inserted, others updated, tag usage moved by its summed deltas. Its parts
/// touch disjoint rows, so one snapshot serves them all.
async fn write(tx: &mut PgConnection, fold: Fold) -> Result<(), ApplyError> {
    let (new_tasks, old_tasks): (Vec<_>, Vec<_>) = fold.tasks.into_values().partition(|t| t.new);
    let (new_comments, old_comments): (Vec<_>, Vec<_>) =
        fold.comments.into_values().partition(|c| c.new);
    let nt: Vec<&TaskRow> = new_tasks.iter().map(|t| &t.row).collect();
    let ot: Vec<&TaskRow> = old_tasks.iter().map(|t| &t.row).collect();
    let nc: Vec<&CommentRow> = new_comments.iter().map(|c| &c.row).collect();
    let oc: Vec<&CommentRow> = old_comments.iter().map(|c| &c.row).collect();
    // Zero sums too: a tag added and removed within the batch leaves a row
    // at 0, as it would one event at a time.
    let usage: Vec<_> = fold.tag_usage.into_iter().collect();
    if nt.is_empty() && ot.is_empty() && nc.is_empty() && oc.is_empty() && usage.is_empty() {
        return Ok(());
    }
    sqlx::query(WRITE)
        .bind(nt.iter().map(|r| r.task_id).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.org_id).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.project_id).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.number).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.title.as_str()).collect::<Vec<_>>())
        .bind(
            nt.iter()
                .map(|r| r.description.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(nt.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(
            nt.iter()
                .map(|r| r.status_category.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(nt.iter().map(|r| r.priority.as_str()).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.priority_rank).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.assignee).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.due_date).collect::<Vec<_>>())
        .bind(
            nt.iter()
                .map(|r| uuid_array_literal(&r.tags))
                .collect::<Vec<_>>(),
        )
        .bind(nt.iter().map(|r| r.comment_count).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.archived).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.created_by).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(nt.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(ot.iter().map(|r| r.task_id).collect::<Vec<_>>())
        .bind(ot.iter().map(|r| r.title.as_str()).collect::<Vec<_>>())
        .bind(
            ot.iter()
                .map(|r| r.description.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(ot.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(
            ot.iter()
                .map(|r| r.status_category.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(ot.iter().map(|r| r.priority.as_str()).collect::<Vec<_>>())
        .bind(ot.iter().map(|r| r.priority_rank).collect::<Vec<_>>())
        .bind(ot.iter().map(|r| r.assignee).collect::<Vec<_>>())
        .bind(ot.iter().map(|r| r.due_date).collect::<Vec<_>>())
        .bind(
            ot.iter()
                .map(|r| uuid_array_literal(&r.tags))
                .collect::<Vec<_>>(),
        )
        .bind(ot.iter().map(|r| r.comment_count).collect::<Vec<_>>())
        .bind(ot.iter().map(|r| r.archived).collect::<Vec<_>>())
        .bind(ot.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(ot.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(nc.iter().map(|r| r.comment_id).collect::<Vec<_>>())
        .bind(nc.iter().map(|r| r.task_id).collect::<Vec<_>>())
        .bind(nc.iter().map(|r| r.org_id).collect::<Vec<_>>())
        .bind(nc.iter().map(|r| r.author).collect::<Vec<_>>())
        .bind(nc.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
        .bind(
            nc.iter()
                .map(|r| uuid_array_literal(&r.mentions))
                .collect::<Vec<_>>(),
        )
        .bind(nc.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(nc.iter().map(|r| r.edited_at).collect::<Vec<_>>())
        .bind(nc.iter().map(|r| r.deleted).collect::<Vec<_>>())
        .bind(oc.iter().map(|r| r.comment_id).collect::<Vec<_>>())
        .bind(oc.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
        .bind(
            oc.iter()
                .map(|r| uuid_array_literal(&r.mentions))
                .collect::<Vec<_>>(),
        )
        .bind(oc.iter().map(|r| r.edited_at).collect::<Vec<_>>())
        .bind(oc.iter().map(|r| r.deleted).collect::<Vec<_>>())
        .bind(usage.iter().map(|((o, _), _)| *o).collect::<Vec<_>>())
        .bind(usage.iter().map(|((_, t), _)| *t).collect::<Vec<_>>())
        .bind(usage.iter().map(|(_, d)| *d).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// [`write`]'s statement: $1–$20 new tasks, $21–$34 changed tasks, $35–$43
/// new comments, $44–$48 changed comments, $49–$51 tag usage deltas.
const WRITE: &str = "\
WITH new_tasks AS (
    INSERT INTO tasks (task_id, org_id, project_id, number, key, title, description, status,
        status_category, priority, priority_rank, assignee, due_date, tags, comment_count, archived,
        created_by, created_at, updated_at, version, search)
    SELECT r.task_id, r.org_id, r.project_id, r.number, r.key, r.title, r.description, r.status,
        r.status_category, r.priority, r.priority_rank, r.assignee, r.due_date, r.tags::uuid[],
        r.comment_count, r.archived, r.created_by, r.created_at, r.updated_at, r.version,
        to_tsvector('simple', r.title || ' ' || r.description)
    FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::text[], $7::text[],
        $8::text[], $9::text[], $10::text[], $11::int2[], $12::uuid[], $13::date[], $14::text[],
        $15::int4[], $16::bool[], $17::uuid[], $18::timestamptz[], $19::timestamptz[], $20::int8[])
      AS r(task_id, org_id, project_id, number, key, title, description, status, status_category,
        priority, priority_rank, assignee, due_date, tags, comment_count, archived, created_by,
        created_at, updated_at, version)
), old_tasks AS (
    UPDATE tasks t SET title = r.title, description = r.description, status = r.status,
        status_category = r.status_category, priority = r.priority, priority_rank = r.priority_rank,
        assignee = r.assignee, due_date = r.due_date, tags = r.tags::uuid[],
        comment_count = r.comment_count, archived = r.archived, updated_at = r.updated_at,
        version = r.version,
        -- Column references in SET are the row before the update.
        search = CASE WHEN t.title = r.title AND t.description = r.description THEN t.search
                      ELSE to_tsvector('simple', r.title || ' ' || r.description) END
    FROM UNNEST($21::uuid[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[],
        $27::int2[], $28::uuid[], $29::date[], $30::text[], $31::int4[], $32::bool[],
        $33::timestamptz[], $34::int8[])
      AS r(task_id, title, description, status, status_category, priority, priority_rank,
        assignee, due_date, tags, comment_count, archived, updated_at, version)
    WHERE t.task_id = r.task_id
), new_recency AS (
    INSERT INTO task_recency (task_id, org_id, project_id, updated_at)
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $19::timestamptz[])
), old_recency AS (
    UPDATE task_recency k SET updated_at = r.updated_at
    FROM UNNEST($21::uuid[], $33::timestamptz[]) AS r(task_id, updated_at)
    WHERE k.task_id = r.task_id AND k.updated_at <> r.updated_at
), new_comments AS (
    INSERT INTO comments (comment_id, task_id, org_id, author, body, mentions, created_at,
        edited_at, deleted)
    SELECT r.comment_id, r.task_id, r.org_id, r.author, r.body, r.mentions::uuid[], r.created_at,
        r.edited_at, r.deleted
    FROM UNNEST($35::uuid[], $36::uuid[], $37::uuid[], $38::uuid[], $39::text[], $40::text[],
        $41::timestamptz[], $42::timestamptz[], $43::bool[])
      AS r(comment_id, task_id, org_id, author, body, mentions, created_at, edited_at, deleted)
), old_comments AS (
    UPDATE comments c SET body = r.body, mentions = r.mentions::uuid[], edited_at = r.edited_at,
        deleted = r.deleted
    FROM UNNEST($44::uuid[], $45::text[], $46::text[], $47::timestamptz[], $48::bool[])
      AS r(comment_id, body, mentions, edited_at, deleted)
    WHERE c.comment_id = r.comment_id
)
INSERT INTO tag_usage (org_id, tag_id, tasks)
SELECT * FROM UNNEST($49::uuid[], $50::uuid[], $51::int8[])
ON CONFLICT (org_id, tag_id) DO UPDATE SET tasks = tag_usage.tasks + EXCLUDED.tasks";
