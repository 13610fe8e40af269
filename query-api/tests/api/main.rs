//! The query API over a real socket against real PostgreSQL (and, for the
//! reports, real ClickHouse).

mod access;
mod bad_input;
mod consistency;
mod details;
mod helpers;
mod lists;
mod live;
mod problems;
mod reports;
mod world;
