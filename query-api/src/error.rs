//! The query API's errors: the command API's [`ApiError`] table, plus the one
//! answer only a reader gives (the projections are behind the client's token).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tasklog_command_api::error::{ApiError, PROBLEM_BASE};
use tasklog_domain::FieldError;
use tasklog_event_store::LogPosition;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Whatever the command API would answer (401, 403, 404, 422, 503, 500…).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// 503 `not_yet_consistent`: a projection this endpoint reads has not
    /// applied the `X-Consistency-Token` within the wait bound; retry.
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
}

impl QueryError {
    /// The stable code of this error, as in the problem body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Api(e) => e.parts().1,
            Self::NotYetConsistent { .. } => NOT_YET_CONSISTENT,
        }
    }
}

const NOT_YET_CONSISTENT: &str = "not_yet_consistent";

impl From<sqlx::Error> for QueryError {
    fn from(e: sqlx::Error) -> Self {
        Self::Api(e.into())
    }
}

#[derive(Serialize)]
struct Problem {
    #[serde(rename = "type")]
    type_: String,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'static str,
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::NotYetConsistent { .. } => {
                let status = StatusCode::SERVICE_UNAVAILABLE;
                let problem = Problem {
                    type_: format!("{PROBLEM_BASE}{NOT_YET_CONSISTENT}"),
                    title: "Not yet consistent",
                    status: status.as_u16(),
                    detail: self.to_string(),
                    code: NOT_YET_CONSISTENT,
                };
                let mut response = (status, axum::Json(problem)).into_response();
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        }
    }
}

/// A query-string problem: 422 naming the parameter.
pub fn bad_param(name: &str, message: impl Into<String>) -> QueryError {
    let message = message.into();
    QueryError::Api(ApiError::Validation {
        detail: format!("query parameter `{name}`: {message}"),
        errors: vec![FieldError {
            field: name.to_owned(),
            message,
        }],
    })
}
