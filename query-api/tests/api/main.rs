//! The query API over a real socket against real PostgreSQL.

mod access;
mod bad_input;
mod consistency;
mod details;
mod helpers;
mod lists;
mod live;
mod problems;
mod world;
