//! The project aggregate: name, key, archive state, workflow and task numbering.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::Checks;
use crate::event::domain_events;
use crate::org::check_project_key;
use crate::{Aggregate, DomainError, OrgId, ProjectId, TaskId, Workflow};

/// State of a project.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// Whether the project was created.
    pub exists: bool,
    /// Its id.
    pub id: ProjectId,
    /// The organization owning it.
    pub org_id: OrgId,
    /// Its name.
    pub name: String,
    /// Its key, the prefix of task keys (`WEB` in `WEB-42`).
    pub key: String,
    /// Whether it is archived.
    pub archived: bool,
    /// The task workflow.
    pub workflow: Workflow,
    /// The number the next task gets; starts at 1.
    pub next_task_number: u64,
}

impl Default for Project {
    fn default() -> Self {
        Self {
            exists: false,
            id: ProjectId::nil(),
            org_id: OrgId::nil(),
            name: String::new(),
            key: String::new(),
            archived: false,
            workflow: Workflow::default_workflow(),
            next_task_number: 1,
        }
    }
}

/// Commands of the project aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum ProjectCommand {
    /// Creates the project with the default workflow. The key must be registered with the
    /// organization first (`OrgCommand::RegisterProjectKey`).
    CreateProject {
        project_id: ProjectId,
        org_id: OrgId,
        name: String,
        key: String,
    },
    /// Renames the project.
    RenameProject { name: String },
    /// Archives the project.
    ArchiveProject,
    /// Brings an archived project back.
    UnarchiveProject,
    /// Hands out the next task number to a new task.
    ReserveTaskNumber { task_id: TaskId },
}

/// A project was created.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ProjectCreated {
    pub project_id: ProjectId,
    pub org_id: OrgId,
    pub name: String,
    pub key: String,
    pub workflow: Workflow,
}

/// A project was renamed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ProjectRenamed {
    pub from: String,
    pub to: String,
}

/// A project was archived.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ProjectArchived {}

/// An archived project was brought back.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ProjectUnarchived {}

/// A task number was handed out to a new task.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct TaskNumberReserved {
    pub task_id: TaskId,
    pub number: u64,
}

domain_events! {
    /// Events of the project aggregate.
    pub enum ProjectEvent {
        ProjectCreated,
        ProjectRenamed,
        ProjectArchived,
        ProjectUnarchived,
        TaskNumberReserved,
    }
}

fn check_name(name: &str) -> Result<(), DomainError> {
    let mut checks = Checks::default();
    checks.length("name", name, 1, 100);
    checks.finish()
}

impl Aggregate for Project {
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    const CATEGORY: &'static str = "project";

    fn decide(&self, command: ProjectCommand) -> Result<Vec<ProjectEvent>, DomainError> {
        match command {
            ProjectCommand::CreateProject {
                project_id,
                org_id,
                name,
                key,
            } => {
                if self.exists {
                    return Err(DomainError::AlreadyExists("project"));
                }
                let mut checks = Checks::default();
                checks.length("name", &name, 1, 100);
                let name = name.trim().to_owned();
                let key = key.trim().to_owned();
                check_project_key(&mut checks, &key);
                checks.finish()?;
                Ok(vec![ProjectCreated {
                    project_id,
                    org_id,
                    name,
                    key,
                    workflow: Workflow::default_workflow(),
                }
                .into()])
            }
            _ if !self.exists => Err(DomainError::NotFound("project")),
            ProjectCommand::RenameProject { name } => {
                if self.archived {
                    return Err(DomainError::Archived("project"));
                }
                check_name(&name)?;
                let name = name.trim().to_owned();
                if name == self.name {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectRenamed {
                    from: self.name.clone(),
                    to: name,
                }
                .into()])
            }
            ProjectCommand::ArchiveProject if self.archived => Ok(vec![]),
            ProjectCommand::ArchiveProject => Ok(vec![ProjectArchived {}.into()]),
            ProjectCommand::UnarchiveProject if !self.archived => Ok(vec![]),
            ProjectCommand::UnarchiveProject => Ok(vec![ProjectUnarchived {}.into()]),
            ProjectCommand::ReserveTaskNumber { task_id } => {
                if self.archived {
                    return Err(DomainError::Archived("project"));
                }
                Ok(vec![TaskNumberReserved {
                    task_id,
                    number: self.next_task_number,
                }
                .into()])
            }
        }
    }

    fn evolve(mut self, event: &ProjectEvent) -> Self {
        match event {
            ProjectEvent::ProjectCreated(e) => {
                self.exists = true;
                self.id = e.project_id;
                self.org_id = e.org_id;
                self.name = e.name.clone();
                self.key = e.key.clone();
                self.workflow = e.workflow.clone();
                self.next_task_number = 1;
            }
            ProjectEvent::ProjectRenamed(e) => self.name = e.to.clone(),
            ProjectEvent::ProjectArchived(_) => self.archived = true,
            ProjectEvent::ProjectUnarchived(_) => self.archived = false,
            ProjectEvent::TaskNumberReserved(e) => {
                self.next_task_number = self.next_task_number.max(e.number.saturating_add(1));
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, Given};
    use crate::{FieldError, Uuid};

    const PROJECT: Uuid = Uuid::from_u128(0x50);
    const ORG: Uuid = Uuid::from_u128(0x0a);
    const TASK: Uuid = Uuid::from_u128(0x70);

    fn given(events: impl IntoIterator<Item = ProjectEvent>) -> Given<Project> {
        testing::given(events)
    }

    fn created() -> ProjectEvent {
        ProjectCreated {
            project_id: PROJECT,
            org_id: ORG,
            name: "Website".into(),
            key: "WEB".into(),
            workflow: Workflow::default_workflow(),
        }
        .into()
    }

    fn create(name: &str, key: &str) -> ProjectCommand {
        ProjectCommand::CreateProject {
            project_id: PROJECT,
            org_id: ORG,
            name: name.into(),
            key: key.into(),
        }
    }

    fn rename(name: &str) -> ProjectCommand {
        ProjectCommand::RenameProject { name: name.into() }
    }

    fn reserved(number: u64) -> ProjectEvent {
        TaskNumberReserved {
            task_id: Uuid::from_u128(0x70 + u128::from(number)),
            number,
        }
        .into()
    }

    #[test]
    fn creating_a_project_uses_the_default_workflow() {
        let project = given([]).when(create(" Website ", "WEB")).then([created()]);
        assert_eq!(project.next_task_number, 1);
        assert_eq!(project.workflow, Workflow::default_workflow());
    }

    #[test]
    fn creating_an_existing_project_is_rejected() {
        given([created()])
            .when(create("Website", "WEB"))
            .then_err(DomainError::AlreadyExists("project"));
    }

    #[test]
    fn creating_a_project_with_a_blank_name_is_rejected() {
        given([])
            .when(create("  ", "WEB"))
            .then_err(DomainError::validation("name", "must not be empty"));
    }

    #[test]
    fn creating_a_project_with_a_lowercase_key_is_rejected() {
        let error = Project::default()
            .decide(create("Website", "web"))
            .unwrap_err();
        assert!(matches!(error, DomainError::Validation(errors) if errors[0].field == "key"));
    }

    #[test]
    fn commands_on_a_missing_project_are_rejected() {
        given([])
            .when(ProjectCommand::ArchiveProject)
            .then_err(DomainError::NotFound("project"));
    }

    #[test]
    fn renaming_a_project_records_old_and_new_names() {
        given([created()])
            .when(rename(" Web site "))
            .then([ProjectRenamed {
                from: "Website".into(),
                to: "Web site".into(),
            }
            .into()]);
    }

    #[test]
    fn renaming_a_project_to_its_name_changes_nothing() {
        given([created()]).when(rename("Website")).then([]);
    }

    #[test]
    fn renaming_a_project_to_over_100_characters_is_rejected() {
        given([created()])
            .when(rename(&"x".repeat(101)))
            .then_err(DomainError::Validation(vec![FieldError::new(
                "name",
                "must be at most 100 characters",
            )]));
    }

    #[test]
    fn renaming_an_archived_project_is_rejected() {
        given([created(), ProjectArchived {}.into()])
            .when(rename("Other"))
            .then_err(DomainError::Archived("project"));
    }

    #[test]
    fn archiving_a_project() {
        let project = given([created()])
            .when(ProjectCommand::ArchiveProject)
            .then([ProjectArchived {}.into()]);
        assert!(project.archived);
    }

    #[test]
    fn archiving_an_archived_project_changes_nothing() {
        given([created(), ProjectArchived {}.into()])
            .when(ProjectCommand::ArchiveProject)
            .then([]);
    }

    #[test]
    fn unarchiving_an_archived_project() {
        let project = given([created(), ProjectArchived {}.into()])
            .when(ProjectCommand::UnarchiveProject)
            .then([ProjectUnarchived {}.into()]);
        assert!(!project.archived);
    }

    #[test]
    fn unarchiving_a_project_that_is_not_archived_changes_nothing() {
        given([created()])
            .when(ProjectCommand::UnarchiveProject)
            .then([]);
    }

    #[test]
    fn task_numbers_are_handed_out_in_sequence() {
        let project = given([created(), reserved(1), reserved(2)])
            .when(ProjectCommand::ReserveTaskNumber { task_id: TASK })
            .then([TaskNumberReserved {
                task_id: TASK,
                number: 3,
            }
            .into()]);
        assert_eq!(project.next_task_number, 4);
    }

    #[test]
    fn reserving_a_task_number_in_an_archived_project_is_rejected() {
        given([created(), ProjectArchived {}.into()])
            .when(ProjectCommand::ReserveTaskNumber { task_id: TASK })
            .then_err(DomainError::Archived("project"));
    }
}
