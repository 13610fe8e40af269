//! The contract every [`EventStore`] backend passes. Each check uses streams of
//! its own, so it can run against a shared server. A backend's tests run all
//! of it with one [`contract_tests!`](crate::contract_tests) line.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use crate::hash::verify_stream;
use crate::{
    EventMetadata, EventStore, ExpectedVersion, LogPosition, NewEvent, StoreError, StreamAppend,
};

/// A fresh stream name.
pub fn new_stream() -> String {
    format!("contract-{}", Uuid::now_v7())
}

/// An event with a fresh id and a small payload.
pub fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "ThingHappened".into(),
        schema_version: 1,
        payload: json!({ "n": n, "note": "contract" }),
        personal: &[],
        metadata: EventMetadata {
            org_id: Uuid::nil(),
            actor_id: Some(Uuid::now_v7()),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            occurred_at: Utc::now(),
        },
    }
}

pub async fn appending_to_a_new_stream_starts_at_version_one(store: &dyn EventStore) {
    let stream = new_stream();
    let r = store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();
    assert_eq!(r.stream_version, 2);
    assert!(!r.deduplicated);
    assert!(r.first_position < r.last_position);
    let read = store.read_stream(&stream, 1).await.unwrap();
    let versions: Vec<u64> = read.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [1, 2]);
    assert_eq!(read[1].position, r.last_position);
}

pub async fn a_stale_expected_version_is_a_conflict_and_stores_nothing(store: &dyn EventStore) {
    let stream = new_stream();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Exact(1), vec![event(2)])
        .await
        .unwrap();

    let stale = store
        .append(&stream, ExpectedVersion::Exact(1), vec![event(3)])
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::Conflict {
                actual: Some(2),
                ..
            })
        ),
        "{stale:?}"
    );
    let again = store
        .append(&stream, ExpectedVersion::NoStream, vec![event(3)])
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    assert_eq!(store.read_stream(&stream, 1).await.unwrap().len(), 2);
}

pub async fn reappending_stored_event_ids_returns_the_original_result_and_stores_nothing(
    store: &dyn EventStore,
) {
    let stream = new_stream();
    let events = vec![event(1), event(2)];
    let first = store
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    let retry = store
        .append(&stream, ExpectedVersion::NoStream, events.clone())
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.stream_version, first.stream_version);
    assert_eq!(retry.last_position, first.last_position);
    let retry_any = store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
    assert!(retry_any.deduplicated);
    assert_eq!(store.read_stream(&stream, 1).await.unwrap().len(), 2);
}

pub async fn an_append_to_several_streams_stores_all_or_nothing(store: &dyn EventStore) {
    let (parent, child) = (new_stream(), new_stream());
    store
        .append(&parent, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let part = |stream: &str, expected, n| StreamAppend {
        stream: stream.to_owned(),
        expected,
        events: vec![event(n)],
    };

    // The child's part alone would do; the parent's is stale: neither is stored.
    let stale = store
        .append_all(vec![
            part(&parent, ExpectedVersion::NoStream, 2),
            part(&child, ExpectedVersion::NoStream, 3),
        ])
        .await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { stream, actual: Some(1), .. }) if *stream == parent),
        "{stale:?}"
    );
    assert_eq!(store.read_stream(&parent, 1).await.unwrap().len(), 1);
    assert!(store.read_stream(&child, 1).await.unwrap().is_empty());

    // Both current: both stored, each at its own version; a retry stores nothing.
    let both = vec![
        part(&parent, ExpectedVersion::Exact(1), 2),
        part(&child, ExpectedVersion::NoStream, 3),
    ];
    let done = store.append_all(both.clone()).await.unwrap();
    assert_eq!(
        done.iter().map(|r| r.stream_version).collect::<Vec<_>>(),
        [2, 1]
    );
    assert!(done[0].last_position < done[1].first_position);
    let retry = store.append_all(both).await.unwrap();
    assert!(retry.iter().all(|r| r.deduplicated));
    assert_eq!(retry[1].last_position, done[1].last_position);
    assert_eq!(store.read_stream(&parent, 1).await.unwrap().len(), 2);
    assert_eq!(store.read_stream(&child, 1).await.unwrap().len(), 1);
}

/// A command that creates a child under a parent (a task under the number
/// its project hands out) appends to the parent first. When a later part
/// fails (here the child exists already), the parent's part, current as it
/// was, is not stored either: the whole call is an error.
pub async fn an_append_to_several_streams_whose_later_part_fails_stores_nothing(
    store: &dyn EventStore,
) {
    let (parent, child) = (new_stream(), new_stream());
    store
        .append(&parent, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    store
        .append(&child, ExpectedVersion::NoStream, vec![event(2)])
        .await
        .unwrap();

    let parent_part = StreamAppend {
        stream: parent.clone(),
        expected: ExpectedVersion::Exact(1),
        events: vec![event(3)],
    };
    let failed = store
        .append_all(vec![
            parent_part.clone(),
            StreamAppend {
                stream: child.clone(),
                expected: ExpectedVersion::NoStream,
                events: vec![event(4)],
            },
        ])
        .await;
    assert!(
        matches!(&failed, Err(StoreError::Conflict { stream, actual: Some(1), .. }) if *stream == child),
        "{failed:?}"
    );
    let parent_events = store.read_stream(&parent, 1).await.unwrap();
    assert_eq!(
        parent_events.len(),
        1,
        "the parent got no event: {parent_events:?}"
    );
    assert!(store
        .find_event(parent_part.events[0].event_id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.read_stream(&child, 1).await.unwrap().len(), 1);

    // The parent is still at version 1: its part alone goes in there.
    let alone = store.append_all(vec![parent_part]).await.unwrap();
    assert_eq!(alone[0].stream_version, 2);
    assert!(!alone[0].deduplicated);
}

/// A decision that rests on another aggregate (a member's right to write, as
/// the organization's stream says) appends only while that aggregate is as it
/// was read: a part without events checks its stream and stores nothing.
pub async fn a_part_without_events_checks_its_stream_and_appends_nothing(store: &dyn EventStore) {
    let (checked, written) = (new_stream(), new_stream());
    store
        .append(
            &checked,
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
        )
        .await
        .unwrap();
    let parts = |checked_at: u64, n| {
        vec![
            StreamAppend {
                stream: written.clone(),
                expected: ExpectedVersion::NoStream,
                events: vec![event(n)],
            },
            StreamAppend {
                stream: checked.clone(),
                expected: ExpectedVersion::Exact(checked_at),
                events: vec![],
            },
        ]
    };

    let stale = store.append_all(parts(1, 3)).await;
    assert!(
        matches!(&stale, Err(StoreError::Conflict { stream, actual: Some(2), .. }) if *stream == checked),
        "{stale:?}"
    );
    assert!(store.read_stream(&written, 1).await.unwrap().is_empty());

    let current = parts(2, 4);
    let done = store.append_all(current.clone()).await.unwrap();
    assert_eq!(
        done.iter().map(|r| r.stream_version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(store.read_stream(&written, 1).await.unwrap().len(), 1);
    assert_eq!(store.read_stream(&checked, 1).await.unwrap().len(), 2);
    // A retry finds its events stored, whatever the checked stream did since.
    store
        .append(&checked, ExpectedVersion::Exact(2), vec![event(5)])
        .await
        .unwrap();
    let retry = store.append_all(current).await.unwrap();
    assert!(retry[0].deduplicated);
    assert_eq!(retry[0].last_position, done[0].last_position);

    let only_checks = store
        .append_all(vec![StreamAppend {
            stream: checked.clone(),
            expected: ExpectedVersion::Exact(3),
            events: vec![],
        }])
        .await;
    assert!(
        only_checks.is_err(),
        "an append with no events at all is refused"
    );
}

pub async fn several_streams_read_at_once_come_back_in_the_order_asked(store: &dyn EventStore) {
    let (a, b, empty) = (new_stream(), new_stream(), new_stream());
    store
        .append(&a, ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();
    store
        .append(&b, ExpectedVersion::NoStream, vec![event(3)])
        .await
        .unwrap();
    let read = store
        .read_streams(&[(b.clone(), 1), (empty, 1), (a.clone(), 1)])
        .await
        .unwrap();
    let versions: Vec<Vec<u64>> = read
        .iter()
        .map(|s| s.iter().map(|e| e.stream_version).collect())
        .collect();
    assert_eq!(versions, vec![vec![1], vec![], vec![1, 2]]);
    assert_eq!(read[0][0].stream_id, b);
    assert_eq!(read[2][1].stream_id, a);
    // Each from its own version: only the tail.
    let tails = store
        .read_streams(&[(a.clone(), 2), (b.clone(), 2)])
        .await
        .unwrap();
    let versions: Vec<Vec<u64>> = tails
        .iter()
        .map(|s| s.iter().map(|e| e.stream_version).collect())
        .collect();
    assert_eq!(versions, vec![vec![2], vec![]]);
}

pub async fn an_event_id_stored_in_another_stream_is_rejected(store: &dyn EventStore) {
    let (a, b) = (new_stream(), new_stream());
    let e = event(1);
    store
        .append(&a, ExpectedVersion::NoStream, vec![e.clone()])
        .await
        .unwrap();
    let r = store.append(&b, ExpectedVersion::NoStream, vec![e]).await;
    assert!(matches!(r, Err(StoreError::DuplicateEventId(_))), "{r:?}");
    assert!(store.read_stream(&b, 1).await.unwrap().is_empty());
}

pub async fn a_stream_reads_back_in_order_from_a_version_with_its_envelope(store: &dyn EventStore) {
    let stream = new_stream();
    let events: Vec<NewEvent> = (1..=5).map(event).collect();
    store
        .append(&stream, ExpectedVersion::Any, events.clone())
        .await
        .unwrap();
    let read = store.read_stream(&stream, 3).await.unwrap();
    assert_eq!(read.len(), 3);
    for (got, sent) in read.iter().zip(&events[2..]) {
        assert_eq!(got.event_id, sent.event_id);
        assert_eq!(got.payload, sent.payload);
        assert_eq!(got.event_type, sent.event_type);
        assert_eq!(got.metadata.correlation_id, sent.metadata.correlation_id);
        assert_eq!(got.metadata.actor_id, sent.metadata.actor_id);
        assert_eq!(
            got.metadata.occurred_at.timestamp_micros(),
            sent.metadata.occurred_at.timestamp_micros()
        );
    }
    assert!(store
        .read_stream(&new_stream(), 1)
        .await
        .unwrap()
        .is_empty());
}

pub async fn every_stream_carries_an_intact_hash_chain(store: &dyn EventStore) {
    let stream = new_stream();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Exact(2), vec![event(3)])
        .await
        .unwrap();
    let read = store.read_stream(&stream, 1).await.unwrap();
    assert_eq!(read[0].prev_hash, None);
    assert_eq!(read[2].prev_hash.as_deref(), Some(read[1].hash.as_slice()));
    verify_stream(&read).unwrap();

    let mut tampered = read.clone();
    tampered[1].payload = json!({ "n": 99 });
    assert!(verify_stream(&tampered).is_err());
    let mut removed = read;
    removed.remove(1);
    assert!(verify_stream(&removed).is_err());
}

pub async fn the_backlog_after_a_position_counts_the_events_after_it(store: &dyn EventStore) {
    let stream = new_stream();
    let first = store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let rest = store
        .append(&stream, ExpectedVersion::Exact(1), vec![event(2), event(3)])
        .await
        .unwrap();
    // Each asked after the one before: others' appends meanwhile only add.
    let after_all = store.backlog(rest.last_position).await.unwrap();
    let after_first = store.backlog(first.last_position).await.unwrap();
    let everything = store.backlog(LogPosition::START).await.unwrap();
    assert!(
        after_first.events >= after_all.events + 2,
        "{after_first:?} {after_all:?}"
    );
    assert!(after_first.oldest_recorded_at.is_some());
    assert!(everything.events > after_first.events, "{everything:?}");
    assert!(store.estimated_len().await.unwrap() >= 3);
}

/// Reads the global log from `after` until `wanted` events of `streams` are
/// seen. It polls: an open transaction anywhere on the server (another test's)
/// holds safe readers back for a moment.
pub async fn read_own(
    store: &dyn EventStore,
    after: LogPosition,
    streams: &HashSet<String>,
    wanted: usize,
) -> Vec<crate::RecordedEvent> {
    let mut out = Vec::new();
    let mut pos = after;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < wanted && tokio::time::Instant::now() < deadline {
        let batch = store.read_all(pos, 1000).await.unwrap();
        match batch.last() {
            Some(last) => pos = last.position,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
        out.extend(batch.into_iter().filter(|e| streams.contains(&e.stream_id)));
    }
    out
}

pub async fn the_global_log_reads_in_position_order_after_a_checkpoint(store: &dyn EventStore) {
    let start = store
        .high_water_mark()
        .await
        .unwrap()
        .safe
        .unwrap_or_default();
    let streams: Vec<String> = (0..3).map(|_| new_stream()).collect();
    let mut tokens = Vec::new();
    for round in 0..3 {
        for s in &streams {
            let r = store
                .append(s, ExpectedVersion::Any, vec![event(round)])
                .await
                .unwrap();
            tokens.push(r.last_position);
        }
    }
    let own: HashSet<String> = streams.iter().cloned().collect();
    let read = read_own(store, start, &own, 9).await;
    assert_eq!(read.len(), 9);
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    // The token an append returns is exactly where a reader finds it.
    let positions: Vec<LogPosition> = read.iter().map(|e| e.position).collect();
    assert_eq!(positions, tokens);
    // Reading after a checkpoint starts just past it.
    let after_fourth = read_own(store, positions[3], &own, 5).await;
    assert_eq!(after_fourth.len(), 5);
    assert_eq!(after_fourth[0].position, positions[4]);
}

pub async fn concurrent_writers_to_one_stream_never_lose_an_update(store: Arc<dyn EventStore>) {
    let stream = new_stream();
    let writers = 8;
    let per_writer = 10;
    let mut handles = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let stream = stream.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for i in 0..per_writer {
                loop {
                    let version = store.read_stream(&stream, 1).await.unwrap().len() as u64;
                    let expected = ExpectedVersion::from_version(version);
                    match store
                        .append(&stream, expected, vec![event(w * 100 + i)])
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let read = store.read_stream(&stream, 1).await.unwrap();
    assert_eq!(read.len() as u64, writers * per_writer);
    let versions: Vec<u64> = read.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=writers * per_writer).collect::<Vec<_>>());
    let payloads: HashSet<String> = read.iter().map(|e| e.payload["n"].to_string()).collect();
    assert_eq!(
        payloads.len() as u64,
        writers * per_writer,
        "every write is there once"
    );
}

pub async fn a_subscription_catches_up_then_follows_live_appends(store: Arc<dyn EventStore>) {
    let start = store
        .high_water_mark()
        .await
        .unwrap()
        .safe
        .unwrap_or_default();
    let stream = new_stream();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1), event(2)])
        .await
        .unwrap();

    let own = stream.clone();
    let mut sub = store
        .subscribe_all(start)
        .filter(move |e| {
            let mine = matches!(e, Ok(e) if e.stream_id == own);
            async move { mine }
        })
        .boxed();
    let one: crate::RecordedEvent = next_event(&mut sub).await;
    let two: crate::RecordedEvent = next_event(&mut sub).await;
    assert_eq!((one.stream_version, two.stream_version), (1, 2));

    let live = store
        .append(&stream, ExpectedVersion::Exact(2), vec![event(3)])
        .await
        .unwrap();
    let three: crate::RecordedEvent = next_event(&mut sub).await;
    assert_eq!(three.stream_version, 3);
    assert_eq!(three.position, live.last_position);
}

async fn next_event(
    sub: &mut futures::stream::BoxStream<'static, Result<crate::RecordedEvent, StoreError>>,
) -> crate::RecordedEvent {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the subscription delivers within 10 s")
        .expect("the subscription does not end")
        .unwrap()
}

pub async fn an_append_wakes_every_appends_handle(store: Arc<dyn EventStore>) {
    let (mut first, mut second) = (store.appends(), store.appends());
    store
        .append(&new_stream(), ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    for handle in [&mut first, &mut second] {
        tokio::time::timeout(Duration::from_secs(10), handle.next())
            .await
            .expect("an append is announced to every handle within 10 s");
    }
}

/// Runs the whole [contract](crate::contract) against a backend: one test per
/// check, each with a store made by the closure (its argument, if any, is what
/// the test attribute hands a test):
///
/// ```ignore
/// tasklog_event_store::contract_tests!(
///     #[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
///     |pool: sqlx::PgPool| PgEventStore::open(pool)
/// );
/// ```
///
/// The closure's body runs inside the async test, so it may `.await`; it
/// yields an `Arc<dyn EventStore>`.
#[macro_export]
macro_rules! contract_tests {
    (#[$test:meta] || $store:expr) => {
        $crate::contract_tests!(@all #[$test] () $store);
    };
    (#[$test:meta] |$arg:ident : $ty:ty| $store:expr) => {
        $crate::contract_tests!(@all #[$test] ($arg: $ty) $store);
    };
    (@all #[$test:meta] $params:tt $store:expr) => {
        $crate::contract_tests!(@each #[$test] $params $store; by_ref:
            appending_to_a_new_stream_starts_at_version_one,
            a_stale_expected_version_is_a_conflict_and_stores_nothing,
            an_append_to_several_streams_stores_all_or_nothing,
            an_append_to_several_streams_whose_later_part_fails_stores_nothing,
            a_part_without_events_checks_its_stream_and_appends_nothing,
            reappending_stored_event_ids_returns_the_original_result_and_stores_nothing,
            an_event_id_stored_in_another_stream_is_rejected,
            several_streams_read_at_once_come_back_in_the_order_asked,
            a_stream_reads_back_in_order_from_a_version_with_its_envelope,
            every_stream_carries_an_intact_hash_chain,
            the_global_log_reads_in_position_order_after_a_checkpoint,
            the_backlog_after_a_position_counts_the_events_after_it,
        );
        $crate::contract_tests!(@each #[$test] $params $store; shared:
            concurrent_writers_to_one_stream_never_lose_an_update,
            a_subscription_catches_up_then_follows_live_appends,
            an_append_wakes_every_appends_handle,
        );
    };
    (@each #[$test:meta] $params:tt $store:expr; by_ref: $($name:ident),* $(,)?) => {$(
        #[$test]
        async fn $name $params {
            let store: ::std::sync::Arc<dyn $crate::EventStore> = $store;
            $crate::contract::$name(store.as_ref()).await;
        }
    )*};
    (@each #[$test:meta] $params:tt $store:expr; shared: $($name:ident),* $(,)?) => {$(
        #[$test]
        async fn $name $params {
            let store: ::std::sync::Arc<dyn $crate::EventStore> = $store;
            $crate::contract::$name(store).await;
        }
    )*};
}
