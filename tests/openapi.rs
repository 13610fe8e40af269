//! The OpenAPI documents of the three APIs: generated from the code, committed in
//! `schemas/openapi/`, and checked against the routers that actually serve.
//!
//! - drift: `openapi()` of each crate equals `schemas/openapi/<crate>.json`;
//!   regenerate with `UPDATE_SCHEMAS=1 cargo test -p tasklog-e2e --test openapi`;
//! - every documented operation is served (an unauthenticated request is 401,
//!   never the 404 fallback or 405), and every other method on a documented
//!   path is 405 (routes are mounted together with their operation, so none
//!   is served undocumented);
//! - each list takes exactly the query parameters documented for it;
//! - `/openapi.json` serves the document and `/docs` a page with no external URL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use tasklog_testkit::{authenticator, serve, TestDatabase};
use uuid::Uuid;

const CRATES: [&str; 3] = ["command-api", "query-api", "audit-api"];

fn document(krate: &str) -> Value {
    match krate {
        "command-api" => tasklog_command_api::openapi::openapi(),
        "query-api" => tasklog_query_api::openapi::openapi(),
        "audit-api" => tasklog_audit_api::openapi::openapi(),
        other => panic!("no crate {other}"),
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn render(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("a document serializes") + "\n"
}

/// `(METHOD, path)` of every documented operation.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

#[test]
fn committed_openapi_documents_match_the_code() {
    let dir = workspace().join("schemas/openapi");
    std::fs::create_dir_all(&dir).unwrap();
    let mut stale = Vec::new();
    for krate in CRATES {
        let file = dir.join(format!("{krate}.json"));
        let generated = render(&document(krate));
        if std::fs::read_to_string(&file).ok().as_deref() != Some(generated.as_str()) {
            if std::env::var_os("UPDATE_SCHEMAS").is_some() {
                std::fs::write(&file, generated).unwrap();
            } else {
                stale.push(file.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "out of date (run UPDATE_SCHEMAS=1 cargo test -p tasklog-e2e --test openapi): {stale:?}"
    );
}

/// Calls `f(path, key, value)` for every member of every object below `v`.
fn walk<'a>(v: &'a Value, path: &mut Vec<String>, f: &mut impl FnMut(&[String], &str, &'a Value)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                f(path, k, child);
                path.push(k.clone());
                walk(child, path, f);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(child, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

fn has_url(s: &str) -> bool {
    s.contains("http://") || s.contains("https://")
}

#[test]
fn openapi_documents_are_well_formed() {
    for krate in CRATES {
        let doc = document(krate);
        let mut problems = Vec::new();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = BTreeSet::new();
        walk(&doc, &mut Vec::new(), &mut |at, key, value| {
            let here = format!("{}/{key}", at.join("/"));
            if key == "$defs" {
                problems.push(format!("{here}: $defs left in place"));
            }
            if key == "$ref" {
                let target = value.as_str().unwrap_or_default();
                match target.strip_prefix('#') {
                    Some(pointer) if doc.pointer(pointer).is_some() => {}
                    _ => problems.push(format!("{here}: {target} does not resolve")),
                }
            }
            if key == "operationId" && !ids.insert(value.as_str().unwrap_or_default().to_owned()) {
                problems.push(format!("{here}: operationId {value} is not unique"));
            }
            // URLs only where a reader expects them: servers and examples.
            let allowed = at
                .iter()
                .map(String::as_str)
                .chain([key])
                .any(|k| k == "servers" || k == "example" || k == "examples");
            if value.as_str().is_some_and(has_url) && !allowed {
                problems.push(format!("{here}: a URL outside servers and examples"));
            }
        });
        for (path, item) in doc["paths"].as_object().unwrap() {
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                if declared != in_path {
                    problems.push(format!(
                        "{method} {path}: path parameters {declared:?}, not {in_path:?}"
                    ));
                }
                if op["summary"].as_str().is_none_or(str::is_empty) {
                    problems.push(format!("{method} {path}: no summary"));
                }
                let responses = op["responses"].as_object().unwrap();
                if !responses.keys().any(|s| s.starts_with('2')) {
                    problems.push(format!("{method} {path}: no success response"));
                }
                let open = op["security"].as_array().is_some_and(Vec::is_empty);
                if !open && !responses.contains_key("401") {
                    problems.push(format!("{method} {path}: authenticated but no 401"));
                }
            }
        }
        assert!(problems.is_empty(), "{krate}:\n{}", problems.join("\n"));
    }
}

/// A fresh, migrated database with the read models' (empty) views, dropped
/// by [`Db::drop`].
struct Db {
    database: TestDatabase,
    pool: PgPool,
}

async fn fresh_database() -> Db {
    let (database, pool) = TestDatabase::migrated("tasklog_openapi").await;
    // The read models' views, as the projectors create them on their first run.
    for projection in tasklog_projectors::all() {
        tasklog_projectors::generation::ensure_active(&pool, &*projection)
            .await
            .expect("a projection's first generation is created");
    }
    Db { database, pool }
}

impl Db {
    async fn drop(self) {
        self.pool.close().await;
        self.database.drop_database().await;
    }
}

fn query_state(db: &Db) -> tasklog_query_api::QueryState {
    let store = tasklog_testkit::store(&db.pool);
    tasklog_query_api::QueryState::new(db.pool.clone(), store, Arc::new(authenticator()))
}

/// A token of a user who is a member of nothing.
fn stranger_token() -> String {
    tasklog_testkit::token(Uuid::now_v7(), "stranger")
}

/// A documented path with random ids in it.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') {
                Uuid::now_v7().to_string()
            } else {
                s.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every documented operation is served: 401 without a token (200 for the
/// open ones), never the 404 fallback or 405; every other method is 405.
async fn check_routes(krate: &str, base: &str) {
    let doc = document(krate);
    let client = reqwest::Client::new();
    let documented = operations(&doc);
    let mut problems = Vec::new();
    for (method, path) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        let open = op["security"].as_array().is_some_and(Vec::is_empty);
        let url = format!("{base}{}", concrete(path));
        let mut req = client.request(Method::from_bytes(method.as_bytes()).unwrap(), &url);
        if op.get("requestBody").is_some() {
            req = req.json(&serde_json::json!({}));
        }
        let r = req.send().await.expect("the API answers");
        let expected = if open {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        if r.status() != expected {
            problems.push(format!(
                "{method} {path}: {} instead of {expected}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        } else if !open {
            let body: Value = r.json().await.unwrap();
            if body["code"] != "unauthenticated" {
                problems.push(format!("{method} {path}: 401 without code unauthenticated"));
            }
        }
    }
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if documented.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let url = format!("{base}{}", concrete(path));
            let r = client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .send()
                .await
                .unwrap();
            if r.status() != StatusCode::METHOD_NOT_ALLOWED {
                problems.push(format!(
                    "{method} {path} is not documented but answers {}",
                    r.status()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{krate}:\n{}", problems.join("\n"));
}

/// `/openapi.json` is the document; `/docs` is a page that needs no network.
async fn check_document_and_docs(krate: &str, base: &str) {
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let served: Value = r.json().await.unwrap();
    assert_eq!(served, document(krate), "{krate}: /openapi.json");

    let r = client.get(format!("{base}/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("./openapi.json"),
        "the page loads the document"
    );
    assert!(!has_url(&page), "{krate}: /docs names an external URL");
    let lower = page.to_lowercase();
    for external in [
        "<script src",
        "<link ",
        "@import",
        "url(",
        "//cdn",
        "fonts.g",
    ] {
        assert!(!lower.contains(external), "{krate}: /docs has {external}");
    }
}

#[tokio::test]
async fn command_api_serves_exactly_the_documented_routes() {
    let db = fresh_database().await;
    let state = tasklog_command_api::state(
        db.pool.clone(),
        tasklog_testkit::store(&db.pool),
        authenticator(),
    );
    let base = serve(tasklog_command_api::router(state)).await;
    check_routes("command-api", &base).await;
    check_document_and_docs("command-api", &base).await;
    db.drop().await;
}

#[tokio::test]
async fn query_api_serves_exactly_the_documented_routes() {
    let db = fresh_database().await;
    let base = serve(tasklog_query_api::router(query_state(&db))).await;
    check_routes("query-api", &base).await;
    check_document_and_docs("query-api", &base).await;
    db.drop().await;
}

#[tokio::test]
async fn audit_api_serves_exactly_the_documented_routes() {
    let db = fresh_database().await;
    let state = tasklog_audit_api::AuditState::new(
        db.pool.clone(),
        tasklog_testkit::store(&db.pool),
        Arc::new(authenticator()),
    );
    let base = serve(tasklog_audit_api::router(state)).await;
    check_routes("audit-api", &base).await;
    check_document_and_docs("audit-api", &base).await;
    db.drop().await;
}

/// Each list reads its query string before it checks membership: an unknown
/// parameter is 422 naming the ones it takes, which must be the documented
/// ones; each documented example is accepted (and the stranger gets 403).
#[tokio::test]
async fn query_api_lists_take_exactly_the_documented_parameters() {
    let db = fresh_database().await;
    let base = serve(tasklog_query_api::router(query_state(&db))).await;
    let client = reqwest::Client::new();
    let token = stranger_token();
    let doc = document("query-api");
    let mut problems = Vec::new();
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        if op["security"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        let query: Vec<&Value> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .collect();
        let documented: BTreeSet<&str> = query.iter().filter_map(|p| p["name"].as_str()).collect();
        let url = format!("{base}{}", concrete(&path));
        let get = |q: Vec<(String, String)>| client.get(&url).query(&q).bearer_auth(&token).send();

        let r = get(vec![("no_such_parameter".into(), "1".into())])
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        // Unknown parameters are refused everywhere, naming what the endpoint takes.
        {
            let message = body["errors"][0]["message"].as_str().unwrap_or_default();
            let taken: BTreeSet<&str> = match message.split_once("takes ") {
                Some((_, "no query parameters")) => BTreeSet::new(),
                Some((_, list)) => list.split(", ").collect(),
                None => ["<nothing said>"].into(),
            };
            if status != StatusCode::UNPROCESSABLE_ENTITY || taken != documented {
                problems.push(format!(
                    "{path}: documented {documented:?}, the endpoint takes {taken:?} ({status})"
                ));
            }
        }

        let mut all = Vec::new();
        for p in &query {
            let Some(example) = p["example"].as_str() else {
                continue;
            };
            let one = vec![(p["name"].as_str().unwrap().to_owned(), example.to_owned())];
            all.extend(one.clone());
            let r = get(one).await.unwrap();
            if r.status() != StatusCode::FORBIDDEN {
                problems.push(format!(
                    "{path}?{}={example}: {} instead of 403: {}",
                    p["name"],
                    r.status(),
                    r.text().await.unwrap_or_default()
                ));
            }
        }
        let r = get(all).await.unwrap();
        if r.status() != StatusCode::FORBIDDEN {
            problems.push(format!("{path} with every example: {}", r.status()));
        }
    }
    db.drop().await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
