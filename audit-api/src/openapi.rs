//! The auditor API's OpenAPI 3.1 document, built from the routes as they
//! are mounted. Served at `GET /openapi.json`, rendered at `GET /docs`,
//! committed as `schemas/openapi/audit-api.json` and checked for drift.

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

use crate::params::STREAM_PATTERN;
use crate::AuditState;

/// The auditor API's OpenAPI document.
pub fn openapi() -> Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| build(crate::api()));
    DOCUMENT.clone()
}

/// How one read route (every one is a GET) is documented.
pub(crate) struct Read {
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    description: &'static str,
    /// The 200 answer's `content`.
    content: fn(&mut Components) -> Value,
    query: fn(&mut Components) -> Vec<Value>,
}

/// A read route answering with a JSON `R`.
pub(crate) fn read<R: JsonSchema>(
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    description: &'static str,
) -> Read {
    Read {
        path,
        id,
        summary,
        description,
        content: |c| json!({ "application/json": { "schema": c.response::<R>() } }),
        query: |c| c.query_parameters::<NoParams>(),
    }
}

impl Read {
    /// Takes the query parameters of `Q` (what the handler's `Query<Q>` reads).
    pub fn query<Q: JsonSchema + DeserializeOwned>(self) -> Self {
        Self {
            query: |c| c.query_parameters::<Q>(),
            ..self
        }
    }

    /// Answers with NDJSON, one JSON object per line, instead.
    pub fn ndjson(self) -> Self {
        Self {
            content: |_| {
                json!({ "application/x-ndjson": {
                    "schema": { "type": "string" },
                    "example": "{\"line\":\"header\",\"format\":\"tasklog-export-v1\",…}\n…\n{\"line\":\"trailer\",\"streams\":1,\"events\":3}\n"
                }})
            },
            ..self
        }
    }

    /// Serves `handler` on this route, documented.
    pub fn mount<H, T>(self, api: &mut Api<AuditState>, handler: H)
    where
        H: Handler<T, AuditState>,
        T: 'static,
    {
        let operation = operation(&self, &mut api.components);
        api.route(Method::Get, self.path, operation, handler);
    }
}

fn operation(route: &Read, components: &mut Components) -> Value {
    let mut parameters: Vec<Value> = path_params(route.path)
        .into_iter()
        .map(|name| match name {
            "stream" => json!({
                "name": "stream",
                "in": "path",
                "required": true,
                "description": "The stream: `<kind>-<uuid>` (`task-…`, `project-…`, `org-<org>`, \
                                `tags-<org>`, `inbox-<inbox id>`, `audit-<org>`). Another \
                                organization's stream, or one of another shape, is answered 404.",
                "schema": { "type": "string", "pattern": STREAM_PATTERN }
            }),
            other => path_param(other),
        })
        .collect();
    parameters.extend((route.query)(components));
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({ "description": "The answer.", "content": (route.content)(components) }),
    );
    for status in [400, 401, 403, 404, 422, 500, 503] {
        responses.insert(
            status.to_string(),
            json!({ "$ref": format!("#/components/responses/{}", error_response_name(status)) }),
        );
    }
    json!({
        "operationId": route.id,
        "summary": route.summary,
        "description": route.description,
        "tags": ["audit"],
        "parameters": parameters,
        "responses": responses,
    })
}

fn build(api: Api<AuditState>) -> Value {
    let mut doc = document_shell(
        "Tasklog auditor API",
        "An organization's history as the event log stores it: its events with their whole \
         envelope and hashes, each stream's history, any aggregate's state as of a time or a \
         log position (rebuilt with the domain's own `evolve`) and what changed between two \
         points, and the export an auditor verifies offline. For owners, admins and auditors \
         of the organization. Every answered read is itself recorded on the organization's \
         `audit-<org>` stream (an `AuditLogRead` event).",
        "http://127.0.0.1:8082",
    );
    doc["tags"] = json!([
        { "name": "audit", "description": "The organization's event log, time travel and export." },
        { "name": "operations", "description": "Health, readiness and this document." }
    ]);
    let (paths, mut components) = api.into_document_parts();
    doc["paths"] = Value::Object(paths);
    components.response::<tasklog_http::error::Problem>();
    let c = &mut doc["components"];
    c["schemas"] = Value::Object(components.finish());
    c["responses"] = Value::Object(error_responses(&[
        (
            400,
            "A query parameter's name is not percent-encoded UTF-8 without NUL bytes.",
        ),
        (401, "No bearer token, or one that does not verify."),
        (
            403,
            "Not an owner, admin or auditor of the organization; a non-member gets this \
               whether or not the organization exists.",
        ),
        (
            404,
            "No such stream in this organization (another organization's is not found \
               either), or an id that does not parse.",
        ),
        (
            422,
            "A query parameter is unknown, repeated, missing or malformed (an unknown kind or \
               event type, a time or position that does not parse, a cursor this endpoint did \
               not give, a NUL byte); `errors` names it.",
        ),
        (500, "A bug; the log has the details."),
        (503, "`unavailable`: the database is down; retry."),
    ]));
    doc
}
