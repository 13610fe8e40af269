//! A ClickHouse server of a test's own, for tests that stop and start it
//! (the shared one on 8123 must stay up for everyone else): its own data
//! directory and free ports, configured as `scripts/services.sh` configures
//! the shared one. Dropping it kills it and removes its directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// How long a start may take before the test gives up (18.16 takes a few
/// seconds; a busy machine more).
const START_WITHIN: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// A running (or stopped) ClickHouse server.
pub struct ClickHouseServer {
    dir: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    pub interserver_port: u16,
    child: Option<Child>,
}

impl ClickHouseServer {
    /// A new server on a fresh data directory and free ports, answering.
    pub async fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("tasklog-ch-{}", uuid::Uuid::new_v4().simple()));
        for sub in ["data", "tmp", "log", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.join(sub)).expect("the server's directories are created");
        }
        let mut server = Self {
            dir,
            http_port: free_port(),
            tcp_port: free_port(),
            interserver_port: free_port(),
            child: None,
        };
        server.write_config();
        server.start_again().await;
        server
    }

    /// Its HTTP interface, for [`tasklog_analytics::ClickHouseConfig::url`].
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts it (again) on the same data directory and ports, and waits
    /// until it answers `/ping`.
    pub async fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "the server is stopped before it starts again"
        );
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("log").join(name))
                .expect("the server's log opens")
        };
        let (program, args) = binary();
        let child = Command::new(program)
            .args(args)
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("clickhouse-server starts: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_WITHIN;
        let client = reqwest::Client::new();
        loop {
            let ping = client
                .get(format!("{}/ping", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(ping, Ok(ref r) if r.status().is_success()) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "clickhouse-server exited with {status} (logs in {})",
                    self.dir.join("log").display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server answers /ping on {} within {START_WITHIN:?}",
                self.url()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops it as an operator would (SIGTERM), killing it if it does not
    /// exit in time, and waits until it has.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let config = format!(
            r#"<?xml version="1.0"?>
<!-- A test's own ClickHouse, as scripts/services.sh configures the shared one. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>{d}/log/clickhouse-server.log</log>
        <errorlog>{d}/log/clickhouse-server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <http_port>{http}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <interserver_http_port>{interserver}</interserver_http_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
"#,
            http = self.http_port,
            tcp = self.tcp_port,
            interserver = self.interserver_port,
        );
        let users = r#"<?xml version="1.0"?>
<!-- User `default`, no password, loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks replace="replace">
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"#;
        std::fs::write(self.dir.join("config.xml"), config).expect("config.xml is written");
        std::fs::write(self.dir.join("users.xml"), users).expect("users.xml is written");
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server binary: Debian's `clickhouse-server`, or `clickhouse server`.
fn binary() -> (PathBuf, Vec<&'static str>) {
    for path in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
        if Path::new(path).exists() {
            return (path.into(), vec![]);
        }
    }
    ("clickhouse".into(), vec!["server"])
}
