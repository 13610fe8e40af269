//! Bearer JWT authentication. The token says who the caller is; what they may
//! do comes from the organization's event-sourced membership, checked per request.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

/// How tokens are verified.
#[derive(Clone, Debug)]
pub enum AuthConfig {
    /// A shared secret (development, single deployments).
    Hs256 { secret: SecretString },
    /// An identity provider's public key, PEM.
    Rs256 { public_key_pem: String },
}

/// What a token carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The user's handle, used as the owner's handle when they create an organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

/// How long past `exp` (and before `nbf`) a token is still accepted.
pub const TOKEN_LEEWAY_SECONDS: u64 = 5;

impl Authenticator {
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let (key, alg) = match config {
            AuthConfig::Hs256 { secret } => (
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                Algorithm::HS256,
            ),
            AuthConfig::Rs256 { public_key_pem } => (
                DecodingKey::from_rsa_pem(public_key_pem.as_bytes())?,
                Algorithm::RS256,
            ),
        };
        let mut validation = Validation::new(alg);
        // Clocks of token issuers and this server may differ by a little; an
        // expired token is refused once it is older than this (RFC 7519 §4.1.4).
        validation.leeway = TOKEN_LEEWAY_SECONDS;
        Ok(Self { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| ApiError::Unauthenticated(format!("the bearer token is not valid: {e}")))
    }

    /// The caller named by a request's `Authorization` header.
    pub fn caller(&self, parts: &Parts) -> Result<Caller, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthenticated("an Authorization: Bearer token is required".into())
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                // The scheme name is case-insensitive (RFC 9110 §11.1).
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "the Authorization header must be 'Bearer <token>'".into(),
                )
            })?;
        let claims = self.verify(token.trim())?;
        Ok(Caller {
            user_id: claims.sub,
            handle: claims.preferred_username,
        })
    }
}

/// Mints an HS256 token (the `tasklog token` subcommand and tests).
pub fn mint_hs256(
    secret: &str,
    user_id: Uuid,
    handle: Option<&str>,
    ttl_seconds: u64,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = Claims {
        sub: user_id,
        preferred_username: handle.map(str::to_owned),
        iat: now,
        exp: now + ttl_seconds,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub handle: Option<String>,
}

/// Anything that can verify callers (the application state of each API).
pub trait HasAuthenticator {
    fn authenticator(&self) -> &Arc<Authenticator>;
}

impl<S: HasAuthenticator + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        state.authenticator().caller(parts)
    }
}
