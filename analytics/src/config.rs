//! Where the analytics store is, read once at start.

use std::time::Duration;

/// How to reach ClickHouse and which databases to use.
#[derive(Clone, Debug)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub user: String,
    pub password: String,
    /// The tables' database.
    pub database: String,
    /// The reporting views' database.
    pub reporting: String,
    /// A cluster name: the DDL then runs `ON CLUSTER` with Replicated engines.
    pub cluster: Option<String>,
    /// How long one request may take before it counts as a failure.
    pub timeout: Duration,
    /// The least time between two live inserts of the analytics projection
    /// once it has caught up: each insert makes a part per table, which
    /// ClickHouse then merges, so it asks for few, large inserts. Lag grows
    /// by up to this much.
    pub insert_interval: Duration,
}

/// The default [`ClickHouseConfig::insert_interval`]: a quarter of the time a
/// report waits for a consistency token (2 s), an eighth of the lag aim.
pub const DEFAULT_INSERT_INTERVAL: Duration = Duration::from_millis(250);

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ClickHouseConfig {
    /// The defaults of a local server, with the given databases.
    pub fn local(database: &str, reporting: &str) -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: String::new(),
            database: database.into(),
            reporting: reporting.into(),
            cluster: None,
            timeout: Duration::from_secs(30),
            insert_interval: DEFAULT_INSERT_INTERVAL,
        }
    }

    /// Database and cluster names go into SQL text: only plain identifiers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let names = [
            ("database", Some(&self.database)),
            ("reporting database", Some(&self.reporting)),
            ("cluster", self.cluster.as_ref()),
        ];
        for (what, name) in names {
            if let Some(name) = name {
                if !is_identifier(name) {
                    return Err(ConfigError(format!(
                        "ClickHouse {what} {name:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A client of the server (no database chosen: every statement names it).
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(&self.password)
            // 18.16 (Debian's) answers RowBinary but not the typed header
            // that validation needs; the row types are checked by our tests.
            .with_validation(false)
            // A report's filter must reach the tables (18.16 has it off;
            // migrations/clickhouse/0004_views_without_final.sql).
            .with_setting("enable_optimize_predicate_expression", "1")
            .with_compression(self.compression())
    }

    /// LZ4 costs the CPU both ends share on one machine; across a network
    /// it saves more than it costs.
    fn compression(&self) -> clickhouse::Compression {
        let local = ["//127.0.0.1", "//localhost", "//[::1]"]
            .iter()
            .any(|host| self.url.contains(host));
        if local {
            clickhouse::Compression::None
        } else {
            clickhouse::Compression::Lz4
        }
    }

    /// The placeholders of the migration files, filled in.
    pub(crate) fn placeholders(&self) -> [(&'static str, String); 4] {
        [
            ("${db}", self.database.clone()),
            ("${reporting}", self.reporting.clone()),
            (
                "${on_cluster}",
                self.cluster
                    .as_ref()
                    .map_or(String::new(), |c| format!("ON CLUSTER {c}")),
            ),
            (
                "${replicated}",
                if self.cluster.is_some() {
                    "Replicated".into()
                } else {
                    String::new()
                },
            ),
        ]
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_must_be_plain_identifiers() {
        assert!(ClickHouseConfig::local("tasklog", "reporting")
            .validate()
            .is_ok());
        for bad in ["", "1db", "db; DROP TABLE x", "db.x", "db-x", "d`b"] {
            assert!(
                ClickHouseConfig::local(bad, "reporting")
                    .validate()
                    .is_err(),
                "{bad:?}"
            );
        }
        let mut clustered = ClickHouseConfig::local("tasklog", "reporting");
        clustered.cluster = Some("main cluster".into());
        assert!(clustered.validate().is_err());
    }

    #[test]
    fn a_cluster_name_makes_the_ddl_run_on_the_cluster_with_replicated_engines() {
        let mut config = ClickHouseConfig::local("tl", "rp");
        let single: Vec<_> = config.placeholders().into_iter().map(|p| p.1).collect();
        assert_eq!(single, ["tl", "rp", "", ""]);
        config.cluster = Some("main".into());
        let clustered: Vec<_> = config.placeholders().into_iter().map(|p| p.1).collect();
        assert_eq!(clustered, ["tl", "rp", "ON CLUSTER main", "Replicated"]);
    }
}
