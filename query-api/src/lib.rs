//! The query API: JSON reads under `/v1/orgs/{org}/…`, served from the
//! projections' read models (the views in schema `read`) and nothing else.
//!
//! Every route authenticates the caller and requires membership of the
//! organization (any role); objects of another organization are answered
//! exactly like missing ones. A request carrying `X-Consistency-Token` waits
//! until the projections it reads have applied that position.

pub mod consistency;
pub mod cursor;
pub mod error;
pub mod openapi;
pub mod params;
mod routes;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use tasklog_command_api::auth::{Authenticator, Caller, HasAuthenticator};
use tasklog_command_api::error::ApiError;
use tasklog_domain::{decode_event, replay, stream_name, OrgEvent, Organization};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

pub use consistency::{Consistency, Projection};
pub use error::QueryError;

/// How long a request waits for its consistency token by default.
pub const DEFAULT_CONSISTENCY_WAIT: Duration = Duration::from_secs(2);

/// Shared state of the query API.
#[derive(Clone)]
pub struct QueryState {
    pub pool: PgPool,
    pub auth: Arc<Authenticator>,
    /// How long a request waits for the projections to apply its
    /// `X-Consistency-Token` before answering 503 `not_yet_consistent`.
    pub consistency_wait: Duration,
    /// How often a waiting request reads the checkpoints again when no
    /// announcement woke it (one lost while the listener reconnected).
    pub consistency_poll: Duration,
    /// Wakes requests waiting for a consistency token.
    pub checkpoint_moves: consistency::CheckpointMoves,
}

impl HasAuthenticator for QueryState {
    fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

impl QueryState {
    /// A state with the default consistency wait.
    pub fn new(pool: PgPool, auth: Arc<Authenticator>) -> Self {
        Self {
            pool,
            auth,
            consistency_wait: DEFAULT_CONSISTENCY_WAIT,
            consistency_poll: consistency::DEFAULT_POLL_EVERY,
            checkpoint_moves: Default::default(),
        }
    }

    /// Lets the caller read organization `org`: requires membership, then
    /// waits for the consistency token on `reads` (and `directory`, where
    /// membership lives). A non-member gets the same 403 whether or not the
    /// organization exists, at once: who may read is decided before any wait.
    ///
    /// Objects are looked up (and another organization's answered like a
    /// missing one) only after the wait, so that neither the answer nor how
    /// long it takes tells a foreign id from a missing one.
    pub async fn admit(
        &self,
        caller: &Caller,
        org: Uuid,
        consistency: Consistency,
        reads: &[Projection],
    ) -> Result<(), QueryError> {
        let forbidden = || {
            QueryError::from(ApiError::Forbidden(
                "you are not a member of this organization".into(),
            ))
        };
        let Some(token) = consistency.0 else {
            return match self.is_member(caller, org).await? {
                Some(true) => Ok(()),
                Some(false) => Err(forbidden()),
                None => Err(not_built().into()),
            };
        };
        // Read-your-writes covers a membership just granted, which the
        // directory may not show yet: ask the organization's own events,
        // which are never behind, before waiting on the read model's behalf.
        let shown = self.is_member(caller, org).await? == Some(true);
        if !shown && !self.is_member_in_log(caller, org).await? {
            return Err(forbidden());
        }
        let mut needed = vec![Projection::Directory];
        needed.extend(reads.iter().filter(|p| **p != Projection::Directory));
        consistency::wait_until_applied(
            &self.pool,
            &self.checkpoint_moves,
            token,
            &needed,
            self.consistency_wait,
            self.consistency_poll,
        )
        .await?;
        // The read model now as of the token: it decides, as without one.
        if shown || self.is_member(caller, org).await? == Some(true) {
            Ok(())
        } else {
            Err(forbidden())
        }
    }

    /// Membership as the `directory` read model shows it; `None` before the
    /// projectors first made it (a fresh deployment: the view is not there).
    async fn is_member(&self, caller: &Caller, org: Uuid) -> Result<Option<bool>, QueryError> {
        let shown = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM read.members WHERE org_id = $1 AND user_id = $2)",
        )
        .bind(org)
        .bind(caller.user_id)
        .fetch_one(&self.pool)
        .await;
        match shown {
            Ok(shown) => Ok(Some(shown)),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_TABLE) => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Membership as the organization's stream has it now.
    async fn is_member_in_log(&self, caller: &Caller, org: Uuid) -> Result<bool, QueryError> {
        let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
            "SELECT event_type, payload FROM events WHERE stream_id = $1 ORDER BY stream_version",
        )
        .bind(stream_name::<Organization>(org))
        .fetch_all(&self.pool)
        .await?;
        let events = rows
            .into_iter()
            .map(|(event_type, payload)| decode_event::<OrgEvent>(&event_type, payload))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::Internal(e.into()))?;
        Ok(replay::<Organization>(events)
            .role_of(caller.user_id)
            .is_some())
    }
}

/// SQLSTATE of a relation that does not exist.
const UNDEFINED_TABLE: &str = "42P01";

/// 503 before the projectors have made the read models at all.
fn not_built() -> ApiError {
    ApiError::Unavailable("the read models are not built yet; retry shortly".into())
}

/// The whole query API.
pub fn router(state: QueryState) -> Router {
    Router::new()
        .merge(routes::projects::router())
        .merge(routes::tasks::router())
        .merge(routes::directory::router())
        .merge(routes::notifications::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(tasklog_command_api::openapi::docs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Liveness: the process answers.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers; the body shows where each projection is.
async fn readyz(State(state): State<QueryState>) -> Response {
    let check = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT p.name, COALESCE(c.commit_id, 0), COALESCE(c.event_position, 0)
           FROM projections p
           LEFT JOIN projection_checkpoints c
             ON c.projection = p.name AND c.generation = p.active_generation
          ORDER BY p.name",
    )
    .fetch_all(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(rows)) => {
            let projections: serde_json::Map<String, serde_json::Value> = rows
                .into_iter()
                .map(|(name, c, e)| (name, json!(format!("{c}.{e}"))))
                .collect();
            Json(json!({ "status": "ready", "projections": projections })).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "not ready");
            ApiError::Unavailable("the database does not answer".into()).into_response()
        }
        Err(_) => ApiError::Unavailable("the database timed out".into()).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
