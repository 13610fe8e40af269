use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use tasklog_domain::{InboxEvent, TaskEvent};
use tasklog_event_store::RecordedEvent;
use uuid::Uuid;

use super::{decode, stream_parts};
use crate::{ApplyError, Projection};

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

/// A notification an event of a task gives someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub user: Uuid,
    /// `assigned` or `mentioned`.
    pub kind: &'static str,
    pub comment: Option<Uuid>,
}

/// Whom an event of a task notifies, and why: assigned to you, mentioned in
/// a comment; nobody of their own doing. The one rule the notifications
/// read model and the analytics store both follow.
pub fn notices(actor: Option<Uuid>, event: &TaskEvent) -> Vec<Notice> {
    let mut out = Vec::new();
    match event {
        TaskEvent::TaskAssigned(a) => out.push(Notice {
            user: a.assignee,
            kind: "assigned",
            comment: None,
        }),
        TaskEvent::CommentAdded(c) => out.extend(c.mentions.iter().map(|&user| Notice {
            user,
            kind: "mentioned",
            comment: Some(c.comment_id),
        })),
        _ => {}
    }
    out.retain(|n| Some(n.user) != actor);
    out
}

/// Each user's in-app notifications: assigned to you, mentioned in a comment.
pub struct Notifications;

/// A notification the batch creates.
struct New {
    id: Uuid,
    user: Uuid,
    org: Uuid,
    kind: &'static str,
    task: Uuid,
    comment: Option<Uuid>,
    actor: Option<Uuid>,
    at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Batch {
    created: Vec<New>,
    /// Index in `created` by notification id.
    index: HashMap<Uuid, usize>,
    /// Marks on notifications from earlier batches: (id, user, when).
    reads: Vec<(Uuid, Uuid, DateTime<Utc>)>,
}

impl Batch {
    fn notify(
        &mut self,
        e: &RecordedEvent,
        user: Uuid,
        kind: &'static str,
        task: Uuid,
        comment: Option<Uuid>,
    ) {
        let id = notification_id(e.event_id, user);
        self.index.insert(id, self.created.len());
        self.created.push(New {
            id,
            user,
            org: e.metadata.org_id,
            kind,
            task,
            comment,
            actor: e.metadata.actor_id,
            at: e.metadata.occurred_at,
            read_at: None,
        });
    }

    fn read(&mut self, id: Uuid, user: Uuid, at: DateTime<Utc>) {
        match self.index.get(&id).map(|&i| &mut self.created[i]) {
            Some(n) if n.user == user => {
                n.read_at.get_or_insert(at);
            }
            Some(_) => {}
            None => self.reads.push((id, user, at)),
        }
    }
}

#[async_trait]
impl Projection for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }
    fn ddl(&self) -> &'static str {
        include_str!("../../../migrations/projections/notifications.sql")
    }
    fn tables(&self) -> &'static [&'static str] {
        &["notifications"]
    }
    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&["task", "inbox"])
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ApplyError> {
        let mut batch = Batch::default();
        for e in events {
            let (category, id) = stream_parts(e)?;
            match category {
                "task" => {
                    for n in notices(e.metadata.actor_id, &decode::<TaskEvent>(e)?) {
                        batch.notify(e, n.user, n.kind, id, n.comment);
                    }
                }
                "inbox" => match decode::<InboxEvent>(e)? {
                    // The reader is the actor: the stream is the user's
                    // inbox in one organization (`inbox_id(org, user)`),
                    // or, for events written before that, the user's id.
                    InboxEvent::NotificationRead(r) => batch.read(
                        r.notification_id,
                        e.metadata.actor_id.unwrap_or(id),
                        e.metadata.occurred_at,
                    ),
                },
                _ => {}
            }
        }
        if !batch.created.is_empty() {
            let c = &batch.created;
            sqlx::query(
                "INSERT INTO notifications (notification_id, user_id, org_id, kind, task_id, comment_id, actor, created_at, read_at) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[], $6::uuid[], \
                    $7::uuid[], $8::timestamptz[], $9::timestamptz[])",
            )
            .bind(c.iter().map(|n| n.id).collect::<Vec<_>>())
            .bind(c.iter().map(|n| n.user).collect::<Vec<_>>())
            .bind(c.iter().map(|n| n.org).collect::<Vec<_>>())
            .bind(c.iter().map(|n| n.kind).collect::<Vec<_>>())
            .bind(c.iter().map(|n| n.task).collect::<Vec<_>>())
            .bind(c.iter().map(|n| n.comment).collect::<Vec<_>>())
            .bind(c.iter().map(|n| n.actor).collect::<Vec<_>>())
            .bind(c.iter().map(|n| n.at).collect::<Vec<_>>())
            .bind(c.iter().map(|n| n.read_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !batch.reads.is_empty() {
            let r = &batch.reads;
            // The first mark counts: a later one for the same notification
            // finds read_at set and leaves it.
            sqlx::query(
                "UPDATE notifications n SET read_at = coalesce(n.read_at, r.at) \
                 FROM (SELECT DISTINCT ON (id, u) id, u, at \
                       FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[]) WITH ORDINALITY AS x(id, u, at, n) \
                       ORDER BY id, u, n) r \
                 WHERE n.notification_id = r.id AND n.user_id = r.u",
            )
            .bind(r.iter().map(|m| m.0).collect::<Vec<_>>())
            .bind(r.iter().map(|m| m.1).collect::<Vec<_>>())
            .bind(r.iter().map(|m| m.2).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}
