//! A ClickHouse of a test's own: a pair of fresh databases (tables and
//! reporting views) on the local server, migrated, dropped at the end.

use std::io::{Read, Write};

use tasklog_analytics::ClickHouseConfig;

/// The server tests use (`scripts/services.sh` starts it).
pub fn clickhouse_url() -> String {
    std::env::var("TASKLOG_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A test's analytics databases.
pub struct TestClickHouse {
    pub config: ClickHouseConfig,
}

impl TestClickHouse {
    /// Fresh databases, with every ClickHouse migration applied.
    pub async fn migrated() -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let mut config = ClickHouseConfig::local(&format!("t_{suffix}"), &format!("r_{suffix}"));
        config.url = clickhouse_url();
        tasklog_analytics::migrate::migrate(&config)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "ClickHouse at {} takes the migrations (start it with scripts/services.sh): {e}",
                    config.url
                )
            });
        Self { config }
    }

    /// A client whose default database is the tables'.
    pub fn client(&self) -> clickhouse::Client {
        self.config.client().with_database(&self.config.database)
    }

    /// The result of `sql` as TabSeparated text, one line per row: the
    /// figures of a view as an analyst's client would print them.
    pub async fn tsv(&self, sql: &str) -> String {
        let mut cursor = self
            .client()
            .query_raw(sql)
            .fetch_bytes("TabSeparated")
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let bytes = cursor
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        String::from_utf8(bytes.to_vec()).expect("ClickHouse answers UTF-8")
    }
}

impl Drop for TestClickHouse {
    fn drop(&mut self) {
        for db in [&self.config.database, &self.config.reporting] {
            let _ = post(&self.config.url, &format!("DROP DATABASE IF EXISTS {db}"));
        }
    }
}

/// A statement over plain HTTP, blocking (for `Drop`).
fn post(url: &str, sql: &str) -> std::io::Result<()> {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
        sql.len()
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(())
}

impl TestClickHouse {
    /// The settings `tasklog` reads to use these databases, for a test
    /// that runs the binary.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            ("TASKLOG_CLICKHOUSE_URL", self.config.url.clone()),
            ("TASKLOG_CLICKHOUSE_DATABASE", self.config.database.clone()),
            (
                "TASKLOG_CLICKHOUSE_REPORTING_DATABASE",
                self.config.reporting.clone(),
            ),
        ]
    }

    /// Every reporting view's rows, sorted, view by view: what an analyst
    /// would read. Columns measured against the clock (`open_seconds`,
    /// which grows with `now()`) are left out, so two snapshots taken
    /// moments apart compare equal when the data do.
    pub async fn views(&self) -> Vec<(String, Vec<String>)> {
        let reporting = &self.config.reporting;
        let views = self
            .tsv(&format!(
                "SELECT name FROM system.tables WHERE database = '{reporting}' ORDER BY name"
            ))
            .await;
        let mut out = Vec::new();
        for view in views.lines() {
            let columns = self
                .tsv(&format!(
                    "SELECT name FROM system.columns WHERE database = '{reporting}' AND table = '{view}' \
                     AND name NOT IN ('open_seconds')"
                ))
                .await;
            let list: Vec<String> = columns.lines().map(|c| format!("`{c}`")).collect();
            let rows = self
                .tsv(&format!(
                    "SELECT {} FROM {reporting}.{view}",
                    list.join(", ")
                ))
                .await;
            let mut rows: Vec<String> = rows.lines().map(str::to_owned).collect();
            rows.sort();
            out.push((view.to_owned(), rows));
        }
        out
    }
}
