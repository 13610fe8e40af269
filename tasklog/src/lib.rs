//! The `tasklog` binary's library: configuration, startup of each role, and
//! the operator subcommands. Tests and benches start the real system from here.

pub mod allocator;
pub mod audit;
pub mod config;
pub mod generate;
pub mod http;
mod projections;
pub mod seals;
pub mod startup;

pub use config::Settings;
pub use projections::{projections_cli, run_projectors, ProjectionsCommand};
pub use startup::{
    connect, event_store, migrate, AuditApi, CommandApi, Listening, QueryApi, MIGRATOR,
};

/// Logs as JSON when `TASKLOG_LOG_JSON` is set; level from `RUST_LOG` (default info).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if std::env::var_os("TASKLOG_LOG_JSON").is_some() {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    /// The query API wakes read-your-writes waits on the channel the
    /// projectors announce checkpoints on; it names it itself, so as not to
    /// depend on the projectors.
    #[test]
    fn the_query_api_listens_on_the_channel_the_projectors_announce_on() {
        assert_eq!(
            tasklog_query_api::CHECKPOINT_CHANNEL,
            tasklog_projectors::CHECKPOINT_CHANNEL
        );
    }

    /// Every read model the query API waits for is kept by a projection of
    /// that name (a wait on any other name would never end): the
    /// PostgreSQL projections, and `analytics`, which the binary adds when
    /// it is given ClickHouse.
    #[test]
    fn every_read_model_the_query_api_waits_for_is_a_projection() {
        let clickhouse = tasklog_analytics::ClickHouseConfig::local("tasklog", "reporting");
        let projections: Vec<String> = crate::projections::projections(Some(&clickhouse))
            .expect("the local ClickHouse configuration is valid")
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        for model in tasklog_query_api::ReadModel::ALL {
            assert!(
                projections.iter().any(|p| p == model.name()),
                "{model:?} names {:?}, not one of {projections:?}",
                model.name()
            );
        }
    }
}
