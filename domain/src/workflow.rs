use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kind of a status, shared by every workflow so reports can compare projects.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum StatusCategory {
    /// Not yet planned.
    #[default]
    Backlog,
    /// Planned, not started.
    Unstarted,
    /// Being worked on.
    Started,
    /// Finished.
    Completed,
    /// Given up.
    Cancelled,
}

impl StatusCategory {
    /// Whether a task in this category is still open (neither completed nor cancelled).
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Completed | Self::Cancelled)
    }
}

/// One status of a workflow.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct StatusDef {
    /// The status name, e.g. `in_progress`.
    pub name: String,
    /// Its category.
    pub category: StatusCategory,
}

/// A project's task statuses and the allowed changes between them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct Workflow {
    /// Every status.
    pub statuses: Vec<StatusDef>,
    /// Allowed `(from, to)` status changes.
    pub transitions: Vec<(String, String)>,
    /// The status of a new task.
    pub initial: String,
}

impl Default for Workflow {
    fn default() -> Self {
        Self::default_workflow()
    }
}

impl Workflow {
    /// backlog → todo → in_progress ⇄ in_review → done; open statuses → cancelled;
    /// done and cancelled reopen to todo.
    pub fn default_workflow() -> Self {
        use StatusCategory::*;
        let statuses = [
            ("backlog", Backlog),
            ("todo", Unstarted),
            ("in_progress", Started),
            ("in_review", Started),
            ("done", Completed),
            ("cancelled", Cancelled),
        ]
        .into_iter()
        .map(|(name, category)| StatusDef {
            name: name.to_owned(),
            category,
        })
        .collect();
        let transitions = [
            ("backlog", "todo"),
            ("todo", "in_progress"),
            ("in_progress", "in_review"),
            ("in_review", "done"),
            ("in_review", "in_progress"),
            ("backlog", "cancelled"),
            ("todo", "cancelled"),
            ("in_progress", "cancelled"),
            ("in_review", "cancelled"),
            ("done", "todo"),
            ("cancelled", "todo"),
        ]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), to.to_owned()))
        .collect();
        Self {
            statuses,
            transitions,
            initial: "backlog".to_owned(),
        }
    }

    /// The category of `status`, or `None` if the workflow has no such status.
    pub fn category_of(&self, status: &str) -> Option<StatusCategory> {
        self.statuses
            .iter()
            .find(|def| def.name == status)
            .map(|def| def.category)
    }

    /// Whether a task may move from `from` to `to`.
    pub fn allows(&self, from: &str, to: &str) -> bool {
        self.transitions.iter().any(|(f, t)| f == from && t == to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 6] = [
        "backlog",
        "todo",
        "in_progress",
        "in_review",
        "done",
        "cancelled",
    ];

    #[test]
    fn the_default_workflow_allows_exactly_its_transitions() {
        let workflow = Workflow::default_workflow();
        let allowed = [
            ("backlog", "todo"),
            ("todo", "in_progress"),
            ("in_progress", "in_review"),
            ("in_review", "done"),
            ("in_review", "in_progress"),
            ("backlog", "cancelled"),
            ("todo", "cancelled"),
            ("in_progress", "cancelled"),
            ("in_review", "cancelled"),
            ("done", "todo"),
            ("cancelled", "todo"),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    workflow.allows(from, to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn the_default_workflow_starts_in_backlog() {
        let workflow = Workflow::default_workflow();
        assert_eq!(workflow.initial, "backlog");
        assert_eq!(
            workflow.category_of("backlog"),
            Some(StatusCategory::Backlog)
        );
    }

    #[test]
    fn statuses_have_their_categories() {
        let workflow = Workflow::default_workflow();
        let categories: Vec<_> = ALL.iter().map(|s| workflow.category_of(s)).collect();
        use StatusCategory::*;
        assert_eq!(
            categories,
            [
                Some(Backlog),
                Some(Unstarted),
                Some(Started),
                Some(Started),
                Some(Completed),
                Some(Cancelled)
            ]
        );
        assert_eq!(workflow.category_of("blocked"), None);
    }

    #[test]
    fn categories_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_value(StatusCategory::Unstarted).unwrap(),
            "unstarted"
        );
    }
}
