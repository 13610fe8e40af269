//! The organization's log (filtered, keyset-paginated by position) and one
//! stream's history (by version).

use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use tasklog_event_store::LogPosition;
use tasklog_event_store_postgres::org_log::{read_org_log, read_org_stream, LogFilter};
use tasklog_http::query::{bad_param, blank_is_absent, Limit, PageParams, ParamTime, ParamUuid};
use tasklog_http::{cursor, Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use super::no_stream;
use crate::openapi::read;
use crate::params::{EventType, Kind, StreamId};
use crate::views::{LoggedEvent, Page};
use crate::AuditState;

pub fn routes(api: &mut Api<AuditState>) {
    read::<Page<LoggedEvent>>(
        "/v1/orgs/{org}/audit/events",
        "listAuditEvents",
        "The organization's events, in log order.",
        "Every event of the organization with its whole envelope and hashes, oldest first, \
         filtered by stream, kind, event type, actor and time of occurrence, \
         keyset-paginated by log position: following `next_cursor` until a page is empty \
         yields every matching event once, appends made meanwhile included; the last cursor \
         asked again later yields what was appended since.",
    )
    .query::<LogParams>()
    .mount(api, list);
    read::<Page<LoggedEvent>>(
        "/v1/orgs/{org}/audit/streams/{stream}",
        "getAuditStream",
        "One stream's whole history.",
        "A stream's events (an aggregate's: `task-<task>`, `project-<project>`, `org-<org>` …), \
         by version, with their envelopes and hashes.",
    )
    .query::<PageParams>()
    .mount(api, history);
}

/// The filters of the organization's log.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LogParams {
    /// Only this stream, `<kind>-<uuid>`.
    #[serde(default)]
    #[schemars(with = "StreamId")]
    stream: Option<StreamId>,
    /// Only streams of these kinds (comma-separated or repeated).
    #[serde(default)]
    #[schemars(example = &"task")]
    kind: Vec<Kind>,
    /// Only these event types (comma-separated or repeated).
    #[serde(default, rename = "type")]
    #[schemars(example = &"TaskStatusChanged")]
    event_type: Vec<EventType>,
    /// Only events of this actor (a user id).
    #[serde(default)]
    #[schemars(with = "ParamUuid", example = &"0190a0a0-0000-7000-8000-000000000000")]
    actor: Option<ParamUuid>,
    /// Only events that occurred at or after this time (RFC 3339).
    #[serde(default)]
    #[schemars(with = "ParamTime", example = &"2026-11-01T00:00:00Z")]
    from: Option<ParamTime>,
    /// Only events that occurred before this time (RFC 3339); not before `from`.
    #[serde(default)]
    #[schemars(with = "ParamTime", example = &"2026-12-01T00:00:00Z")]
    to: Option<ParamTime>,
    /// Events per page.
    #[serde(default)]
    #[schemars(example = &"50")]
    limit: Limit,
    /// The `next_cursor` of the previous page; opaque.
    #[serde(default, deserialize_with = "blank_is_absent")]
    #[schemars(with = "String")]
    cursor: Option<String>,
}

/// The largest number a cursor may carry: PostgreSQL's `bigint`.
const MAX_KEY: u64 = i64::MAX as u64;

fn bad_cursor() -> ApiError {
    bad_param("cursor", "not a cursor this endpoint returned")
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn list(
    State(state): State<AuditState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    uri: Uri,
    params: Result<Query<LogParams>, ApiError>,
) -> Result<Json<Page<LoggedEvent>>, ApiError> {
    let reader = state.admit(&caller, org, &uri).await?;
    let Query(params) = params?;
    let after = match params.cursor.as_deref() {
        Some(c) => {
            let (commit, event): (u64, u64) = cursor::decode(c)?;
            if commit > MAX_KEY || event > MAX_KEY {
                return Err(bad_cursor());
            }
            LogPosition { commit, event }
        }
        None => LogPosition::START,
    };
    if let (Some(from), Some(to)) = (params.from, params.to) {
        if to.0 < from.0 {
            return Err(bad_param("to", "must not be before `from`"));
        }
    }
    let filter = LogFilter {
        stream: params.stream.map(|s| s.0),
        categories: params.kind.iter().map(|k| k.0.to_owned()).collect(),
        event_types: params.event_type.iter().map(|t| t.0.to_owned()).collect(),
        actor: params.actor.map(|a| a.0),
        from: params.from.map(|t| t.0),
        to: params.to.map(|t| t.0),
    };
    let events = read_org_log(&state.pool, org, &filter, after, params.limit.0 as usize).await?;
    let next_cursor = events
        .last()
        .map(|e| cursor::encode(&(e.position.commit, e.position.event)));
    reader
        .record(&state, "listAuditEvents", filter.stream.as_deref())
        .await?;
    Ok(Json(Page {
        items: events.into_iter().map(LoggedEvent::from).collect(),
        next_cursor,
    }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn history(
    State(state): State<AuditState>,
    caller: Caller,
    AppPath((org, stream)): AppPath<(Uuid, String)>,
    uri: Uri,
    params: Result<Query<PageParams>, ApiError>,
) -> Result<Json<Page<LoggedEvent>>, ApiError> {
    let reader = state.admit(&caller, org, &uri).await?;
    let stream = StreamId::parse(&stream).ok_or_else(no_stream)?;
    let Query(params) = params?;
    let after: u64 = match params.cursor.as_deref() {
        Some(c) => Some(cursor::decode::<u64>(c)?)
            .filter(|v| *v <= MAX_KEY)
            .ok_or_else(bad_cursor)?,
        None => 0,
    };
    let events =
        read_org_stream(&state.pool, org, &stream.0, after, params.limit.0 as usize).await?;
    // No rows: a missing stream, another organization's, or a cursor past
    // the end of one of ours; only the last is answered.
    if events.is_empty()
        && (after == 0
            || read_org_stream(&state.pool, org, &stream.0, 0, 1)
                .await?
                .is_empty())
    {
        return Err(no_stream());
    }
    let next_cursor = events.last().map(|e| cursor::encode(&e.stream_version));
    reader
        .record(&state, "getAuditStream", Some(&stream.0))
        .await?;
    Ok(Json(Page {
        items: events.into_iter().map(LoggedEvent::from).collect(),
        next_cursor,
    }))
}
