//! The HTTP plumbing both APIs share: bearer authentication, one table of
//! error codes answered as `application/problem+json`, extractors whose
//! rejections are problems, strict query strings, router scaffolding that
//! mounts each route together with its OpenAPI operation, and `/docs`.

pub mod auth;
pub mod cursor;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod query;
pub mod router;

pub use auth::{AuthConfig, Authenticator, Caller, HasAuthenticator};
pub use error::{ApiError, ErrorCode, PROBLEM_BASE};
pub use extract::{AppJson, AppPath, MAX_BODY_BYTES};
pub use query::Query;
pub use router::{Api, Method};
