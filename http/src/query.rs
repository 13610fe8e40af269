//! The query string, read strictly into a typed struct: an unknown, repeated
//! or malformed parameter is a 422 that names it, and nothing PostgreSQL
//! would refuse (a NUL byte, text that is not UTF-8, a date outside its
//! range) gets past.
//!
//! A route's parameters are one struct with `#[serde(deny_unknown_fields)]`
//! and `JsonSchema`, read by [`Query`]; its schema documents them
//! ([`crate::openapi::Components::query_parameters`]). The rules:
//!
//! - a parameter given twice is refused, except a list (`Vec<_>`), whose
//!   values are comma-separated and may repeat;
//! - values are trimmed; a blank typed value (a [`ParamUuid`], [`ParamDate`],
//!   [`Limit`], `bool`, an enum) is refused, while a blank text is absent
//!   where the field says `deserialize_with = "blank_is_absent"`;
//! - UUIDs in their hyphenated form only, dates `YYYY-MM-DD` in [`YEARS`].

use std::cell::Cell;
use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer};
use tasklog_domain::FieldError;
use uuid::Uuid;

use crate::error::ApiError;

/// Default page size of every list.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 200;

/// The years a date or time in a parameter or cursor may have: four digits,
/// as the API's `format: date` (RFC 3339) writes them. PostgreSQL's `date`
/// takes far more, and chrono fewer or more depending on the sign; this is
/// the range all three agree on (year 0 would be 1 BC in PostgreSQL).
pub const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// A query-string problem: 422 naming the parameter.
pub fn bad_param(name: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::Validation {
        detail: format!("query parameter `{name}`: {message}"),
        errors: vec![FieldError {
            field: name.to_owned(),
            message,
        }],
    }
}

/// The query string read into `T` (a struct with `deny_unknown_fields`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs = parse_query(parts.uri.query().unwrap_or_default())?;
        from_pairs(&pairs).map(Query)
    }
}

/// Reads decoded `name=value` pairs into `T`.
pub fn from_pairs<T: DeserializeOwned>(pairs: &[(String, String)]) -> Result<T, ApiError> {
    T::deserialize(Pairs {
        pairs,
        fields: &Cell::new(None),
    })
    .map_err(|e| match e.param {
        Some(name) => bad_param(&name, e.message),
        None => ApiError::Internal(anyhow::anyhow!("query parameters: {}", e.message)),
    })
}

/// The parameter names `T` takes, in declaration order.
///
/// # Panics
/// When `T` is not a struct that an empty query string fits.
pub fn parameter_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let fields = Cell::new(None);
    let read = T::deserialize(Pairs {
        pairs: &[],
        fields: &fields,
    });
    match (read, fields.get()) {
        (Ok(_), Some(fields)) => fields,
        _ => panic!("query parameters are a struct that an empty query string fits"),
    }
}

/// Why a parameter was refused; `param` is filled in on the way out.
#[derive(Debug)]
pub struct ParamError {
    param: Option<String>,
    message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParamError {}

impl de::Error for ParamError {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Self {
            param: None,
            message: message.to_string(),
        }
    }

    /// A list item that is not one of an enum's values.
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!("{variant} is not one of {}", expected.join(", ")))
    }
}

/// The whole query string, as a struct; `fields` learns the struct's field names.
struct Pairs<'a> {
    pairs: &'a [(String, String)],
    fields: &'a Cell<Option<&'static [&'static str]>>,
}

impl<'de> Deserializer<'de> for Pairs<'_> {
    type Error = ParamError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ParamError> {
        Err(de::Error::custom("query parameters are a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        self.fields.set(Some(fields));
        if let Some((name, _)) = self
            .pairs
            .iter()
            .find(|(n, _)| !fields.contains(&n.as_str()))
        {
            let message = if fields.is_empty() {
                "unknown parameter; this endpoint takes no query parameters".to_owned()
            } else {
                format!(
                    "unknown parameter; this endpoint takes {}",
                    fields.join(", ")
                )
            };
            return Err(ParamError {
                param: Some(name.clone()),
                message,
            });
        }
        // In declaration order, so the first problem reported is the first field's.
        let given = fields
            .iter()
            .filter(|f| self.pairs.iter().any(|(n, _)| n == *f))
            .copied();
        visitor.visit_map(Fields {
            pairs: self.pairs,
            given,
            current: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct Fields<'a, I> {
    pairs: &'a [(String, String)],
    given: I,
    current: Option<&'static str>,
}

impl<'de, I: Iterator<Item = &'static str>> de::MapAccess<'de> for Fields<'_, I> {
    type Error = ParamError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ParamError> {
        self.current = self.given.next();
        self.current
            .map(|name| seed.deserialize(StrDeserializer::<ParamError>::new(name)))
            .transpose()
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ParamError> {
        let name = self.current.unwrap_or_default();
        let values = self
            .pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        seed.deserialize(Values(values)).map_err(|mut e| {
            e.param.get_or_insert_with(|| name.to_owned());
            e
        })
    }
}

/// The values one parameter was given.
struct Values<'a>(Vec<&'a str>);

impl Values<'_> {
    /// The one value, trimmed; a parameter that is no list is given once.
    fn one(&self) -> Result<&str, ParamError> {
        match self.0.as_slice() {
            [value] => Ok(value.trim()),
            _ => Err(de::Error::custom("given more than once")),
        }
    }

    /// The one value of a typed parameter: blank is no UUID, date, number or boolean.
    fn typed(&self) -> Result<&str, ParamError> {
        match self.one()? {
            "" => Err(de::Error::custom("must not be empty")),
            value => Ok(value),
        }
    }
}

impl<'de> Deserializer<'de> for Values<'_> {
    type Error = ParamError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_str(self.one()?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        visitor.visit_some(self)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        match self.typed()? {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => Err(de::Error::custom("must be true or false")),
        }
    }

    /// Every value of a repeatable, comma-separated parameter.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ParamError> {
        let items = self
            .0
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(IntoDeserializer::<ParamError>::into_deserializer);
        visitor.visit_seq(de::value::SeqDeserializer::new(items))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        let value = self.typed()?;
        if !variants.contains(&value) {
            return Err(de::Error::custom(format!(
                "must be one of {}",
                variants.join(", ")
            )));
        }
        visitor.visit_enum(value.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// For `deserialize_with`: a parameter whose blank value means it is absent.
pub fn blank_is_absent<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Option::<String>::deserialize(deserializer)? {
        Some(value) if !value.is_empty() => T::deserialize(Values(vec![&value]))
            .map(Some)
            .map_err(|e| de::Error::custom(e.message)),
        _ => Ok(None),
    }
}

/// A typed parameter read from its (trimmed, non-blank) text.
pub trait FromParam: Sized {
    /// What the value must be, when it is not.
    fn expected() -> String;
    fn from_param(value: &str) -> Option<Self>;
}

/// `Deserialize` for a [`FromParam`] type (see [`param_deserialize!`]).
#[doc(hidden)]
pub fn deserialize_from_param<'de, D: Deserializer<'de>, T: FromParam>(
    d: D,
) -> Result<T, D::Error> {
    struct V<T>(std::marker::PhantomData<T>);
    impl<T: FromParam> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(&T::expected())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            match v {
                "" => Err(E::custom("must not be empty")),
                v => T::from_param(v).ok_or_else(|| E::custom(T::expected())),
            }
        }
    }
    d.deserialize_str(V(std::marker::PhantomData))
}

/// Makes a [`FromParam`] type a query parameter: `Deserialize` through
/// `from_param`, and `JsonSchema` as the (inline) schema given.
#[macro_export]
macro_rules! query_param {
    ($t:ident, $schema:tt) => {
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::query::deserialize_from_param(d)
            }
        }

        impl ::schemars::JsonSchema for $t {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($t).into()
            }
            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                ::schemars::json_schema!($schema)
            }
        }
    };
}

/// A UUID, hyphenated, as the document's `format: uuid` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamUuid(pub Uuid);

impl FromParam for ParamUuid {
    fn expected() -> String {
        "must be a UUID".into()
    }
    fn from_param(value: &str) -> Option<Self> {
        Some(value)
            .filter(|v| v.len() == 36)
            .and_then(|v| Uuid::parse_str(v).ok())
            .map(Self)
    }
}
query_param!(ParamUuid, { "type": "string", "format": "uuid" });

/// A `YYYY-MM-DD` date with a year in [`YEARS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamDate(pub NaiveDate);

impl FromParam for ParamDate {
    fn expected() -> String {
        "must be a date, YYYY-MM-DD, with a year from 0001 to 9999".into()
    }
    fn from_param(value: &str) -> Option<Self> {
        parse_date(value).map(Self)
    }
}
query_param!(ParamDate, {
    "type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
});

/// An RFC 3339 time with an offset (`2026-11-30T12:00:00Z`), a year in [`YEARS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamTime(pub DateTime<Utc>);

impl FromParam for ParamTime {
    fn expected() -> String {
        "must be an RFC 3339 time with an offset, e.g. 2026-11-30T12:00:00Z, with a year from 0001 to 9999".into()
    }
    fn from_param(value: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(value)
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| time_in_range(*t))
            .map(Self)
    }
}
query_param!(ParamTime, { "type": "string", "format": "date-time" });

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub u32);

impl Default for Limit {
    fn default() -> Self {
        Self(DEFAULT_LIMIT)
    }
}

impl FromParam for Limit {
    fn expected() -> String {
        format!("must be a whole number from 1 to {MAX_LIMIT}")
    }
    fn from_param(value: &str) -> Option<Self> {
        value
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .map(Self)
    }
}
query_param!(Limit, {
    "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT
});

/// The query parameters of a list that takes no filter: a page of it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Items per page.
    #[serde(default)]
    #[schemars(example = &"10")]
    pub limit: Limit,
    /// The `next_cursor` of the previous page; opaque.
    #[serde(default, deserialize_with = "blank_is_absent")]
    #[schemars(with = "String")]
    pub cursor: Option<String>,
}

/// The parameters of a route that takes none.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Splits and percent-decodes a query string (`application/x-www-form-urlencoded`),
/// refusing what a lossy decoder would let through: malformed escapes,
/// bytes that are not UTF-8, NUL characters.
fn parse_query(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs = Vec::new();
    for piece in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = percent_decode(name)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|n| !n.contains('\0'))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "a query parameter's name is not percent-encoded UTF-8 without NUL bytes"
                        .into(),
                )
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

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default, deserialize_with = "blank_is_absent")]
        q: Option<String>,
        tag: Option<ParamUuid>,
        #[serde(default)]
        archived: bool,
        #[serde(default)]
        limit: Limit,
    }

    fn refused(query: &str) -> (String, String) {
        let pairs = parse_query(query).unwrap();
        match from_pairs::<Sample>(&pairs).unwrap_err() {
            ApiError::Validation { errors, .. } => {
                (errors[0].field.clone(), errors[0].message.clone())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parameters_are_read_strictly_into_their_types() {
        let pairs = parse_query(
            "tags=a,b&tags=c,&q=+&tag=0192f4c1-7a8e-7b3c-9d2e-5f6a7b8c9d0e&archived=true&limit=7",
        )
        .unwrap();
        let s: Sample = from_pairs(&pairs).unwrap();
        assert_eq!(s.tags, ["a", "b", "c"]);
        assert_eq!(s.q, None);
        assert!(s.tag.is_some() && s.archived);
        assert_eq!(s.limit, Limit(7));
        assert_eq!(
            parameter_names::<Sample>(),
            ["tags", "q", "tag", "archived", "limit"]
        );
        let m = |f: &str, m: &str| (f.to_owned(), m.to_owned());
        assert_eq!(
            refused("color=red"),
            m(
                "color",
                "unknown parameter; this endpoint takes tags, q, tag, archived, limit"
            )
        );
        assert_eq!(refused("tag="), m("tag", "must not be empty"));
        assert_eq!(
            refused("tag=0192f4c17a8e7b3c9d2e5f6a7b8c9d0e"),
            m("tag", "must be a UUID")
        );
        assert_eq!(
            refused("archived=yes"),
            m("archived", "must be true or false")
        );
        assert_eq!(
            refused("limit=1&limit=2"),
            m("limit", "given more than once")
        );
        assert_eq!(
            refused("limit=0"),
            m("limit", "must be a whole number from 1 to 200")
        );
        assert_eq!(refused("q=a&q=b"), m("q", "given more than once"));
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
