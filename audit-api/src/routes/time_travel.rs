//! A stream's aggregate as of a point, and what changed between two points.

use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use tasklog_event_store::RecordedEvent;
use tasklog_event_store_postgres::org_log::read_org_stream;
use tasklog_http::query::bad_param;
use tasklog_http::{Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use super::no_stream;
use crate::openapi::read;
use crate::params::{required, Point, StreamId};
use crate::time_travel::{changed_fields, states, version_at};
use crate::views::{AsOf, Bound, Change, Diff};
use crate::AuditState;

pub fn routes(api: &mut Api<AuditState>) {
    read::<AsOf>(
        "/v1/orgs/{org}/audit/streams/{stream}/as-of",
        "getAuditStateAsOf",
        "An aggregate's state as of a time or a log position.",
        "Rebuilt by replaying the stream's events up to `at` through the domain's own \
         `evolve` (never read from a read model): a task (`task-<task>`), a project \
         (`project-<project>`), the organization and its membership (`org-<org>`), the tag \
         catalog (`tags-<org>`). A time takes the events that occurred at or before it, a \
         position those at or before it in the log.",
    )
    .query::<AsOfParams>()
    .mount(api, as_of);
    read::<Diff>(
        "/v1/orgs/{org}/audit/streams/{stream}/diff",
        "getAuditStateDiff",
        "What changed in an aggregate between two points.",
        "Every event after `from` up to `to`, with its actor and the fields of the state it \
         changed (before and after), the states rebuilt as `as-of` rebuilds them.",
    )
    .query::<DiffParams>()
    .mount(api, diff);
}

/// The point of `as-of`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AsOfParams {
    /// The point: an RFC 3339 time or a log position `<commit>.<event>`. Required.
    // Absent is None (serde), answered with our own 422 naming it.
    #[schemars(required)]
    #[schemars(with = "Point", example = &"2026-11-30T12:00:00Z")]
    at: Option<Point>,
}

/// The two points of `diff`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct DiffParams {
    /// The earlier point: an RFC 3339 time or a log position `<commit>.<event>`. Required.
    // Absent is None (serde), answered with our own 422 naming it.
    #[schemars(required)]
    #[schemars(with = "Point", example = &"2026-11-30T12:00:00Z")]
    from: Option<Point>,
    /// The later point, in the same forms, not before `from`. Required.
    // Absent is None (serde), answered with our own 422 naming it.
    #[schemars(required)]
    #[schemars(with = "Point", example = &"2026-11-30T13:00:00Z")]
    to: Option<Point>,
}

/// The whole stream as `org` holds it; 404 when it holds none of it.
async fn history(
    state: &AuditState,
    org: Uuid,
    stream: &StreamId,
) -> Result<Vec<RecordedEvent>, ApiError> {
    let events = read_org_stream(&state.pool, org, &stream.0, 0, i64::MAX as usize).await?;
    if events.is_empty() {
        return Err(no_stream());
    }
    Ok(events)
}

fn position_of(events: &[RecordedEvent], version: usize) -> Option<String> {
    version
        .checked_sub(1)
        .map(|i| events[i].position.to_string())
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn as_of(
    State(state): State<AuditState>,
    caller: Caller,
    AppPath((org, stream)): AppPath<(Uuid, String)>,
    uri: Uri,
    params: Result<Query<AsOfParams>, ApiError>,
) -> Result<Json<AsOf>, ApiError> {
    let reader = state.admit(&caller, org, &uri).await?;
    let stream = StreamId::parse(&stream).ok_or_else(no_stream)?;
    let Query(params) = params?;
    let at = required("at", params.at)?;
    let events = history(&state, org, &stream).await?;
    let version = version_at(&events, at);
    let rebuilt = match version {
        0 => None,
        v => states(stream.kind(), &events, v, v)?.pop(),
    };
    reader
        .record(&state, "getAuditStateAsOf", Some(&stream.0))
        .await?;
    Ok(Json(AsOf {
        position: position_of(&events, version),
        stream: stream.0,
        at: at.to_string(),
        version: version as u64,
        state: rebuilt,
    }))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn diff(
    State(state): State<AuditState>,
    caller: Caller,
    AppPath((org, stream)): AppPath<(Uuid, String)>,
    uri: Uri,
    params: Result<Query<DiffParams>, ApiError>,
) -> Result<Json<Diff>, ApiError> {
    let reader = state.admit(&caller, org, &uri).await?;
    let stream = StreamId::parse(&stream).ok_or_else(no_stream)?;
    let Query(params) = params?;
    let from = required("from", params.from)?;
    let to = required("to", params.to)?;
    let events = history(&state, org, &stream).await?;
    let (a, b) = (version_at(&events, from), version_at(&events, to));
    if b < a {
        return Err(bad_param("to", "is before `from` in this stream's history"));
    }
    let rebuilt = states(stream.kind(), &events, a, b)?;
    let changes = events[a..b]
        .iter()
        .zip(rebuilt.windows(2))
        .map(|(e, pair)| Change {
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            stream_version: e.stream_version,
            position: e.position.to_string(),
            actor_id: e.metadata.actor_id,
            occurred_at: e.metadata.occurred_at,
            fields: changed_fields(&pair[0], &pair[1]),
        })
        .collect();
    reader
        .record(&state, "getAuditStateDiff", Some(&stream.0))
        .await?;
    Ok(Json(Diff {
        from: Bound {
            at: from.to_string(),
            version: a as u64,
            position: position_of(&events, a),
        },
        to: Bound {
            at: to.to_string(),
            version: b as u64,
            position: position_of(&events, b),
        },
        stream: stream.0,
        changes,
    }))
}
