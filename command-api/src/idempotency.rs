//! `Idempotency-Key`: a retried request gets the first response back and
//! appends nothing.
//!
//! The first request with a key records it with a random seed, runs with ids
//! derived from that seed and stores its response. A retry with a stored
//! response gets it replayed (`Idempotent-Replayed: true`). A retry of a
//! request that died half way (no response stored, its lease run out) runs
//! again with the same seed: it draws the same ids, so whatever the first run
//! appended is recognised by event id and not appended again. While the first
//! run holds the lease, a duplicate gets 409 and `Retry-After`.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::IdSource;
use crate::service::AppState;
use crate::MAX_BODY_BYTES;

pub const HEADER: &str = "idempotency-key";
/// How long a run holds its key before a retry may take over.
const LEASE_SECONDS: i32 = 30;

pub async fn layer(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    match run(app, key.clone(), req, next).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(
    app: AppState,
    key: HeaderValue,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?
        .to_owned();
    let (parts, body) = req.into_parts();
    let caller = app.auth.caller(&parts)?;
    let bytes = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(MAX_BODY_BYTES))?;
    let path = parts.uri.path().to_owned();
    // Keys are scoped to the organization in the path and the caller.
    let scope = path
        .strip_prefix("/v1/orgs/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
        .to_owned();
    let fingerprint = Sha256::new()
        .chain_update(parts.method.as_str())
        .chain_update([0])
        .chain_update(&path)
        .chain_update([0])
        .chain_update(&bytes)
        .finalize()
        .to_vec();

    let seed = match claim(&app, &scope, caller.user_id, &key, &fingerprint).await? {
        Claim::Run(seed) => seed,
        Claim::Replay(status, body) => return Ok(replay(status, body)),
    };

    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(IdSource::seeded(seed));
    let response = next.run(req).await;

    let status = response.status();
    if status.is_server_error() || status == StatusCode::CONFLICT {
        // Worth retrying: keep the seed, free the key, so a retry runs again
        // with the same ids.
        sqlx::query(
            "UPDATE idempotency_keys SET locked_until = now() \
             WHERE org_scope = $1 AND caller_id = $2 AND idempotency_key = $3",
        )
        .bind(&scope)
        .bind(caller.user_id)
        .bind(&key)
        .execute(&app.pool)
        .await?;
        return Ok(response);
    }
    let (head, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("buffering a response: {e}")))?;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = $4, response_body = $5 \
         WHERE org_scope = $1 AND caller_id = $2 AND idempotency_key = $3",
    )
    .bind(&scope)
    .bind(caller.user_id)
    .bind(&key)
    .bind(status.as_u16() as i16)
    .bind(&json)
    .execute(&app.pool)
    .await?;
    Ok(Response::from_parts(head, Body::from(body)))
}

enum Claim {
    /// Run the request with ids from this seed.
    Run(Uuid),
    /// The first response, to send again.
    Replay(StatusCode, serde_json::Value),
}

async fn claim(
    app: &AppState,
    scope: &str,
    caller: Uuid,
    key: &str,
    fingerprint: &[u8],
) -> Result<Claim, ApiError> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys \
            (org_scope, caller_id, idempotency_key, fingerprint, seed, locked_until) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) \
         ON CONFLICT DO NOTHING RETURNING seed",
    )
    .bind(scope)
    .bind(caller)
    .bind(key)
    .bind(fingerprint)
    .bind(Uuid::now_v7())
    .bind(LEASE_SECONDS)
    .fetch_optional(&app.pool)
    .await?;
    if let Some(seed) = inserted {
        return Ok(Claim::Run(seed));
    }
    let (stored_fingerprint, status, body): (Vec<u8>, Option<i16>, Option<serde_json::Value>) =
        sqlx::query_as(
            "SELECT fingerprint, response_status, response_body FROM idempotency_keys \
             WHERE org_scope = $1 AND caller_id = $2 AND idempotency_key = $3",
        )
        .bind(scope)
        .bind(caller)
        .bind(key)
        .fetch_one(&app.pool)
        .await?;
    if stored_fingerprint != fingerprint {
        return Err(ApiError::IdempotencyKeyReused);
    }
    if let (Some(status), Some(body)) = (status, body) {
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        return Ok(Claim::Replay(status, body));
    }
    // Unfinished: take it over only once the first run's lease is over.
    let taken: Option<Uuid> = sqlx::query_scalar(
        "UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $4) \
         WHERE org_scope = $1 AND caller_id = $2 AND idempotency_key = $3 \
           AND response_status IS NULL AND locked_until <= now() \
         RETURNING seed",
    )
    .bind(scope)
    .bind(caller)
    .bind(key)
    .bind(LEASE_SECONDS)
    .fetch_optional(&app.pool)
    .await?;
    taken.map(Claim::Run).ok_or_else(|| {
        ApiError::Conflict("a request with this Idempotency-Key is still in progress; retry".into())
    })
}

fn replay(status: StatusCode, body: serde_json::Value) -> Response {
    let is_problem = !status.is_success();
    let version = body.get("version").and_then(|v| v.as_u64());
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if is_problem {
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
    }
    if let Some(etag) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
        headers.insert(axum::http::header::ETAG, etag);
    }
    response
}
