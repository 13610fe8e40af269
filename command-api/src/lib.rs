//! The command API: REST over JSON under `/v1`, every route scoped by
//! organization. A handler authenticates the caller, checks their role in the
//! organization, turns the body into one domain command and appends what the
//! aggregate decides.

pub mod bodies;
pub mod extract;
pub mod idempotency;
pub mod openapi;
mod routes;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde_json::json;
use tasklog_http::{Api, ApiError, Authenticator};

pub use service::AppState;

/// The whole command API.
pub fn router(state: AppState) -> Router {
    let keys = idempotency::Keys::new(&state);
    let mut api = commands();
    api.map_router(|commands| {
        commands.layer(axum::middleware::from_fn_with_state(
            keys,
            idempotency::layer,
        ))
    });
    operations(&mut api);
    api.into_router().with_state(state)
}

/// Every route, documented: the commands, then the operational routes.
pub(crate) fn api() -> Api<AppState> {
    let mut api = commands();
    operations(&mut api);
    api
}

fn commands() -> Api<AppState> {
    let mut api = Api::new();
    routes::orgs::routes(&mut api);
    routes::projects::routes(&mut api);
    routes::tasks::routes(&mut api);
    routes::tags::routes(&mut api);
    routes::inbox::routes(&mut api);
    api
}

fn operations(api: &mut Api<AppState>) {
    api.operational(
        "Readiness: the event store answers.",
        readyz,
        openapi::openapi,
    );
}

/// Readiness: the database answers; the body shows how far readers can read.
async fn readyz(State(app): State<AppState>) -> axum::response::Response {
    let check = tokio::time::timeout(Duration::from_secs(2), app.store.high_water_mark()).await;
    match check {
        Ok(Ok(hwm)) => Json(json!({ "status": "ready", "event_store": hwm })).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "not ready");
            ApiError::Unavailable("the event store does not answer".into()).into_response()
        }
        Err(_) => ApiError::Unavailable("the event store timed out".into()).into_response(),
    }
}

/// Builds the state from the read-model pool, the event store and an authenticator.
pub fn state(
    pool: sqlx::PgPool,
    store: Arc<dyn tasklog_event_store::EventStore>,
    auth: Authenticator,
) -> AppState {
    AppState {
        store,
        pool,
        auth: Arc::new(auth),
        cache: Arc::new(service::AggregateCache::new(100_000)),
        writers: Arc::new(service::StreamWriters::new(1024)),
    }
}
