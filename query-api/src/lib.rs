//! The query API: JSON reads under `/v1/orgs/{org}/…`, served from the
//! projections' read models (the views in schema `read`) and nothing else.
//!
//! Every route authenticates the caller and requires membership of the
//! organization (any role); objects of another organization are answered
//! exactly like missing ones. A request carrying `X-Consistency-Token` waits
//! until the projections it reads have applied that position.
//!
//! The reports (`…/reports/…`) are read from the reporting views in
//! ClickHouse, under the same rules; ClickHouse down or not configured makes
//! them 503 and leaves every other route as it is.

pub mod consistency;
pub use tasklog_http::cursor;
pub mod openapi;
pub mod reports;
mod routes;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use tasklog_domain::{decode_event, replay, stream_name, OrgEvent, Organization};
use tasklog_event_store::{EventStore, LogPosition};
use tasklog_http::auth::{Authenticator, Caller, HasAuthenticator};
use tasklog_http::{Api, ApiError};
use uuid::Uuid;

pub use consistency::{Consistency, ReadModel, CHECKPOINT_CHANNEL};
pub use reports::Reports;

/// How long a request waits for its consistency token by default.
pub const DEFAULT_CONSISTENCY_WAIT: Duration = Duration::from_secs(2);

/// Shared state of the query API.
#[derive(Clone)]
pub struct QueryState {
    pub pool: PgPool,
    /// The event log, read for what the read models may not show yet (a
    /// membership just granted).
    pub store: Arc<dyn EventStore>,
    pub auth: Arc<Authenticator>,
    /// How long a request waits for the projections to apply its
    /// `X-Consistency-Token` before answering 503 `not_yet_consistent`.
    pub consistency_wait: Duration,
    /// How often a waiting request reads the checkpoints again when no
    /// announcement woke it (one lost while the listener reconnected).
    pub consistency_poll: Duration,
    /// Wakes requests waiting for a consistency token.
    pub checkpoint_moves: consistency::CheckpointMoves,
    /// The reporting views in ClickHouse; without them the report routes
    /// answer 503 `analytics_unavailable` (and nothing else changes).
    pub reports: Option<Reports>,
}

impl HasAuthenticator for QueryState {
    fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

impl QueryState {
    /// A state with the default consistency wait.
    pub fn new(pool: PgPool, store: Arc<dyn EventStore>, auth: Arc<Authenticator>) -> Self {
        Self {
            pool,
            store,
            auth,
            consistency_wait: DEFAULT_CONSISTENCY_WAIT,
            consistency_poll: consistency::DEFAULT_POLL_EVERY,
            checkpoint_moves: Default::default(),
            reports: None,
        }
    }

    /// This state, reading reports from `reports`.
    pub fn with_reports(self, reports: Option<Reports>) -> Self {
        Self { reports, ..self }
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
        reads: &[ReadModel],
    ) -> Result<(), ApiError> {
        let admission = self.authorize(caller, org, consistency).await?;
        self.settle(caller, org, admission, reads).await
    }

    /// The first half of [`Self::admit`]: whether the caller may read `org`
    /// at all, decided at once (403 for a non-member, whether or not the
    /// organization exists). A route that checks more of its request
    /// before it waits calls [`Self::settle`] afterwards.
    pub async fn authorize(
        &self,
        caller: &Caller,
        org: Uuid,
        consistency: Consistency,
    ) -> Result<Admission, ApiError> {
        let Some(token) = consistency.0 else {
            return match self.is_member(caller, org).await? {
                Some(true) => Ok(Admission {
                    token: None,
                    shown: true,
                }),
                Some(false) => Err(forbidden()),
                None => Err(not_built()),
            };
        };
        // Read-your-writes covers a membership just granted, which the
        // directory may not show yet: ask the organization's own events,
        // which are never behind, before waiting on the read model's behalf.
        let shown = self.is_member(caller, org).await? == Some(true);
        if !shown && !self.is_member_in_log(caller, org).await? {
            return Err(forbidden());
        }
        Ok(Admission {
            token: Some(token),
            shown,
        })
    }

    /// The second half of [`Self::admit`]: waits for the consistency token
    /// on `reads` (and `directory`), then lets the read model as of the
    /// token decide a membership only the log showed.
    pub async fn settle(
        &self,
        caller: &Caller,
        org: Uuid,
        admission: Admission,
        reads: &[ReadModel],
    ) -> Result<(), ApiError> {
        let Some(token) = admission.token else {
            return Ok(());
        };
        let mut needed = vec![ReadModel::Directory];
        needed.extend(reads.iter().filter(|p| **p != ReadModel::Directory));
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
        if admission.shown || self.is_member(caller, org).await? == Some(true) {
            Ok(())
        } else {
            Err(forbidden())
        }
    }

    /// Membership as the `directory` read model shows it; `None` before the
    /// projectors first made it (a fresh deployment: the view is not there).
    async fn is_member(&self, caller: &Caller, org: Uuid) -> Result<Option<bool>, ApiError> {
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
    async fn is_member_in_log(&self, caller: &Caller, org: Uuid) -> Result<bool, ApiError> {
        let recorded = self
            .store
            .read_stream(&stream_name::<Organization>(org), 1)
            .await?;
        let events = recorded
            .into_iter()
            .map(|e| decode_event::<OrgEvent>(&e.event_type, e.payload))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::Internal(e.into()))?;
        Ok(replay::<Organization>(events)
            .role_of(caller.user_id)
            .is_some())
    }
}

/// A caller [`QueryState::authorize`] let in, with what is left to wait for.
#[derive(Debug)]
#[must_use = "settle the admission: it may still have a consistency token to wait for"]
pub struct Admission {
    token: Option<LogPosition>,
    /// The directory read model showed the membership already.
    shown: bool,
}

fn forbidden() -> ApiError {
    ApiError::Forbidden("you are not a member of this organization".into())
}

/// SQLSTATE of a relation that does not exist.
const UNDEFINED_TABLE: &str = "42P01";

/// 503 before the projectors have made the read models at all.
fn not_built() -> ApiError {
    ApiError::Unavailable("the read models are not built yet; retry shortly".into())
}

/// The whole query API.
pub fn router(state: QueryState) -> Router {
    api().into_router().with_state(state)
}

/// Every route, documented.
pub(crate) fn api() -> Api<QueryState> {
    let mut api = Api::new();
    routes::projects::routes(&mut api);
    routes::tasks::routes(&mut api);
    routes::directory::routes(&mut api);
    routes::notifications::routes(&mut api);
    routes::reports::routes(&mut api);
    api.operational(
        "Readiness: the database answers; shows where each projection is.",
        readyz,
        openapi::openapi,
    );
    api
}

/// Readiness: the database answers; the body shows where each projection is.
async fn readyz(State(state): State<QueryState>) -> Response {
    let check = consistency::checkpoints(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(rows)) => {
            let projections: serde_json::Map<String, serde_json::Value> = rows
                .into_iter()
                .map(|(name, at)| (name, json!(at.unwrap_or_default().to_string())))
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
