//! The task aggregate: details, status, assignee, tags and comments.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Checks;
use crate::event::domain_events;
use crate::{
    Aggregate, CommentId, DomainError, OrgId, ProjectId, StatusCategory, TagId, TaskId, UserId,
    Workflow,
};

/// How urgent a task is.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// No priority set.
    #[default]
    None,
    Low,
    Medium,
    High,
    Urgent,
}

/// A comment on a task.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// Who wrote it.
    pub author: UserId,
    /// Its current text.
    pub body: String,
    /// Members mentioned in its current text.
    pub mentions: Vec<UserId>,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// State of a task.
#[derive(Serialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
pub struct Task {
    /// Whether the task was created.
    pub exists: bool,
    /// Its id.
    pub id: TaskId,
    /// Its organization.
    pub org_id: OrgId,
    /// Its project.
    pub project_id: ProjectId,
    /// Its number in the project.
    pub number: u64,
    /// Its key, `"{project key}-{number}"`.
    pub key: String,
    /// Its title.
    pub title: String,
    /// Its description (may be empty).
    pub description: String,
    /// Its priority.
    pub priority: Priority,
    /// When it is due.
    pub due_date: Option<NaiveDate>,
    /// Its workflow status.
    pub status: String,
    /// The category of its status.
    pub status_category: StatusCategory,
    /// Who works on it.
    pub assignee: Option<UserId>,
    /// Its tags.
    pub tags: BTreeSet<TagId>,
    /// Whether it is archived (then read-only).
    pub archived: bool,
    /// Its comments, deleted ones included.
    // A persistent map: the state is cloned for every command (from the
    // command API's cache), and a clone shares the comments, not copies them.
    #[schemars(with = "BTreeMap<CommentId, Comment>")]
    pub comments: imbl::OrdMap<CommentId, Comment>,
}

/// Commands of the task aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    /// Creates a task with the number reserved from its project and that project's workflow.
    CreateTask {
        task_id: TaskId,
        org_id: OrgId,
        project_id: ProjectId,
        number: u64,
        project_key: String,
        title: String,
        description: String,
        priority: Priority,
        due_date: Option<NaiveDate>,
        workflow: Workflow,
        created_by: UserId,
    },
    /// Changes the given details; `None` keeps a value (`Some(None)` clears the due date).
    EditTaskDetails {
        title: Option<String>,
        description: Option<String>,
        priority: Option<Priority>,
        due_date: Option<Option<NaiveDate>>,
    },
    /// Assigns the task to an organization member.
    AssignTask {
        assignee: UserId,
        assignee_is_member: bool,
    },
    /// Removes the assignee.
    UnassignTask,
    /// Moves the task to another status of the project's workflow.
    ChangeTaskStatus { to: String, workflow: Workflow },
    /// Adds a tag of the organization's catalog.
    AddTag { tag_id: TagId, tag_exists: bool },
    /// Removes a tag.
    RemoveTag { tag_id: TagId },
    /// Archives the task; it becomes read-only.
    ArchiveTask,
    /// Adds a comment; `mentions` are the members its body mentions.
    AddComment {
        comment_id: CommentId,
        author: UserId,
        body: String,
        mentions: Vec<UserId>,
    },
    /// Replaces a comment's text; only its author may.
    EditComment {
        comment_id: CommentId,
        editor: UserId,
        body: String,
        mentions: Vec<UserId>,
    },
    /// Deletes a comment; its author or an admin may.
    DeleteComment {
        comment_id: CommentId,
        by: UserId,
        by_is_admin: bool,
    },
}

/// A task was created.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskCreated {
    pub task_id: TaskId,
    pub org_id: OrgId,
    pub project_id: ProjectId,
    pub number: u64,
    /// `"{project key}-{number}"`, e.g. `WEB-42`.
    pub key: String,
    #[schemars(extend("x-personal" = true))]
    pub title: String,
    #[schemars(extend("x-personal" = true))]
    pub description: String,
    pub priority: Priority,
    pub due_date: Option<NaiveDate>,
    /// The workflow's initial status.
    pub status: String,
    pub status_category: StatusCategory,
    pub created_by: UserId,
}

/// A task's details changed; holds the full new values.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskDetailsEdited {
    #[schemars(extend("x-personal" = true))]
    pub title: String,
    #[schemars(extend("x-personal" = true))]
    pub description: String,
    pub priority: Priority,
    pub due_date: Option<NaiveDate>,
}

/// A task was assigned.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskAssigned {
    pub assignee: UserId,
    pub previous: Option<UserId>,
}

/// A task lost its assignee.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskUnassigned {
    pub previous: UserId,
}

/// A task moved to another status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskStatusChanged {
    pub from: String,
    pub to: String,
    pub from_category: StatusCategory,
    pub to_category: StatusCategory,
}

/// A tag was put on a task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskTagAdded {
    pub tag_id: TagId,
}

/// A tag was taken off a task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskTagRemoved {
    pub tag_id: TagId,
}

/// A task was archived.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskArchived {}

/// A comment was added to a task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct CommentAdded {
    pub comment_id: CommentId,
    pub author: UserId,
    #[schemars(extend("x-personal" = true))]
    pub body: String,
    /// Members mentioned in the body.
    pub mentions: Vec<UserId>,
}

/// A comment's text was replaced.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct CommentEdited {
    pub comment_id: CommentId,
    #[schemars(extend("x-personal" = true))]
    pub body: String,
    /// Members mentioned in the new body.
    pub mentions: Vec<UserId>,
}

/// A comment was deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct CommentDeleted {
    pub comment_id: CommentId,
}

domain_events! {
    /// Events of the task aggregate.
    pub enum TaskEvent {
        TaskCreated,
        TaskDetailsEdited,
        TaskAssigned,
        TaskUnassigned,
        TaskStatusChanged,
        TaskTagAdded,
        TaskTagRemoved,
        TaskArchived,
        CommentAdded,
        CommentEdited,
        CommentDeleted,
    }
}

const MAX_TITLE: usize = 200;
const MAX_TEXT: usize = 10_000;

fn check_body(body: &str) -> Result<(), DomainError> {
    let mut checks = Checks::default();
    checks.length("body", body, 1, MAX_TEXT);
    checks.finish()
}

/// Mentions without repeats, in their first order.
fn distinct(ids: Vec<UserId>) -> Vec<UserId> {
    let mut seen = BTreeSet::new();
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

impl Task {
    /// A live (not deleted) comment, or `NotFound("comment")`.
    fn live_comment(&self, comment_id: CommentId) -> Result<&Comment, DomainError> {
        self.comments
            .get(&comment_id)
            .filter(|comment| !comment.deleted)
            .ok_or(DomainError::NotFound("comment"))
    }
}

impl Aggregate for Task {
    type Command = TaskCommand;
    type Event = TaskEvent;
    const CATEGORY: &'static str = "task";

    fn decide(&self, command: TaskCommand) -> Result<Vec<TaskEvent>, DomainError> {
        use TaskCommand as C;
        match command {
            C::CreateTask {
                task_id,
                org_id,
                project_id,
                number,
                project_key,
                title,
                description,
                priority,
                due_date,
                workflow,
                created_by,
            } => {
                if self.exists {
                    return Err(DomainError::AlreadyExists("task"));
                }
                let mut checks = Checks::default();
                checks.length("title", &title, 1, MAX_TITLE);
                checks.length("description", &description, 0, MAX_TEXT);
                checks.finish()?;
                let title = title.trim().to_owned();
                let description = description.trim().to_owned();
                let status_category = workflow.category_of(&workflow.initial).ok_or_else(|| {
                    DomainError::validation("workflow", "the initial status is not in the workflow")
                })?;
                Ok(vec![TaskCreated {
                    task_id,
                    org_id,
                    project_id,
                    number,
                    key: format!("{}-{number}", project_key.trim()),
                    title,
                    description,
                    priority,
                    due_date,
                    status: workflow.initial,
                    status_category,
                    created_by,
                }
                .into()])
            }
            _ if !self.exists => Err(DomainError::NotFound("task")),
            C::ArchiveTask if self.archived => Ok(vec![]),
            _ if self.archived => Err(DomainError::Archived("task")),
            C::ArchiveTask => Ok(vec![TaskArchived {}.into()]),
            C::EditTaskDetails {
                title,
                description,
                priority,
                due_date,
            } => {
                let mut checks = Checks::default();
                if let Some(title) = &title {
                    checks.length("title", title, 1, MAX_TITLE);
                }
                if let Some(description) = &description {
                    checks.length("description", description, 0, MAX_TEXT);
                }
                let title = title.map(|title| title.trim().to_owned());
                let description = description.map(|text| text.trim().to_owned());
                checks.finish()?;
                let edited = TaskDetailsEdited {
                    title: title.unwrap_or_else(|| self.title.clone()),
                    description: description.unwrap_or_else(|| self.description.clone()),
                    priority: priority.unwrap_or(self.priority),
                    due_date: due_date.unwrap_or(self.due_date),
                };
                let unchanged = edited.title == self.title
                    && edited.description == self.description
                    && edited.priority == self.priority
                    && edited.due_date == self.due_date;
                if unchanged {
                    return Ok(vec![]);
                }
                Ok(vec![edited.into()])
            }
            C::AssignTask {
                assignee,
                assignee_is_member,
            } => {
                if !assignee_is_member {
                    return Err(DomainError::NotAMember(assignee));
                }
                if self.assignee == Some(assignee) {
                    return Ok(vec![]);
                }
                Ok(vec![TaskAssigned {
                    assignee,
                    previous: self.assignee,
                }
                .into()])
            }
            C::UnassignTask => Ok(self
                .assignee
                .map(|previous| TaskUnassigned { previous }.into())
                .into_iter()
                .collect()),
            C::ChangeTaskStatus { to, workflow } => {
                let to = to.trim().to_owned();
                let to_category = workflow.category_of(&to).ok_or_else(|| {
                    DomainError::validation("status", format!("unknown status \"{to}\""))
                })?;
                if to == self.status {
                    return Ok(vec![]);
                }
                if !workflow.allows(&self.status, &to) {
                    return Err(DomainError::TransitionNotAllowed {
                        from: self.status.clone(),
                        to,
                    });
                }
                Ok(vec![TaskStatusChanged {
                    from: self.status.clone(),
                    to,
                    from_category: self.status_category,
                    to_category,
                }
                .into()])
            }
            C::AddTag { tag_id, .. } if self.tags.contains(&tag_id) => Ok(vec![]),
            C::AddTag {
                tag_exists: false, ..
            } => Err(DomainError::NotFound("tag")),
            C::AddTag { tag_id, .. } => Ok(vec![TaskTagAdded { tag_id }.into()]),
            C::RemoveTag { tag_id } if !self.tags.contains(&tag_id) => Ok(vec![]),
            C::RemoveTag { tag_id } => Ok(vec![TaskTagRemoved { tag_id }.into()]),
            C::AddComment {
                comment_id,
                author,
                body,
                mentions,
            } => {
                if self.comments.contains_key(&comment_id) {
                    return Err(DomainError::AlreadyExists("comment"));
                }
                let body = body.trim().to_owned();
                check_body(&body)?;
                Ok(vec![CommentAdded {
                    comment_id,
                    author,
                    body,
                    mentions: distinct(mentions),
                }
                .into()])
            }
            C::EditComment {
                comment_id,
                editor,
                body,
                mentions,
            } => {
                let comment = self.live_comment(comment_id)?;
                if comment.author != editor {
                    return Err(DomainError::Forbidden(
                        "only the author can edit a comment".to_owned(),
                    ));
                }
                let body = body.trim().to_owned();
                check_body(&body)?;
                let mentions = distinct(mentions);
                if body == comment.body && mentions == comment.mentions {
                    return Ok(vec![]);
                }
                Ok(vec![CommentEdited {
                    comment_id,
                    body,
                    mentions,
                }
                .into()])
            }
            C::DeleteComment {
                comment_id,
                by,
                by_is_admin,
            } => {
                let comment = self.live_comment(comment_id)?;
                if comment.author != by && !by_is_admin {
                    return Err(DomainError::Forbidden(
                        "only the author or an admin can delete a comment".to_owned(),
                    ));
                }
                Ok(vec![CommentDeleted { comment_id }.into()])
            }
        }
    }

    fn evolve(mut self, event: &TaskEvent) -> Self {
        match event {
            TaskEvent::TaskCreated(e) => {
                self.exists = true;
                self.id = e.task_id;
                self.org_id = e.org_id;
                self.project_id = e.project_id;
                self.number = e.number;
                self.key = e.key.clone();
                self.title = e.title.clone();
                self.description = e.description.clone();
                self.priority = e.priority;
                self.due_date = e.due_date;
                self.status = e.status.clone();
                self.status_category = e.status_category;
            }
            TaskEvent::TaskDetailsEdited(e) => {
                self.title = e.title.clone();
                self.description = e.description.clone();
                self.priority = e.priority;
                self.due_date = e.due_date;
            }
            TaskEvent::TaskAssigned(e) => self.assignee = Some(e.assignee),
            TaskEvent::TaskUnassigned(_) => self.assignee = None,
            TaskEvent::TaskStatusChanged(e) => {
                self.status = e.to.clone();
                self.status_category = e.to_category;
            }
            TaskEvent::TaskTagAdded(e) => {
                self.tags.insert(e.tag_id);
            }
            TaskEvent::TaskTagRemoved(e) => {
                self.tags.remove(&e.tag_id);
            }
            TaskEvent::TaskArchived(_) => self.archived = true,
            TaskEvent::CommentAdded(e) => {
                self.comments.insert(
                    e.comment_id,
                    Comment {
                        author: e.author,
                        body: e.body.clone(),
                        mentions: e.mentions.clone(),
                        deleted: false,
                    },
                );
            }
            TaskEvent::CommentEdited(e) => {
                if let Some(comment) = self.comments.get_mut(&e.comment_id) {
                    comment.body = e.body.clone();
                    comment.mentions = e.mentions.clone();
                }
            }
            TaskEvent::CommentDeleted(e) => {
                if let Some(comment) = self.comments.get_mut(&e.comment_id) {
                    comment.deleted = true;
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Given};
    use crate::{replay, FieldError, StatusDef, Uuid};

    const TASK: Uuid = Uuid::from_u128(0x70);
    const ORG: Uuid = Uuid::from_u128(0x0a);
    const PROJECT: Uuid = Uuid::from_u128(0x50);
    const ALICE: Uuid = Uuid::from_u128(1);
    const BOB: Uuid = Uuid::from_u128(2);
    const CAROL: Uuid = Uuid::from_u128(3);
    const TAG: Uuid = Uuid::from_u128(0x90);
    const COMMENT: Uuid = Uuid::from_u128(0xc0);

    fn given(events: impl IntoIterator<Item = TaskEvent>) -> Given<Task> {
        testing::given(events)
    }

    fn due() -> NaiveDate {
        NaiveDate::from_ymd_opt(2030, 1, 31).unwrap()
    }

    fn created() -> TaskEvent {
        TaskCreated {
            task_id: TASK,
            org_id: ORG,
            project_id: PROJECT,
            number: 42,
            key: "WEB-42".into(),
            title: "Fix login".into(),
            description: "It fails".into(),
            priority: Priority::High,
            due_date: Some(due()),
            status: "backlog".into(),
            status_category: StatusCategory::Backlog,
            created_by: ALICE,
        }
        .into()
    }

    fn create(title: &str, description: &str) -> TaskCommand {
        create_with(title, description, Workflow::default_workflow())
    }

    fn create_with(title: &str, description: &str, workflow: Workflow) -> TaskCommand {
        TaskCommand::CreateTask {
            task_id: TASK,
            org_id: ORG,
            project_id: PROJECT,
            number: 42,
            project_key: "WEB".into(),
            title: title.into(),
            description: description.into(),
            priority: Priority::High,
            due_date: Some(due()),
            workflow,
            created_by: ALICE,
        }
    }

    fn archived() -> TaskEvent {
        TaskArchived {}.into()
    }

    fn status_changed(from: &str, to: &str) -> TaskEvent {
        let workflow = Workflow::default_workflow();
        TaskStatusChanged {
            from: from.into(),
            to: to.into(),
            from_category: workflow.category_of(from).unwrap(),
            to_category: workflow.category_of(to).unwrap(),
        }
        .into()
    }

    fn change_status(to: &str) -> TaskCommand {
        TaskCommand::ChangeTaskStatus {
            to: to.into(),
            workflow: Workflow::default_workflow(),
        }
    }

    fn edit(title: Option<&str>, description: Option<&str>) -> TaskCommand {
        TaskCommand::EditTaskDetails {
            title: title.map(Into::into),
            description: description.map(Into::into),
            priority: None,
            due_date: None,
        }
    }

    fn comment_added(author: Uuid, body: &str) -> TaskEvent {
        CommentAdded {
            comment_id: COMMENT,
            author,
            body: body.into(),
            mentions: vec![],
        }
        .into()
    }

    fn add_comment(body: &str, mentions: Vec<Uuid>) -> TaskCommand {
        TaskCommand::AddComment {
            comment_id: COMMENT,
            author: ALICE,
            body: body.into(),
            mentions,
        }
    }

    fn edit_comment(editor: Uuid, body: &str) -> TaskCommand {
        TaskCommand::EditComment {
            comment_id: COMMENT,
            editor,
            body: body.into(),
            mentions: vec![],
        }
    }

    fn delete_comment(by: Uuid, by_is_admin: bool) -> TaskCommand {
        TaskCommand::DeleteComment {
            comment_id: COMMENT,
            by,
            by_is_admin,
        }
    }

    // --- CreateTask

    #[test]
    fn creating_a_task_starts_it_in_the_initial_status_with_its_key() {
        let task = given([])
            .when(create("  Fix login ", " It fails\n"))
            .then([created()]);
        assert_eq!(task.status, "backlog");
        assert_eq!(task.key, "WEB-42");
    }

    #[test]
    fn creating_a_task_uses_the_given_workflows_initial_status() {
        let workflow = Workflow {
            statuses: vec![StatusDef {
                name: "open".into(),
                category: StatusCategory::Unstarted,
            }],
            transitions: vec![],
            initial: "open".into(),
        };
        let task = replay::<Task>(
            Task::default()
                .decide(create_with("Fix login", "", workflow))
                .unwrap(),
        );
        assert_eq!(task.status, "open");
        assert_eq!(task.status_category, StatusCategory::Unstarted);
    }

    #[test]
    fn creating_a_task_with_a_workflow_lacking_its_initial_status_is_rejected() {
        let workflow = Workflow {
            initial: "nowhere".into(),
            ..Workflow::default_workflow()
        };
        given([])
            .when(create_with("Fix login", "", workflow))
            .then_err(DomainError::validation(
                "workflow",
                "the initial status is not in the workflow",
            ));
    }

    #[test]
    fn creating_an_existing_task_is_rejected() {
        given([created()])
            .when(create("Fix login", ""))
            .then_err(DomainError::AlreadyExists("task"));
    }

    #[test]
    fn creating_a_task_with_a_blank_title_and_a_long_description_reports_both() {
        given([])
            .when(create(" ", &"d".repeat(10_001)))
            .then_err(DomainError::Validation(vec![
                FieldError::new("title", "must not be empty"),
                FieldError::new("description", "must be at most 10000 characters"),
            ]));
    }

    #[test]
    fn creating_a_task_with_a_title_over_200_characters_is_rejected() {
        given([])
            .when(create(&"t".repeat(201), ""))
            .then_err(DomainError::validation(
                "title",
                "must be at most 200 characters",
            ));
    }

    /// The limit is on the text as sent, as the published schema says, so a
    /// title padded past it is refused though its trimmed text would fit.
    #[test]
    fn a_title_padded_past_200_characters_is_rejected_though_it_trims_shorter() {
        given([])
            .when(create(&format!("  {}", "t".repeat(199)), ""))
            .then_err(DomainError::validation(
                "title",
                "must be at most 200 characters",
            ));
    }

    #[test]
    fn commands_on_a_missing_task_are_rejected() {
        given([])
            .when(TaskCommand::UnassignTask)
            .then_err(DomainError::NotFound("task"));
    }

    // --- EditTaskDetails

    #[test]
    fn editing_details_records_the_full_new_values() {
        given([created()])
            .when(TaskCommand::EditTaskDetails {
                title: Some(" Fix sign-in ".into()),
                description: None,
                priority: Some(Priority::Urgent),
                due_date: Some(None),
            })
            .then([TaskDetailsEdited {
                title: "Fix sign-in".into(),
                description: "It fails".into(),
                priority: Priority::Urgent,
                due_date: None,
            }
            .into()]);
    }

    #[test]
    fn editing_details_to_the_current_values_changes_nothing() {
        given([created()])
            .when(edit(Some("Fix login "), Some("It fails")))
            .then([]);
        given([created()]).when(edit(None, None)).then([]);
    }

    #[test]
    fn editing_the_title_to_blank_is_rejected() {
        given([created()])
            .when(edit(Some("  "), None))
            .then_err(DomainError::validation("title", "must not be empty"));
    }

    #[test]
    fn editing_the_description_beyond_10000_characters_is_rejected() {
        given([created()])
            .when(edit(None, Some(&"d".repeat(10_001))))
            .then_err(DomainError::validation(
                "description",
                "must be at most 10000 characters",
            ));
    }

    #[test]
    fn clearing_the_description_is_allowed() {
        given([created()])
            .when(edit(None, Some("")))
            .then([TaskDetailsEdited {
                title: "Fix login".into(),
                description: String::new(),
                priority: Priority::High,
                due_date: Some(due()),
            }
            .into()]);
    }

    // --- AssignTask / UnassignTask

    #[test]
    fn assigning_a_member_records_the_previous_assignee() {
        let task = given([
            created(),
            TaskAssigned {
                assignee: ALICE,
                previous: None,
            }
            .into(),
        ])
        .when(TaskCommand::AssignTask {
            assignee: BOB,
            assignee_is_member: true,
        })
        .then([TaskAssigned {
            assignee: BOB,
            previous: Some(ALICE),
        }
        .into()]);
        assert_eq!(task.assignee, Some(BOB));
    }

    #[test]
    fn assigning_a_non_member_is_rejected() {
        given([created()])
            .when(TaskCommand::AssignTask {
                assignee: BOB,
                assignee_is_member: false,
            })
            .then_err(DomainError::NotAMember(BOB));
    }

    #[test]
    fn assigning_the_current_assignee_changes_nothing() {
        given([
            created(),
            TaskAssigned {
                assignee: BOB,
                previous: None,
            }
            .into(),
        ])
        .when(TaskCommand::AssignTask {
            assignee: BOB,
            assignee_is_member: true,
        })
        .then([]);
    }

    #[test]
    fn unassigning_records_the_previous_assignee() {
        let task = given([
            created(),
            TaskAssigned {
                assignee: BOB,
                previous: None,
            }
            .into(),
        ])
        .when(TaskCommand::UnassignTask)
        .then([TaskUnassigned { previous: BOB }.into()]);
        assert_eq!(task.assignee, None);
    }

    #[test]
    fn unassigning_an_unassigned_task_changes_nothing() {
        given([created()]).when(TaskCommand::UnassignTask).then([]);
    }

    // --- ChangeTaskStatus

    #[test]
    fn moving_along_the_workflow_records_both_categories() {
        let task = given([created(), status_changed("backlog", "todo")])
            .when(change_status("in_progress"))
            .then([status_changed("todo", "in_progress")]);
        assert_eq!(task.status_category, StatusCategory::Started);
    }

    #[test]
    fn a_done_task_can_be_reopened() {
        given([
            created(),
            status_changed("backlog", "todo"),
            status_changed("todo", "in_progress"),
            status_changed("in_progress", "in_review"),
            status_changed("in_review", "done"),
        ])
        .when(change_status("todo"))
        .then([status_changed("done", "todo")]);
    }

    #[test]
    fn skipping_workflow_steps_is_rejected() {
        given([created()]).when(change_status("done")).then_err(
            DomainError::TransitionNotAllowed {
                from: "backlog".into(),
                to: "done".into(),
            },
        );
    }

    #[test]
    fn changing_to_an_unknown_status_is_rejected() {
        given([created()])
            .when(change_status("blocked"))
            .then_err(DomainError::validation(
                "status",
                "unknown status \"blocked\"",
            ));
    }

    #[test]
    fn changing_to_the_current_status_changes_nothing() {
        given([created()]).when(change_status("backlog")).then([]);
    }

    // --- AddTag / RemoveTag

    #[test]
    fn adding_an_existing_tag() {
        let task = given([created()])
            .when(TaskCommand::AddTag {
                tag_id: TAG,
                tag_exists: true,
            })
            .then([TaskTagAdded { tag_id: TAG }.into()]);
        assert!(task.tags.contains(&TAG));
    }

    #[test]
    fn adding_an_unknown_tag_is_rejected() {
        given([created()])
            .when(TaskCommand::AddTag {
                tag_id: TAG,
                tag_exists: false,
            })
            .then_err(DomainError::NotFound("tag"));
    }

    #[test]
    fn adding_a_tag_already_present_changes_nothing() {
        given([created(), TaskTagAdded { tag_id: TAG }.into()])
            .when(TaskCommand::AddTag {
                tag_id: TAG,
                tag_exists: true,
            })
            .then([]);
    }

    #[test]
    fn removing_a_tag() {
        let task = given([created(), TaskTagAdded { tag_id: TAG }.into()])
            .when(TaskCommand::RemoveTag { tag_id: TAG })
            .then([TaskTagRemoved { tag_id: TAG }.into()]);
        assert!(task.tags.is_empty());
    }

    #[test]
    fn removing_a_tag_not_present_changes_nothing() {
        given([created()])
            .when(TaskCommand::RemoveTag { tag_id: TAG })
            .then([]);
    }

    // --- ArchiveTask

    #[test]
    fn archiving_a_task() {
        let task = given([created()])
            .when(TaskCommand::ArchiveTask)
            .then([archived()]);
        assert!(task.archived);
    }

    #[test]
    fn archiving_an_archived_task_changes_nothing() {
        given([created(), archived()])
            .when(TaskCommand::ArchiveTask)
            .then([]);
    }

    #[test]
    fn every_change_to_an_archived_task_is_rejected() {
        let commands = [
            edit(Some("New"), None),
            TaskCommand::AssignTask {
                assignee: BOB,
                assignee_is_member: true,
            },
            TaskCommand::UnassignTask,
            change_status("todo"),
            TaskCommand::AddTag {
                tag_id: TAG,
                tag_exists: true,
            },
            TaskCommand::RemoveTag { tag_id: TAG },
            add_comment("hi", vec![]),
            edit_comment(ALICE, "hi"),
            delete_comment(ALICE, true),
        ];
        for command in commands {
            given([created(), archived()])
                .when(command)
                .then_err(DomainError::Archived("task"));
        }
    }

    // --- AddComment

    #[test]
    fn adding_a_comment_records_its_trimmed_body_and_distinct_mentions() {
        let task = given([created()])
            .when(add_comment(" hi @bob @carol @bob ", vec![BOB, CAROL, BOB]))
            .then([CommentAdded {
                comment_id: COMMENT,
                author: ALICE,
                body: "hi @bob @carol @bob".into(),
                mentions: vec![BOB, CAROL],
            }
            .into()]);
        assert_eq!(task.comments[&COMMENT].author, ALICE);
    }

    #[test]
    fn adding_a_blank_comment_is_rejected() {
        given([created()])
            .when(add_comment("  \n ", vec![]))
            .then_err(DomainError::validation("body", "must not be empty"));
    }

    #[test]
    fn adding_a_comment_over_10000_characters_is_rejected() {
        given([created()])
            .when(add_comment(&"c".repeat(10_001), vec![]))
            .then_err(DomainError::validation(
                "body",
                "must be at most 10000 characters",
            ));
    }

    #[test]
    fn reusing_a_comment_id_is_rejected() {
        given([created(), comment_added(BOB, "first")])
            .when(add_comment("second", vec![]))
            .then_err(DomainError::AlreadyExists("comment"));
    }

    // --- EditComment

    #[test]
    fn the_author_edits_a_comment() {
        given([created(), comment_added(ALICE, "frist")])
            .when(TaskCommand::EditComment {
                comment_id: COMMENT,
                editor: ALICE,
                body: "first @bob".into(),
                mentions: vec![BOB],
            })
            .then([CommentEdited {
                comment_id: COMMENT,
                body: "first @bob".into(),
                mentions: vec![BOB],
            }
            .into()]);
    }

    #[test]
    fn editing_a_comment_to_the_same_text_changes_nothing() {
        given([created(), comment_added(ALICE, "first")])
            .when(edit_comment(ALICE, " first "))
            .then([]);
    }

    #[test]
    fn only_the_author_edits_a_comment() {
        given([created(), comment_added(ALICE, "first")])
            .when(edit_comment(BOB, "mine now"))
            .then_err(DomainError::Forbidden(
                "only the author can edit a comment".into(),
            ));
    }

    #[test]
    fn editing_a_comment_to_blank_is_rejected() {
        given([created(), comment_added(ALICE, "first")])
            .when(edit_comment(ALICE, ""))
            .then_err(DomainError::validation("body", "must not be empty"));
    }

    #[test]
    fn editing_an_unknown_comment_is_rejected() {
        given([created()])
            .when(edit_comment(ALICE, "first"))
            .then_err(DomainError::NotFound("comment"));
    }

    #[test]
    fn editing_a_deleted_comment_is_rejected() {
        given([
            created(),
            comment_added(ALICE, "first"),
            CommentDeleted {
                comment_id: COMMENT,
            }
            .into(),
        ])
        .when(edit_comment(ALICE, "again"))
        .then_err(DomainError::NotFound("comment"));
    }

    // --- DeleteComment

    #[test]
    fn the_author_deletes_a_comment() {
        let task = given([created(), comment_added(BOB, "first")])
            .when(delete_comment(BOB, false))
            .then([CommentDeleted {
                comment_id: COMMENT,
            }
            .into()]);
        assert!(task.comments[&COMMENT].deleted);
    }

    #[test]
    fn an_admin_deletes_someone_elses_comment() {
        given([created(), comment_added(BOB, "first")])
            .when(delete_comment(ALICE, true))
            .then([CommentDeleted {
                comment_id: COMMENT,
            }
            .into()]);
    }

    #[test]
    fn a_non_admin_cannot_delete_someone_elses_comment() {
        given([created(), comment_added(BOB, "first")])
            .when(delete_comment(ALICE, false))
            .then_err(DomainError::Forbidden(
                "only the author or an admin can delete a comment".into(),
            ));
    }

    #[test]
    fn deleting_an_unknown_comment_is_rejected() {
        given([created()])
            .when(delete_comment(ALICE, true))
            .then_err(DomainError::NotFound("comment"));
    }

    #[test]
    fn deleting_a_deleted_comment_is_rejected() {
        given([
            created(),
            comment_added(BOB, "first"),
            CommentDeleted {
                comment_id: COMMENT,
            }
            .into(),
        ])
        .when(delete_comment(BOB, false))
        .then_err(DomainError::NotFound("comment"));
    }

    #[test]
    fn priorities_serialize_in_snake_case_and_default_to_none() {
        assert_eq!(Priority::default(), Priority::None);
        assert_eq!(serde_json::to_value(Priority::Urgent).unwrap(), "urgent");
    }

    #[test]
    fn task_events_serialize_adjacently_tagged() {
        let value = serde_json::to_value(TaskEvent::from(TaskTagAdded { tag_id: TAG })).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type": "TaskTagAdded", "data": {"tag_id": TAG}})
        );
    }
}
