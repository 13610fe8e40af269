//! The application service: load one aggregate, decide, append at the loaded
//! version. Handlers call this and nothing else touches the event store.
//!
//! - [`cache`]: aggregates as of their last read, and loading them;
//! - [`writers`]: writers to one stream take turns within the process;
//! - [`access`]: who may issue a command in an organization;
//! - [`execute`]: deciding and appending, retried on concurrent appends;
//! - [`responses`]: what a successful command answers.

mod access;
mod cache;
mod execute;
mod responses;
mod writers;

use std::sync::Arc;

use sqlx::PgPool;
use tasklog_domain::Aggregate;
use tasklog_event_store::{EventStore, LogPosition};
use tasklog_http::auth::{Authenticator, Caller, HasAuthenticator};
use uuid::Uuid;

use crate::extract::CommandMeta;

pub use access::Access;
pub use cache::AggregateCache;
pub use responses::{Accepted, CommandAccepted};
pub use writers::StreamWriters;

/// Shared state of the command API.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub pool: PgPool,
    pub auth: Arc<Authenticator>,
    pub cache: Arc<AggregateCache>,
    pub writers: Arc<StreamWriters>,
}

impl HasAuthenticator for AppState {
    fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}

/// An aggregate as of its last event.
pub struct Loaded<A> {
    pub state: A,
    pub version: u64,
    pub position: Option<LogPosition>,
}

/// What a command did to its aggregate.
pub struct Executed<A: Aggregate> {
    pub state: A,
    pub version: u64,
    /// The consistency token: the position of the aggregate's last event.
    pub position: Option<LogPosition>,
    /// The events this command appended (none when it changed nothing).
    pub events: Vec<A::Event>,
}

/// Who issues a command, in which organization.
pub struct Context<'a> {
    pub meta: &'a CommandMeta,
    pub caller: &'a Caller,
    pub org_id: Uuid,
}
