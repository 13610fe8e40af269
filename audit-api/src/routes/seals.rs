//! The seals (docs/audit.md, "Seals"): the latest signed tree head, an
//! inclusion proof for one of the organization's events, and a consistency
//! proof between two heads, each exactly as the CLI writes it, so that
//! `tasklog audit verify-head` / `verify-inclusion` / `verify-consistency`
//! check it offline with the public key alone.
//!
//! The tree covers the whole log, so a head and a consistency proof say how
//! many events all organizations hold together, and a proof's path holds
//! hashes of subtrees (never another organization's event, hash or
//! position). An inclusion proof is given only for the organization's own
//! events: another's is the same 404 as one that does not exist.

use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use tasklog_event_store_postgres::seals::{
    consistency_proof, inclusion_proof, latest_head, LeafRef, SealStoreError,
};
use tasklog_http::query::{bad_param, NoParams, ParamUuid};
use tasklog_http::{Api, ApiError, AppPath, Caller, Query};
use uuid::Uuid;

use crate::openapi::read;
use crate::params::{required, Position, TreeSize};
use crate::views::{Consistency, Head, Inclusion};
use crate::AuditState;

pub fn routes(api: &mut Api<AuditState>) {
    read::<Head>(
        "/v1/orgs/{org}/audit/seals/head",
        "getLatestTreeHead",
        "The latest signed tree head.",
        "The newest head the sealer signed: the Merkle tree (RFC 6962) over the first \
         `tree_size` events of the whole log, signed with Ed25519. Keep it: any later \
         removal or rewrite of what it covers is then detectable against it. 404 until a \
         head is signed (no signing key configured, or nothing sealed yet).",
    )
    .mount(api, head);
    read::<Inclusion>(
        "/v1/orgs/{org}/audit/seals/inclusion",
        "getInclusionProof",
        "Proof that one of the organization's events is in a signed tree.",
        "For the event `event` (its id) or at `position`, against the head of `size` (the \
         latest when absent). Another organization's event, or one not yet sealed in that \
         tree, is 404.",
    )
    .query::<InclusionParams>()
    .mount(api, inclusion);
    read::<Consistency>(
        "/v1/orgs/{org}/audit/seals/consistency",
        "getConsistencyProof",
        "Proof that an older signed tree is a prefix of a newer one.",
        "Between the heads of sizes `from` and `to` (the latest when absent): the log of \
         the older head was only appended to, never rewritten. 404 when either size has no \
         signed head.",
    )
    .query::<ConsistencyParams>()
    .mount(api, consistency);
}

/// Which event, against which head.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InclusionParams {
    /// The event's id. Give this or `position`.
    #[serde(default)]
    #[schemars(with = "ParamUuid", example = &"0190a0a0-0000-7000-8000-000000000000")]
    event: Option<ParamUuid>,
    /// The event's log position, `<commit>.<event>`. Give this or `event`.
    #[serde(default)]
    #[schemars(with = "Position")]
    position: Option<Position>,
    /// The size of the signed head to prove against; the latest when absent.
    #[serde(default)]
    #[schemars(with = "TreeSize")]
    size: Option<TreeSize>,
}

/// The two heads.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConsistencyParams {
    /// The older head's size. Required.
    // Absent is None (serde), answered with our own 422 naming it.
    #[schemars(required)]
    #[schemars(with = "TreeSize")]
    from: Option<TreeSize>,
    /// The newer head's size, not smaller than `from`; the latest when absent.
    #[serde(default)]
    #[schemars(with = "TreeSize")]
    to: Option<TreeSize>,
}

/// The seals' errors as HTTP answers (their meanings are on the variants).
fn seal_error(e: SealStoreError) -> ApiError {
    match e {
        SealStoreError::NoHeads | SealStoreError::NoHead(_) => {
            ApiError::NotFound("signed tree head".into())
        }
        SealStoreError::NotSealed(..) => ApiError::NotFound("sealed event".into()),
        SealStoreError::Reversed { .. } => bad_param("to", "must not be smaller than `from`"),
        other => ApiError::Internal(other.into()),
    }
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn head(
    State(state): State<AuditState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    uri: Uri,
    params: Result<Query<NoParams>, ApiError>,
) -> Result<Json<Head>, ApiError> {
    let reader = state.admit(&caller, org, &uri).await?;
    params?;
    let head = latest_head(&state.pool)
        .await
        .map_err(seal_error)?
        .ok_or_else(|| seal_error(SealStoreError::NoHeads))?;
    reader.record(&state, "getLatestTreeHead", None).await?;
    Ok(Json(Head(head)))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn inclusion(
    State(state): State<AuditState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    uri: Uri,
    params: Result<Query<InclusionParams>, ApiError>,
) -> Result<Json<Inclusion>, ApiError> {
    let reader = state.admit(&caller, org, &uri).await?;
    let Query(params) = params?;
    let leaf = match (params.event, params.position) {
        (Some(id), None) => LeafRef::Event(id.0),
        (None, Some(p)) => LeafRef::Position(p.0),
        (Some(_), Some(_)) => {
            return Err(bad_param(
                "position",
                "give `event` or `position`, not both",
            ))
        }
        (None, None) => return Err(required::<()>("event", None).unwrap_err()),
    };
    let proof = inclusion_proof(&state.pool, leaf, params.size.map(|s| s.0), Some(org))
        .await
        .map_err(seal_error)?;
    reader.record(&state, "getInclusionProof", None).await?;
    Ok(Json(Inclusion(proof)))
}

#[tracing::instrument(skip_all, fields(user = %caller.user_id, org = %org))]
async fn consistency(
    State(state): State<AuditState>,
    caller: Caller,
    AppPath(org): AppPath<Uuid>,
    uri: Uri,
    params: Result<Query<ConsistencyParams>, ApiError>,
) -> Result<Json<Consistency>, ApiError> {
    let reader = state.admit(&caller, org, &uri).await?;
    let Query(params) = params?;
    let from = required("from", params.from)?;
    if let Some(to) = params.to {
        if to.0 < from.0 {
            return Err(bad_param("to", "must not be smaller than `from`"));
        }
    }
    let proof = consistency_proof(&state.pool, from.0, params.to.map(|t| t.0))
        .await
        .map_err(seal_error)?;
    reader.record(&state, "getConsistencyProof", None).await?;
    Ok(Json(Consistency(proof)))
}
