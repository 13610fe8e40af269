//! The routes, each mounted with its documentation.

mod export;
mod log;
mod seals;
mod time_travel;

use tasklog_http::Api;

use crate::AuditState;

pub fn routes(api: &mut Api<AuditState>) {
    log::routes(api);
    time_travel::routes(api);
    export::routes(api);
    seals::routes(api);
}

/// 404 for a stream that is not the organization's (or not a stream at all).
fn no_stream() -> tasklog_http::ApiError {
    tasklog_http::ApiError::NotFound("stream".into())
}
