//! Executing a command: decide against the loaded aggregate, append at its
//! version, and decide again when another writer got in first.

use std::time::Duration;

use tasklog_domain::{encode_event, stream_name, Aggregate, DomainError, DomainEvent};
use tasklog_event_store::{EventMetadata, ExpectedVersion, NewEvent, StoreError, StreamAppend};
use tasklog_http::ApiError;
use uuid::Uuid;

use super::cache::decode;
use super::{AppState, Context, Executed, Loaded};

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
