//! Bearer tokens for tests, signed with the secret every app of the kit
//! verifies with.

use uuid::Uuid;

/// The HS256 secret of the kit's tokens: the development secret, which
/// `Settings::local` (and so every app the kit starts) verifies with.
pub const SECRET: &str = tasklog::config::DEV_JWT_SECRET;

/// A caller: a user id and a token naming it.
#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub token: String,
}

impl User {
    /// A new user (a fresh id) called `handle`, with a token valid for an hour.
    pub fn new(handle: &str) -> Self {
        let id = Uuid::now_v7();
        Self {
            id,
            token: token(id, handle),
        }
    }
}

/// A token for `user` called `handle`, valid for an hour.
pub fn token(user: Uuid, handle: &str) -> String {
    token_signed_with(SECRET, user, Some(handle), 3600)
}

/// A token signed with `secret` (another one: a forged token), valid for
/// `ttl_seconds`.
pub fn token_signed_with(
    secret: &str,
    user: Uuid,
    handle: Option<&str>,
    ttl_seconds: u64,
) -> String {
    tasklog_http::auth::mint_hs256(secret, user, handle, ttl_seconds)
        .expect("an HS256 token is minted")
}

/// A token of a fresh user that expires at `exp` (seconds since the epoch),
/// issued an hour before: expired tokens, and tokens near the leeway.
pub fn token_expiring_at(exp: u64) -> String {
    let claims = tasklog_http::auth::Claims {
        sub: Uuid::now_v7(),
        preferred_username: Some("late".into()),
        iat: exp.saturating_sub(3_600),
        exp,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("an HS256 token is encoded")
}
