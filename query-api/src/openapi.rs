//! The query API's OpenAPI 3.1 document, built from the routes as they are
//! mounted (each with its [`Read`] description), the views' JSON Schemas and
//! the query-parameter structs. Served at `GET /openapi.json`, rendered
//! offline at `GET /docs`, committed as `schemas/openapi/query-api.json` and
//! checked for drift.

use std::sync::LazyLock;

use axum::handler::Handler;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use tasklog_http::openapi::{
    document_shell, error_response_name, error_responses, path_param, path_params, Components,
};
use tasklog_http::query::NoParams;
use tasklog_http::{Api, Method};

use crate::QueryState;

/// The query API's OpenAPI document.
pub fn openapi() -> Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| build(crate::api()));
    DOCUMENT.clone()
}

/// How one read route (every one is a GET) is documented.
pub(crate) struct Read {
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    response: fn(&mut Components) -> Value,
    /// Answers with `ETag` and honours `If-None-Match` (304).
    etag: bool,
    /// The query parameters, from the struct the handler reads them into
    /// (a field marked `#[schemars(required)]` is documented as required).
    query: fn(&mut Components) -> Vec<Value>,
}

/// A read route answering with a `R`: its path, `operationId`, tag and summary.
pub(crate) fn read<R: JsonSchema>(
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
) -> Read {
    Read {
        path,
        id,
        tag,
        summary,
        description: None,
        response: |c| c.response::<R>(),
        etag: false,
        query: |c| c.query_parameters::<NoParams>(),
    }
}

impl Read {
    pub fn described(self, description: &'static str) -> Self {
        Self {
            description: Some(description),
            ..self
        }
    }

    /// Answers with `ETag` and honours `If-None-Match`.
    pub fn etag(self) -> Self {
        Self { etag: true, ..self }
    }

    /// Takes the query parameters of `Q` (what the handler's `Query<Q>` reads).
    pub fn query<Q: JsonSchema + DeserializeOwned>(self) -> Self {
        Self {
            query: |c| c.query_parameters::<Q>(),
            ..self
        }
    }

    /// Serves `handler` on this route, documented.
    pub fn mount<H, T>(self, api: &mut Api<QueryState>, handler: H)
    where
        H: Handler<T, QueryState>,
        T: 'static,
    {
        let operation = operation(&self, &mut api.components);
        api.route(Method::Get, self.path, operation, handler);
    }
}

fn operation(route: &Read, components: &mut Components) -> Value {
    let mut parameters: Vec<Value> = path_params(route.path)
        .into_iter()
        .map(path_param)
        .collect();
    parameters.extend((route.query)(components));
    parameters.push(json!({ "$ref": "#/components/parameters/X-Consistency-Token" }));
    if route.etag {
        parameters.push(json!({
            "name": "If-None-Match",
            "in": "header",
            "required": false,
            "description": "An `ETag` this endpoint gave; 304 without a body while it still matches.",
            "schema": { "type": "string" },
            "example": "\"3-5d41402abc4b2a76b9719d911017c592\""
        }));
    }

    let mut ok = json!({
        "description": "The answer.",
        "content": { "application/json": { "schema": (route.response)(components) } }
    });
    let mut responses = Map::new();
    if route.etag {
        ok["headers"] = json!({ "ETag": { "$ref": "#/components/headers/ETag" } });
        responses.insert(
            "304".into(),
            json!({
                "description": "Not modified: `If-None-Match` names the current version.",
                "headers": { "ETag": { "$ref": "#/components/headers/ETag" } }
            }),
        );
    }
    responses.insert("200".into(), ok);
    // 400: an unusable X-Consistency-Token or query string; 404: an id that
    // does not parse, or nothing with it in this organization; 422: a query
    // parameter this route does not take (every route refuses unknown ones).
    let statuses = [400, 401, 403, 404, 422, 500, 503];
    for status in statuses {
        responses.insert(
            status.to_string(),
            json!({ "$ref": format!("#/components/responses/{}", error_response_name(status)) }),
        );
    }
    let mut op = json!({
        "operationId": route.id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(description) = route.description {
        op["description"] = json!(description);
    }
    op
}

fn build(api: Api<QueryState>) -> Value {
    let mut doc = document_shell(
        "Tasklog query API",
        "The read side: lists and details served from the projections' read models. Every \
         route requires membership of the organization (any role). Send the \
         `consistency_token` a command returned as `X-Consistency-Token` to read your own \
         write: the answer waits until the projections it reads have applied it.",
        "http://127.0.0.1:8081",
    );
    doc["tags"] = json!([
        { "name": "projects", "description": "Projects and boards." },
        { "name": "tasks", "description": "Task lists, details and history." },
        { "name": "directory", "description": "The organization's tags and members." },
        { "name": "notifications", "description": "The caller's notifications." },
        { "name": "reports", "description": "The organization's reports, read from the analytics store (ClickHouse)." },
        { "name": "operations", "description": "Health, readiness and this document." }
    ]);
    let (paths, mut components) = api.into_document_parts();
    doc["paths"] = Value::Object(paths);
    components.response::<tasklog_http::error::Problem>();

    let c = &mut doc["components"];
    c["schemas"] = Value::Object(components.finish());
    c["responses"] = Value::Object(error_responses(&[
        (400, "`X-Consistency-Token` is not a token a command returned, or a query parameter's \
               name is not percent-encoded UTF-8."),
        (401, "No bearer token, or one that does not verify."),
        (403, "Not a member of the organization; a non-member gets this whether or not the organization exists."),
        (404, "No such resource in this organization (another organization's is not found either)."),
        (422, "A query parameter is unknown, repeated or malformed (not UTF-8, a NUL byte, a date \
               outside 0001-01-01 to 9999-12-31, a cursor this endpoint did not give), or, for \
               a member, a report's required parameter is missing or its range is not one it \
               takes; `errors` names it."),
        (500, "A bug; the log has the details."),
        (503, "`not_yet_consistent`: a projection this endpoint reads has not applied the \
               `X-Consistency-Token` within the wait (2 s by default); retry. Or `unavailable`: \
               the database is down. Or, for reports only, `analytics_unavailable`: the \
               analytics store (ClickHouse) is down, failing or not configured; retry."),
    ]));
    c["parameters"] = json!({
        "X-Consistency-Token": {
            "name": "X-Consistency-Token",
            "in": "header",
            "required": false,
            "description": "The `consistency_token` a command returned (`<commit>.<event>`): the \
                            answer includes that write, or is 503 `not_yet_consistent`.",
            // `(?!\n)`: Python's `$` also matches before a final newline,
            // which no header value can carry; ECMA's does not.
            "schema": { "type": "string", "pattern": "^[0-9]{1,19}\\.[0-9]{1,19}(?!\\n)$" },
            "example": "1042.0"
        }
    });
    c["headers"]["ETag"] = json!({
        "description": "`\"<version>-<digest>\"`: the resource's version, then a digest of this \
                        body, so it changes whenever the body does (a tag renamed, a task \
                        counted), and `If-None-Match` never answers 304 for a changed body. \
                        The `If-Match` of the next command is the `version` (the part before \
                        the dash).",
        "schema": { "type": "string" }
    });
    doc
}
