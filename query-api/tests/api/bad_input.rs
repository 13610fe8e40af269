//! Bad input is a clear problem+json 4xx naming what is wrong, never a 500,
//! and never reaches PostgreSQL (which refuses NUL bytes and dates outside
//! its range with errors that used to come back as 500).

use serde_json::{json, Value};
use tasklog_query_api::cursor;
use uuid::Uuid;

use crate::helpers::{assert_problem, documented_routes, spawn_app};

/// Asserts a 422 `validation_failed` that names `parameter`.
async fn assert_names(r: reqwest::Response, parameter: &str, what: &str) {
    let body = assert_problem(r, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], parameter, "{what}: {body}");
}

#[tokio::test]
async fn a_nul_byte_in_any_query_parameter_is_refused_naming_it() {
    let app = spawn_app().await;
    let w = &app.world;
    let ids = [
        ("org", w.org),
        ("project", w.project),
        ("task", w.task("Crash on save").id),
    ];
    // Every parameter the document lists (reports' too), on its route.
    let routes = documented_routes(&app.client, &app.address).await;
    let mut named = 0;
    for route in &routes {
        let path = route.path(&ids);
        for parameter in &route.query {
            for value in ["%00", "a%00b", "todo,%00"] {
                let url = format!("{path}?{}={value}", parameter.name);
                assert_names(app.get(&url, &w.alice).await, &parameter.name, &url).await;
            }
            named += 1;
        }
        // Routes without parameters refuse any, named, NUL or not.
        if route.query.is_empty() {
            for query in ["x=%00", "x=1"] {
                let url = format!("{path}?{query}");
                assert_names(app.get(&url, &w.alice).await, "x", &url).await;
            }
        }
    }
    assert!(named >= 29, "only {named} parameters documented");
    // A name that is not text cannot be named: a plain 400.
    let url = format!("/v1/orgs/{}/members?a%00b=1", w.org);
    assert_problem(app.get(&url, &w.alice).await, 400, "bad_request").await;

    app.teardown().await;
}

#[tokio::test]
async fn a_query_string_that_is_not_utf8_is_refused_naming_the_parameter() {
    let app = spawn_app().await;
    let w = &app.world;
    let tasks = format!("/v1/orgs/{}/projects/{}/tasks", w.org, w.project);

    for (query, parameter) in [
        ("q=%ff%fe", "q"),
        ("status=%c3", "status"),
        ("q=ok&sort=%80", "sort"),
        ("q=%zz", "q"),
        ("q=%", "q"),
    ] {
        let url = format!("{tasks}?{query}");
        assert_names(app.get(&url, &w.alice).await, parameter, &url).await;
    }
    // Every parameter the document lists (reports' too), on its route.
    let ids = [
        ("org", w.org),
        ("project", w.project),
        ("task", w.task("Crash on save").id),
    ];
    for route in documented_routes(&app.client, &app.address).await {
        let path = route.path(&ids);
        for parameter in &route.query {
            for value in ["%ff%fe", "2026-03-0%c3"] {
                let url = format!("{path}?{}={value}", parameter.name);
                assert_names(app.get(&url, &w.alice).await, &parameter.name, &url).await;
            }
        }
    }
    let url = format!("{tasks}?%ff%fe=1");
    assert_problem(app.get(&url, &w.alice).await, 400, "bad_request").await;
    // Well-formed UTF-8 is searched for as usual.
    let found = app
        .json(&format!("{tasks}?q=cr%C3%A4sh+%20"), &w.alice)
        .await;
    assert_eq!(found["items"], json!([]));

    app.teardown().await;
}

#[tokio::test]
async fn dates_are_four_digit_years_from_0001_to_9999_in_yyyy_mm_dd() {
    let app = spawn_app().await;
    let w = &app.world;
    let tasks = format!("/v1/orgs/{}/projects/{}/tasks", w.org, w.project);

    for parameter in ["due_after", "due_before"] {
        for bad in [
            "-9999-01-01",
            "%2B99999-01-01",
            "-0001-01-01",
            "0000-01-01",
            "10000-01-01",
            "2024-1-1",
            "2024-02-30",
            "2024-01-01T00:00:00Z",
        ] {
            let url = format!("{tasks}?{parameter}={bad}");
            assert_names(app.get(&url, &w.alice).await, parameter, &url).await;
        }
        for good in ["0001-01-01", "9999-12-31"] {
            app.json(&format!("{tasks}?{parameter}={good}"), &w.alice)
                .await;
        }
    }

    app.teardown().await;
}

#[tokio::test]
async fn a_forged_cursor_is_refused_naming_it() {
    let app = spawn_app().await;
    let w = &app.world;
    let tasks = format!("/v1/orgs/{}/projects/{}/tasks", w.org, w.project);
    let task = w.task("Crash on save").id;
    let id = Uuid::now_v7();

    let forged: Vec<(String, String)> = vec![
        // Times and dates PostgreSQL refuses (or that the API never writes).
        (
            format!("{tasks}?sort=created"),
            cursor::encode(&("created", "+200000-01-01T00:00:00Z", id)),
        ),
        (
            format!("{tasks}?sort=-updated"),
            cursor::encode(&("-updated", "-5000-01-01T00:00:00Z", id)),
        ),
        (
            format!("{tasks}?sort=due"),
            cursor::encode(&("due", "+99999-01-01", id)),
        ),
        (
            format!("{tasks}?sort=due"),
            cursor::encode(&("due", "-9999-01-01", id)),
        ),
        (
            format!("{tasks}?sort=priority"),
            cursor::encode(&("priority", 99999, id)),
        ),
        (
            format!("{tasks}?sort=created"),
            cursor::encode(&("created", "2026-01-01T00:00:00\u{0}Z", id)),
        ),
        (
            format!("/v1/orgs/{}/tasks/{task}/activity?limit=1", w.org),
            cursor::encode(&(-5, -1)),
        ),
        (
            format!("/v1/orgs/{}/tasks/{task}/activity?limit=1", w.org),
            cursor::encode(&(1, u64::MAX)),
        ),
        (
            format!("/v1/orgs/{}/me/notifications?limit=1", w.org),
            cursor::encode(&("+262000-01-01T00:00:00Z", id)),
        ),
        (
            format!("/v1/orgs/{}/me/notifications?limit=1", w.org),
            cursor::encode(&("-4800-01-01T00:00:00Z", id)),
        ),
    ];
    for (path, c) in forged {
        let url = format!("{path}&cursor={c}");
        assert_names(app.get(&url, &w.alice).await, "cursor", &url).await;
    }

    app.teardown().await;
}

#[tokio::test]
async fn unknown_and_wrongly_typed_parameters_are_refused_naming_them() {
    let app = spawn_app().await;
    let w = &app.world;
    let tasks = format!("/v1/orgs/{}/projects/{}/tasks", w.org, w.project);
    let notifications = format!("/v1/orgs/{}/me/notifications", w.org);

    for (url, parameter) in [
        (format!("{tasks}?color=red"), "color"),
        (format!("{tasks}?limit=abc"), "limit"),
        (format!("{tasks}?limit=-1"), "limit"),
        (format!("{tasks}?limit=99999999999999999999"), "limit"),
        (format!("{tasks}?archived=yes"), "archived"),
        (format!("{tasks}?tag=not-a-uuid"), "tag"),
        (format!("{tasks}?assignee=nobody"), "assignee"),
        (format!("{tasks}?priority=5"), "priority"),
        (format!("{tasks}?sort=title"), "sort"),
        (format!("{tasks}?limit=1&limit=2"), "limit"),
        (format!("{notifications}?unread=1"), "unread"),
        (format!("{notifications}?page=2"), "page"),
    ] {
        assert_names(app.get(&url, &w.alice).await, parameter, &url).await;
    }

    app.teardown().await;
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_405_method_not_allowed() {
    let app = spawn_app().await;
    let w = &app.world;
    let task = w.task("Crash on save").id;

    for (method, path) in [
        (
            reqwest::Method::POST,
            format!("/v1/orgs/{}/projects", w.org),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/orgs/{}/tasks/{task}", w.org),
        ),
        (reqwest::Method::PUT, format!("/v1/orgs/{}/members", w.org)),
        (reqwest::Method::PATCH, "/healthz".to_owned()),
    ] {
        let r = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .bearer_auth(&w.alice.token)
            .send()
            .await
            .unwrap();
        let body: Value = assert_problem(r, 405, "method_not_allowed").await;
        assert_eq!(body["title"], "Method not allowed", "{method} {path}");
    }

    app.teardown().await;
}
