use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::UserId;

/// A business-rule violation. There are no technical errors here: the domain does no I/O.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The addressed thing does not exist (HTTP 404). Holds what: "task", "project", "member", ...
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The thing to create exists already, or a unique value is taken (HTTP 409).
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// One or more fields are invalid (HTTP 422).
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    /// The user is not a member of the organization (HTTP 422).
    #[error("user {0} is not a member of this organization")]
    NotAMember(UserId),
    /// The project's workflow does not allow this status change (HTTP 422).
    #[error("status change from {from} to {to} is not allowed by the workflow")]
    TransitionNotAllowed { from: String, to: String },
    /// A business-rule permission is missing: only the author edits a comment, ... (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The thing is archived and can no longer change (HTTP 422).
    #[error("{0} is archived")]
    Archived(&'static str),
    /// Demoting or removing the last owner would leave the organization without one (HTTP 422).
    #[error("an organization must keep at least one owner")]
    LastOwner,
}

impl DomainError {
    /// A `Validation` error about one field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

/// Why one input field was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// The field's name as it appears in the request (a body path or a
    /// query parameter); empty for the body as a whole.
    pub field: String,
    /// A human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Collects every field error of a command before failing, so callers see all of them at once.
#[derive(Debug, Default)]
pub(crate) struct Checks(Vec<FieldError>);

impl Checks {
    /// Records `message` against `field` unless `ok`.
    pub(crate) fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.0.push(FieldError::new(field, message));
        }
    }

    /// Checks a text as sent: at least `min` characters once trimmed, at
    /// most `max` as sent (what the published schemas' `maxLength` says).
    pub(crate) fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let trimmed = value.trim().chars().count();
        let len = value.chars().count();
        if trimmed < min {
            if min == 1 {
                self.check(false, field, "must not be empty");
            } else {
                self.check(false, field, format!("must be at least {min} characters"));
            }
        } else if len > max {
            self.check(false, field, format!("must be at most {max} characters"));
        }
    }

    /// `Ok` when nothing was recorded, else a `Validation` error with every field error.
    pub(crate) fn finish(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(self.0))
        }
    }
}
