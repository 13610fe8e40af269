//! The query API's OpenAPI 3.1 document, built from the route table below and
//! the views' JSON Schemas with the command API's building blocks. Served at
//! `GET /openapi.json`, rendered offline at `GET /docs`, committed as
//! `schemas/openapi/query-api.json` and checked for drift.

use std::sync::LazyLock;

use axum::Json;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use tasklog_command_api::openapi::{
    add_operation, document_shell, error_response_name, error_responses, field_error_schema,
    operational_paths, path_param, path_params, problem_schema, Components,
};

use crate::params::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::views::{Items, Page, Project, Task, TaskDetail};

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    Json(openapi())
}

/// The query API's OpenAPI document.
pub fn openapi() -> Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(build);
    DOCUMENT.clone()
}

/// The shapes of answers whose types are private to their route modules,
/// described here. Keep them in step with `routes/`.
#[allow(dead_code)]
mod shapes {
    use chrono::{DateTime, Utc};
    use schemars::JsonSchema;
    use uuid::Uuid;

    use crate::views::Task;

    /// A tag of the organization's catalog.
    #[derive(JsonSchema)]
    pub struct Tag {
        pub id: Uuid,
        pub name: String,
        /// `#rrggbb`
        pub color: Option<String>,
        /// Tasks carrying the tag.
        pub usage_count: i64,
    }

    /// A member of the organization.
    #[derive(JsonSchema)]
    pub struct Member {
        pub user_id: Uuid,
        pub handle: String,
        /// `owner`, `admin`, `member` or `viewer`.
        pub role: String,
        pub joined_at: DateTime<Utc>,
    }

    /// One of the caller's notifications.
    #[derive(JsonSchema)]
    pub struct Notification {
        pub id: Uuid,
        /// `assigned` or `mentioned`.
        pub kind: String,
        pub task_id: Uuid,
        pub task_key: Option<String>,
        pub task_title: Option<String>,
        pub comment_id: Option<Uuid>,
        pub actor: Option<Uuid>,
        pub created_at: DateTime<Utc>,
        pub read: bool,
    }

    /// A project's board: one column per workflow status, in workflow order.
    #[derive(JsonSchema)]
    pub struct Board {
        pub columns: Vec<Column>,
    }

    /// One status of a board.
    #[derive(JsonSchema)]
    pub struct Column {
        pub status: String,
        pub category: String,
        /// Non-archived tasks in this status, of which `tasks` shows the first 100.
        pub total: i64,
        pub tasks: Vec<Task>,
    }

    /// One event in a task's history.
    #[derive(JsonSchema)]
    pub struct ActivityItem {
        pub event_id: Uuid,
        pub event_type: String,
        pub actor: Option<Uuid>,
        pub occurred_at: DateTime<Utc>,
        /// The event's payload, as its schema in `schemas/events/` describes it;
        /// but once a comment is deleted, its `CommentAdded` and `CommentEdited`
        /// lose `body` and `mentions` and say `"redacted": true`.
        pub data: serde_json::Value,
    }
}

/// A query parameter of a list.
struct QueryParam {
    name: &'static str,
    description: &'static str,
    schema: Value,
    /// A value the endpoint accepts (the route test sends it).
    example: &'static str,
    /// Comma-separated and repeatable.
    list: bool,
}

/// One query route (every one is a GET).
struct Route {
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    response: fn(&mut Components) -> Value,
    /// Answers with `ETag` and honours `If-None-Match` (304).
    etag: bool,
    query: Vec<QueryParam>,
}

fn schema<T: JsonSchema>(c: &mut Components) -> Value {
    c.response::<T>()
}

fn param(
    name: &'static str,
    description: &'static str,
    schema: Value,
    example: &'static str,
) -> QueryParam {
    QueryParam {
        name,
        description,
        schema,
        example,
        list: false,
    }
}

fn page_params() -> Vec<QueryParam> {
    vec![
        param(
            "limit",
            "Items per page.",
            json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT }),
            "10",
        ),
        param(
            "cursor",
            "The `next_cursor` of the previous page; opaque.",
            json!({ "type": "string" }),
            "",
        ),
    ]
}

/// Every route the query API serves, apart from the operational ones.
fn routes() -> Vec<Route> {
    let route = |path, id, tag, summary, response| Route {
        path,
        id,
        tag,
        summary,
        description: None,
        response,
        etag: false,
        query: Vec::new(),
    };
    let task_filters = {
        let mut filters = vec![
            QueryParam {
                list: true,
                ..param(
                    "status",
                    "Only tasks in one of these statuses (comma-separated or repeated).",
                    json!({ "type": "array", "items": { "type": "string" } }),
                    "todo",
                )
            },
            param(
                "assignee",
                "Only tasks assigned to this user, or `none` for unassigned ones.",
                json!({ "anyOf": [{ "type": "string", "format": "uuid" }, { "const": "none" }] }),
                "none",
            ),
            param(
                "tag",
                "Only tasks carrying this tag.",
                json!({ "type": "string", "format": "uuid" }),
                "0190a0a0-0000-7000-8000-000000000000",
            ),
            QueryParam {
                list: true,
                ..param(
                    "priority",
                    "Only tasks of one of these priorities (comma-separated or repeated).",
                    json!({ "type": "array", "items": {
                        "type": "string", "enum": ["none", "low", "medium", "high", "urgent"]
                    }}),
                    "high,urgent",
                )
            },
            param(
                "due_before",
                "Only tasks due before this day.",
                json!({
                    "type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                    "description": "YYYY-MM-DD, a year from 0001 to 9999"
                }),
                "2030-01-31",
            ),
            param(
                "due_after",
                "Only tasks due after this day.",
                json!({
                    "type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                    "description": "YYYY-MM-DD, a year from 0001 to 9999"
                }),
                "2020-01-01",
            ),
            param(
                "q",
                "Full-text search in title and description.",
                json!({ "type": "string" }),
                "login",
            ),
            param(
                "archived",
                "`true` lists the archived tasks instead.",
                json!({ "type": "boolean", "default": false }),
                "false",
            ),
            param(
                "sort",
                "The order; `-` for descending. Ties are broken by id. Tasks without a due \
                 date come last either way.",
                json!({ "type": "string", "default": "created", "enum": [
                    "created", "-created", "updated", "-updated",
                    "priority", "-priority", "due", "-due"
                ]}),
                "-priority",
            ),
        ];
        filters.extend(page_params());
        filters
    };
    vec![
        route(
            "/v1/orgs/{org}/projects",
            "listProjects",
            "projects",
            "Every project, oldest first, with its task counts by status.",
            schema::<Items<Project>>,
        ),
        Route {
            etag: true,
            description: Some("With the project's workflow."),
            ..route(
                "/v1/orgs/{org}/projects/{project}",
                "getProject",
                "projects",
                "One project.",
                schema::<Project>,
            )
        },
        Route {
            description: Some(
                "Non-archived tasks by status, in workflow order; within a column, most urgent \
                 first, then oldest first; at most 100 per column.",
            ),
            ..route(
                "/v1/orgs/{org}/projects/{project}/board",
                "getBoard",
                "projects",
                "A project's board.",
                schema::<shapes::Board>,
            )
        },
        Route {
            query: task_filters,
            description: Some("Filtered, sorted, keyset-paginated. An unknown parameter is 422."),
            ..route(
                "/v1/orgs/{org}/projects/{project}/tasks",
                "listTasks",
                "tasks",
                "A project's tasks.",
                schema::<Page<Task>>,
            )
        },
        Route {
            etag: true,
            ..route(
                "/v1/orgs/{org}/tasks/{task}",
                "getTask",
                "tasks",
                "One task with its comments and tags.",
                schema::<TaskDetail>,
            )
        },
        Route {
            query: page_params(),
            ..route(
                "/v1/orgs/{org}/tasks/{task}/activity",
                "getTaskActivity",
                "tasks",
                "A task's history, oldest first.",
                schema::<Page<shapes::ActivityItem>>,
            )
        },
        route(
            "/v1/orgs/{org}/tags",
            "listTags",
            "directory",
            "Every tag, by name, with how many tasks carry it.",
            schema::<Items<shapes::Tag>>,
        ),
        route(
            "/v1/orgs/{org}/members",
            "listMembers",
            "directory",
            "Every member, by handle.",
            schema::<Items<shapes::Member>>,
        ),
        Route {
            query: {
                let mut query = vec![param(
                    "unread",
                    "`true` leaves out the read ones.",
                    json!({ "type": "boolean", "default": false }),
                    "true",
                )];
                query.extend(page_params());
                query
            },
            ..route(
                "/v1/orgs/{org}/me/notifications",
                "listNotifications",
                "notifications",
                "The caller's notifications, newest first.",
                schema::<Page<shapes::Notification>>,
            )
        },
    ]
}

fn operation(route: &Route, components: &mut Components) -> Value {
    let mut parameters: Vec<Value> = path_params(route.path)
        .into_iter()
        .map(path_param)
        .collect();
    for q in &route.query {
        let mut p = json!({
            "name": q.name,
            "in": "query",
            "required": false,
            "description": q.description,
            "schema": q.schema,
        });
        if q.list {
            p["style"] = json!("form");
            p["explode"] = json!(false);
        }
        if !q.example.is_empty() {
            p["example"] = json!(q.example);
        }
        parameters.push(p);
    }
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

fn build() -> Value {
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
        { "name": "operations", "description": "Health, readiness and this document." }
    ]);
    doc["paths"] = json!({});
    let mut components = Components::new();
    for route in routes() {
        let op = operation(&route, &mut components);
        add_operation(&mut doc, route.path, "get", op);
    }
    for (path, item) in
        operational_paths("Readiness: the database answers; shows where each projection is.")
    {
        for (method, op) in item.as_object().into_iter().flatten() {
            add_operation(&mut doc, path, method, op.clone());
        }
    }
    components.named("Problem", problem_schema());
    components.named("FieldError", field_error_schema());

    let c = &mut doc["components"];
    c["schemas"] = Value::Object(components.finish());
    c["responses"] = Value::Object(error_responses(&[
        (400, "`X-Consistency-Token` is not a token a command returned, or a query parameter's \
               name is not percent-encoded UTF-8."),
        (401, "No bearer token, or one that does not verify."),
        (403, "Not a member of the organization; a non-member gets this whether or not the organization exists."),
        (404, "No such resource in this organization (another organization's is not found either)."),
        (422, "A query parameter is unknown, repeated or malformed (not UTF-8, a NUL byte, a date \
               outside 0001-01-01 to 9999-12-31, a cursor this endpoint did not give); `errors` \
               names it."),
        (500, "A bug; the log has the details."),
        (503, "`not_yet_consistent`: a projection this endpoint reads has not applied the \
               `X-Consistency-Token` within the wait (2 s by default); retry. Or `unavailable`: \
               the database is down."),
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
