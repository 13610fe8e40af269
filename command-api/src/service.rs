//! The application service: load one aggregate, decide, append at the loaded
//! version. Handlers call this and nothing else touches the event store.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgPool;
use tasklog_domain::{
    decode_event, encode_event, stream_name, Aggregate, DomainError, DomainEvent, Organization,
    Role,
};
use tasklog_event_store::{
    EventMetadata, EventStore, ExpectedVersion, LogPosition, NewEvent, RecordedEvent, StoreError,
    StreamAppend,
};
use uuid::Uuid;

use crate::extract::CommandMeta;
use tasklog_http::auth::{Authenticator, Caller, HasAuthenticator};
use tasklog_http::ApiError;

/// How often a command is decided again when another writer got in first.
const MAX_ATTEMPTS: usize = 16;

/// Shared state of the command API.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub pool: PgPool,
    pub auth: Arc<Authenticator>,
    pub cache: Arc<AggregateCache>,
    pub writers: Arc<StreamWriters>,
}

/// Writers to one stream within this process take turns: two requests on
/// the same project or task would otherwise load the same version, and all
/// but one would lose the append and decide again, over and over under a
/// burst (a reconnecting pool lets them all in at once). Conflicts remain
/// only between processes. Streams share a fixed set of locks by hash, so
/// memory stays bounded; an unlucky pair of streams merely takes turns too.
pub struct StreamWriters {
    stripes: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl StreamWriters {
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: Default::default(),
        }
    }

    /// This process's turn to write `stream`, held until the guard drops.
    pub async fn turn(&self, stream: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let stripe = self.hasher.hash_one(stream) as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}

/// Aggregates as of their last read. A load reads only the events after the
/// cached version and folds them on, so a long stream (a project that handed
/// out thousands of task numbers) is not replayed for every command. Every
/// load still reads the stream's tail first: the cache never answers stale.
pub struct AggregateCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, Cached>>,
    capacity: usize,
}

#[derive(Clone)]
struct Cached {
    state: Arc<dyn std::any::Any + Send + Sync>,
    version: u64,
    position: Option<LogPosition>,
}

impl AggregateCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Default::default(),
            capacity,
        }
    }

    fn get<A: Aggregate>(&self, stream: &str) -> Option<Loaded<A>> {
        let cached = self.entries.lock().ok()?.get(stream).cloned()?;
        let state = cached.state.downcast_ref::<A>()?.clone();
        Some(Loaded {
            state,
            version: cached.version,
            position: cached.position,
        })
    }

    fn put<A: Aggregate>(&self, stream: &str, loaded: &Loaded<A>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries
            .get(stream)
            .is_some_and(|c| c.version >= loaded.version)
        {
            return;
        }
        if entries.len() >= self.capacity {
            // Crude but bounded: start over rather than track recency.
            entries.clear();
        }
        entries.insert(
            stream.to_owned(),
            Cached {
                state: Arc::new(loaded.state.clone()),
                version: loaded.version,
                position: loaded.position,
            },
        );
    }

    /// Where to read `stream` from, and what to fold onto.
    fn start<A: Aggregate>(&self, stream: &str) -> (u64, Loaded<A>) {
        match self.get::<A>(stream) {
            Some(cached) => (cached.version + 1, cached),
            None => (
                1,
                Loaded {
                    state: A::default(),
                    version: 0,
                    position: None,
                },
            ),
        }
    }

    fn extend<A: Aggregate>(
        &self,
        stream: &str,
        base: Loaded<A>,
        tail: Vec<RecordedEvent>,
    ) -> Result<Loaded<A>, ApiError> {
        let loaded = fold_onto(base, tail)?;
        self.put(stream, &loaded);
        Ok(loaded)
    }
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

/// What a caller must be to issue a command in an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any member (the domain decides the rest).
    Member,
    /// Members who may change things: member, admin, owner.
    Write,
    /// Admins and owners.
    Admin,
}

/// Who issues a command, in which organization.
pub struct Context<'a> {
    pub meta: &'a CommandMeta,
    pub caller: &'a Caller,
    pub org_id: Uuid,
}

impl AppState {
    /// Reads one aggregate from its stream.
    pub async fn load<A: Aggregate>(&self, id: Uuid) -> Result<Loaded<A>, ApiError> {
        let stream = stream_name::<A>(id);
        let (from, base) = self.cache.start::<A>(&stream);
        let tail = self.store.read_stream(&stream, from).await?;
        self.cache.extend(&stream, base, tail)
    }

    /// The organization, if the caller is a member with enough access. A
    /// non-member gets the same answer whether or not the organization exists.
    pub async fn authorize(
        &self,
        caller: &Caller,
        org_id: Uuid,
        access: Access,
    ) -> Result<Loaded<Organization>, ApiError> {
        let org = self.load::<Organization>(org_id).await?;
        check_access(org, caller, access)
    }

    /// [`Self::authorize`] and [`Self::load`] in one read of the event store.
    pub async fn authorize_and_load<A: Aggregate>(
        &self,
        caller: &Caller,
        org_id: Uuid,
        access: Access,
        id: Uuid,
    ) -> Result<(Loaded<Organization>, Loaded<A>), ApiError> {
        let (org_stream, stream) = (stream_name::<Organization>(org_id), stream_name::<A>(id));
        let (org_from, org_base) = self.cache.start::<Organization>(&org_stream);
        let (from, base) = self.cache.start::<A>(&stream);
        let mut read = self
            .store
            .read_streams(&[(org_stream.clone(), org_from), (stream.clone(), from)])
            .await?
            .into_iter();
        let org = self
            .cache
            .extend(&org_stream, org_base, read.next().unwrap_or_default())?;
        let aggregate = self
            .cache
            .extend(&stream, base, read.next().unwrap_or_default())?;
        Ok((check_access(org, caller, access)?, aggregate))
    }

    /// Decides `command` against aggregate `id` and appends its events.
    ///
    /// With `if_match`, the aggregate must be at that version (412 otherwise).
    /// Without it, a concurrent append makes it load and decide again, so no
    /// update is lost and none is applied on stale state.
    pub async fn execute<A: Aggregate>(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        if_match: Option<u64>,
        command: impl Fn(&A) -> Result<A::Command, ApiError>,
    ) -> Result<Executed<A>, ApiError> {
        self.execute_loaded(ctx, id, None, if_match, command).await
    }

    /// [`Self::execute`], deciding first against an aggregate already loaded.
    pub async fn execute_loaded<A: Aggregate>(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        mut preloaded: Option<Loaded<A>>,
        if_match: Option<u64>,
        command: impl Fn(&A) -> Result<A::Command, ApiError>,
    ) -> Result<Executed<A>, ApiError> {
        let stream = stream_name::<A>(id);
        let event_id = |i: usize| ctx.event_id(&stream, i);
        let _turn = self.writers.turn(&stream).await;
        for attempt in 0..MAX_ATTEMPTS {
            // A retried idempotent request whose events were stored already.
            if ctx.meta.ids.is_seeded() {
                if let Some(done) = self.already_done::<A>(event_id(0)).await? {
                    return Ok(done);
                }
            }
            let loaded = match preloaded.take() {
                Some(loaded) => loaded,
                None => self.load::<A>(id).await?,
            };
            // Whether the object exists and is the caller's (404) is decided
            // before any precondition, so a 412 never reveals another
            // organization's object or its version.
            let decided = loaded.state.decide(command(&loaded.state)?);
            if let Some(expected) = if_match {
                if expected != loaded.version {
                    // So is a request that is invalid whatever the version.
                    if let Err(e @ (DomainError::NotFound(_) | DomainError::Validation(_))) =
                        decided
                    {
                        return Err(e.into());
                    }
                    return Err(ApiError::PreconditionFailed {
                        current: loaded.version,
                    });
                }
            }
            let events = decided?;
            if events.is_empty() {
                return Ok(Executed {
                    state: loaded.state,
                    version: loaded.version,
                    position: loaded.position,
                    events,
                });
            }
            let new_events = ctx.new_events(&stream, &events);
            let expected = ExpectedVersion::from_version(loaded.version);
            match self.store.append(&stream, expected, new_events).await {
                Ok(r) if r.deduplicated => {
                    if let Some(done) = self.already_done::<A>(event_id(0)).await? {
                        return Ok(done);
                    }
                }
                Ok(r) => {
                    let state = events.iter().fold(loaded.state, |s, e| s.evolve(e));
                    return Ok(Executed {
                        state,
                        version: r.stream_version,
                        position: Some(r.last_position),
                        events,
                    });
                }
                Err(StoreError::Conflict { actual, .. }) if if_match.is_some() => {
                    return Err(ApiError::PreconditionFailed {
                        current: actual.unwrap_or(0),
                    });
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(attempt, %stream, "concurrent append; deciding again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict(
            "the resource is changing too fast; retry the request".into(),
        ))
    }

    /// Creates aggregate `child_id` together with the change to its parent
    /// that makes room for it (a task and the number its project hands out; a
    /// project and the key its organization registers), appended at once:
    /// the command is accepted or rejected as a whole, so a creation that
    /// fails never leaves a number or a key taken. A concurrent change to the
    /// parent makes it decide both again.
    pub async fn create_under<P: Aggregate, C: Aggregate>(
        &self,
        ctx: &Context<'_>,
        (parent_id, parent_command): (Uuid, impl Fn(&P) -> Result<P::Command, ApiError>),
        (child_id, child_command): (Uuid, impl Fn(&[P::Event]) -> Result<C::Command, ApiError>),
    ) -> Result<Executed<C>, ApiError> {
        let (parent_stream, child_stream) =
            (stream_name::<P>(parent_id), stream_name::<C>(child_id));
        // The child is new: only the parent is contended.
        let _turn = self.writers.turn(&parent_stream).await;
        for attempt in 0..MAX_ATTEMPTS {
            if ctx.meta.ids.is_seeded() {
                let first = ctx.event_id(&child_stream, 0);
                if let Some(done) = self.already_done::<C>(first).await? {
                    return Ok(done);
                }
            }
            let parent = self.load::<P>(parent_id).await?;
            let parent_events = parent.state.decide(parent_command(&parent.state)?)?;
            let child_events = C::default().decide(child_command(&parent_events)?)?;
            if parent_events.is_empty() || child_events.is_empty() {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "creating {child_stream} under {parent_stream} decided no events"
                )));
            }
            let appends = vec![
                StreamAppend {
                    stream: parent_stream.clone(),
                    expected: ExpectedVersion::from_version(parent.version),
                    events: ctx.new_events(&parent_stream, &parent_events),
                },
                StreamAppend {
                    stream: child_stream.clone(),
                    expected: ExpectedVersion::NoStream,
                    events: ctx.new_events(&child_stream, &child_events),
                },
            ];
            match self.store.append_all(appends).await {
                Ok(results) if results.iter().any(|r| r.deduplicated) => {
                    let first = ctx.event_id(&child_stream, 0);
                    if let Some(done) = self.already_done::<C>(first).await? {
                        return Ok(done);
                    }
                }
                Ok(results) => {
                    let r = results[1];
                    let state = child_events.iter().fold(C::default(), |s, e| s.evolve(e));
                    return Ok(Executed {
                        state,
                        version: r.stream_version,
                        position: Some(r.last_position),
                        events: child_events,
                    });
                }
                Err(StoreError::Conflict { stream, .. }) if stream == parent_stream => {
                    tracing::debug!(attempt, %stream, "concurrent append; deciding again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::Conflict(
            "the resource is changing too fast; retry the request".into(),
        ))
    }

    /// When `first_event` is stored (a seeded retry of a request that got as
    /// far as appending), what that append did.
    async fn already_done<A: Aggregate>(
        &self,
        first_event: Uuid,
    ) -> Result<Option<Executed<A>>, ApiError> {
        let Some(first) = self.store.find_event(first_event).await? else {
            return Ok(None);
        };
        let stream = self.store.read_stream(&first.stream_id, 1).await?;
        let mut state = A::default();
        let mut ours = Vec::new();
        let mut last = None;
        for e in stream {
            let event = decode::<A>(&e.event_type, e.payload)?;
            state = state.evolve(&event);
            if e.metadata.correlation_id == first.metadata.correlation_id
                && e.stream_version >= first.stream_version
            {
                ours.push(event);
                last = Some((e.stream_version, e.position));
            }
        }
        let (version, position) = last.unwrap_or((first.stream_version, first.position));
        Ok(Some(Executed {
            state,
            version,
            position: Some(position),
            events: ours,
        }))
    }
}

impl Context<'_> {
    /// The id of the `n`-th event this command appends to `stream`: fixed by
    /// the `Idempotency-Key`'s seed when there is one, so a retry is recognised.
    fn event_id(&self, stream: &str, n: usize) -> Uuid {
        self.meta.ids.id(&format!("event:{stream}"), n as u32)
    }

    fn new_events<E: DomainEvent>(&self, stream: &str, events: &[E]) -> Vec<NewEvent> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (event_type, payload) = encode_event(e);
                NewEvent {
                    event_id: self.event_id(stream, i),
                    event_type: event_type.to_owned(),
                    schema_version: e.schema_version(),
                    payload,
                    metadata: EventMetadata {
                        org_id: self.org_id,
                        actor_id: Some(self.caller.user_id),
                        correlation_id: self.meta.correlation_id,
                        causation_id: None,
                        occurred_at: self.meta.now,
                    },
                }
            })
            .collect()
    }
}

/// The organization back if the caller may act in it with `access`.
fn check_access(
    org: Loaded<Organization>,
    caller: &Caller,
    access: Access,
) -> Result<Loaded<Organization>, ApiError> {
    let role = org
        .state
        .role_of(caller.user_id)
        .ok_or_else(|| ApiError::Forbidden("you are not a member of this organization".into()))?;
    let allowed = match access {
        Access::Member => true,
        Access::Write => role.can_write(),
        Access::Admin => role.is_admin(),
    };
    if !allowed {
        return Err(ApiError::Forbidden(format!(
            "your role ({}) does not allow this",
            role_name(role)
        )));
    }
    Ok(org)
}

/// An aggregate with the events recorded after it folded on.
fn fold_onto<A: Aggregate>(
    base: Loaded<A>,
    tail: Vec<RecordedEvent>,
) -> Result<Loaded<A>, ApiError> {
    let mut loaded = base;
    for e in tail {
        if e.stream_version != loaded.version + 1 {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "{} version {} follows {}",
                e.stream_id,
                e.stream_version,
                loaded.version
            )));
        }
        loaded.state = loaded.state.evolve(&decode::<A>(&e.event_type, e.payload)?);
        loaded.version = e.stream_version;
        loaded.position = Some(e.position);
    }
    Ok(loaded)
}

/// Full jitter, capped: writers that collided do not collide again in step.
fn backoff(attempt: usize) -> Duration {
    let cap_ms = (1u64 << attempt.min(6)).min(50);
    let random = Uuid::new_v4().as_u128() as u64;
    Duration::from_micros(random % (cap_ms * 1000 + 1))
}

fn decode<A: Aggregate>(
    event_type: &str,
    payload: serde_json::Value,
) -> Result<A::Event, ApiError> {
    decode_event::<A::Event>(event_type, payload).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "stored {event_type} event does not decode: {e}"
        ))
    })
}

fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The answer to every successful command.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CommandAccepted {
    /// The id of the resource created or changed.
    pub id: Uuid,
    /// The aggregate's version after the command; send it back in `If-Match`.
    pub version: u64,
    /// Pass as `X-Consistency-Token` to read your own write from the query API.
    pub consistency_token: Option<String>,
}

/// A command's HTTP response: status, body, `ETag`.
pub struct Accepted {
    pub status: StatusCode,
    pub body: CommandAccepted,
}

impl Accepted {
    pub fn new<A: Aggregate>(status: StatusCode, id: Uuid, done: &Executed<A>) -> Self {
        Self {
            status,
            body: CommandAccepted {
                id,
                version: done.version,
                consistency_token: done.position.map(|p| p.to_string()),
            },
        }
    }
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let etag = HeaderValue::from_str(&format!("\"{}\"", self.body.version));
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Ok(etag) = etag {
            response.headers_mut().insert(header::ETAG, etag);
        }
        response
    }
}
