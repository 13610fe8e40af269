//! `Idempotency-Key`: a retried request gets the first response back and
//! appends nothing.
//!
//! A key belongs to the caller and the organization (both parsed, so
//! `/v1/orgs/ABC…` and `/v1/orgs/abc…` are one scope); the request it was
//! first used for is fingerprinted by method, route and parsed path ids, and
//! body, so the same key for another request is refused (422).
//!
//! While a request runs, it holds a PostgreSQL session advisory lock on its
//! key, on a connection of its own: a duplicate meanwhile gets 409 and
//! `Retry-After`. The lock is not a lease in a table: when the process dies or
//! its connection drops, PostgreSQL frees it at once, and the client's next
//! retry proceeds. The first request records a random seed and runs with ids
//! derived from it; a retry of one that died half way runs again with the same
//! seed, draws the same ids, and whatever the first run appended is recognised
//! by event id and not appended again. A finished request's response is stored
//! as bytes (any body stores) and replayed with `Idempotent-Replayed: true`.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};
use tasklog_http::{ApiError, MAX_BODY_BYTES};
use tracing::Instrument;
use uuid::Uuid;

use crate::extract::IdSource;
use crate::service::AppState;

pub const HEADER: &str = "idempotency-key";

/// The middleware's state: the app, and the connections that hold keys.
#[derive(Clone)]
pub struct Keys {
    app: AppState,
    /// One connection per keyed request in flight, apart from the app's pool
    /// so that holders never wait for connections they themselves hold.
    locks: PgPool,
}

impl Keys {
    pub fn new(app: &AppState) -> Self {
        let options = app.pool.options().clone();
        let size = (options.get_max_connections() / 2).max(4);
        let locks = options
            .max_connections(size)
            .min_connections(0)
            .connect_lazy_with((*app.pool.connect_options()).clone());
        Self {
            app: app.clone(),
            locks,
        }
    }
}

pub async fn layer(State(keys): State<Keys>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    // The whole keyed run is a task of its own: a client that hangs up does
    // not cut a command off between its appends or before its response is
    // stored.
    let run = tokio::spawn(run(keys, key, req, next).instrument(tracing::Span::current()));
    match run.await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => e.into_response(),
        Err(e) => {
            ApiError::Internal(anyhow::anyhow!("a keyed request failed: {e}")).into_response()
        }
    }
}

/// Who, where and what: the parsed parts of a request that a key belongs to.
struct Scope {
    /// The organization id (canonical text), or "" outside any organization.
    org: String,
    caller: Uuid,
    key: String,
    /// Method, route with canonical ids, body.
    fingerprint: Vec<u8>,
}

impl Scope {
    /// The advisory lock that a request with this key holds while it runs.
    fn lock_id(&self) -> i64 {
        let h = Sha256::new()
            .chain_update(b"tasklog.idempotency\0")
            .chain_update(self.org.as_bytes())
            .chain_update([0])
            .chain_update(self.caller.as_bytes())
            .chain_update(self.key.as_bytes())
            .finalize();
        i64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
    }
}

/// The route's template with each path parameter in canonical form (UUIDs
/// as lower-case hyphenated text), or `None` when the organization in the
/// path is no id at all (then nothing can be appended: 404 follows).
fn canonical_path(template: &str, params: &RawPathParams) -> Option<(String, String)> {
    let mut org = String::new();
    let mut path = String::with_capacity(template.len());
    for (i, segment) in template.split('/').enumerate() {
        if i > 0 {
            path.push('/');
        }
        let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            path.push_str(segment);
            continue;
        };
        let value = params.iter().find(|(n, _)| *n == name).map(|(_, v)| v)?;
        let value = match Uuid::parse_str(value) {
            Ok(id) => id.to_string(),
            Err(_) if name == "org" => return None,
            Err(_) => value.to_owned(),
        };
        if name == "org" {
            org.clone_from(&value);
        }
        path.push_str(&value);
    }
    Some((org, path))
}

async fn run(keys: Keys, key: HeaderValue, req: Request, next: Next) -> Result<Response, ApiError> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?
        .to_owned();
    let (mut parts, body) = req.into_parts();
    let Some(template) = parts.extensions.get::<MatchedPath>().cloned() else {
        // No route: 404 or 405 follows, nothing runs.
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    let params = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| ApiError::NotFound("resource".into()))?;
    let Some((org, path)) = canonical_path(template.as_str(), &params) else {
        return Ok(next.run(Request::from_parts(parts, body)).await);
    };
    let caller = keys.app.auth.caller(&parts)?;
    // Headers the command would refuse are refused before a stored answer
    // could be replayed for them.
    crate::extract::correlation_id(&parts.headers)?;
    crate::extract::if_match(&parts.headers)?;
    let bytes = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(MAX_BODY_BYTES))?;
    let scope = Scope {
        org,
        caller: caller.user_id,
        fingerprint: Sha256::new()
            .chain_update(parts.method.as_str())
            .chain_update([0])
            .chain_update(&path)
            .chain_update([0])
            .chain_update(&bytes)
            .finalize()
            .to_vec(),
        key,
    };

    let mut held = Held::take(&keys.locks, scope.lock_id()).await?;
    let seed = match claim(held.conn(), &scope).await {
        Ok(Claim::Run(seed)) => seed,
        Ok(Claim::Replay(status, body)) => {
            held.release().await;
            return Ok(replay(status, body));
        }
        Err(e) => {
            held.release().await;
            return Err(e);
        }
    };

    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(IdSource::seeded(seed));
    let response = next.run(req).await;

    let status = response.status();
    if status.is_server_error() || status == StatusCode::CONFLICT {
        // Worth retrying: the seed stays, so a retry runs again with the same ids.
        held.release().await;
        return Ok(response);
    }
    let (head, body) = response.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            held.release().await;
            return Err(ApiError::Internal(anyhow::anyhow!(
                "buffering a response: {e}"
            )));
        }
    };
    let saved = sqlx::query(
        "UPDATE idempotency_keys SET response_status = $4, response_raw = $5 \
         WHERE org_scope = $1 AND caller_id = $2 AND idempotency_key = $3",
    )
    .bind(&scope.org)
    .bind(scope.caller)
    .bind(&scope.key)
    .bind(status.as_u16() as i16)
    .bind(body.as_ref())
    .execute(held.conn())
    .await;
    if let Err(e) = saved {
        // The command's outcome stands; a retry runs again with the same seed
        // and finds its events stored.
        tracing::warn!(error = ?e, "the response to a keyed request could not be stored");
    }
    held.release().await;
    Ok(Response::from_parts(head, Body::from(body)))
}

/// A connection holding a key's advisory lock. Released explicitly; dropped
/// otherwise (a panic), it closes its connection, which frees the lock.
struct Held {
    conn: Option<PoolConnection<Postgres>>,
    lock_id: i64,
}

impl Held {
    /// The key's lock, or 409 while another request holds it.
    async fn take(locks: &PgPool, lock_id: i64) -> Result<Self, ApiError> {
        let mut conn = locks.acquire().await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_id)
            .fetch_one(&mut *conn)
            .await?;
        if !taken {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still in progress; retry".into(),
            ));
        }
        Ok(Self {
            conn: Some(conn),
            lock_id,
        })
    }

    fn conn(&mut self) -> &mut sqlx::PgConnection {
        self.conn.as_mut().expect("held until released")
    }

    /// Unlocks and returns the connection to the pool; a connection that
    /// cannot unlock is closed, which unlocks.
    async fn release(mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(self.lock_id)
            .fetch_one(&mut *conn)
            .await;
        if !matches!(unlocked, Ok(true)) {
            drop(conn.detach());
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

enum Claim {
    /// Run the request with ids from this seed.
    Run(Uuid),
    /// The first response, to send again.
    Replay(StatusCode, Vec<u8>),
}

/// With the key's lock held: a new key, a finished one, or one whose
/// earlier run died (its lock went with it).
async fn claim(conn: &mut sqlx::PgConnection, scope: &Scope) -> Result<Claim, ApiError> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys \
            (org_scope, caller_id, idempotency_key, fingerprint, seed, locked_until) \
         VALUES ($1, $2, $3, $4, $5, now()) \
         ON CONFLICT DO NOTHING RETURNING seed",
    )
    .bind(&scope.org)
    .bind(scope.caller)
    .bind(&scope.key)
    .bind(&scope.fingerprint)
    .bind(Uuid::now_v7())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(seed) = inserted {
        return Ok(Claim::Run(seed));
    }
    type Stored = (Vec<u8>, Uuid, Option<i16>, Option<Vec<u8>>);
    // `response_body` (jsonb) holds responses stored before `response_raw`.
    let (fingerprint, seed, status, body): Stored = sqlx::query_as(
        "SELECT fingerprint, seed, response_status, \
                coalesce(response_raw, convert_to(response_body::text, 'UTF8')) \
         FROM idempotency_keys \
         WHERE org_scope = $1 AND caller_id = $2 AND idempotency_key = $3",
    )
    .bind(&scope.org)
    .bind(scope.caller)
    .bind(&scope.key)
    .fetch_one(&mut *conn)
    .await?;
    if fingerprint != scope.fingerprint {
        return Err(ApiError::IdempotencyKeyReused);
    }
    match (status, body) {
        (Some(status), Some(body)) => Ok(Claim::Replay(
            StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
            body,
        )),
        _ => Ok(Claim::Run(seed)),
    }
}

fn replay(status: StatusCode, body: Vec<u8>) -> Response {
    let version = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b.get("version").and_then(|v| v.as_u64()));
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if let Some(etag) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
        headers.insert(axum::http::header::ETAG, etag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_differ_by_organization_caller_and_key() {
        let scope = |org: &str, key: &str| Scope {
            org: org.into(),
            caller: Uuid::nil(),
            key: key.into(),
            fingerprint: vec![],
        };
        assert_eq!(scope("a", "k").lock_id(), scope("a", "k").lock_id());
        assert_ne!(scope("a", "k").lock_id(), scope("b", "k").lock_id());
        assert_ne!(scope("a", "k").lock_id(), scope("a", "k2").lock_id());
    }
}
