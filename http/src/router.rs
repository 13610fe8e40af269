//! Router scaffolding: each route is mounted once together with its
//! OpenAPI operation, so the served routes and the document cannot drift
//! apart; the operational routes, fallbacks and layers both APIs share.

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;
use crate::openapi::{docs, Components};

/// The methods routes are served with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Patch => MethodFilter::PATCH,
            Self::Delete => MethodFilter::DELETE,
        }
    }

    /// The key of an operation in an OpenAPI path item.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Patch => "patch",
            Self::Delete => "delete",
        }
    }
}

/// An API under construction: the routes it serves and the operations that
/// document them, added together.
pub struct Api<S> {
    router: Router<S>,
    paths: Map<String, Value>,
    /// The schemas the operations refer to.
    pub components: Components,
}

impl<S: Clone + Send + Sync + 'static> Default for Api<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Api<S> {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            paths: Map::new(),
            components: Components::new(),
        }
    }

    /// Serves `handler` at `method path`, documented by `operation`.
    ///
    /// # Panics
    /// When `method path` is added twice.
    pub fn route<H, T>(&mut self, method: Method, path: &str, operation: Value, handler: H)
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let item = self.paths.entry(path).or_insert_with(|| json!({}));
        assert!(
            item.get(method.name()).is_none(),
            "{} {path} is documented twice",
            method.name()
        );
        item[method.name()] = operation;
        let router = std::mem::replace(&mut self.router, Router::new());
        self.router = router.route(path, on(method.filter(), handler));
    }

    /// Changes the routes added so far (a layer only they pass through).
    pub fn map_router(&mut self, f: impl FnOnce(Router<S>) -> Router<S>) {
        let router = std::mem::replace(&mut self.router, Router::new());
        self.router = f(router);
    }

    /// The unauthenticated routes both APIs serve: `/healthz`, `/readyz`
    /// (`ready`, summarized by `ready_summary`), `/openapi.json` (`document`)
    /// and `/docs`.
    pub fn operational<H, T>(&mut self, ready_summary: &str, ready: H, document: fn() -> Value)
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let status = json!({
            "type": "object",
            "required": ["status"],
            "properties": { "status": { "type": "string" } }
        });
        self.route(
            Method::Get,
            "/healthz",
            open_operation(
                "healthz",
                "Liveness: the process answers.",
                json!({ "200": {
                    "description": "Alive.",
                    "content": { "application/json": { "schema": status, "example": { "status": "ok" } } }
                }}),
            ),
            healthz,
        );
        self.route(
            Method::Get,
            "/readyz",
            open_operation(
                "readyz",
                ready_summary,
                json!({
                    "200": {
                        "description": "Ready.",
                        "content": { "application/json": { "schema": {
                            "type": "object",
                            "required": ["status"],
                            "properties": { "status": { "const": "ready" } },
                            "additionalProperties": true
                        }}}
                    },
                    "503": { "$ref": "#/components/responses/ServiceUnavailable" }
                }),
            ),
            ready,
        );
        self.route(
            Method::Get,
            "/openapi.json",
            open_operation(
                "openapi",
                "This document.",
                json!({ "200": {
                    "description": "The OpenAPI 3.1 document.",
                    "content": { "application/json": { "schema": { "type": "object" } } }
                }}),
            ),
            move || async move { Json(document()) },
        );
        self.route(
            Method::Get,
            "/docs",
            open_operation(
                "docs",
                "A self-contained page rendering this document (works offline).",
                json!({ "200": {
                    "description": "The page.",
                    "content": { "text/html": { "schema": { "type": "string" } } }
                }}),
            ),
            docs,
        );
    }

    /// The router with the fallbacks and layers both APIs share: 404 and
    /// 405 as problems, the body limit, a panic answered 500, tracing.
    pub fn into_router(self) -> Router<S> {
        self.router
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
            }))
            .layer(TraceLayer::new_for_http())
    }

    /// The documented paths and their components.
    pub fn into_document_parts(self) -> (Map<String, Value>, Components) {
        (self.paths, self.components)
    }
}

/// An operation needing no token.
fn open_operation(id: &str, summary: &str, responses: Value) -> Value {
    json!({
        "operationId": id,
        "summary": summary,
        "tags": ["operations"],
        "security": [],
        "responses": responses
    })
}

/// Liveness: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
