//! Opaque keyset cursors: the last row's sort key as JSON, base64url without
//! padding. Clients pass them back unchanged; a cursor that does not decode to
//! the expected key is a 422 naming `cursor`.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::query::bad_param;
use crate::ApiError;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The cursor for `key`.
pub fn encode<T: Serialize>(key: &T) -> String {
    // Serializing plain keys (strings, numbers, uuids, dates) cannot fail.
    let json = serde_json::to_vec(key).unwrap_or_default();
    base64url_encode(&json)
}

/// The key inside `cursor`.
pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    let invalid = || {
        bad_param(
            "cursor",
            "not a cursor this endpoint returned for this sort",
        )
    };
    let json = base64url_decode(cursor).ok_or_else(invalid)?;
    serde_json::from_slice(&json).map_err(|_| invalid())
}

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = ALPHABET.iter().position(|a| a == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length_without_padding() {
        let data: Vec<u8> = (0u8..=255).collect();
        for len in 0..40 {
            let encoded = base64url_encode(&data[200 - len..200]);
            assert!(!encoded.contains(['=', '+', '/']));
            assert_eq!(base64url_decode(&encoded).unwrap(), &data[200 - len..200]);
        }
        assert_eq!(base64url_encode(b"\xfb\xff"), "-_8");
        assert_eq!(base64url_encode(b"Man"), "TWFu");
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        assert!(base64url_decode("a").is_none());
        assert!(base64url_decode("ab!d").is_none());
        assert!(decode::<(String, i64)>("bm9wZQ").is_err());
        let c = encode(&("created", 7));
        assert_eq!(decode::<(String, i64)>(&c).unwrap(), ("created".into(), 7));
    }
}
