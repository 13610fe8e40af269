//! The auditor API: an organization's history read from the event log as
//! it is stored (never from a read model), under `/v1/orgs/{org}/audit/…`.
//!
//! - who: owners, admins and auditors of the organization, decided from the
//!   organization's own events before anything else; any other member gets
//!   403, and so does a non-member, whether or not the organization exists;
//! - what: only events whose `org_id` is the organization's, so no other
//!   organization's event, hash or position is ever shown; a stream that is
//!   not the organization's is answered exactly like one that does not exist;
//! - every read that is answered is first recorded as an `AuditLogRead`
//!   event on the organization's `audit-{org}` stream, hash-chained like the
//!   rest of the log; a request refused (bad input, no access, not found)
//!   records nothing.

pub mod openapi;
mod params;
mod routes;
mod time_travel;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use tasklog_domain::{
    decode_event_ref, encode_event, replay, stream_name, Aggregate, AuditCommand, AuditLogRead,
    AuditTrail, DomainEvent, OrgEvent, Organization, Role,
};
use tasklog_event_store::{EventMetadata, EventStore, ExpectedVersion, NewEvent};
use tasklog_http::auth::{Authenticator, Caller, HasAuthenticator};
use tasklog_http::{Api, ApiError};
use uuid::Uuid;

/// Shared state of the auditor API.
#[derive(Clone)]
pub struct AuditState {
    /// The application role's pool: it may read every event and append,
    /// never change one.
    pub pool: PgPool,
    pub store: Arc<dyn EventStore>,
    pub auth: Arc<Authenticator>,
}

impl HasAuthenticator for AuditState {
    fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

impl AuditState {
    pub fn new(pool: PgPool, store: Arc<dyn EventStore>, auth: Arc<Authenticator>) -> Self {
        Self { pool, store, auth }
    }

    /// Lets the caller read `org`'s history: their role, from the
    /// organization's events (never behind, unlike a read model), must be
    /// auditor, admin or owner. A non-member gets the same 403 whether or
    /// not the organization exists.
    pub async fn admit(&self, caller: &Caller, org: Uuid, uri: &Uri) -> Result<Reader, ApiError> {
        let recorded = self
            .store
            .read_stream(&stream_name::<Organization>(org), 1)
            .await?;
        let events = recorded
            .iter()
            .map(|e| decode_event_ref::<OrgEvent>(&e.event_type, &e.payload))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::Internal(e.into()))?;
        let role = replay::<Organization>(events)
            .role_of(caller.user_id)
            .ok_or_else(|| {
                ApiError::Forbidden("you are not a member of this organization".into())
            })?;
        if !matches!(role, Role::Auditor | Role::Admin | Role::Owner) {
            return Err(ApiError::Forbidden(
                "only auditors, admins and owners read the audit log".into(),
            ));
        }
        Ok(Reader {
            user: caller.user_id,
            role,
            org,
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
        })
    }
}

/// A caller let in to read an organization's history, and what they asked.
#[derive(Debug, Clone)]
pub struct Reader {
    pub user: Uuid,
    pub role: Role,
    pub org: Uuid,
    path: String,
    query: String,
}

impl Reader {
    /// Records this read (`operation`, about `stream` if one) on the
    /// organization's audit trail. Called once the answer is known and
    /// before it is sent: a read that cannot be recorded is not answered.
    pub async fn record(
        &self,
        state: &AuditState,
        operation: &str,
        stream: Option<&str>,
    ) -> Result<(), ApiError> {
        let read = AuditLogRead {
            reader: self.user,
            role: self.role,
            operation: operation.to_owned(),
            path: self.path.clone(),
            query: self.query.clone(),
            stream: stream.map(str::to_owned),
        };
        let events = AuditTrail::default().decide(AuditCommand::RecordRead(read))?;
        let now = chrono::Utc::now();
        let new = events
            .iter()
            .map(|e| {
                let (event_type, payload) = encode_event(e);
                NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event_type.to_owned(),
                    schema_version: e.schema_version(),
                    payload,
                    personal: e.personal_fields(),
                    metadata: EventMetadata {
                        org_id: self.org,
                        actor_id: Some(self.user),
                        correlation_id: Uuid::now_v7(),
                        causation_id: None,
                        occurred_at: now,
                    },
                }
            })
            .collect();
        // Reads are recorded side by side: none expects a version.
        state
            .store
            .append(
                &stream_name::<AuditTrail>(self.org),
                ExpectedVersion::Any,
                new,
            )
            .await?;
        Ok(())
    }
}

/// The whole auditor API.
pub fn router(state: AuditState) -> Router {
    api().into_router().with_state(state)
}

/// Every route, documented.
pub(crate) fn api() -> Api<AuditState> {
    let mut api = Api::new();
    routes::routes(&mut api);
    api.operational(
        "Readiness: the event store answers; shows its high-water mark.",
        readyz,
        openapi::openapi,
    );
    api
}

/// Readiness: the event store answers.
async fn readyz(State(state): State<AuditState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.high_water_mark()).await {
        Ok(Ok(hwm)) => Json(json!({ "status": "ready", "store": hwm })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "not ready");
            ApiError::Unavailable("the database does not answer".into()).into_response()
        }
        Err(_) => ApiError::Unavailable("the database timed out".into()).into_response(),
    }
}
