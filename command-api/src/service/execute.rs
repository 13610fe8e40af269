//! Executing a command: decide against the loaded aggregate, append at its
//! version, and decide again when another writer got in first.

use std::time::Duration;

use tasklog_domain::{
    encode_event, stream_name, Aggregate, DomainError, DomainEvent, Organization,
};
use tasklog_event_store::{
    AppendResult, EventMetadata, ExpectedVersion, NewEvent, StoreError, StreamAppend,
};
use tasklog_http::ApiError;
use uuid::Uuid;

use super::access::check_access;
use super::cache::decode;
use super::{Access, AppState, Context, Executed, Loaded};

/// How often a command is decided again when another writer got in first.
const MAX_ATTEMPTS: usize = 16;

impl AppState {
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
                Ok(r) => return Ok(self.appended(&stream, loaded.state, events, r)),
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

    /// The warm path: decides on the organization and the aggregate as this
    /// process last saw them, without reading the store, and appends at the
    /// aggregate's cached version with the organization's checked beside it
    /// (a part without events). A stale cache can only make the append
    /// conflict, never act on old state: the aggregate's version catches a
    /// change to it, the check a change to the organization (a membership, a
    /// role, a handle a mention resolves to), in this process or another.
    ///
    /// `None` when this path does not answer: nothing cached, a refusal or a
    /// no-op (decided on what may be stale), a precondition (`If-Match`), a
    /// request with an `Idempotency-Key` (its retry must find what it did),
    /// or a conflict. The read path then answers, as if this was never tried.
    pub async fn execute_cached<A: Aggregate>(
        &self,
        ctx: &Context<'_>,
        access: Access,
        id: Uuid,
        command: impl Fn(&Organization, &A) -> Result<A::Command, ApiError>,
    ) -> Result<Option<Executed<A>>, ApiError> {
        if ctx.meta.if_match.is_some() || ctx.meta.ids.is_seeded() {
            return Ok(None);
        }
        let org_stream = stream_name::<Organization>(ctx.org_id);
        let stream = stream_name::<A>(id);
        let _turn = self.writers.turn(&stream).await;
        let (Some(org), Some(loaded)) = (
            self.cache.get::<Organization>(&org_stream),
            self.cache.get::<A>(&stream),
        ) else {
            return Ok(None);
        };
        if org.version == 0 || check_access(&org.state, ctx.caller, access).is_err() {
            return Ok(None);
        }
        let events = match command(&org.state, &loaded.state).map(|c| loaded.state.decide(c)) {
            Ok(Ok(events)) if !events.is_empty() => events,
            _ => return Ok(None),
        };
        let appends = vec![
            StreamAppend {
                stream: stream.clone(),
                expected: ExpectedVersion::from_version(loaded.version),
                events: ctx.new_events(&stream, &events),
            },
            StreamAppend {
                stream: org_stream,
                expected: ExpectedVersion::Exact(org.version),
                events: Vec::new(),
            },
        ];
        match self.store.append_all(appends).await {
            Ok(results) if !results[0].deduplicated => Ok(Some(self.appended(
                &stream,
                loaded.state,
                events,
                results[0],
            ))),
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What an append of `events` onto `state` made, kept in the cache too
    /// (so the stream's next command need not read what it just wrote).
    fn appended<A: Aggregate>(
        &self,
        stream: &str,
        state: A,
        events: Vec<A::Event>,
        r: AppendResult,
    ) -> Executed<A> {
        let loaded = Loaded {
            state: events.iter().fold(state, |s, e| s.evolve(e)),
            version: r.stream_version,
            position: Some(r.last_position),
        };
        self.cache.put(stream, &loaded);
        Executed {
            state: loaded.state,
            version: loaded.version,
            position: loaded.position,
            events,
        }
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
                    personal: e.personal_fields(),
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

/// Full jitter, capped: writers that collided do not collide again in step.
fn backoff(attempt: usize) -> Duration {
    let cap_ms = (1u64 << attempt.min(6)).min(50);
    let random = Uuid::new_v4().as_u128() as u64;
    Duration::from_micros(random % (cap_ms * 1000 + 1))
}
