//! The query string, read strictly: an unknown, repeated or malformed
//! parameter is a 422 that names it.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::NaiveDate;
use tasklog_command_api::error::ApiError;
use uuid::Uuid;

use crate::error::{bad_param, QueryError};

/// Default page size of every list.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 200;

/// The query string's `name=value` pairs, in order.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| Self(pairs))
            .map_err(|e| ApiError::BadRequest(format!("the query string is unusable: {e}")))
    }
}

impl Params {
    /// 422 for any parameter not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<&Self, QueryError> {
        match self
            .0
            .iter()
            .find(|(name, _)| !known.contains(&name.as_str()))
        {
            Some((name, _)) => Err(bad_param(
                name,
                format!(
                    "unknown parameter; this endpoint takes {}",
                    known.join(", ")
                ),
            )),
            None => Ok(self),
        }
    }

    /// Every value of a repeatable, comma-separated parameter.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The value of a parameter given at most once; blank counts as absent.
    pub fn one(&self, name: &str) -> Result<Option<&str>, QueryError> {
        let mut values = self
            .0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.trim());
        let first = values.next();
        if values.next().is_some() {
            return Err(bad_param(name, "given more than once"));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }

    /// `true` or `false`; `default` when absent.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, QueryError> {
        match self.one(name)? {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(bad_param(name, "must be true or false")),
        }
    }

    /// A UUID, if given.
    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, QueryError> {
        self.one(name)?
            .map(|v| Uuid::parse_str(v).map_err(|_| bad_param(name, "must be a UUID")))
            .transpose()
    }

    /// A `YYYY-MM-DD` date, if given.
    pub fn date(&self, name: &str) -> Result<Option<NaiveDate>, QueryError> {
        self.one(name)?
            .map(|v| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .map_err(|_| bad_param(name, "must be a date, YYYY-MM-DD"))
            })
            .transpose()
    }

    /// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
    pub fn limit(&self) -> Result<u32, QueryError> {
        match self.one("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(bad_param(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )),
            },
        }
    }
}
