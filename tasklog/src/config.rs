//! Typed configuration, read once at start from flags or environment variables.

use std::net::SocketAddr;

use clap::Args;
use secrecy::SecretString;
use tasklog_http::AuthConfig;

/// The development secret; `serve` warns when it is still in use.
pub const DEV_JWT_SECRET: &str = "tasklog-development-secret-change-me";

#[derive(Args, Debug, Clone)]
pub struct Settings {
    /// PostgreSQL for the running system, as the application role (append and read events only).
    #[arg(
        long,
        env = "TASKLOG_DATABASE_URL",
        default_value = "postgres://tasklog_app@127.0.0.1:5432/tasklog",
        hide_env_values = true
    )]
    pub database_url: String,

    /// PostgreSQL as the owner of the schema, for migrations.
    #[arg(
        long,
        env = "TASKLOG_ADMIN_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tasklog",
        hide_env_values = true
    )]
    pub admin_database_url: String,

    /// Connections in the pool.
    #[arg(long, env = "TASKLOG_DATABASE_POOL_SIZE", default_value_t = 32)]
    pub database_pool_size: u32,

    /// Group commit: groups of appends the command API writes at once, each
    /// on a pooled connection (`Grouping::in_flight`; 0 turns grouping off).
    #[arg(long, env = "TASKLOG_APPEND_SLOTS", default_value_t = tasklog_event_store_postgres::Grouping::default().in_flight)]
    pub append_slots: usize,

    /// Where the command API listens.
    #[arg(long, env = "TASKLOG_COMMAND_ADDR", default_value = "127.0.0.1:8080")]
    pub command_addr: SocketAddr,

    /// Where the query API listens.
    #[arg(long, env = "TASKLOG_QUERY_ADDR", default_value = "127.0.0.1:8081")]
    pub query_addr: SocketAddr,

    /// Where the auditor API listens.
    #[arg(long, env = "TASKLOG_AUDIT_ADDR", default_value = "127.0.0.1:8082")]
    pub audit_addr: SocketAddr,

    /// ClickHouse's HTTP interface (analytics).
    #[arg(
        long,
        env = "TASKLOG_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,

    /// ClickHouse user of the analytics projection and the reports.
    #[arg(long, env = "TASKLOG_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,

    /// Its password.
    #[arg(
        long,
        env = "TASKLOG_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub clickhouse_password: SecretString,

    /// The ClickHouse database of the analytics tables.
    #[arg(long, env = "TASKLOG_CLICKHOUSE_DATABASE", default_value = "tasklog")]
    pub clickhouse_database: String,

    /// The ClickHouse database of the reporting views analysts read.
    #[arg(
        long,
        env = "TASKLOG_CLICKHOUSE_REPORTING_DATABASE",
        default_value = "reporting"
    )]
    pub clickhouse_reporting_database: String,

    /// A ClickHouse cluster: the analytics DDL then runs `ON CLUSTER` it,
    /// with Replicated engines (see docs/reporting.md).
    #[arg(long, env = "TASKLOG_CLICKHOUSE_CLUSTER")]
    pub clickhouse_cluster: Option<String>,

    /// The least milliseconds between the starts of two live steps of a
    /// projector: under load each step takes whatever came meanwhile, so a
    /// larger value spends less of the machine per command, and a read that
    /// waits for a consistency token waits up to this much longer.
    #[arg(long, env = "TASKLOG_PROJECTOR_STEP_INTERVAL_MS", default_value_t = tasklog_projectors::ProjectorConfig::default().min_step_interval.as_millis() as u64)]
    pub projector_step_interval_ms: u64,

    /// The least milliseconds between two live inserts of the analytics
    /// projection into ClickHouse once it has caught up (fewer, larger parts).
    #[arg(long, env = "TASKLOG_CLICKHOUSE_INSERT_INTERVAL_MS", default_value_t = tasklog_analytics::DEFAULT_INSERT_INTERVAL.as_millis() as u64)]
    pub clickhouse_insert_interval_ms: u64,

    /// Connections each API serves at once (lowered to fit the open-files
    /// limit). Past it, a new client closes the connection idle the longest,
    /// or gets 503 at once when every one is busy.
    #[arg(long, env = "TASKLOG_HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub http_max_connections: usize,

    /// Seconds after which a connection without a request in flight is
    /// closed; a request's head and its body must each arrive within it.
    #[arg(long, env = "TASKLOG_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub http_idle_timeout_secs: u64,

    /// HS256 secret that signs bearer tokens (ignored when a public key is given).
    #[arg(long, env = "TASKLOG_JWT_SECRET", default_value = DEV_JWT_SECRET, hide_default_value = true, hide_env_values = true)]
    pub jwt_secret: SecretString,

    /// A PEM file with the identity provider's RS256 public key; tokens are then verified with it.
    #[arg(long, env = "TASKLOG_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<std::path::PathBuf>,

    /// The Ed25519 key that signs tree heads: its 32-byte seed as 64 hex
    /// digits. Unset: the sealer does not run and no head is signed.
    #[arg(long, env = "TASKLOG_SEAL_SIGNING_KEY", hide_env_values = true)]
    pub seal_signing_key: Option<SecretString>,

    /// A tree head is signed once this many events were sealed since the last...
    #[arg(long, env = "TASKLOG_SEAL_EVERY_EVENTS", default_value_t = 1_000)]
    pub seal_every_events: u64,

    /// ...or this many seconds after the last, when events came meanwhile.
    #[arg(long, env = "TASKLOG_SEAL_EVERY_SECS", default_value_t = 10)]
    pub seal_every_secs: u64,

    /// The least milliseconds between two sealing steps once the sealer has
    /// caught up: it then seals whatever came meanwhile in one transaction.
    #[arg(long, env = "TASKLOG_SEAL_STEP_INTERVAL_MS", default_value_t = crate::seals::DEFAULT_STEP_INTERVAL.as_millis() as u64)]
    pub seal_step_interval_ms: u64,

    /// A file every signed head is appended to, one JSON line each (a copy
    /// outside the database; heads are also logged).
    #[arg(long, env = "TASKLOG_SEAL_HEADS_FILE")]
    pub seal_heads_file: Option<std::path::PathBuf>,

    /// A URL every signed head is POSTed to, as JSON (the heads file's
    /// line), with retries, from a task of its own: a failing or slow
    /// receiver never holds sealing up. http:// or https:// (rustls, with
    /// the Mozilla roots of webpki-roots).
    #[arg(long, env = "TASKLOG_SEAL_WEBHOOK_URL")]
    pub seal_webhook_url: Option<reqwest::Url>,

    /// A secret shared with the webhook: each POST then carries
    /// `X-Tasklog-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[arg(long, env = "TASKLOG_SEAL_WEBHOOK_SECRET", hide_env_values = true)]
    pub seal_webhook_secret: Option<SecretString>,
}

impl Settings {
    /// How each API treats its connections.
    pub fn http_limits(&self) -> crate::http::Limits {
        crate::http::Limits {
            max_connections: crate::http::connection_budget(self.http_max_connections.max(1)),
            idle_timeout: std::time::Duration::from_secs(self.http_idle_timeout_secs.max(1)),
        }
    }

    /// How the command API groups its appends: `None` when grouping is off.
    pub fn grouping(&self) -> Option<tasklog_event_store_postgres::Grouping> {
        (self.append_slots > 0).then(|| tasklog_event_store_postgres::Grouping {
            in_flight: self.append_slots,
            ..Default::default()
        })
    }

    /// How the live projectors step: at least the configured interval
    /// apart, at most three times it (or the runner's default, if more).
    pub fn projectors(&self) -> tasklog_projectors::ProjectorConfig {
        let defaults = tasklog_projectors::ProjectorConfig::default();
        let min = std::time::Duration::from_millis(self.projector_step_interval_ms);
        tasklog_projectors::ProjectorConfig {
            min_step_interval: min,
            max_step_interval: defaults.max_step_interval.max(min * 3),
            ..defaults
        }
    }

    /// Where the analytics store is.
    pub fn clickhouse(&self) -> tasklog_analytics::ClickHouseConfig {
        use secrecy::ExposeSecret;
        tasklog_analytics::ClickHouseConfig {
            url: self.clickhouse_url.clone(),
            user: self.clickhouse_user.clone(),
            password: self.clickhouse_password.expose_secret().to_owned(),
            database: self.clickhouse_database.clone(),
            reporting: self.clickhouse_reporting_database.clone(),
            cluster: self.clickhouse_cluster.clone(),
            timeout: std::time::Duration::from_secs(30),
            insert_interval: std::time::Duration::from_millis(self.clickhouse_insert_interval_ms),
        }
    }

    /// How bearer tokens are verified.
    pub fn auth(&self) -> anyhow::Result<AuthConfig> {
        Ok(match &self.jwt_public_key_file {
            Some(path) => AuthConfig::Rs256 {
                public_key_pem: std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
            },
            None => AuthConfig::Hs256 {
                secret: self.jwt_secret.clone(),
            },
        })
    }

    /// How the sealer runs; `None` when no signing key is configured.
    pub fn sealer(&self) -> anyhow::Result<Option<crate::seals::SealerConfig>> {
        use secrecy::ExposeSecret;
        let Some(seed) = &self.seal_signing_key else {
            return Ok(None);
        };
        let key = tasklog_event_store::seal::signing_key_from_hex(seed.expose_secret())
            .map_err(|e| anyhow::anyhow!("TASKLOG_SEAL_SIGNING_KEY: {e}"))?;
        let webhook = match &self.seal_webhook_url {
            Some(url) if !matches!(url.scheme(), "http" | "https") => anyhow::bail!(
                "TASKLOG_SEAL_WEBHOOK_URL: {} is neither http:// nor https://",
                url.scheme()
            ),
            Some(url) => Some(crate::seals::WebhookConfig {
                secret: self.seal_webhook_secret.clone(),
                ..crate::seals::WebhookConfig::new(url.clone())
            }),
            None => None,
        };
        Ok(Some(crate::seals::SealerConfig {
            every_events: self.seal_every_events.max(1),
            every: std::time::Duration::from_secs(self.seal_every_secs.max(1)),
            min_step_interval: std::time::Duration::from_millis(self.seal_step_interval_ms),
            heads_file: self.seal_heads_file.clone(),
            webhook,
            ..crate::seals::SealerConfig::new(key)
        }))
    }

    /// Settings for tests and benches: everything local, ports chosen by the OS.
    pub fn local(database_url: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            admin_database_url: database_url.to_owned(),
            database_pool_size: 16,
            append_slots: tasklog_event_store_postgres::Grouping::default().in_flight,
            command_addr: "127.0.0.1:0".parse().expect("a valid address"),
            query_addr: "127.0.0.1:0".parse().expect("a valid address"),
            audit_addr: "127.0.0.1:0".parse().expect("a valid address"),
            clickhouse_url: "http://127.0.0.1:8123".into(),
            clickhouse_user: "default".into(),
            clickhouse_password: SecretString::from(""),
            clickhouse_database: "tasklog".into(),
            clickhouse_reporting_database: "reporting".into(),
            clickhouse_cluster: None,
            clickhouse_insert_interval_ms: tasklog_analytics::DEFAULT_INSERT_INTERVAL.as_millis()
                as u64,
            projector_step_interval_ms: tasklog_projectors::ProjectorConfig::default()
                .min_step_interval
                .as_millis() as u64,
            http_max_connections: 10_000,
            http_idle_timeout_secs: 30,
            jwt_secret: SecretString::from(DEV_JWT_SECRET),
            jwt_public_key_file: None,
            seal_signing_key: None,
            seal_every_events: 1_000,
            seal_every_secs: 10,
            seal_step_interval_ms: crate::seals::DEFAULT_STEP_INTERVAL.as_millis() as u64,
            seal_heads_file: None,
            seal_webhook_url: None,
            seal_webhook_secret: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    const SEED: &str = "4c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5";

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec!["tasklog", "--seal-signing-key", SEED];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("the flags parse").settings
    }

    #[test]
    fn the_seal_webhook_is_configured_with_its_secret() {
        let sealer = settings(&[
            "--seal-webhook-url",
            "http://relay:9000/heads",
            "--seal-webhook-secret",
            "shh",
        ])
        .sealer()
        .expect("a valid configuration")
        .expect("a signing key");
        let webhook = sealer.webhook.expect("a webhook");
        assert_eq!(webhook.url.as_str(), "http://relay:9000/heads");
        assert!(webhook.secret.is_some());
    }

    #[test]
    fn a_seal_webhook_url_that_is_not_http_or_https_is_refused_at_start() {
        assert!(Cli::try_parse_from(["tasklog", "--seal-webhook-url", "not a url"]).is_err());
        let error = settings(&["--seal-webhook-url", "ftp://example.invalid/heads"])
            .sealer()
            .err()
            .expect("ftp is refused");
        assert!(
            error.to_string().contains("neither http:// nor https://"),
            "{error}"
        );
        let https = settings(&["--seal-webhook-url", "https://example.invalid/heads"])
            .sealer()
            .expect("https is taken")
            .expect("a sealer");
        assert_eq!(https.webhook.expect("a webhook").url.scheme(), "https");
    }

    #[test]
    fn the_append_slots_set_how_many_groups_are_written_at_once_and_zero_turns_grouping_off() {
        let slots = |args: &[&str]| settings(args).grouping().map(|g| g.in_flight);
        assert_eq!(
            slots(&[]),
            Some(tasklog_event_store_postgres::Grouping::default().in_flight)
        );
        assert_eq!(slots(&["--append-slots", "1"]), Some(1));
        assert_eq!(slots(&["--append-slots", "0"]), None);
    }

    #[test]
    fn the_analytics_insert_interval_is_configured_in_milliseconds() {
        let interval = |args: &[&str]| settings(args).clickhouse().insert_interval;
        assert_eq!(interval(&[]), tasklog_analytics::DEFAULT_INSERT_INTERVAL);
        assert_eq!(
            interval(&["--clickhouse-insert-interval-ms", "1000"]),
            std::time::Duration::from_secs(1)
        );
        let analytics = tasklog_analytics::Analytics::new(
            &settings(&["--clickhouse-insert-interval-ms", "40"]).clickhouse(),
        )
        .expect("a valid configuration");
        assert_eq!(
            tasklog_projectors::Projection::min_step_interval(&analytics),
            std::time::Duration::from_millis(40),
            "the projection asks the runner for the configured interval"
        );
    }
}
