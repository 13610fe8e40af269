//! Starts the real query API on a random port against a fresh PostgreSQL
//! database, over read models the real projectors built from the events of a
//! small world (see `world.rs`).

use std::time::Duration;

use reqwest::Response;
use serde_json::Value;
use sqlx::PgPool;
use tasklog_testkit::{spawn_query_api, TestDatabase};
use uuid::Uuid;

pub use crate::world::{SeededTask, World};
pub use tasklog_testkit::{assert_problem, User};

pub struct TestApp<W = World> {
    pub address: String,
    pub client: reqwest::Client,
    /// Owner connection to this test's database.
    pub db: PgPool,
    pub world: W,
    database: TestDatabase,
}

impl<W> TestApp<W> {
    /// The query API over `db` with `world`, waits bounded by `wait`, the
    /// fallback read every `poll`.
    pub async fn over(
        database: TestDatabase,
        db: PgPool,
        world: W,
        wait: Duration,
        poll: Duration,
    ) -> Self {
        Self {
            address: spawn_query_api(db.clone(), wait, poll).await,
            client: reqwest::Client::new(),
            db,
            world,
            database,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_waiting(Duration::from_secs(2)).await
}

/// The app, with `X-Consistency-Token` waits bounded by `wait`.
pub async fn spawn_app_waiting(wait: Duration) -> TestApp {
    spawn_app_polling(wait, Duration::from_millis(100)).await
}

/// The app, with waits bounded by `wait` and the fallback read every `poll`.
pub async fn spawn_app_polling(wait: Duration, poll: Duration) -> TestApp {
    let (database, db) = TestDatabase::migrated("queryapi_test").await;
    let world = World::seed(&db).await;
    TestApp::over(database, db, world, wait, poll).await
}

impl<W> TestApp<W> {
    pub async fn get_as(&self, path: &str, user: &User, headers: &[(&str, &str)]) -> Response {
        let mut req = self
            .client
            .get(format!("{}{}", self.address, path))
            .bearer_auth(&user.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("the API answers")
    }

    pub async fn get(&self, path: &str, user: &User) -> Response {
        self.get_as(path, user, &[]).await
    }

    /// The JSON body of a 200 answer to `path`.
    pub async fn json(&self, path: &str, user: &User) -> Value {
        let r = self.get(path, user).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Drops this test's database.
    pub async fn teardown(self) {
        self.db.close().await;
        self.database.drop_database().await;
    }
}

/// The `id`s of a list's items.
pub fn ids(body: &Value) -> Vec<Uuid> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// A query parameter of a documented route.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub required: bool,
    /// A UUID (filled with the id of the same name when there is one).
    pub uuid: bool,
    /// The document's example value, if any.
    pub example: Option<String>,
}

/// A route of the organization (`/v1/orgs/{org}/…`) as the served
/// `/openapi.json` lists it: a new route or parameter is in every test
/// that walks these, without anyone adding it to a list.
#[derive(Clone, Debug)]
pub struct Route {
    pub template: String,
    pub query: Vec<Param>,
}

/// The ids a route's parameters name, by parameter name.
pub type Ids<'a> = &'a [(&'a str, Uuid)];

impl Route {
    /// The names of its path parameters, `org` first.
    pub fn path_params(&self) -> Vec<&str> {
        self.template
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect()
    }

    /// Its path with every `{param}` filled from `ids`.
    pub fn path(&self, ids: Ids) -> String {
        self.template
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(p) => id_named(ids, p)
                        .unwrap_or_else(|| {
                            panic!("no id for path parameter {{{p}}} of {}", self.template)
                        })
                        .to_string(),
                    None => s.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The value of query parameter `p`: the id of its name for a UUID,
    /// else the document's example.
    fn value(p: &Param, ids: Ids) -> Option<String> {
        p.uuid
            .then(|| id_named(ids, &p.name).map(|id| id.to_string()))
            .flatten()
            .or_else(|| p.example.clone())
    }

    /// Its whole URLs: with the required query parameters only, and (when
    /// there are others) with every parameter that has a value.
    pub fn urls(&self, ids: Ids) -> Vec<String> {
        let path = self.path(ids);
        let query = |all: bool| -> String {
            self.query
                .iter()
                .filter(|p| all || p.required)
                .filter_map(|p| Some(format!("{}={}", p.name, Self::value(p, ids)?)))
                .collect::<Vec<_>>()
                .join("&")
        };
        let mut urls = Vec::new();
        for all in [false, true] {
            let q = query(all);
            let url = if q.is_empty() {
                path.clone()
            } else {
                format!("{path}?{q}")
            };
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        for p in self.query.iter().filter(|p| p.required) {
            assert!(
                Self::value(p, ids).is_some(),
                "required parameter {} of {} has neither an id nor an example",
                p.name,
                self.template
            );
        }
        urls
    }
}

fn id_named(ids: Ids, name: &str) -> Option<Uuid> {
    ids.iter().find(|(n, _)| *n == name).map(|(_, id)| *id)
}

/// Every GET route under `/v1/orgs/{org}` of the document the query API at
/// `address` serves.
pub async fn documented_routes(client: &reqwest::Client, address: &str) -> Vec<Route> {
    let doc: Value = client
        .get(format!("{address}/openapi.json"))
        .send()
        .await
        .expect("the API answers")
        .json()
        .await
        .expect("the OpenAPI document is JSON");
    let mut routes = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        if !template.starts_with("/v1/orgs/{org}") {
            continue;
        }
        for (method, op) in item.as_object().expect("operations") {
            assert_eq!(method, "get", "{template}: the query API only reads");
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| Param {
                    name: p["name"].as_str().expect("a name").to_owned(),
                    required: p["required"] == true,
                    uuid: p["schema"]["format"] == "uuid",
                    example: match &p["example"] {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    },
                })
                .collect();
            routes.push(Route {
                template: template.clone(),
                query,
            });
        }
    }
    routes
}
