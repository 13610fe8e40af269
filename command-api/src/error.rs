//! One error enum for the HTTP layer, mapped once to `application/problem+json`
//! (RFC 9457) with a stable `code` per variant.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tasklog_domain::{DomainError, FieldError};
use tasklog_event_store::StoreError;

/// Where problem `type` URIs point.
pub const PROBLEM_BASE: &str = "https://tasklog.dev/problems/";

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
    /// 400: a header or path segment is unusable.
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
    /// 422: the body or the command breaks a rule; `errors` names the fields.
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 422: a business rule forbids the change (workflow, membership, archived, last owner).
    #[error("{detail}")]
    RuleViolated { code: &'static str, detail: String },
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
    /// 500: anything else; the body says nothing, the log says everything.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
}

impl ApiError {
    /// (status, stable code, title): the one table from error to HTTP.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::Unauthenticated(_) => (S::UNAUTHORIZED, "unauthenticated", "Unauthenticated"),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (S::NOT_FOUND, "not_found", "Not found"),
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            Self::BadRequest(_) => (S::BAD_REQUEST, "bad_request", "Bad request"),
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
            Self::PayloadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::Validation { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            Self::RuleViolated { code, .. } => (S::UNPROCESSABLE_ENTITY, code, "Rule violated"),
            Self::AlreadyExists(_) => (S::CONFLICT, "already_exists", "Already exists"),
            Self::Conflict(_) => (S::CONFLICT, "conflict", "Conflict"),
            Self::PreconditionFailed { .. } => (
                S::PRECONDITION_FAILED,
                "precondition_failed",
                "Precondition failed",
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            Self::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        let detail = match &self {
            Self::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let problem = Problem {
            type_: format!("{PROBLEM_BASE}{code}"),
            title,
            status: status.as_u16(),
            detail,
            code,
            errors: match &self {
                Self::Validation { errors, .. } => Some(errors),
                _ => None,
            },
            current_version: match &self {
                Self::PreconditionFailed { current } => Some(*current),
                _ => None,
            },
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            Self::Unavailable(_) | Self::Conflict(_) => {
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
        match e {
            DomainError::NotFound(what) => Self::NotFound(what.to_owned()),
            DomainError::AlreadyExists(what) => Self::AlreadyExists(what.to_owned()),
            DomainError::Validation(errors) => Self::Validation {
                detail: "the request is not valid".into(),
                errors,
            },
            DomainError::NotAMember(_) => Self::RuleViolated {
                code: "not_a_member",
                detail,
            },
            DomainError::TransitionNotAllowed { .. } => Self::RuleViolated {
                code: "transition_not_allowed",
                detail,
            },
            DomainError::Forbidden(reason) => Self::Forbidden(reason),
            DomainError::Archived(_) => Self::RuleViolated {
                code: "archived",
                detail,
            },
            DomainError::LastOwner => Self::RuleViolated {
                code: "last_owner",
                detail,
            },
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
        if tasklog_event_store_postgres::is_unavailable(&e) {
            tracing::warn!(error = ?e, "database unavailable");
            Self::Unavailable("the database is unavailable; retry shortly".into())
        } else {
            Self::Internal(e.into())
        }
    }
}
