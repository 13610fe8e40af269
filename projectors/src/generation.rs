//! Generations: each projection's tables live in schema `rm_<name>_g<N>`;
//! views in schema `read` point at the active one.

use sqlx::{PgConnection, PgPool};

use crate::{Projection, ProjectorError};

/// The schema of a generation.
pub fn schema(projection: &str, generation: i32) -> String {
    format!("rm_{projection}_g{generation}")
}

/// The active generation, creating generation 1 (tables, views, checkpoint)
/// if the projection has never run.
pub async fn ensure_active(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<i32, ProjectorError> {
    if let Some(g) = active(pool, projection.name()).await? {
        return Ok(g);
    }
    let mut tx = pool.begin().await?;
    // Serialize first-time creation between runners.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tasklog.projection.create', 0))")
        .execute(&mut *tx)
        .await?;
    let existing: Option<i32> =
        sqlx::query_scalar("SELECT active_generation FROM projections WHERE name = $1")
            .bind(projection.name())
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(g) = existing {
        return Ok(g);
    }
    create_in(&mut tx, projection, 1).await?;
    point_views(&mut tx, projection, 1).await?;
    sqlx::query("INSERT INTO projections (name, active_generation) VALUES ($1, 1)")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(1)
}

/// The active generation, if any.
pub async fn active(pool: &PgPool, name: &str) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT active_generation FROM projections WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Takes `projection`'s switch lock exclusively until the caller's
/// transaction ends. Live batches hold it shared (`projection_batch_begin`),
/// so once it is taken none is applying events, and none starts meanwhile.
pub async fn lock_switch(conn: &mut PgConnection, projection: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('tasklog.projection.switch.' || $1, 0))",
    )
    .bind(projection)
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates a generation's schema, tables and checkpoint (at the start of the log).
pub async fn create_in(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    generation: i32,
) -> Result<(), sqlx::Error> {
    create_tables_in(conn, projection, generation, false).await
}

/// A hash of `projection`'s DDL without its comments: a generation built
/// from other tables is to be rebuilt, whatever its comments said.
pub fn ddl_hash(projection: &dyn Projection) -> String {
    use sha2::{Digest, Sha256};
    let (tables, indexes) = statements(projection.ddl());
    let mut hash = Sha256::new();
    for statement in tables.iter().chain(&indexes) {
        hash.update(statement.as_bytes());
        hash.update(b";");
    }
    hex::encode(&hash.finalize()[..16])
}

/// Whether `generation` of `projection` was built from DDL other than its
/// code's (or before the hashes were kept).
pub async fn outdated(
    pool: &PgPool,
    projection: &dyn Projection,
    generation: i32,
) -> Result<bool, sqlx::Error> {
    let built: Option<Option<String>> = sqlx::query_scalar(
        "SELECT ddl_hash FROM projection_checkpoints WHERE projection = $1 AND generation = $2",
    )
    .bind(projection.name())
    .bind(generation)
    .fetch_optional(pool)
    .await?;
    Ok(built.flatten().as_deref() != Some(ddl_hash(projection).as_str()))
}

/// The DDL's statements without comments, split into tables and secondary
/// indexes. DDL files use `--` only for comments and `;` only to end statements.
fn statements(ddl: &str) -> (Vec<String>, Vec<String>) {
    let code: String = ddl
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .partition(|s| !(s.starts_with("CREATE INDEX") || s.starts_with("CREATE UNIQUE INDEX")))
}

/// Creates the secondary indexes a rebuild deferred (bulk loading into
/// tables without them, then indexing once, is much faster) and analyzes the
/// tables, two statements at a time: each uses one core. Each statement
/// commits alone; a rebuild that fails midway leaves a generation that is
/// never switched to and is dropped by the next rebuild.
pub async fn create_indexes(
    pool: &sqlx::PgPool,
    projection: &dyn Projection,
    generation: i32,
) -> Result<(), sqlx::Error> {
    use futures::{StreamExt, TryStreamExt};
    let schema = schema(projection.name(), generation);
    // Fresh statistics, so the first queries after the switch plan well.
    let analyze = projection
        .tables()
        .iter()
        .map(|table| format!("ANALYZE {schema}.{table}"));
    let statements: Vec<String> = statements(projection.ddl())
        .1
        .into_iter()
        .map(|index| {
            format!(
                "BEGIN; SET LOCAL search_path TO {schema}; \
                 SET LOCAL maintenance_work_mem TO '256MB'; {index}; COMMIT"
            )
        })
        .chain(analyze)
        .collect();
    futures::stream::iter(statements)
        .map(|statement| async move {
            // Several statements: the simple query protocol runs them all.
            sqlx::Executor::execute(pool, statement.as_str()).await
        })
        .buffer_unordered(2)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// [`create_in`], leaving out the secondary indexes when `defer_indexes`.
pub async fn create_tables_in(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    generation: i32,
    defer_indexes: bool,
) -> Result<(), sqlx::Error> {
    let schema = schema(projection.name(), generation);
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut *conn)
        .await?;
    create_schema(conn, projection, &schema, defer_indexes).await?;
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, generation, ddl_hash) VALUES ($1, $2, $3) \
         ON CONFLICT (projection, generation) DO UPDATE \
         SET commit_id = 0, event_position = 0, events_applied = 0, last_event_at = NULL, \
             updated_at = now(), ddl_hash = EXCLUDED.ddl_hash",
    )
    .bind(projection.name())
    .bind(generation)
    .bind(ddl_hash(projection))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Creates schema `schema` (which must not exist) with `projection`'s
/// tables, as for a new generation but without a checkpoint: a generation's
/// tables, or a replay's scratch copy of them (see [`crate::replay`]).
/// Transactional with the caller.
pub async fn create_schema(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    schema: &str,
    defer_indexes: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("SET LOCAL search_path TO {schema}"))
        .execute(&mut *conn)
        .await?;
    if defer_indexes {
        for statement in statements(projection.ddl()).0 {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
    } else {
        // Several statements: the simple query protocol runs them all.
        sqlx::Executor::execute(&mut *conn, projection.ddl()).await?;
    }
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Points the `read.<table>` views at a generation (drop and create: the
/// new generation may have other columns). Transactional with the caller.
pub async fn point_views(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    generation: i32,
) -> Result<(), sqlx::Error> {
    let schema = schema(projection.name(), generation);
    for table in projection.tables() {
        sqlx::query(&format!("DROP VIEW IF EXISTS read.{table}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!(
            "CREATE VIEW read.{table} AS SELECT * FROM {schema}.{table}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_splits_into_tables_and_secondary_indexes() {
        let ddl = "-- a comment; with a semicolon\nCREATE TABLE t (\n  a int PRIMARY KEY -- the key; really\n);\n\
                   CREATE INDEX t_a ON t (a);\n-- trailing\n";
        let (tables, indexes) = statements(ddl);
        assert_eq!(tables, ["CREATE TABLE t (\n  a int PRIMARY KEY \n)"]);
        assert_eq!(indexes, ["CREATE INDEX t_a ON t (a)"]);
    }

    #[test]
    fn every_projection_ddl_has_tables_and_its_indexes_split_cleanly() {
        for p in crate::all() {
            let (tables, indexes) = statements(p.ddl());
            assert!(!tables.is_empty(), "{}", p.name());
            assert!(
                tables
                    .iter()
                    .all(|t| t.starts_with("CREATE TABLE") || t.starts_with("CREATE STATISTICS")),
                "{}: {tables:?}",
                p.name()
            );
            assert!(
                indexes.iter().all(|i| i.starts_with("CREATE")),
                "{}",
                p.name()
            );
        }
    }
}
