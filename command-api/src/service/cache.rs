//! Aggregates as of their last read, and loading them through the cache.

use std::sync::Arc;

use tasklog_domain::{decode_event, stream_name, Aggregate};
use tasklog_event_store::{LogPosition, RecordedEvent};
use tasklog_http::ApiError;
use uuid::Uuid;

use super::{AppState, Loaded};

/// Aggregates as of their last read or append. A load reads only the events
/// after the cached version and folds them on, so a long stream (a project
/// that handed out thousands of task numbers) is not replayed for every
/// command. Every load still reads the stream's tail first: the cache never
/// answers stale. The one path that decides on it without reading
/// ([`AppState::execute_cached`]) appends only at the cached versions.
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

    pub(super) fn get<A: Aggregate>(&self, stream: &str) -> Option<Loaded<A>> {
        let cached = self.entries.lock().ok()?.get(stream).cloned()?;
        let state = cached.state.downcast_ref::<A>()?.clone();
        Some(Loaded {
            state,
            version: cached.version,
            position: cached.position,
        })
    }

    pub(super) fn put<A: Aggregate>(&self, stream: &str, loaded: &Loaded<A>) {
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
    pub(super) fn start<A: Aggregate>(&self, stream: &str) -> (u64, Loaded<A>) {
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

    pub(super) fn extend<A: Aggregate>(
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

impl AppState {
    /// Reads one aggregate from its stream.
    pub async fn load<A: Aggregate>(&self, id: Uuid) -> Result<Loaded<A>, ApiError> {
        let stream = stream_name::<A>(id);
        let (from, base) = self.cache.start::<A>(&stream);
        let tail = self.store.read_stream(&stream, from).await?;
        self.cache.extend(&stream, base, tail)
    }
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

pub(super) fn decode<A: Aggregate>(
    event_type: &str,
    payload: serde_json::Value,
) -> Result<A::Event, ApiError> {
    decode_event::<A::Event>(event_type, payload).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "stored {event_type} event does not decode: {e}"
        ))
    })
}
