//! Extractors whose rejections are [`ApiError`]s, and the metadata every command carries.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tasklog_domain::FieldError;
use uuid::Uuid;

use crate::error::ApiError;

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
                ApiError::PayloadTooLarge(crate::MAX_BODY_BYTES)
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

/// Where new ids come from. Within one idempotent request (one
/// `Idempotency-Key`) every id is derived from the key's seed, so a retry
/// after a crash draws the very same aggregate and event ids and the event
/// store's event-id idempotency keeps it from appending twice.
#[derive(Clone, Debug)]
pub struct IdSource {
    seed: Option<Uuid>,
}

impl IdSource {
    pub fn random() -> Self {
        Self { seed: None }
    }

    pub fn seeded(seed: Uuid) -> Self {
        Self { seed: Some(seed) }
    }

    /// True within an idempotent request.
    pub fn is_seeded(&self) -> bool {
        self.seed.is_some()
    }

    /// The `n`-th id for `purpose`: a UUID v7, deterministic when seeded.
    pub fn id(&self, purpose: &str, n: u32) -> Uuid {
        let Some(seed) = self.seed else {
            return Uuid::now_v7();
        };
        let s = seed.as_bytes();
        let h = Sha256::new()
            .chain_update(s)
            .chain_update(purpose.as_bytes())
            .chain_update(n.to_be_bytes())
            .finalize();
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&s[..6]); // the seed's timestamp
        b[6] = 0x70 | (h[0] & 0x0f); // version 7
        b[7] = h[1];
        b[8] = 0x80 | (h[2] & 0x3f); // RFC 4122 variant
        b[9..].copy_from_slice(&h[3..10]);
        Uuid::from_bytes(b)
    }
}

/// The header naming the request's correlation id (a UUID), kept in the
/// envelope of every event the command appends.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The correlation id a request names, if any; 400 when it is not a UUID.
pub fn correlation_id(headers: &axum::http::HeaderMap) -> Result<Option<Uuid>, ApiError> {
    let Some(value) = headers.get(CORRELATION_HEADER) else {
        return Ok(None);
    };
    // The hyphenated form only, as the document's `format: uuid` says.
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| v.len() == 36)
        .and_then(|v| Uuid::parse_str(v).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "X-Correlation-Id must be a UUID, e.g. 0192f4c1-7a8e-7b3c-9d2e-5f6a7b8c9d0e".into(),
            )
        })
}

/// The version `If-Match` names, if any (`*` or absent: none); 400
/// when it is not an ETag of ours.
pub fn if_match(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers
        .get(header::IF_MATCH)
        .map(|v| v.as_bytes().trim_ascii())
    {
        None | Some(b"*") => Ok(None),
        Some(v) => parse_if_match(std::str::from_utf8(v).unwrap_or_default()).map(Some),
    }
}

/// What every command carries besides its body.
#[derive(Clone, Debug)]
pub struct CommandMeta {
    pub correlation_id: Uuid,
    pub now: DateTime<Utc>,
    /// The version the client last saw (`If-Match`), if it sent one.
    pub if_match: Option<u64>,
    pub ids: IdSource,
}

impl<S: Send + Sync> FromRequestParts<S> for CommandMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let correlation_id = correlation_id(&parts.headers)?.unwrap_or_else(Uuid::now_v7);
        let if_match = if_match(&parts.headers)?;
        Ok(Self {
            correlation_id,
            now: Utc::now(),
            if_match,
            ids: parts
                .extensions
                .get::<IdSource>()
                .cloned()
                .unwrap_or_else(IdSource::random),
        })
    }
}

/// The version an `If-Match` names: the command API's ETag (`"3"`) or the
/// query API's (`"3-<digest of the body>"`), whose version is the same.
fn parse_if_match(v: &str) -> Result<u64, ApiError> {
    let v = v.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v.trim_matches('"');
    let version = match v.split_once('-') {
        Some((version, digest))
            if !digest.is_empty() && digest.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            version
        }
        _ => v,
    };
    version.parse().map_err(|_| {
        ApiError::BadRequest(
            "If-Match must be an ETag of the resource, e.g. \"3\" or \"3-9f86d081884c7d65\"".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_repeat_per_purpose_and_are_uuid_v7() {
        let ids = IdSource::seeded(Uuid::now_v7());
        assert_eq!(ids.id("event", 0), ids.id("event", 0));
        assert_ne!(ids.id("event", 0), ids.id("event", 1));
        assert_ne!(ids.id("event", 0), ids.id("task", 0));
        assert_eq!(ids.id("event", 3).get_version_num(), 7);
        assert_eq!(ids.id("event", 3).get_variant(), uuid::Variant::RFC4122);
    }

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
        (e.parts().0.as_u16(), field)
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

    #[test]
    fn if_match_accepts_strong_weak_and_bare_versions() {
        assert_eq!(parse_if_match("\"3\"").unwrap(), 3);
        assert_eq!(parse_if_match("W/\"4\"").unwrap(), 4);
        assert_eq!(parse_if_match("5").unwrap(), 5);
        assert_eq!(parse_if_match("\"6-9f86d081884c7d65\"").unwrap(), 6);
        assert!(parse_if_match("\"6-\"").is_err());
        assert!(parse_if_match("\"6-xyz\"").is_err());
        assert!(parse_if_match("\"abc\"").is_err());
    }
}
