//! The building blocks of both APIs' OpenAPI 3.1 documents: component
//! schemas from the real types, query parameters from their structs, the
//! problem responses, the operational routes and the `/docs` page.

use axum::response::Html;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use crate::query::parameter_names;

/// The self-contained page `/docs` serves in both APIs: inline CSS and a
/// little script that fetches `./openapi.json` and renders every operation.
pub const DOCS_HTML: &str = include_str!("api.html");

/// `GET /docs`.
pub async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
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

    /// The query parameters a [`crate::query::Query<T>`] takes, in
    /// declaration order: each field's doc comment is the parameter's
    /// description, its first `examples` entry the parameter's `example`,
    /// and a list (an array) is comma-separated.
    pub fn query_parameters<T: JsonSchema + DeserializeOwned>(&mut self) -> Vec<Value> {
        let schema = T::json_schema(&mut self.requests).to_value();
        let required = |name: &str| {
            schema["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|n| n == name))
        };
        parameter_names::<T>()
            .iter()
            .map(|name| {
                let mut schema = schema["properties"][*name].clone();
                let fields = schema
                    .as_object_mut()
                    .expect("a parameter's schema is an object");
                let description = fields.remove("description");
                // An absent parameter is absent: only a value is a default.
                if fields
                    .get("default")
                    .is_some_and(|d| d.is_null() || d.as_array().is_some_and(Vec::is_empty))
                {
                    fields.remove("default");
                }
                let example = fields
                    .remove("examples")
                    .and_then(|e| e.as_array()?.first().cloned());
                let mut p = json!({
                    "name": name,
                    "in": "query",
                    "required": required(name),
                    "description": description
                        .unwrap_or_else(|| panic!("query parameter {name} has no doc comment")),
                    "schema": schema,
                });
                if p["schema"]["type"] == "array" {
                    p["style"] = json!("form");
                    p["explode"] = json!(false);
                }
                if let Some(example) = example {
                    p["example"] = example;
                }
                p
            })
            .collect()
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
