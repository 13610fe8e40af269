//! problem+json answers: the fields every one has, and snapshots of whole
//! bodies.

use reqwest::Response;
use serde_json::Value;

/// Where every problem `type` URI starts.
pub const PROBLEM_BASE: &str = "https://tasklog.dev/problems/";

/// The body of a problem+json answer (its content type asserted, and its
/// `status` the answer's).
pub async fn problem_body(r: Response) -> Value {
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json",
        "a problem answers {status}"
    );
    let body: Value = r.json().await.expect("a problem body is JSON");
    assert_eq!(body["status"], status, "{body}");
    body
}

/// Asserts an RFC 9457 problem with `status` and `code`, its `type` and a
/// `detail`; returns its body.
pub async fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status);
    let body = problem_body(r).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["type"], format!("{PROBLEM_BASE}{code}"), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "a problem says what went wrong: {body}"
    );
    body
}

/// `value` with what changes from run to run named instead: every text in
/// `known` by its name (a consistency token, say), then every UUID as
/// `[uuid]`, inside any string of it.
pub fn redact(value: Value, known: &[(&str, &str)]) -> Value {
    match value {
        Value::String(s) => {
            let named = known
                .iter()
                .fold(s, |s, (text, name)| s.replace(text, name));
            Value::String(redact_uuids(&named))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| redact(v, known)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, redact(v, known)))
                .collect(),
        ),
        other => other,
    }
}

/// `s` with every hyphenated UUID replaced by `[uuid]`.
fn redact_uuids(s: &str) -> String {
    const LEN: usize = 36;
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if rest.len() >= LEN
            && rest.is_char_boundary(LEN)
            && uuid::Uuid::try_parse(&rest[..LEN]).is_ok()
            && rest.as_bytes()[8] == b'-'
        {
            out.push_str("[uuid]");
            rest = &rest[LEN..];
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Asserts a problem+json answer against an inline snapshot of its whole
/// body (UUIDs and the `known` texts redacted, see [`redact`]); returns the
/// body. `insta`'s inline snapshots keep the expected body beside the
/// request that provokes it.
///
/// ```ignore
/// assert_problem_snapshot!(response, @r#"{ "code": "not_found", ... }"#);
/// assert_problem_snapshot!(response, [(&token, "[token]")], @r#"..."#);
/// ```
#[macro_export]
macro_rules! assert_problem_snapshot {
    ($response:expr, @$snapshot:literal) => {
        $crate::assert_problem_snapshot!($response, [], @$snapshot)
    };
    ($response:expr, [$(($text:expr, $name:expr)),* $(,)?], @$snapshot:literal) => {{
        let body = $crate::problem_body($response).await;
        let redacted = $crate::redact(body.clone(), &[$((&$text[..], $name)),*]);
        $crate::insta::assert_json_snapshot!(redacted, @$snapshot);
        body
    }};
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redaction_names_known_texts_and_every_uuid_wherever_they_stand() {
        let id = uuid::Uuid::now_v7();
        let body = json!({
            "detail": format!("task {id} is not at 12.34 (ü)"),
            "errors": [{"field": "assignee", "message": format!("{id}")}],
            "status": 404
        });
        assert_eq!(
            redact(body, &[("12.34", "[token]")]),
            json!({
                "detail": "task [uuid] is not at [token] (ü)",
                "errors": [{"field": "assignee", "message": "[uuid]"}],
                "status": 404
            })
        );
    }
}
