//! The command API's OpenAPI 3.1 document, built from the routes as they
//! are mounted (each with its [`Command`] description) and the request
//! bodies' JSON Schemas. Served at `GET /openapi.json`, rendered offline at
//! `GET /docs`, committed as `schemas/openapi/command-api.json` and checked
//! for drift.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use axum::handler::Handler;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use tasklog_http::openapi::{
    document_shell, error_response_name, error_responses, path_param, path_params, Components,
};
use tasklog_http::{Api, Method};

use crate::service::CommandAccepted;
use crate::AppState;

/// The command API's OpenAPI document.
pub fn openapi() -> Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| build(crate::api()));
    DOCUMENT.clone()
}

/// How one command route is documented.
pub(crate) struct Command {
    method: Method,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    /// The request body's schema.
    body: Option<fn(&mut Components) -> Value>,
    /// 201 (created) or 200.
    created: bool,
    /// The aggregate whose version `If-Match` names; `None` where it is ignored.
    if_match: Option<&'static str>,
    /// False only where no membership is checked (creating an organization).
    authorizes: bool,
}

/// A command route: `method path`, its `operationId`, tag and summary.
pub(crate) fn command(
    method: Method,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
) -> Command {
    Command {
        method,
        path,
        id,
        tag,
        summary,
        description: None,
        body: None,
        created: false,
        if_match: None,
        authorizes: true,
    }
}

impl Command {
    /// Takes a JSON body of type `T`.
    pub fn body<T: JsonSchema>(self) -> Self {
        Self {
            body: Some(|c| c.request::<T>()),
            ..self
        }
    }

    /// Answers 201.
    pub fn created(self) -> Self {
        Self {
            created: true,
            ..self
        }
    }

    /// Honours `If-Match` with the version of `aggregate`.
    pub fn if_match(self, aggregate: &'static str) -> Self {
        Self {
            if_match: Some(aggregate),
            ..self
        }
    }

    pub fn described(self, description: &'static str) -> Self {
        Self {
            description: Some(description),
            ..self
        }
    }

    /// Open to any authenticated user: no membership is checked.
    pub fn unauthorized(self) -> Self {
        Self {
            authorizes: false,
            ..self
        }
    }

    /// Serves `handler` on this route, documented.
    pub fn mount<H, T>(self, api: &mut Api<AppState>, handler: H)
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let operation = operation(&self, &mut api.components);
        api.route(self.method, self.path, operation, handler);
    }
}

/// The error statuses a route can answer with.
fn error_statuses(route: &Command) -> BTreeSet<u16> {
    // 400: a malformed If-Match, Idempotency-Key or JSON body; 409: the thing
    // exists already, or concurrent writers kept winning; 422: validation, a
    // business rule, or an Idempotency-Key reused for another request.
    let mut statuses: BTreeSet<u16> = [400, 401, 409, 422, 500, 503].into();
    if route.authorizes {
        statuses.insert(403);
    }
    if !path_params(route.path).is_empty() {
        statuses.insert(404);
    }
    if route.if_match.is_some() {
        statuses.insert(412);
    }
    if route.body.is_some() {
        statuses.extend([413, 415]);
    }
    statuses
}

fn operation(route: &Command, components: &mut Components) -> Value {
    let mut parameters: Vec<Value> = path_params(route.path)
        .into_iter()
        .map(path_param)
        .collect();
    if let Some(aggregate) = route.if_match {
        parameters.push(json!({
            "name": "If-Match",
            "in": "header",
            "required": false,
            "description": format!(
                "The `ETag` (version) of the {aggregate} the client last saw, e.g. `\"3\"` \
                 (the query API's `\"3-<digest>\"` names the same version); \
                 412 when it has moved on. Without it, a concurrent change is decided again."
            ),
            // `(?!\n)`: Python's `$` also matches before a final newline,
            // which no header value can carry; ECMA's does not.
            "schema": { "type": "string", "pattern": "^(\\*|(W/)?\"?[0-9]{1,19}(-[0-9a-fA-F]+)?\"?)(?!\\n)$" },
            "example": "\"3\""
        }));
    }
    parameters.push(json!({ "$ref": "#/components/parameters/Idempotency-Key" }));
    parameters.push(json!({ "$ref": "#/components/parameters/X-Correlation-Id" }));

    let (status, description) = if route.created {
        ("201", "Created.")
    } else {
        ("200", "Applied (or nothing to change).")
    };
    let mut responses = Map::new();
    responses.insert(
        status.to_owned(),
        json!({
            "description": description,
            "headers": {
                "ETag": { "$ref": "#/components/headers/ETag" },
                "Idempotent-Replayed": { "$ref": "#/components/headers/Idempotent-Replayed" }
            },
            "content": { "application/json": { "schema": components.response::<CommandAccepted>() } }
        }),
    );
    for status in error_statuses(route) {
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
    if let Some(body) = route.body {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": body(components) } }
        });
    }
    op
}

fn build(api: Api<AppState>) -> Value {
    let mut doc = document_shell(
        "Tasklog command API",
        "The write side: every change is a command against one aggregate, answered with \
         the aggregate's new version (`ETag`) and a consistency token for reading your own \
         write from the query API. Unknown body fields are rejected. A retried request with \
         the same `Idempotency-Key` gets the first answer back and changes nothing.",
        "http://127.0.0.1:8080",
    );
    doc["tags"] = json!([
        { "name": "organizations", "description": "Organizations and their members." },
        { "name": "projects", "description": "Projects and their keys." },
        { "name": "tasks", "description": "Tasks." },
        { "name": "comments", "description": "Comments on tasks." },
        { "name": "tags", "description": "The organization's tag catalog." },
        { "name": "notifications", "description": "The caller's inbox." },
        { "name": "operations", "description": "Health, readiness and this document." }
    ]);
    let (paths, mut components) = api.into_document_parts();
    doc["paths"] = Value::Object(paths);
    components.response::<tasklog_http::error::Problem>();

    let c = &mut doc["components"];
    c["schemas"] = Value::Object(components.finish());
    c["responses"] = Value::Object(error_responses(&[
        (400, "The body is not JSON (`malformed_json`), or a header is unusable (`bad_request`)."),
        (401, "No bearer token, or one that does not verify."),
        (403, "Not a member of the organization, or the role is too low. A non-member gets \
               this whether or not the organization exists."),
        (404, "No such resource in this organization (another organization's is not found either)."),
        (409, "The thing to create exists already (`already_exists`), or concurrent writers kept \
               winning or a request with this `Idempotency-Key` is still running (`conflict`; retrying is safe)."),
        (412, "`If-Match` names a version the aggregate is no longer at; `current_version` and \
               `ETag` say where it is."),
        (413, "The body is larger than 64 KiB."),
        (415, "The body is not `application/json`."),
        (422, "The body or the command breaks a rule: `validation_failed` (with `errors`), \
               `not_a_member`, `transition_not_allowed`, `archived`, `last_owner`, or \
               `idempotency_key_reused`."),
        (500, "A bug; the log has the details."),
        (503, "The database is unavailable; retry shortly."),
    ]));
    c["parameters"] = json!({
        "Idempotency-Key": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "1 to 255 visible ASCII characters, scoped to the caller and the \
                            organization. A retry with the same key and request gets the first \
                            answer back (`Idempotent-Replayed: true`) and appends nothing; the same \
                            key with another request is 422 `idempotency_key_reused`.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 255 }
        },
        "X-Correlation-Id": {
            "name": "X-Correlation-Id",
            "in": "header",
            "required": false,
            "description": "A UUID stored with the events this request appends; a new one when absent.",
            "schema": { "type": "string", "format": "uuid" }
        }
    });
    c["headers"]["ETag"] = json!({
        "description": "The aggregate's version after the command, e.g. `\"4\"`; send it back in `If-Match`.",
        "schema": { "type": "string" }
    });
    c["headers"]["Idempotent-Replayed"] = json!({
        "description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`.",
        "schema": { "type": "string", "const": "true" }
    });
    doc
}
