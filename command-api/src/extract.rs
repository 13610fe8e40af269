//! The metadata every command carries: ids, correlation id, `If-Match`.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tasklog_http::ApiError;
use uuid::Uuid;

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
