//! The command API: REST over JSON under `/v1`, every route scoped by
//! organization. A handler authenticates the caller, checks their role in the
//! organization, turns the body into one domain command and appends what the
//! aggregate decides.

pub mod auth;
pub mod bodies;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod openapi;
mod routes;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use auth::{AuthConfig, Authenticator};
pub use error::ApiError;
pub use service::AppState;

/// Bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole command API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(routes::orgs::router())
        .merge(routes::projects::router())
        .merge(routes::tasks::router())
        .merge(routes::tags::router())
        .merge(routes::inbox::router())
        .layer(axum::middleware::from_fn_with_state(
            idempotency::Keys::new(&state),
            idempotency::layer,
        ))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(openapi::docs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Liveness: the process answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
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

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Builds the state from a pool and an authenticator.
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
