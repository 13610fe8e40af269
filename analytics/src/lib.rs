//! The analytics store: ClickHouse tables fed from the global event log by
//! the `analytics` projection, and the reporting views over them that
//! analysts (and the query API's reports) read.
//!
//! - The projection runs under the projectors' runner like any other (lease,
//!   failover, retries with backoff, parking, rebuilds, status). Its small
//!   state (each task's, project's, member's and tag's current facts) lives in
//!   its PostgreSQL generation schema, committed with its checkpoint.
//! - ClickHouse cannot commit a batch with that checkpoint, so every row it
//!   gets is keyed by what it describes (a log position, a task, a
//!   notification) in a ReplacingMergeTree, and computed only from the events
//!   and the committed state: a batch sent again after a crash writes the same
//!   rows again, which collapse on merge, and the views read with `FINAL`.
//! - ClickHouse down, slow or refusing is a transient failure of this
//!   projection only: it retries with backoff from its checkpoint while the
//!   log, the other projections and the APIs carry on.

mod config;
mod fold;
pub mod migrate;
mod projection;
mod rows;

pub use config::{ClickHouseConfig, ConfigError, DEFAULT_INSERT_INTERVAL};
pub use projection::{project_afresh, Analytics};
