//! Extractors whose rejections are [`ApiError`]s: JSON bodies and path parameters.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tasklog_domain::FieldError;

use crate::error::ApiError;

/// Bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body: 415 without a JSON content type, 413 over the limit, 400 when
/// it is not JSON, 422 naming the field when it does not fit the type.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(inner)
                if inner.to_string().contains("length limit") =>
            {
                ApiError::PayloadTooLarge(MAX_BODY_BYTES)
            }
            other => ApiError::BadRequest(other.body_text()),
        })?;
        parse_json(&bytes).map(AppJson)
    }
}

/// Deserializes a body: 400 when it is not one JSON value (trailing data
/// included), 422 naming the field when it does not fit the type or a string
/// holds a NUL character (PostgreSQL stores none, so it would fail later).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The common case, straight into `T`: no NUL escape anywhere, and valid.
    if !contains_nul_escape(bytes) {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        if let Ok(t) = serde_path_to_error::deserialize(&mut *de) {
            if de.end().is_ok() {
                return Ok(t);
            }
        }
    }
    // Otherwise JSON first, the type second, to say what is wrong: serde_json
    // reports a wrongly typed enum (`"priority": 5`) as a syntax error when it
    // parses straight into `T`.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
    if let Some(field) = find_nul(&value, String::new()) {
        return Err(ApiError::validation(
            field,
            "must not contain NUL characters (U+0000)",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        ApiError::Validation {
            detail: "the body does not match the expected shape".into(),
            errors: vec![FieldError {
                field: if field == "." { String::new() } else { field },
                message: strip_position(&e.into_inner().to_string()),
            }],
        }
    })
}

/// Whether the raw body may spell a NUL (`\u0000`, the only way JSON can);
/// a false alarm (an escaped backslash before `u0000`) only costs the slow path.
fn contains_nul_escape(bytes: &[u8]) -> bool {
    bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && &w[2..] == b"0000")
}

/// The path of the first string (or key) in `value` that holds a NUL.
fn find_nul(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) => s.contains('\0').then_some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(join(k))
            } else {
                find_nul(v, join(k))
            }
        }),
        _ => None,
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Path parameters; an id that does not parse names nothing that exists: 404.
pub struct AppPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| AppPath(t))
            .map_err(|_| ApiError::NotFound("resource".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        priority: Option<tasklog_domain::Priority>,
    }

    fn rejected(json: &str) -> (u16, Option<String>) {
        let e = parse_json::<Body>(json.as_bytes()).unwrap_err();
        let field = match &e {
            ApiError::Validation { errors, .. } => Some(errors[0].field.clone()),
            _ => None,
        };
        (e.code().status().as_u16(), field)
    }

    #[test]
    fn trailing_data_after_the_body_is_malformed_json() {
        assert_eq!(rejected(r#"{"name":"t1"}garbage"#), (400, None));
        assert_eq!(rejected(r#"{"name":"t1"} {}"#), (400, None));
    }

    #[test]
    fn a_wrongly_typed_enum_is_a_validation_error_naming_the_field() {
        assert_eq!(
            rejected(r#"{"name":"t","priority":5}"#),
            (422, Some("priority".into()))
        );
        assert_eq!(
            rejected(r#"{"name":"t","priority":"highest"}"#),
            (422, Some("priority".into()))
        );
    }

    #[test]
    fn a_nul_character_in_any_string_is_a_validation_error_naming_the_field() {
        assert_eq!(
            rejected(r#"{"name":"a\u0000b"}"#),
            (422, Some("name".into()))
        );
        assert_eq!(
            rejected(r#"{"name":"ok","x\u0000":1}"#),
            (422, Some("x\u{0}".into()))
        );
        assert!(parse_json::<Body>(br#"{"name":"a\\u0000b"}"#).is_ok());
    }
}
