//! The query string, read strictly: an unknown, repeated or malformed
//! parameter is a 422 that names it, and nothing PostgreSQL would refuse
//! (a NUL byte, text that is not UTF-8, a date outside its range) gets past.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use tasklog_command_api::error::ApiError;
use uuid::Uuid;

use crate::error::{bad_param, QueryError};

/// Default page size of every list.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 200;

/// The years a date or time in a parameter or cursor may have: four digits,
/// as the API's `format: date` (RFC 3339) writes them. PostgreSQL's `date`
/// takes far more, and chrono fewer or more depending on the sign; this is
/// the range all three agree on (year 0 would be 1 BC in PostgreSQL).
pub const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// The query string's `name=value` pairs, in order.
#[derive(Debug)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Self)
    }
}

/// Splits and percent-decodes a query string (`application/x-www-form-urlencoded`),
/// refusing what a lossy decoder would let through: malformed escapes,
/// bytes that are not UTF-8, NUL characters.
fn parse_query(raw: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut pairs = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = percent_decode(name)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|n| !n.contains('\0'))
            .ok_or_else(|| {
                QueryError::Api(ApiError::BadRequest(
                    "a query parameter's name is not percent-encoded UTF-8 without NUL bytes"
                        .into(),
                ))
            })?;
        let value = match percent_decode(value) {
            None => return Err(bad_param(&name, "has a malformed %-escape")),
            Some(bytes) => String::from_utf8(bytes)
                .map_err(|_| bad_param(&name, "is not UTF-8 once percent-decoded"))?,
        };
        if value.contains('\0') {
            return Err(bad_param(&name, "must not contain NUL bytes (%00)"));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// `+` is a space, `%XX` a byte; `None` for a `%` without two hex digits.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// A `YYYY-MM-DD` date with a year in [`YEARS`], exactly as RFC 3339's
/// `full-date` spells it (no sign, no fifth digit, no missing zero).
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shaped {
        return None;
    }
    let year: i32 = text[0..4].parse().ok()?;
    let month: u32 = text[5..7].parse().ok()?;
    let day: u32 = text[8..10].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day).filter(|d| YEARS.contains(&d.year()))
}

/// Whether a date from a cursor lies in [`YEARS`].
pub fn date_in_range(date: NaiveDate) -> bool {
    YEARS.contains(&date.year())
}

/// Whether a time from a cursor lies in [`YEARS`] (PostgreSQL's
/// `timestamptz` refuses some that chrono reads).
pub fn time_in_range(at: DateTime<Utc>) -> bool {
    YEARS.contains(&at.year())
}

impl Params {
    /// 422 for any parameter not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<&Self, QueryError> {
        match self
            .0
            .iter()
            .find(|(name, _)| !known.contains(&name.as_str()))
        {
            Some((name, _)) if known.is_empty() => Err(bad_param(
                name,
                "unknown parameter; this endpoint takes no query parameters",
            )),
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

    /// The value of a typed parameter given at most once: blank is an error
    /// (it is no UUID, date, number or boolean), not an absence.
    fn typed(&self, name: &str) -> Result<Option<&str>, QueryError> {
        let given = self.0.iter().any(|(n, _)| n == name);
        match self.one(name)? {
            None if given => Err(bad_param(name, "must not be empty")),
            value => Ok(value),
        }
    }

    /// `true` or `false`; `default` when absent.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, QueryError> {
        match self.typed(name)? {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(bad_param(name, "must be true or false")),
        }
    }

    /// A UUID, if given.
    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, QueryError> {
        // The hyphenated form only, as the document's `format: uuid` says.
        self.typed(name)?
            .map(|v| {
                Some(v)
                    .filter(|v| v.len() == 36)
                    .and_then(|v| Uuid::parse_str(v).ok())
                    .ok_or_else(|| bad_param(name, "must be a UUID"))
            })
            .transpose()
    }

    /// A `YYYY-MM-DD` date (years 0001 to 9999), if given.
    pub fn date(&self, name: &str) -> Result<Option<NaiveDate>, QueryError> {
        self.typed(name)?
            .map(|v| {
                parse_date(v).ok_or_else(|| {
                    bad_param(
                        name,
                        "must be a date, YYYY-MM-DD, with a year from 0001 to 9999",
                    )
                })
            })
            .transpose()
    }

    /// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
    pub fn limit(&self) -> Result<u32, QueryError> {
        match self.typed("limit")? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_four_digit_years_from_0001_to_9999_are_dates() {
        assert_eq!(
            parse_date("2024-01-01"),
            NaiveDate::from_ymd_opt(2024, 1, 1)
        );
        assert_eq!(parse_date("0001-01-01"), NaiveDate::from_ymd_opt(1, 1, 1));
        assert_eq!(
            parse_date("9999-12-31"),
            NaiveDate::from_ymd_opt(9999, 12, 31)
        );
        for bad in [
            "-9999-01-01",
            "+99999-01-01",
            "-0001-01-01",
            "0000-01-01",
            "2024-1-1",
            "2024-02-30",
            "2024-13-01",
            " 2024-01-01",
            "2024-01-01x",
            "２０２４-01-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_query_string_is_percent_decoded_strictly() {
        let pairs = parse_query("q=a+b%20c&status=todo,doing&&x").unwrap();
        assert_eq!(
            pairs,
            [
                ("q".to_owned(), "a b c".to_owned()),
                ("status".to_owned(), "todo,doing".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(parse_query("q=%C3%A9").unwrap()[0].1, "é");
        for bad in [
            "q=%ff%fe", "q=a%00b", "q=%", "q=%4", "q=%zz", "%ff=1", "a%00=1",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }
}
