//! Events in, rows out: folds a batch of events over the facts the
//! projection keeps (each task's, project's, member's and tag's), and
//! flattens every event into the rows ClickHouse gets. Pure: the same facts
//! and events give the same rows, which is what makes a batch sent twice
//! harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use tasklog_domain::{
    decode_event_ref, DomainEvent, InboxEvent, OrgEvent, ProjectEvent, StatusCategory, TagEvent,
    TaskEvent,
};
use tasklog_event_store::RecordedEvent;
use tasklog_projectors::projections::{notices, notification_id};
use tasklog_projectors::ApplyError;
use uuid::Uuid;

use crate::rows::*;

/// What the projection knows of a task between batches.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TaskFacts {
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub number: u64,
    pub key: String,
    pub title: String,
    pub priority: String,
    pub due_date: Option<NaiveDate>,
    pub status: String,
    pub category: StatusCategory,
    pub status_since: DateTime<Utc>,
    pub assignee: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub first_left_backlog_at: Option<DateTime<Utc>>,
    pub first_started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub completed_by_assignee: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub times_reopened: u32,
    pub archived_at: Option<DateTime<Utc>>,
    pub version: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProjectFacts {
    pub org_id: Uuid,
    pub name: String,
    pub key: String,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub version: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MemberFacts {
    pub handle: String,
    pub role: String,
    pub removed: bool,
    pub joined_at: DateTime<Utc>,
    pub version: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TagFacts {
    pub name: String,
    pub color: String,
    pub deleted: bool,
    pub version: u64,
}

/// Which facts an event reads and changes: (kind, org, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Task(Uuid),
    Project(Uuid),
    Member(Uuid, Uuid),
    Tag(Uuid, Uuid),
}

impl Key {
    /// As stored: kind, org (nil when the id alone names it), id.
    pub fn parts(self) -> (&'static str, Uuid, Uuid) {
        match self {
            Key::Task(id) => ("task", Uuid::nil(), id),
            Key::Project(id) => ("project", Uuid::nil(), id),
            Key::Member(org, user) => ("member", org, user),
            Key::Tag(org, tag) => ("tag", org, tag),
        }
    }
}

/// An event decoded by its stream's category.
pub enum Decoded {
    Task(Uuid, TaskEvent),
    Project(Uuid, ProjectEvent),
    Org(OrgEvent),
    Tags(TagEvent),
    Inbox(InboxEvent),
    /// An auditor's read (`audit-<org>`): not the product's activity, so
    /// no row and no facts.
    Audit,
}

fn decode<E: DomainEvent>(e: &RecordedEvent) -> Result<E, ApplyError> {
    Ok(decode_event_ref::<E>(&e.event_type, &e.payload)?)
}

impl Decoded {
    pub fn of(e: &RecordedEvent) -> Result<Self, ApplyError> {
        let (category, id) = e
            .stream_id
            .split_once('-')
            .ok_or_else(|| ApplyError::Failed(format!("stream {} has no category", e.stream_id)))?;
        let id: Uuid = id
            .parse()
            .map_err(|_| ApplyError::Failed(format!("stream {} has no uuid", e.stream_id)))?;
        Ok(match category {
            "task" => Decoded::Task(id, decode(e)?),
            "project" => Decoded::Project(id, decode(e)?),
            "org" => Decoded::Org(decode(e)?),
            "tags" => Decoded::Tags(decode(e)?),
            "inbox" => Decoded::Inbox(decode(e)?),
            "audit" => Decoded::Audit,
            other => {
                return Err(ApplyError::Failed(format!(
                    "unknown stream category {other}"
                )))
            }
        })
    }

    /// The facts applying it needs.
    pub fn key(&self, org: Uuid) -> Option<Key> {
        match self {
            Decoded::Task(id, _) => Some(Key::Task(*id)),
            Decoded::Project(id, _) => Some(Key::Project(*id)),
            Decoded::Org(e) => match e {
                OrgEvent::OrganizationCreated(c) => Some(Key::Member(org, c.owner_id)),
                OrgEvent::MemberAdded(m) => Some(Key::Member(org, m.user_id)),
                OrgEvent::MemberRoleChanged(m) => Some(Key::Member(org, m.user_id)),
                OrgEvent::MemberRemoved(m) => Some(Key::Member(org, m.user_id)),
                OrgEvent::ProjectKeyRegistered(_) => None,
            },
            Decoded::Tags(e) => Some(Key::Tag(
                org,
                match e {
                    TagEvent::TagCreated(t) => t.tag_id,
                    TagEvent::TagRenamed(t) => t.tag_id,
                    TagEvent::TagDeleted(t) => t.tag_id,
                },
            )),
            Decoded::Inbox(_) | Decoded::Audit => None,
        }
    }
}

/// An enum's wire name (`Priority::High` → "high").
fn wire<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Facts loaded for a batch, and what it changed.
#[derive(Default)]
pub struct Fold {
    pub tasks: BTreeMap<Uuid, TaskFacts>,
    pub projects: BTreeMap<Uuid, ProjectFacts>,
    pub members: BTreeMap<(Uuid, Uuid), MemberFacts>,
    pub tags: BTreeMap<(Uuid, Uuid), TagFacts>,
    pub touched: BTreeSet<Key>,
    pub rows: Rows,
}

impl Fold {
    /// Applies one event: its own rows now, the facts it changed for later.
    pub fn apply(&mut self, e: &RecordedEvent, decoded: &Decoded) -> Result<(), ApplyError> {
        if let Decoded::Audit = decoded {
            return Ok(());
        }
        // Reports count whole seconds (18.16 has no DateTime64): times are
        // cut to the second before anything is computed from them.
        let at = e.metadata.occurred_at.trunc_subsecs(0);
        let org = e.metadata.org_id;
        let mut row = EventRow {
            commit_id: e.position.commit,
            event_seq: e.position.event,
            event_id: e.event_id,
            org_id: org,
            stream_id: e.stream_id.clone(),
            stream_version: e.stream_version,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            actor_id: e.metadata.actor_id,
            occurred_at: at,
            recorded_at: e.recorded_at.trunc_subsecs(0),
            ..EventRow::default()
        };
        if let Some(key) = decoded.key(org) {
            self.touched.insert(key);
        }
        match decoded {
            Decoded::Task(id, event) => self.task(e, at, *id, event, &mut row)?,
            Decoded::Project(id, event) => {
                row.project_id = Some(*id);
                self.project(e, at, *id, event, &mut row)?
            }
            Decoded::Org(event) => self.org(e, at, event, &mut row),
            Decoded::Tags(event) => self.tag(e, event, &mut row)?,
            Decoded::Inbox(InboxEvent::NotificationRead(r)) => {
                row.notification_id = Some(r.notification_id)
            }
            Decoded::Audit => {}
        }
        self.rows.events.push(row);
        Ok(())
    }

    fn task(
        &mut self,
        e: &RecordedEvent,
        at: DateTime<Utc>,
        id: Uuid,
        event: &TaskEvent,
        row: &mut EventRow,
    ) -> Result<(), ApplyError> {
        row.task_id = Some(id);
        if let TaskEvent::TaskCreated(c) = event {
            self.tasks.insert(
                id,
                TaskFacts {
                    org_id: c.org_id,
                    project_id: c.project_id,
                    number: c.number,
                    key: c.key.clone(),
                    title: c.title.clone(),
                    priority: wire(&c.priority),
                    due_date: c.due_date,
                    status: c.status.clone(),
                    category: c.status_category,
                    status_since: at,
                    assignee: None,
                    created_at: at,
                    created_by: Some(c.created_by),
                    first_left_backlog_at: (c.status_category != StatusCategory::Backlog)
                        .then_some(at),
                    first_started_at: (c.status_category == StatusCategory::Started).then_some(at),
                    completed_at: None,
                    completed_by_assignee: None,
                    cancelled_at: None,
                    times_reopened: 0,
                    archived_at: None,
                    version: 0,
                },
            );
        }
        let task = self.tasks.get_mut(&id).ok_or_else(|| {
            ApplyError::Failed(format!(
                "{} of task {id}, whose TaskCreated was never applied",
                e.event_type
            ))
        })?;
        task.version = e.stream_version;
        row.project_id = Some(task.project_id);
        match event {
            TaskEvent::TaskCreated(c) => {
                row.title = c.title.clone();
                row.priority = wire(&c.priority);
                row.due_date = c.due_date;
                row.status_to = c.status.clone();
                row.category_to = wire(&c.status_category);
                self.rows.status_changes.push(StatusChangeRow {
                    org_id: task.org_id,
                    project_id: task.project_id,
                    task_id: id,
                    commit_id: e.position.commit,
                    event_seq: e.position.event,
                    changed_at: at,
                    status_from: String::new(),
                    status_to: c.status.clone(),
                    category_from: String::new(),
                    category_to: wire(&c.status_category),
                    from_since: at,
                    seconds_in_from: 0,
                    reopened: 0,
                    assignee_id: None,
                    actor_id: e.metadata.actor_id,
                });
            }
            TaskEvent::TaskDetailsEdited(d) => {
                task.title = d.title.clone();
                task.priority = wire(&d.priority);
                task.due_date = d.due_date;
                row.title = d.title.clone();
                row.priority = wire(&d.priority);
                row.due_date = d.due_date;
            }
            TaskEvent::TaskAssigned(a) => {
                task.assignee = Some(a.assignee);
                row.assignee_id = Some(a.assignee);
                row.previous_assignee_id = a.previous;
            }
            TaskEvent::TaskUnassigned(u) => {
                task.assignee = None;
                row.previous_assignee_id = Some(u.previous);
            }
            TaskEvent::TaskStatusChanged(s) => {
                use StatusCategory::{Backlog, Cancelled, Completed, Started};
                // Reopened: back to an open category. Done → Cancelled
                // stays closed, so it is no reopening (docs/reporting.md).
                let reopened =
                    matches!(s.from_category, Completed | Cancelled) && s.to_category.is_open();
                let seconds = (at - task.status_since).num_seconds().max(0);
                self.rows.status_changes.push(StatusChangeRow {
                    org_id: task.org_id,
                    project_id: task.project_id,
                    task_id: id,
                    commit_id: e.position.commit,
                    event_seq: e.position.event,
                    changed_at: at,
                    status_from: s.from.clone(),
                    status_to: s.to.clone(),
                    category_from: wire(&s.from_category),
                    category_to: wire(&s.to_category),
                    from_since: task.status_since,
                    seconds_in_from: u32::try_from(seconds).unwrap_or(u32::MAX),
                    reopened: reopened.into(),
                    assignee_id: task.assignee,
                    actor_id: e.metadata.actor_id,
                });
                task.status = s.to.clone();
                task.category = s.to_category;
                task.status_since = at;
                task.times_reopened += u32::from(reopened);
                if s.to_category != Backlog {
                    task.first_left_backlog_at.get_or_insert(at);
                }
                if s.to_category == Started {
                    task.first_started_at.get_or_insert(at);
                }
                // Completion is the last entry into `completed`, kept only
                // while the task stays completed; cancellation likewise.
                (task.completed_at, task.completed_by_assignee) = if s.to_category == Completed {
                    (Some(at), task.assignee)
                } else {
                    (None, None)
                };
                task.cancelled_at = (s.to_category == Cancelled).then_some(at);
                row.status_from = s.from.clone();
                row.status_to = s.to.clone();
                row.category_from = wire(&s.from_category);
                row.category_to = wire(&s.to_category);
            }
            TaskEvent::TaskTagAdded(t) => row.tag_id = Some(t.tag_id),
            TaskEvent::TaskTagRemoved(t) => row.tag_id = Some(t.tag_id),
            TaskEvent::TaskArchived(_) => {
                task.archived_at.get_or_insert(at);
            }
            TaskEvent::CommentAdded(c) => {
                row.comment_id = Some(c.comment_id);
                row.author_id = Some(c.author);
                row.mentions = c.mentions.clone();
            }
            TaskEvent::CommentEdited(c) => {
                row.comment_id = Some(c.comment_id);
                row.mentions = c.mentions.clone();
            }
            TaskEvent::CommentDeleted(c) => row.comment_id = Some(c.comment_id),
        }
        let project = task.project_id;
        for n in notices(e.metadata.actor_id, event) {
            self.rows.notifications.push(NotificationRow {
                org_id: e.metadata.org_id,
                notification_id: notification_id(e.event_id, n.user),
                project_id: Some(project),
                task_id: id,
                user_id: n.user,
                kind: n.kind.to_owned(),
                comment_id: n.comment,
                actor_id: e.metadata.actor_id,
                created_at: at,
            });
        }
        Ok(())
    }

    fn project(
        &mut self,
        e: &RecordedEvent,
        at: DateTime<Utc>,
        id: Uuid,
        event: &ProjectEvent,
        row: &mut EventRow,
    ) -> Result<(), ApplyError> {
        if let ProjectEvent::ProjectCreated(c) = event {
            self.projects.insert(
                id,
                ProjectFacts {
                    org_id: c.org_id,
                    name: c.name.clone(),
                    key: c.key.clone(),
                    archived: false,
                    created_at: at,
                    version: 0,
                },
            );
        }
        let project = self.projects.get_mut(&id).ok_or_else(|| {
            ApplyError::Failed(format!(
                "{} of project {id}, whose ProjectCreated was never applied",
                e.event_type
            ))
        })?;
        project.version = e.stream_version;
        match event {
            ProjectEvent::ProjectCreated(c) => row.name = c.name.clone(),
            ProjectEvent::ProjectRenamed(r) => {
                project.name = r.to.clone();
                row.name = r.to.clone();
            }
            ProjectEvent::ProjectArchived(_) => project.archived = true,
            ProjectEvent::ProjectUnarchived(_) => project.archived = false,
            ProjectEvent::TaskNumberReserved(r) => row.task_id = Some(r.task_id),
        }
        Ok(())
    }

    fn org(&mut self, e: &RecordedEvent, at: DateTime<Utc>, event: &OrgEvent, row: &mut EventRow) {
        let org = e.metadata.org_id;
        let version = e.stream_version;
        let mut member = |user: Uuid, change: &dyn Fn(&mut MemberFacts)| {
            let facts = self.members.entry((org, user)).or_insert(MemberFacts {
                handle: String::new(),
                role: String::new(),
                removed: false,
                joined_at: at,
                version,
            });
            change(facts);
            facts.version = version;
            user
        };
        match event {
            OrgEvent::OrganizationCreated(c) => {
                row.name = c.name.clone();
                row.member_id = Some(member(c.owner_id, &|m| {
                    m.handle = c.owner_handle.clone();
                    m.role = "owner".into();
                }));
                row.role = "owner".into();
            }
            OrgEvent::MemberAdded(a) => {
                row.member_id = Some(member(a.user_id, &|m| {
                    m.handle = a.handle.clone();
                    m.role = wire(&a.role);
                    m.removed = false;
                    m.joined_at = at;
                }));
                row.name = a.handle.clone();
                row.role = wire(&a.role);
            }
            OrgEvent::MemberRoleChanged(c) => {
                row.member_id = Some(member(c.user_id, &|m| m.role = wire(&c.to)));
                row.role = wire(&c.to);
            }
            OrgEvent::MemberRemoved(r) => {
                row.member_id = Some(member(r.user_id, &|m| m.removed = true));
            }
            OrgEvent::ProjectKeyRegistered(k) => row.name = k.key.clone(),
        }
    }

    fn tag(
        &mut self,
        e: &RecordedEvent,
        event: &TagEvent,
        row: &mut EventRow,
    ) -> Result<(), ApplyError> {
        let org = e.metadata.org_id;
        let tag_id = match event {
            TagEvent::TagCreated(t) => {
                self.tags.insert(
                    (org, t.tag_id),
                    TagFacts {
                        name: t.name.clone(),
                        color: t.color.clone().unwrap_or_default(),
                        deleted: false,
                        version: 0,
                    },
                );
                row.name = t.name.clone();
                t.tag_id
            }
            TagEvent::TagRenamed(t) => {
                row.name = t.to.clone();
                t.tag_id
            }
            TagEvent::TagDeleted(t) => t.tag_id,
        };
        row.tag_id = Some(tag_id);
        let tag = self.tags.get_mut(&(org, tag_id)).ok_or_else(|| {
            ApplyError::Failed(format!("{} of tag {tag_id}, never created", e.event_type))
        })?;
        tag.version = e.stream_version;
        match event {
            TagEvent::TagRenamed(t) => tag.name = t.to.clone(),
            TagEvent::TagDeleted(_) => tag.deleted = true,
            TagEvent::TagCreated(_) => {}
        }
        Ok(())
    }

    /// The batch's rows: its events' own, and the current dimension row of
    /// every task, project, member and tag it touched.
    pub fn finish(mut self) -> (Rows, Self) {
        let mut rows = std::mem::take(&mut self.rows);
        for key in &self.touched {
            match *key {
                Key::Task(id) => {
                    if let Some(t) = self.tasks.get(&id) {
                        rows.tasks.push(task_row(id, t));
                    }
                }
                Key::Project(id) => {
                    if let Some(p) = self.projects.get(&id) {
                        rows.projects.push(ProjectRow {
                            org_id: p.org_id,
                            project_id: id,
                            name: p.name.clone(),
                            project_key: p.key.clone(),
                            archived: p.archived.into(),
                            created_at: p.created_at,
                            version: p.version,
                        });
                    }
                }
                Key::Member(org, user) => {
                    if let Some(m) = self.members.get(&(org, user)) {
                        rows.members.push(MemberRow {
                            org_id: org,
                            user_id: user,
                            handle: m.handle.clone(),
                            role: m.role.clone(),
                            removed: m.removed.into(),
                            joined_at: m.joined_at,
                            version: m.version,
                        });
                    }
                }
                Key::Tag(org, tag) => {
                    if let Some(t) = self.tags.get(&(org, tag)) {
                        rows.tags.push(TagRow {
                            org_id: org,
                            tag_id: tag,
                            name: t.name.clone(),
                            color: t.color.clone(),
                            deleted: t.deleted.into(),
                            version: t.version,
                        });
                    }
                }
            }
        }
        (rows, self)
    }
}

fn task_row(id: Uuid, t: &TaskFacts) -> TaskRow {
    TaskRow {
        org_id: t.org_id,
        project_id: t.project_id,
        task_id: id,
        number: t.number,
        task_key: t.key.clone(),
        title: t.title.clone(),
        priority: t.priority.clone(),
        due_date: t.due_date,
        status: t.status.clone(),
        category: wire(&t.category),
        status_since: t.status_since,
        assignee_id: t.assignee,
        created_at: t.created_at,
        created_by: t.created_by,
        first_left_backlog_at: t.first_left_backlog_at,
        first_started_at: t.first_started_at,
        completed_at: t.completed_at,
        completed_by_assignee_id: t.completed_by_assignee,
        cancelled_at: t.cancelled_at,
        times_reopened: t.times_reopened,
        archived: t.archived_at.is_some().into(),
        archived_at: t.archived_at,
        version: t.version,
    }
}

/// Every fact, held in memory by a rebuild between its batches: a batch
/// folds over copies of the facts it touches, and they are kept only once
/// the batch went through, so a batch that fails changes nothing here.
#[derive(Default)]
pub struct Facts {
    tasks: HashMap<Uuid, TaskFacts>,
    projects: HashMap<Uuid, ProjectFacts>,
    members: HashMap<(Uuid, Uuid), MemberFacts>,
    tags: HashMap<(Uuid, Uuid), TagFacts>,
}

impl Facts {
    /// A fold over copies of the facts of `keys`.
    pub fn load(&self, keys: &[Key]) -> Fold {
        let mut fold = Fold::default();
        for key in keys {
            match *key {
                Key::Task(id) => {
                    if let Some(f) = self.tasks.get(&id) {
                        fold.tasks.insert(id, f.clone());
                    }
                }
                Key::Project(id) => {
                    if let Some(f) = self.projects.get(&id) {
                        fold.projects.insert(id, f.clone());
                    }
                }
                Key::Member(org, user) => {
                    if let Some(f) = self.members.get(&(org, user)) {
                        fold.members.insert((org, user), f.clone());
                    }
                }
                Key::Tag(org, tag) => {
                    if let Some(f) = self.tags.get(&(org, tag)) {
                        fold.tags.insert((org, tag), f.clone());
                    }
                }
            }
        }
        fold
    }

    /// Keeps what a finished fold changed.
    pub fn keep(&mut self, fold: Fold) {
        let Fold {
            mut tasks,
            mut projects,
            mut members,
            mut tags,
            touched,
            ..
        } = fold;
        for key in touched {
            match key {
                Key::Task(id) => {
                    if let Some(f) = tasks.remove(&id) {
                        self.tasks.insert(id, f);
                    }
                }
                Key::Project(id) => {
                    if let Some(f) = projects.remove(&id) {
                        self.projects.insert(id, f);
                    }
                }
                Key::Member(org, user) => {
                    if let Some(f) = members.remove(&(org, user)) {
                        self.members.insert((org, user), f);
                    }
                }
                Key::Tag(org, tag) => {
                    if let Some(f) = tags.remove(&(org, tag)) {
                        self.tags.insert((org, tag), f);
                    }
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len() + self.projects.len() + self.members.len() + self.tags.len()
    }

    /// Every fact as stored: its key, and the fact to write as JSON (only
    /// when asked: writers side by side each serialize their own share).
    pub fn stored(&self) -> impl Iterator<Item = (Key, StoredFact<'_>)> + '_ {
        let tasks = self
            .tasks
            .iter()
            .map(|(id, f)| (Key::Task(*id), StoredFact::Task(f)));
        let projects = self
            .projects
            .iter()
            .map(|(id, f)| (Key::Project(*id), StoredFact::Project(f)));
        let members = self
            .members
            .iter()
            .map(|((o, u), f)| (Key::Member(*o, *u), StoredFact::Member(f)));
        let tags = self
            .tags
            .iter()
            .map(|((o, t), f)| (Key::Tag(*o, *t), StoredFact::Tag(f)));
        tasks.chain(projects).chain(members).chain(tags)
    }
}

/// One fact of [`Facts::stored`].
pub enum StoredFact<'a> {
    Task(&'a TaskFacts),
    Project(&'a ProjectFacts),
    Member(&'a MemberFacts),
    Tag(&'a TagFacts),
}

impl StoredFact<'_> {
    /// Writes the fact's JSON, as `analytics_facts.facts` holds it.
    pub fn write_json(&self, out: impl std::io::Write) -> Result<(), serde_json::Error> {
        match self {
            StoredFact::Task(f) => serde_json::to_writer(out, f),
            StoredFact::Project(f) => serde_json::to_writer(out, f),
            StoredFact::Member(f) => serde_json::to_writer(out, f),
            StoredFact::Tag(f) => serde_json::to_writer(out, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasklog_event_store::{EventMetadata, LogPosition};

    #[test]
    fn an_auditors_read_is_not_the_products_activity_so_it_makes_no_row_and_no_facts() {
        let org = Uuid::now_v7();
        let read = RecordedEvent {
            event_id: Uuid::now_v7(),
            stream_id: format!("audit-{org}"),
            stream_version: 1,
            position: LogPosition {
                commit: 7,
                event: 1,
            },
            event_type: "AuditLogRead".into(),
            schema_version: 1,
            recorded_at: Utc::now(),
            metadata: EventMetadata {
                org_id: org,
                actor_id: Some(Uuid::now_v7()),
                correlation_id: Uuid::now_v7(),
                causation_id: None,
                occurred_at: Utc::now(),
            },
            payload: serde_json::json!({ "operation": "listAuditEvents" }),
            prev_hash: None,
            hash: vec![0; 32],
            hash_scheme: Default::default(),
            salts: Default::default(),
        };
        let decoded = Decoded::of(&read).unwrap();
        assert!(matches!(decoded, Decoded::Audit));
        assert_eq!(decoded.key(org), None);
        let mut fold = Fold::default();
        fold.apply(&read, &decoded).unwrap();
        assert!(fold.rows.events.is_empty() && fold.touched.is_empty());
    }
}
