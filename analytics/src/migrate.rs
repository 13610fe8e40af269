//! ClickHouse migrations (`migrations/clickhouse/*.sql`): each runs once, and
//! is recorded in `<database>.schema_migrations` with its checksum, so an
//! edited migration is refused rather than silently skipped.
//!
//! A file is SQL statements ended by `;` at the end of a line, with `--`
//! comment lines and the placeholders `${db}`, `${reporting}`,
//! `${on_cluster}` and `${replicated}` (see [`ClickHouseConfig`]). Statements
//! are idempotent (`IF NOT EXISTS`): a migration cut off midway runs again
//! whole.

use sha2::{Digest, Sha256};

use crate::ClickHouseConfig;

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "tables",
        include_str!("../../migrations/clickhouse/0001_tables.sql"),
    ),
    (
        2,
        "reporting",
        include_str!("../../migrations/clickhouse/0002_reporting.sql"),
    ),
    (
        3,
        "notifications_without_final",
        include_str!("../../migrations/clickhouse/0003_notifications_without_final.sql"),
    ),
    (
        4,
        "views_without_final",
        include_str!("../../migrations/clickhouse/0004_views_without_final.sql"),
    ),
    (
        5,
        "event_log_distinct",
        include_str!("../../migrations/clickhouse/0005_event_log_distinct.sql"),
    ),
];

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error(
        "ClickHouse migration {0} was changed after it was applied (checksum {1}, applied {2})"
    )]
    Changed(u32, String, String),
    #[error("ClickHouse migration {0}: placeholder left unfilled in: {1}")]
    Placeholder(u32, String),
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
}

/// The statements of a migration file, placeholders filled in.
pub fn statements(
    config: &ClickHouseConfig,
    version: u32,
    sql: &str,
) -> Result<Vec<String>, MigrateError> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut s = s.to_owned();
            for (placeholder, value) in config.placeholders() {
                s = s.replace(placeholder, &value);
            }
            if s.contains("${") {
                return Err(MigrateError::Placeholder(version, s));
            }
            Ok(s)
        })
        .collect()
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

#[derive(clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct Applied {
    version: u32,
    name: String,
    checksum: String,
}

/// Applies the migrations not yet recorded; returns the versions applied.
pub async fn migrate(config: &ClickHouseConfig) -> Result<Vec<u32>, MigrateError> {
    config.validate()?;
    let client = config.client();
    let [(_, db), _, (_, on_cluster), (_, replicated)] = config.placeholders();
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db} {on_cluster}"))
        .execute()
        .await?;
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations {on_cluster} \
             (version UInt32, name String, checksum String, applied_at DateTime('UTC') DEFAULT now()) \
             ENGINE = {replicated}ReplacingMergeTree() ORDER BY version"
        ))
        .execute()
        .await?;
    let applied: Vec<Applied> = client
        .query(&format!(
            "SELECT version, name, checksum FROM {db}.schema_migrations FINAL ORDER BY version"
        ))
        .fetch_all()
        .await?;
    let mut ran = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let sum = checksum(sql);
        if let Some(a) = applied.iter().find(|a| a.version == version) {
            if a.checksum != sum {
                return Err(MigrateError::Changed(version, sum, a.checksum.clone()));
            }
            continue;
        }
        for statement in statements(config, version, sql)? {
            client.query_raw(&statement).execute().await?;
        }
        let mut insert = client
            .insert_unescaped::<Applied>(&format!("{db}.schema_migrations"))
            .await?;
        insert
            .write(&Applied {
                version,
                name: name.to_owned(),
                checksum: sum,
            })
            .await?;
        insert.end().await?;
        tracing::info!(version, name, "ClickHouse migration applied");
        ran.push(version);
    }
    definer_views(config, &client).await?;
    Ok(ran)
}

/// Releases from 24.2 check a view's reader against the view only when it
/// runs as its definer: the `analyst` user may then read `reporting` and
/// nothing else. (18.16 cannot: it checks every database a view reads, and
/// does not parse the clause.)
async fn definer_views(
    config: &ClickHouseConfig,
    client: &clickhouse::Client,
) -> Result<(), MigrateError> {
    let version: String = client.query("SELECT version()").fetch_one().await?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (24, 2) {
        return Ok(());
    }
    let views: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = ? AND engine = 'View'")
        .bind(&config.reporting)
        .fetch_all()
        .await?;
    let [_, (_, reporting), (_, on_cluster), _] = config.placeholders();
    for view in views {
        client
            .query_raw(&format!(
                "ALTER TABLE {reporting}.`{view}` {on_cluster} MODIFY SQL SECURITY DEFINER"
            ))
            .execute()
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_once_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/clickhouse");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|f| f.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, name, _)| format!("{v:04}_{name}.sql"))
            .collect();
        assert_eq!(files, listed);
    }

    #[test]
    fn every_statement_has_its_placeholders_filled() {
        let config = ClickHouseConfig::local("tl", "rp");
        for &(version, _, sql) in MIGRATIONS {
            let statements = statements(&config, version, sql).unwrap();
            assert!(!statements.is_empty());
            assert!(statements.iter().all(|s| !s.contains("--")), "{version}");
        }
        let broken = statements(
            &config,
            9,
            "CREATE TABLE ${nope}.t (a UInt8) ENGINE = Memory;",
        );
        assert!(matches!(broken, Err(MigrateError::Placeholder(9, _))));
    }
}
