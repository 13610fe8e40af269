//! The projections. Each applies events with plain SQL on its own tables; the
//! runner gives it a transaction whose search_path is its generation's schema.

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use tasklog_domain::{
    decode_event, DomainEvent, InboxEvent, OrgEvent, Priority, ProjectEvent, TagEvent, TaskEvent,
};
use tasklog_event_store::RecordedEvent;
use uuid::Uuid;

use crate::{ApplyError, Projection};

/// The stream's category and aggregate id (`task-<uuid>` → ("task", uuid)).
fn stream_parts(e: &RecordedEvent) -> Result<(&str, Uuid), ApplyError> {
    let (category, id) = e
        .stream_id
        .split_once('-')
        .ok_or_else(|| ApplyError::Failed(format!("stream {} has no category", e.stream_id)))?;
    let id = id
        .parse()
        .map_err(|_| ApplyError::Failed(format!("stream {} has no uuid", e.stream_id)))?;
    Ok((category, id))
}

fn decode<E: DomainEvent>(e: &RecordedEvent) -> Result<E, ApplyError> {
    Ok(decode_event::<E>(&e.event_type, e.payload.clone())?)
}

/// An enum's wire name (`Role::Admin` → "admin").
fn name_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn priority_rank(p: Priority) -> i16 {
    match p {
        Priority::None => 0,
        Priority::Low => 1,
        Priority::Medium => 2,
        Priority::High => 3,
        Priority::Urgent => 4,
    }
}

/// A notification's id, derived from its cause and recipient, so the same
/// event always yields the same notification (and the inbox can name it).
pub fn notification_id(cause: Uuid, recipient: Uuid) -> Uuid {
    let h = Sha256::new()
        .chain_update(cause.as_bytes())
        .chain_update(recipient.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = 0x80 | (b[6] & 0x0f); // version 8: custom
    b[8] = 0x80 | (b[8] & 0x3f);
    Uuid::from_bytes(b)
}

/// Organizations, members, projects, the tag catalog.
pub struct Directory;

#[async_trait]
impl Projection for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../migrations/projections/directory.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        &["organizations", "members", "projects", "tags"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
        let (category, id) = stream_parts(e)?;
        let at = e.metadata.occurred_at;
        let version = e.stream_version as i64;
        match category {
            "org" => {
                match decode::<OrgEvent>(e)? {
                    OrgEvent::OrganizationCreated(c) => {
                        sqlx::query("INSERT INTO organizations (org_id, name, created_at, version) VALUES ($1, $2, $3, $4)")
                            .bind(c.org_id).bind(&c.name).bind(at).bind(version)
                            .execute(&mut *tx).await?;
                        sqlx::query("INSERT INTO members (org_id, user_id, handle, role, joined_at) VALUES ($1, $2, $3, 'owner', $4)")
                            .bind(c.org_id).bind(c.owner_id).bind(&c.owner_handle).bind(at)
                            .execute(&mut *tx).await?;
                    }
                    OrgEvent::MemberAdded(m) => {
                        sqlx::query("INSERT INTO members (org_id, user_id, handle, role, joined_at) VALUES ($1, $2, $3, $4, $5)")
                            .bind(id).bind(m.user_id).bind(&m.handle).bind(name_of(&m.role)).bind(at)
                            .execute(&mut *tx).await?;
                    }
                    OrgEvent::MemberRoleChanged(m) => {
                        sqlx::query(
                            "UPDATE members SET role = $3 WHERE org_id = $1 AND user_id = $2",
                        )
                        .bind(id)
                        .bind(m.user_id)
                        .bind(name_of(&m.to))
                        .execute(&mut *tx)
                        .await?;
                    }
                    OrgEvent::MemberRemoved(m) => {
                        sqlx::query("DELETE FROM members WHERE org_id = $1 AND user_id = $2")
                            .bind(id)
                            .bind(m.user_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    OrgEvent::ProjectKeyRegistered(_) => {}
                }
                sqlx::query("UPDATE organizations SET version = $2 WHERE org_id = $1")
                    .bind(id)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
            "project" => {
                match decode::<ProjectEvent>(e)? {
                    ProjectEvent::ProjectCreated(c) => {
                        sqlx::query(
                            "INSERT INTO projects (project_id, org_id, name, key, workflow, created_at, updated_at, version) \
                             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                        )
                        .bind(c.project_id).bind(c.org_id).bind(&c.name).bind(&c.key)
                        .bind(serde_json::to_value(&c.workflow)?).bind(at).bind(version)
                        .execute(&mut *tx).await?;
                    }
                    ProjectEvent::ProjectRenamed(r) => {
                        sqlx::query("UPDATE projects SET name = $2 WHERE project_id = $1")
                            .bind(id)
                            .bind(&r.to)
                            .execute(&mut *tx)
                            .await?;
                    }
                    ProjectEvent::ProjectArchived(_) => {
                        sqlx::query("UPDATE projects SET archived = true WHERE project_id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    ProjectEvent::ProjectUnarchived(_) => {
                        sqlx::query("UPDATE projects SET archived = false WHERE project_id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    ProjectEvent::TaskNumberReserved(_) => {}
                }
                sqlx::query(
                    "UPDATE projects SET version = $2, updated_at = $3 WHERE project_id = $1",
                )
                .bind(id)
                .bind(version)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            "tags" => match decode::<TagEvent>(e)? {
                TagEvent::TagCreated(t) => {
                    sqlx::query("INSERT INTO tags (tag_id, org_id, name, color, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(t.tag_id).bind(id).bind(&t.name).bind(&t.color).bind(at)
                        .execute(&mut *tx).await?;
                }
                TagEvent::TagRenamed(t) => {
                    sqlx::query("UPDATE tags SET name = $2 WHERE tag_id = $1")
                        .bind(t.tag_id)
                        .bind(&t.to)
                        .execute(&mut *tx)
                        .await?;
                }
                TagEvent::TagDeleted(t) => {
                    sqlx::query("DELETE FROM tags WHERE tag_id = $1")
                        .bind(t.tag_id)
                        .execute(&mut *tx)
                        .await?;
                }
            },
            _ => {}
        }
        Ok(())
    }
}

/// Tasks, comments, tag usage.
pub struct Tasks;

#[async_trait]
impl Projection for Tasks {
    fn name(&self) -> &'static str {
        "tasks"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../migrations/projections/tasks.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        &["tasks", "comments", "tag_usage"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
        let (category, id) = stream_parts(e)?;
        if category != "task" {
            return Ok(());
        }
        let at = e.metadata.occurred_at;
        let org = e.metadata.org_id;
        let version = e.stream_version as i64;
        // Every change to a task row is one UPDATE that also moves its
        // version and updated_at: $1 task, $2 version, $3 time, $4.. the change.
        let update = |set: &str| {
            format!("UPDATE tasks SET {set}, version = $2, updated_at = $3 WHERE task_id = $1")
        };
        let touched = match decode::<TaskEvent>(e)? {
            TaskEvent::TaskCreated(c) => {
                sqlx::query(
                    "INSERT INTO tasks (task_id, org_id, project_id, number, key, title, description, status, \
                        status_category, priority, priority_rank, due_date, created_by, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15)",
                )
                .bind(c.task_id)
                .bind(c.org_id)
                .bind(c.project_id)
                .bind(c.number as i64)
                .bind(&c.key)
                .bind(&c.title)
                .bind(&c.description)
                .bind(&c.status)
                .bind(name_of(&c.status_category))
                .bind(name_of(&c.priority))
                .bind(priority_rank(c.priority))
                .bind(c.due_date)
                .bind(c.created_by)
                .bind(at)
                .bind(version)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            }
            TaskEvent::TaskDetailsEdited(d) => {
                sqlx::query(&update(
                    "title = $4, description = $5, priority = $6, priority_rank = $7, due_date = $8",
                ))
                .bind(id)
                .bind(version)
                .bind(at)
                .bind(&d.title)
                .bind(&d.description)
                .bind(name_of(&d.priority))
                .bind(priority_rank(d.priority))
                .bind(d.due_date)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            }
            TaskEvent::TaskAssigned(a) => {
                sqlx::query(&update("assignee = $4"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .bind(a.assignee)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            TaskEvent::TaskUnassigned(_) => {
                sqlx::query(&update("assignee = NULL"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            TaskEvent::TaskStatusChanged(s) => {
                sqlx::query(&update("status = $4, status_category = $5"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .bind(&s.to)
                    .bind(name_of(&s.to_category))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            TaskEvent::TaskTagAdded(t) => {
                sqlx::query(
                    "INSERT INTO tag_usage (org_id, tag_id, tasks) VALUES ($1, $2, 1) \
                     ON CONFLICT (org_id, tag_id) DO UPDATE SET tasks = tag_usage.tasks + 1",
                )
                .bind(org)
                .bind(t.tag_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(&update("tags = array_append(tags, $4)"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .bind(t.tag_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            TaskEvent::TaskTagRemoved(t) => {
                sqlx::query("UPDATE tag_usage SET tasks = tasks - 1 WHERE org_id = $1 AND tag_id = $2")
                    .bind(org)
                    .bind(t.tag_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&update("tags = array_remove(tags, $4)"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .bind(t.tag_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            TaskEvent::TaskArchived(_) => {
                sqlx::query(&update("archived = true"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            TaskEvent::CommentAdded(c) => {
                sqlx::query(
                    "INSERT INTO comments (comment_id, task_id, org_id, author, body, mentions, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(c.comment_id)
                .bind(id)
                .bind(org)
                .bind(c.author)
                .bind(&c.body)
                .bind(&c.mentions)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(&update("comment_count = comment_count + 1"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            TaskEvent::CommentEdited(c) => {
                sqlx::query("UPDATE comments SET body = $2, mentions = $3, edited_at = $4 WHERE comment_id = $1")
                    .bind(c.comment_id)
                    .bind(&c.body)
                    .bind(&c.mentions)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&update("comment_count = comment_count"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            TaskEvent::CommentDeleted(c) => {
                sqlx::query("UPDATE comments SET deleted = true WHERE comment_id = $1")
                    .bind(c.comment_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&update("comment_count = comment_count - 1"))
                    .bind(id)
                    .bind(version)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
        };
        if touched == 0 {
            return Err(ApplyError::Failed(format!(
                "task {id} is not in the read model"
            )));
        }
        Ok(())
    }
}

/// Each task's history, one row per event.
pub struct Activity;

#[async_trait]
impl Projection for Activity {
    fn name(&self) -> &'static str {
        "activity"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../migrations/projections/activity.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        &["activity"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
        let (category, id) = stream_parts(e)?;
        if category != "task" {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO activity (event_id, org_id, task_id, commit_id, event_position, event_type, actor, occurred_at, data) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(e.event_id)
        .bind(e.metadata.org_id)
        .bind(id)
        .bind(e.position.commit as i64)
        .bind(e.position.event as i64)
        .bind(&e.event_type)
        .bind(e.metadata.actor_id)
        .bind(e.metadata.occurred_at)
        .bind(&e.payload)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Each user's in-app notifications: assigned to you, mentioned in a comment.
pub struct Notifications;

impl Notifications {
    async fn notify(
        tx: &mut PgConnection,
        e: &RecordedEvent,
        user: Uuid,
        kind: &str,
        task: Uuid,
        comment: Option<Uuid>,
    ) -> Result<(), ApplyError> {
        // Nobody is notified of their own doing.
        if Some(user) == e.metadata.actor_id {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO notifications (notification_id, user_id, org_id, kind, task_id, comment_id, actor, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(notification_id(e.event_id, user))
        .bind(user)
        .bind(e.metadata.org_id)
        .bind(kind)
        .bind(task)
        .bind(comment)
        .bind(e.metadata.actor_id)
        .bind(e.metadata.occurred_at)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Projection for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../migrations/projections/notifications.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        &["notifications"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &RecordedEvent) -> Result<(), ApplyError> {
        let (category, id) = stream_parts(e)?;
        match category {
            "task" => match decode::<TaskEvent>(e)? {
                TaskEvent::TaskAssigned(a) => {
                    Self::notify(tx, e, a.assignee, "assigned", id, None).await?;
                }
                TaskEvent::CommentAdded(c) => {
                    for user in &c.mentions {
                        Self::notify(tx, e, *user, "mentioned", id, Some(c.comment_id)).await?;
                    }
                }
                _ => {}
            },
            "inbox" => match decode::<InboxEvent>(e)? {
                InboxEvent::NotificationRead(r) => {
                    sqlx::query(
                        "UPDATE notifications SET read_at = coalesce(read_at, $3) \
                         WHERE notification_id = $1 AND user_id = $2",
                    )
                    .bind(r.notification_id)
                    .bind(id)
                    .bind(e.metadata.occurred_at)
                    .execute(&mut *tx)
                    .await?;
                }
            },
            _ => {}
        }
        Ok(())
    }
}
