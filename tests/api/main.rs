//! The command API end to end: the real app on a random port, real PostgreSQL.

mod helpers;

mod audit;
mod auth;
mod cached_state;
mod concurrency;
mod errors;
mod idempotency;
mod idempotency_crash;
mod problems;
mod readiness;
mod rejected_creates;
mod system;
mod tasks;
mod tenancy;
