//! One error enum for the HTTP layer of both APIs, mapped once to
//! `application/problem+json` (RFC 9457) through one closed table of codes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use tasklog_domain::{DomainError, FieldError};
use tasklog_event_store::{LogPosition, StoreError};

/// Where problem `type` URIs point.
pub const PROBLEM_BASE: &str = "https://tasklog.dev/problems/";

/// Every code either API answers with: the one table from code to status,
/// title and type URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    MalformedJson,
    BadRequest,
    MethodNotAllowed,
    UnsupportedMediaType,
    PayloadTooLarge,
    ValidationFailed,
    NotAMember,
    TransitionNotAllowed,
    Archived,
    LastOwner,
    AlreadyExists,
    Conflict,
    PreconditionFailed,
    IdempotencyKeyReused,
    Unavailable,
    NotYetConsistent,
    AnalyticsUnavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, in the order the documents list them.
    pub const ALL: [Self; 21] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::MalformedJson,
        Self::BadRequest,
        Self::MethodNotAllowed,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::ValidationFailed,
        Self::NotAMember,
        Self::TransitionNotAllowed,
        Self::Archived,
        Self::LastOwner,
        Self::AlreadyExists,
        Self::Conflict,
        Self::PreconditionFailed,
        Self::IdempotencyKeyReused,
        Self::Unavailable,
        Self::NotYetConsistent,
        Self::AnalyticsUnavailable,
        Self::Internal,
    ];

    /// (status, stable code, title).
    fn row(self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Unauthenticated => (S::UNAUTHORIZED, "unauthenticated", "Unauthenticated"),
            Self::Forbidden => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound => (S::NOT_FOUND, "not_found", "Not found"),
            Self::MalformedJson => (S::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            Self::BadRequest => (S::BAD_REQUEST, "bad_request", "Bad request"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            Self::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::ValidationFailed => (
                S::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            Self::NotAMember => (S::UNPROCESSABLE_ENTITY, "not_a_member", "Rule violated"),
            Self::TransitionNotAllowed => (
                S::UNPROCESSABLE_ENTITY,
                "transition_not_allowed",
                "Rule violated",
            ),
            Self::Archived => (S::UNPROCESSABLE_ENTITY, "archived", "Rule violated"),
            Self::LastOwner => (S::UNPROCESSABLE_ENTITY, "last_owner", "Rule violated"),
            Self::AlreadyExists => (S::CONFLICT, "already_exists", "Already exists"),
            Self::Conflict => (S::CONFLICT, "conflict", "Conflict"),
            Self::PreconditionFailed => (
                S::PRECONDITION_FAILED,
                "precondition_failed",
                "Precondition failed",
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            Self::Unavailable => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::NotYetConsistent => (
                S::SERVICE_UNAVAILABLE,
                "not_yet_consistent",
                "Not yet consistent",
            ),
            Self::AnalyticsUnavailable => (
                S::SERVICE_UNAVAILABLE,
                "analytics_unavailable",
                "Analytics unavailable",
            ),
            Self::Internal => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    pub fn status(self) -> StatusCode {
        self.row().0
    }

    /// The stable, machine-readable code (`validation_failed`).
    pub fn as_str(self) -> &'static str {
        self.row().1
    }

    /// Short and fixed per code.
    pub fn title(self) -> &'static str {
        self.row().2
    }

    /// The problem's `type`: [`PROBLEM_BASE`] followed by the code.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no token, or a token that does not verify.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: not a member of the organization, or the role is too low.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown resource, or one in another organization.
    #[error("{0} not found")]
    NotFound(String),
    /// 400: the body is not JSON at all.
    #[error("{0}")]
    MalformedJson(String),
    /// 400: a header, path segment or query parameter name is unusable.
    #[error("{0}")]
    BadRequest(String),
    /// 405: the route exists, but not with this method.
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    /// 415: the body is not `application/json`.
    #[error("expected a body of type application/json")]
    UnsupportedMediaType,
    /// 413: the body is over the limit.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 422: the body, the query string or the command breaks a rule; `errors` names the fields.
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 422: a business rule forbids the change (workflow, membership, archived, last owner).
    #[error("{detail}")]
    RuleViolated { code: ErrorCode, detail: String },
    /// 409: the thing to create exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// 409: concurrent writers kept winning; retrying is safe.
    #[error("{0}")]
    Conflict(String),
    /// 412: `If-Match` names a version the aggregate is no longer at.
    #[error("the resource is at version {current}, not the version in If-Match")]
    PreconditionFailed { current: u64 },
    /// 422: an `Idempotency-Key` reused for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// 503: a dependency is down; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// 503: a projection a read needs has not applied the client's
    /// `X-Consistency-Token` within the wait bound; retry.
    #[error(
        "the read models have not caught up with consistency token {token} yet \
         (behind: {}); retry shortly",
        behind.join(", ")
    )]
    NotYetConsistent {
        token: LogPosition,
        /// The projections that had not applied it.
        behind: Vec<String>,
    },
    /// 503: the analytics store (ClickHouse) that reports are read from is
    /// down, failing or not configured; every other read is unaffected. Retry.
    #[error("{0}")]
    AnalyticsUnavailable(String),
    /// 500: anything else; the body says nothing, the log says everything.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// An RFC 9457 problem: every error is answered with one, as
/// `application/problem+json`. Branch on `code`, which is stable.
#[derive(Serialize, JsonSchema)]
pub struct Problem<'a> {
    /// A URI naming the problem: the base followed by `code`.
    #[serde(rename = "type")]
    #[schemars(url, extend("examples" = ["https://tasklog.dev/problems/validation_failed"]))]
    type_: String,
    /// Short and fixed per code.
    title: &'static str,
    /// The HTTP status.
    #[schemars(range(min = 400, max = 599))]
    status: u16,
    /// What went wrong this time, for people.
    detail: String,
    /// The stable, machine-readable code.
    code: ErrorCode,
    /// `validation_failed` only: the fields that were rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    /// `precondition_failed` only: the version the resource is at now.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The closed table: a code not in it is never sent.
impl JsonSchema for ErrorCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let codes: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
        schemars::json_schema!({
            "description": "The stable, machine-readable code of a problem.",
            "type": "string",
            "enum": codes,
        })
    }
}

impl ApiError {
    /// This error's row of the table.
    pub fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            Self::Unauthenticated(_) => C::Unauthenticated,
            Self::Forbidden(_) => C::Forbidden,
            Self::NotFound(_) => C::NotFound,
            Self::MalformedJson(_) => C::MalformedJson,
            Self::BadRequest(_) => C::BadRequest,
            Self::MethodNotAllowed => C::MethodNotAllowed,
            Self::UnsupportedMediaType => C::UnsupportedMediaType,
            Self::PayloadTooLarge(_) => C::PayloadTooLarge,
            Self::Validation { .. } => C::ValidationFailed,
            Self::RuleViolated { code, .. } => *code,
            Self::AlreadyExists(_) => C::AlreadyExists,
            Self::Conflict(_) => C::Conflict,
            Self::PreconditionFailed { .. } => C::PreconditionFailed,
            Self::IdempotencyKeyReused => C::IdempotencyKeyReused,
            Self::Unavailable(_) => C::Unavailable,
            Self::NotYetConsistent { .. } => C::NotYetConsistent,
            Self::AnalyticsUnavailable(_) => C::AnalyticsUnavailable,
            Self::Internal(_) => C::Internal,
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            detail: "the request is not valid".into(),
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        }
    }
}

impl ApiError {
    /// This error's problem body; an internal error's detail says nothing.
    fn problem(&self) -> Problem<'_> {
        let code = self.code();
        Problem {
            type_: code.type_uri(),
            title: code.title(),
            status: code.status().as_u16(),
            detail: match self {
                Self::Internal(_) => "an internal error occurred; it has been logged".to_owned(),
                other => other.to_string(),
            },
            code,
            errors: match self {
                Self::Validation { errors, .. } => Some(errors),
                _ => None,
            },
            current_version: match self {
                Self::PreconditionFailed { current } => Some(*current),
                _ => None,
            },
        }
    }

    /// The problem body as JSON, for answers written outside the router (a
    /// connection refused because every connection is busy).
    pub fn problem_json(&self) -> String {
        serde_json::to_string(&self.problem()).expect("a problem serializes")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if let Self::Internal(e) = &self {
            tracing::error!(error = ?e, "request failed");
        }
        let mut response = (code.status(), axum::Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Self::Unavailable(_)
            | Self::Conflict(_)
            | Self::NotYetConsistent { .. }
            | Self::AnalyticsUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::PreconditionFailed { current } => {
                if let Ok(v) = HeaderValue::from_str(&format!("\"{current}\"")) {
                    headers.insert(header::ETAG, v);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let detail = e.to_string();
        let rule = |code| Self::RuleViolated {
            code,
            detail: detail.clone(),
        };
        match e {
            DomainError::NotFound(what) => Self::NotFound(what.to_owned()),
            DomainError::AlreadyExists(what) => Self::AlreadyExists(what.to_owned()),
            DomainError::Validation(errors) => Self::Validation {
                detail: "the request is not valid".into(),
                errors,
            },
            DomainError::NotAMember(_) => rule(ErrorCode::NotAMember),
            DomainError::TransitionNotAllowed { .. } => rule(ErrorCode::TransitionNotAllowed),
            DomainError::Forbidden(reason) => Self::Forbidden(reason),
            DomainError::Archived(_) => rule(ErrorCode::Archived),
            DomainError::LastOwner => rule(ErrorCode::LastOwner),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                Self::Conflict("the resource was changed by another request; retry".into())
            }
            StoreError::DuplicateEventId(id) => Self::Internal(anyhow::anyhow!(
                "event id {id} collides with a stored event"
            )),
            StoreError::Unavailable(source) => {
                tracing::warn!(error = ?source, "database unavailable");
                Self::Unavailable("the database is unavailable; retry shortly".into())
            }
            StoreError::Backend(source) => Self::Internal(anyhow::anyhow!(source)),
            other => Self::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// An unreachable database is worth a retry (503); anything else is a bug.
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            tracing::warn!(error = ?e, "database unavailable");
            Self::Unavailable("the database is unavailable; retry shortly".into())
        } else {
            Self::Internal(e.into())
        }
    }
}

/// A read-model database out of reach: the connection, not the query,
/// failed (the store's backend classifies its own errors the same way).
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_a_4xx_or_5xx_with_a_title_and_its_own_name() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert!(!code.title().is_empty());
            assert!(code.type_uri().ends_with(code.as_str()));
        }
    }
}
