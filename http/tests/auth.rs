//! Bearer tokens verified with an identity provider's RS256 public key.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tasklog_http::auth::{mint_hs256, AuthConfig, Authenticator, Claims};
use uuid::Uuid;

const PRIVATE: &str = include_str!("fixtures/rs256-test-private.pem");
const PUBLIC: &str = include_str!("fixtures/rs256-test-public.pem");

fn rs256_token(user: Uuid) -> String {
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = Claims {
        sub: user,
        preferred_username: Some("ann".into()),
        iat: now,
        exp: now + 60,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn rs256() -> Authenticator {
    Authenticator::new(&AuthConfig::Rs256 {
        public_key_pem: PUBLIC.into(),
    })
    .unwrap()
}

#[test]
fn a_token_signed_by_the_identity_providers_key_names_its_user() {
    let user = Uuid::now_v7();
    let claims = rs256().verify(&rs256_token(user)).unwrap();
    assert_eq!(claims.sub, user);
    assert_eq!(claims.preferred_username.as_deref(), Some("ann"));
}

#[test]
fn an_hs256_token_is_refused_when_the_server_expects_rs256() {
    // The public key is public: accepting HS256 signed with it would let anyone mint tokens.
    let forged = mint_hs256(PUBLIC, Uuid::now_v7(), None, 60).unwrap();
    assert!(rs256().verify(&forged).is_err());
    assert!(rs256()
        .verify(&mint_hs256("any-secret", Uuid::now_v7(), None, 60).unwrap())
        .is_err());
}
