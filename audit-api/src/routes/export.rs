//! The organization's history as NDJSON, the format `tasklog audit export`
//! writes, streamed from one snapshot a page at a time.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use tasklog_event_store::StoreError;
use tasklog_event_store_postgres::export::{export_lines, EXPORT_PAGE};
use tasklog_http::query::NoParams;
use tasklog_http::{Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use crate::openapi::read;
use crate::AuditState;

pub fn routes(api: &mut Api<AuditState>) {
    read::<()>(
        "/v1/orgs/{org}/audit/export",
        "exportAuditLog",
        "The organization's history as NDJSON (`tasklog-export-v1`).",
        "Exactly what `tasklog audit export --org` writes (see docs/audit.md): a header, every \
         event of the organization grouped by stream with its envelope and hashes, and a \
         trailer with the counts; `tasklog audit verify --file` checks it offline. One \
         snapshot of the log, streamed a page at a time. A failure once the answer has begun \
         cuts it short, so the file has no trailer and the verifier names it truncated.",
    )
    .ndjson()
    .mount(api, export);
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn export(
    State(state): State<AuditState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    uri: Uri,
    params: Result<Query<NoParams>, ApiError>,
) -> Result<Response, ApiError> {
    let reader = state.admit(&caller, org, &uri).await?;
    params?;
    reader.record(&state, "exportAuditLog", None).await?;
    let lines = export_lines(state.pool.clone(), org, EXPORT_PAGE)
        .and_then(|line| async move {
            let mut bytes = serde_json::to_vec(&line)
                .map_err(|e| StoreError::Corrupt(format!("an export line: {e}")))?;
            bytes.push(b'\n');
            Ok(Bytes::from(bytes))
        })
        .inspect_err(|e| tracing::error!(error = ?e, "the export stopped"));
    let headers = [
        (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"tasklog-export-{org}.ndjson\""),
        ),
    ];
    Ok((headers, Body::from_stream(lines)).into_response())
}
