//! What a successful command answers: its body and `ETag`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use tasklog_domain::Aggregate;
use uuid::Uuid;

use super::Executed;

/// The answer to every successful command.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CommandAccepted {
    /// The id of the resource created or changed.
    pub id: Uuid,
    /// The aggregate's version after the command; send it back in `If-Match`.
    pub version: u64,
    /// Pass as `X-Consistency-Token` to read your own write from the query API.
    pub consistency_token: Option<String>,
}

/// A command's HTTP response: status, body, `ETag`.
pub struct Accepted {
    pub status: StatusCode,
    pub body: CommandAccepted,
}

impl Accepted {
    pub fn new<A: Aggregate>(status: StatusCode, id: Uuid, done: &Executed<A>) -> Self {
        Self {
            status,
            body: CommandAccepted {
                id,
                version: done.version,
                consistency_token: done.position.map(|p| p.to_string()),
            },
        }
    }
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let etag = HeaderValue::from_str(&format!("\"{}\"", self.body.version));
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Ok(etag) = etag {
            response.headers_mut().insert(header::ETAG, etag);
        }
        response
    }
}
