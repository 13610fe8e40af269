//! The command API's OpenAPI 3.1 document, built from the route table below
//! and the request bodies' JSON Schemas. Served at `GET /openapi.json`,
//! rendered offline at `GET /docs`, committed as
//! `schemas/openapi/command-api.json` and checked for drift.
//!
//! The building blocks (component schemas, problem responses, the docs page)
//! are public: the query API builds its document with them.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use axum::response::Html;
use axum::Json;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::bodies;
use crate::error::PROBLEM_BASE;
use crate::service::CommandAccepted;

/// The self-contained page `/docs` serves in both APIs: inline CSS and a
/// little script that fetches `./openapi.json` and renders every operation.
pub const DOCS_HTML: &str = include_str!("api.html");

/// `GET /docs`.
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    Json(openapi())
}

/// The command API's OpenAPI document.
pub fn openapi() -> Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(build);
    DOCUMENT.clone()
}

/// Component schemas: every named type lands in `components/schemas` and is
/// referenced as `#/components/schemas/<Name>` (no `$defs` left behind).
pub struct Components {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
    extra: Map<String, Value>,
}

impl Default for Components {
    fn default() -> Self {
        Self::new()
    }
}

impl Components {
    pub fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        Self {
            requests: settings.clone().for_deserialize().into_generator(),
            responses: settings.for_serialize().into_generator(),
            extra: Map::new(),
        }
    }

    /// The schema of a request body (what the server accepts).
    pub fn request<T: JsonSchema>(&mut self) -> Value {
        self.requests.subschema_for::<T>().to_value()
    }

    /// The schema of a response body (what the server sends).
    pub fn response<T: JsonSchema>(&mut self) -> Value {
        self.responses.subschema_for::<T>().to_value()
    }

    /// A hand-written component; returns its `$ref`.
    pub fn named(&mut self, name: &str, schema: Value) -> Value {
        self.extra.insert(name.to_owned(), schema);
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// Every component schema, by name.
    ///
    /// # Panics
    /// When one name stands for two different schemas.
    pub fn finish(mut self) -> Map<String, Value> {
        let mut all = self.requests.take_definitions(true);
        for (name, schema) in self
            .responses
            .take_definitions(true)
            .into_iter()
            .chain(std::mem::take(&mut self.extra))
        {
            if let Some(other) = all.get(&name) {
                assert_eq!(other, &schema, "two schemas are both named {name}");
            }
            all.insert(name, schema);
        }
        all
    }
}

/// The `Problem` schema every error body follows (RFC 9457).
pub fn problem_schema() -> Value {
    json!({
        "description": "An RFC 9457 problem: every error is answered with one, as \
                        `application/problem+json`. Branch on `code`, which is stable.",
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {
                "description": "A URI naming the problem: the base followed by `code`.",
                "type": "string",
                "format": "uri",
                "examples": [format!("{PROBLEM_BASE}validation_failed")]
            },
            "title": { "description": "Short and fixed per code.", "type": "string" },
            "status": { "description": "The HTTP status.", "type": "integer", "minimum": 400, "maximum": 599 },
            "detail": { "description": "What went wrong this time, for people.", "type": "string" },
            "code": {
                "description": "The stable, machine-readable code.",
                "type": "string",
                "examples": [
                    "unauthenticated", "forbidden", "not_found", "malformed_json", "bad_request",
                    "unsupported_media_type", "payload_too_large", "validation_failed",
                    "not_a_member", "transition_not_allowed", "archived", "last_owner",
                    "already_exists", "conflict", "precondition_failed",
                    "idempotency_key_reused", "unavailable", "not_yet_consistent", "internal"
                ]
            },
            "errors": {
                "description": "`validation_failed` only: the fields that were rejected.",
                "type": "array",
                "items": { "$ref": "#/components/schemas/FieldError" }
            },
            "current_version": {
                "description": "`precondition_failed` only: the version the resource is at now.",
                "type": "integer",
                "format": "uint64",
                "minimum": 0
            }
        }
    })
}

/// One rejected field of a `validation_failed` problem.
pub fn field_error_schema() -> Value {
    json!({
        "description": "Why one input field was rejected.",
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {
                "description": "The field's name as it appears in the request (a body path or a \
                                query parameter); empty for the body as a whole.",
                "type": "string"
            },
            "message": { "description": "A human-readable explanation.", "type": "string" }
        }
    })
}

/// The name of the shared response for an error status.
pub fn error_response_name(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthenticated",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        412 => "PreconditionFailed",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        422 => "UnprocessableContent",
        500 => "InternalServerError",
        503 => "ServiceUnavailable",
        other => panic!("no shared response for status {other}"),
    }
}

/// `components/responses` for the error statuses, each an
/// `application/problem+json` body of `Problem` plus the headers sent with it.
pub fn error_responses(descriptions: &[(u16, &str)]) -> Map<String, Value> {
    let problem = json!({
        "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } }
    });
    descriptions
        .iter()
        .map(|(status, description)| {
            let mut response = json!({ "description": description, "content": problem });
            let headers = match status {
                401 => Some(json!({
                    "WWW-Authenticate": {
                        "description": "`Bearer`.",
                        "schema": { "type": "string" }
                    }
                })),
                409 | 503 => {
                    Some(json!({ "Retry-After": { "$ref": "#/components/headers/Retry-After" } }))
                }
                412 => Some(json!({
                    "ETag": {
                        "description": "The version the resource is at now, e.g. `\"4\"`.",
                        "schema": { "type": "string" }
                    }
                })),
                _ => None,
            };
            if let Some(headers) = headers {
                response["headers"] = headers;
            }
            (error_response_name(*status).to_owned(), response)
        })
        .collect()
}

/// The parts of a document both APIs share: `info`, `servers`, security and headers.
pub fn document_shell(title: &str, description: &str, server: &str) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": env!("CARGO_PKG_VERSION"),
            "description": description,
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "servers": [{ "url": server, "description": "The default local address." }],
        "security": [{ "bearer": [] }],
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`Authorization: Bearer <JWT>`. `sub` is the user's id; \
                                    `preferred_username` their handle. Roles come from the \
                                    organization's membership, not the token."
                }
            },
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": { "type": "integer", "minimum": 0 }
                }
            }
        }
    })
}

/// `{name}` segments of an OpenAPI path, in order.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// A path parameter: a UUID naming the thing in the segment before it.
pub fn path_param(name: &str) -> Value {
    let description = match name {
        "org" => "The organization's id.",
        "project" => "The project's id.",
        "task" => "The task's id.",
        "tag" => "The tag's id.",
        "user" => "The member's user id.",
        "comment" => "The comment's id.",
        "notification" => "The notification's id.",
        other => panic!("no description for path parameter {other}"),
    };
    json!({
        "name": name,
        "in": "path",
        "required": true,
        "description": format!("{description} An id that does not parse is answered 404."),
        "schema": { "type": "string", "format": "uuid" }
    })
}

/// The unauthenticated operational routes both APIs serve.
pub fn operational_paths(ready: &str) -> Vec<(&'static str, Value)> {
    let open = |id: &str, summary: &str, response: Value| {
        json!({ "get": {
            "operationId": id,
            "summary": summary,
            "tags": ["operations"],
            "security": [],
            "responses": response
        }})
    };
    let status = json!({
        "type": "object",
        "required": ["status"],
        "properties": { "status": { "type": "string" } }
    });
    vec![
        (
            "/healthz",
            open(
                "healthz",
                "Liveness: the process answers.",
                json!({ "200": {
                    "description": "Alive.",
                    "content": { "application/json": { "schema": status, "example": { "status": "ok" } } }
                }}),
            ),
        ),
        (
            "/readyz",
            open(
                "readyz",
                ready,
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
        ),
        (
            "/openapi.json",
            open(
                "openapi",
                "This document.",
                json!({ "200": {
                    "description": "The OpenAPI 3.1 document.",
                    "content": { "application/json": { "schema": { "type": "object" } } }
                }}),
            ),
        ),
        (
            "/docs",
            open(
                "docs",
                "A self-contained page rendering this document (works offline).",
                json!({ "200": {
                    "description": "The page.",
                    "content": { "text/html": { "schema": { "type": "string" } } }
                }}),
            ),
        ),
    ]
}

/// Puts `operation` under `paths[path][method]`.
pub fn add_operation(doc: &mut Value, path: &str, method: &str, operation: Value) {
    let paths = doc["paths"]
        .as_object_mut()
        .expect("paths is an object")
        .entry(path)
        .or_insert_with(|| json!({}));
    assert!(
        paths.get(method).is_none(),
        "{method} {path} is documented twice"
    );
    paths[method] = operation;
}

/// One command route.
struct Route {
    method: &'static str,
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

fn body<T: JsonSchema>(c: &mut Components) -> Value {
    c.request::<T>()
}

/// Every route the command API serves, apart from the operational ones.
fn routes() -> Vec<Route> {
    let route = |method, path, id, tag, summary| Route {
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
    };
    let with_body = |r: Route, b: fn(&mut Components) -> Value| Route { body: Some(b), ..r };
    let matching = |r: Route, aggregate| Route {
        if_match: Some(aggregate),
        ..r
    };
    let created = |r: Route| Route { created: true, ..r };
    let described = |r: Route, d| Route {
        description: Some(d),
        ..r
    };
    vec![
        // Organizations and members.
        described(
            created(with_body(
                Route {
                    authorizes: false,
                    ..route(
                        "post",
                        "/v1/orgs",
                        "createOrganization",
                        "organizations",
                        "Create an organization, owned by the caller.",
                    )
                },
                body::<bodies::CreateOrganization>,
            )),
            "Any authenticated user may create one. The owner's handle is `owner_handle`, \
             or the token's `preferred_username`.",
        ),
        described(
            created(matching(
                with_body(
                    route(
                        "post",
                        "/v1/orgs/{org}/members",
                        "addMember",
                        "organizations",
                        "Add a member.",
                    ),
                    body::<bodies::AddMember>,
                ),
                "organization",
            )),
            "Admins and owners only.",
        ),
        described(
            matching(
                with_body(
                    route(
                        "patch",
                        "/v1/orgs/{org}/members/{user}",
                        "changeMemberRole",
                        "organizations",
                        "Change a member's role.",
                    ),
                    body::<bodies::ChangeMemberRole>,
                ),
                "organization",
            ),
            "Admins and owners only; the last owner stays an owner.",
        ),
        described(
            matching(
                route(
                    "delete",
                    "/v1/orgs/{org}/members/{user}",
                    "removeMember",
                    "organizations",
                    "Remove a member.",
                ),
                "organization",
            ),
            "Admins and owners only; the last owner cannot be removed.",
        ),
        // Projects.
        described(
            created(with_body(
                route(
                    "post",
                    "/v1/orgs/{org}/projects",
                    "createProject",
                    "projects",
                    "Create a project.",
                ),
                body::<bodies::CreateProject>,
            )),
            "Admins and owners only. The key is unique in the organization.",
        ),
        matching(
            with_body(
                route(
                    "patch",
                    "/v1/orgs/{org}/projects/{project}",
                    "renameProject",
                    "projects",
                    "Rename a project.",
                ),
                body::<bodies::RenameProject>,
            ),
            "project",
        ),
        matching(
            route(
                "post",
                "/v1/orgs/{org}/projects/{project}/archive",
                "archiveProject",
                "projects",
                "Archive a project.",
            ),
            "project",
        ),
        matching(
            route(
                "post",
                "/v1/orgs/{org}/projects/{project}/unarchive",
                "unarchiveProject",
                "projects",
                "Unarchive a project.",
            ),
            "project",
        ),
        // Tasks.
        described(
            created(with_body(
                route(
                    "post",
                    "/v1/orgs/{org}/projects/{project}/tasks",
                    "createTask",
                    "tasks",
                    "Create a task in a project.",
                ),
                body::<bodies::CreateTask>,
            )),
            "Members, admins and owners. The task takes the project's next number (`WEB-42`).",
        ),
        matching(
            with_body(
                route(
                    "patch",
                    "/v1/orgs/{org}/tasks/{task}",
                    "editTask",
                    "tasks",
                    "Edit a task's title, description, priority or due date.",
                ),
                body::<bodies::EditTask>,
            ),
            "task",
        ),
        matching(
            with_body(
                route(
                    "post",
                    "/v1/orgs/{org}/tasks/{task}/assignee",
                    "setAssignee",
                    "tasks",
                    "Assign a task to a member (or unassign it with null).",
                ),
                body::<bodies::SetAssignee>,
            ),
            "task",
        ),
        matching(
            route(
                "delete",
                "/v1/orgs/{org}/tasks/{task}/assignee",
                "unassignTask",
                "tasks",
                "Unassign a task.",
            ),
            "task",
        ),
        matching(
            with_body(
                route(
                    "post",
                    "/v1/orgs/{org}/tasks/{task}/status",
                    "changeTaskStatus",
                    "tasks",
                    "Move a task to another status of its project's workflow.",
                ),
                body::<bodies::ChangeStatus>,
            ),
            "task",
        ),
        matching(
            with_body(
                route(
                    "post",
                    "/v1/orgs/{org}/tasks/{task}/tags",
                    "addTaskTag",
                    "tasks",
                    "Tag a task.",
                ),
                body::<bodies::AddTaskTag>,
            ),
            "task",
        ),
        matching(
            route(
                "delete",
                "/v1/orgs/{org}/tasks/{task}/tags/{tag}",
                "removeTaskTag",
                "tasks",
                "Remove a tag from a task.",
            ),
            "task",
        ),
        matching(
            route(
                "post",
                "/v1/orgs/{org}/tasks/{task}/archive",
                "archiveTask",
                "tasks",
                "Archive a task.",
            ),
            "task",
        ),
        described(
            created(matching(
                with_body(
                    route(
                        "post",
                        "/v1/orgs/{org}/tasks/{task}/comments",
                        "addComment",
                        "comments",
                        "Comment on a task.",
                    ),
                    body::<bodies::AddComment>,
                ),
                "task",
            )),
            "`@handle` mentions of members notify them. The answer's `id` is the comment's.",
        ),
        matching(
            with_body(
                route(
                    "patch",
                    "/v1/orgs/{org}/tasks/{task}/comments/{comment}",
                    "editComment",
                    "comments",
                    "Edit a comment (its author only).",
                ),
                body::<bodies::EditComment>,
            ),
            "task",
        ),
        matching(
            route(
                "delete",
                "/v1/orgs/{org}/tasks/{task}/comments/{comment}",
                "deleteComment",
                "comments",
                "Delete a comment (its author, or an admin).",
            ),
            "task",
        ),
        // The tag catalog.
        described(
            created(matching(
                with_body(
                    route(
                        "post",
                        "/v1/orgs/{org}/tags",
                        "createTag",
                        "tags",
                        "Create a tag.",
                    ),
                    body::<bodies::CreateTag>,
                ),
                "tag catalog",
            )),
            "Members, admins and owners. Names are unique in the organization.",
        ),
        described(
            matching(
                with_body(
                    route(
                        "patch",
                        "/v1/orgs/{org}/tags/{tag}",
                        "renameTag",
                        "tags",
                        "Rename a tag.",
                    ),
                    body::<bodies::RenameTag>,
                ),
                "tag catalog",
            ),
            "Admins and owners only.",
        ),
        described(
            matching(
                route(
                    "delete",
                    "/v1/orgs/{org}/tags/{tag}",
                    "deleteTag",
                    "tags",
                    "Delete a tag.",
                ),
                "tag catalog",
            ),
            "Admins and owners only.",
        ),
        // The caller's inbox.
        described(
            matching(
                route(
                    "post",
                    "/v1/orgs/{org}/me/notifications/{notification}/read",
                    "markNotificationRead",
                    "notifications",
                    "Mark one of the caller's notifications read.",
                ),
                "inbox",
            ),
            "Any member, viewers included.",
        ),
    ]
}

/// The error statuses a route can answer with.
fn error_statuses(route: &Route) -> BTreeSet<u16> {
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

fn operation(route: &Route, components: &mut Components) -> Value {
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

fn build() -> Value {
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
    doc["paths"] = json!({});
    let mut components = Components::new();
    for route in routes() {
        let op = operation(&route, &mut components);
        add_operation(&mut doc, route.path, route.method, op);
    }
    for (path, item) in operational_paths("Readiness: the event store answers.") {
        for (method, op) in item.as_object().into_iter().flatten() {
            add_operation(&mut doc, path, method, op.clone());
        }
    }
    components.named("Problem", problem_schema());
    components.named("FieldError", field_error_schema());

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
