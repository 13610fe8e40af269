//! Group commit (`src/group.rs`): appends that arrive together share one
//! transaction, and each still gets its own answer.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tasklog_event_store::contract::{event, new_stream};
use tasklog_event_store::hash::verify_stream;
use tasklog_event_store::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend};
use tasklog_event_store_postgres::group::{append_group, GroupOutcome};
use tasklog_event_store_postgres::{AppendOutcome, Grouping, PgEventStore};

// The contract holds with grouping off too: that is the path a unit takes
// when its group fails as a whole.
mod ungrouped {
    use super::*;
    tasklog_event_store::contract_tests!(
        #[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
        |pool: PgPool| PgEventStore::open_with(pool, None)
    );
}

fn part(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream: stream.to_owned(),
        expected,
        events,
    }
}

/// One group at a time, so that appends made while it is written queue up
/// and go out together in the next.
fn one_at_a_time(pool: &PgPool) -> Arc<dyn EventStore> {
    PgEventStore::open_with(
        pool.clone(),
        Some(Grouping {
            in_flight: 1,
            ..Grouping::default()
        }),
    )
}

/// Opens a transaction on a connection of its own that appends `stream`'s
/// first event and stays open.
async fn hold_first_version(pool: &PgPool, stream: &str) -> PgConnection {
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    let held = PgEventStore::append_in(&mut conn, stream, ExpectedVersion::NoStream, &[event(0)])
        .await
        .unwrap();
    assert!(matches!(held, AppendOutcome::Appended(_)));
    conn
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn each_unit_of_a_group_gets_its_own_outcome_and_only_failed_units_store_nothing(
    pool: PgPool,
) {
    let store = PgEventStore::open_with(pool.clone(), None);
    let (taken_elsewhere, ok, stale, dup, pair_a, pair_b, half_a, half_b) = (
        new_stream(),
        new_stream(),
        new_stream(),
        new_stream(),
        new_stream(),
        new_stream(),
        new_stream(),
        new_stream(),
    );
    let stored = event(0);
    store
        .append(
            &taken_elsewhere,
            ExpectedVersion::NoStream,
            vec![stored.clone()],
        )
        .await
        .unwrap();

    let units = [
        vec![part(
            &ok,
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
        )],
        vec![part(&stale, ExpectedVersion::Exact(3), vec![event(3)])],
        vec![part(
            &dup,
            ExpectedVersion::NoStream,
            vec![event(4), stored],
        )],
        vec![
            part(&pair_a, ExpectedVersion::NoStream, vec![event(5)]),
            part(&pair_b, ExpectedVersion::Any, vec![event(6)]),
        ],
        // The first part would fit; the second does not: neither is stored.
        vec![
            part(&half_a, ExpectedVersion::NoStream, vec![event(7)]),
            part(&half_b, ExpectedVersion::Exact(1), vec![event(8)]),
        ],
        // The same stream again, at the version the first unit found: stale now.
        vec![part(&ok, ExpectedVersion::NoStream, vec![event(9)])],
    ];
    let slices: Vec<&[StreamAppend]> = units.iter().map(Vec::as_slice).collect();
    let outcomes = append_group(&pool, &slices).await.unwrap();

    let GroupOutcome::Appended(first) = &outcomes[0] else {
        panic!("the first unit appends: {:?}", outcomes[0]);
    };
    assert_eq!(first[0].stream_version, 2);
    assert!(first[0].first_position < first[0].last_position);
    assert_eq!(
        outcomes[1],
        GroupOutcome::WrongVersion {
            part: 0,
            actual: None
        }
    );
    assert_eq!(outcomes[2], GroupOutcome::EventIdTaken);
    let GroupOutcome::Appended(pair) = &outcomes[3] else {
        panic!("the two-stream unit appends: {:?}", outcomes[3]);
    };
    assert_eq!(pair.len(), 2);
    assert_eq!(
        outcomes[4],
        GroupOutcome::WrongVersion {
            part: 1,
            actual: None
        }
    );
    assert_eq!(
        outcomes[5],
        GroupOutcome::WrongVersion {
            part: 0,
            actual: Some(2)
        }
    );

    let read = |s: String| {
        let store = store.clone();
        async move { store.read_stream(&s, 1).await.unwrap() }
    };
    let (ok_events, a, b) = (read(ok).await, read(pair_a).await, read(pair_b).await);
    assert_eq!(
        ok_events.len(),
        2,
        "the later unit to the same stream stored nothing"
    );
    verify_stream(&ok_events).unwrap();
    for failed in [stale, dup, half_a, half_b] {
        assert!(
            read(failed).await.is_empty(),
            "a failed unit stores nothing"
        );
    }
    // One statement: the units that appended share a transaction.
    let commits: HashSet<u64> = [&ok_events[0], &a[0], &b[0]]
        .iter()
        .map(|e| e.position.commit)
        .collect();
    assert_eq!(commits.len(), 1);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn many_units_checking_one_stream_append_in_one_group(pool: PgPool) {
    let store = PgEventStore::open_with(pool.clone(), None);
    let org = new_stream();
    store
        .append(&org, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let tasks: Vec<String> = (0..4).map(|_| new_stream()).collect();
    let units: Vec<Vec<StreamAppend>> = tasks
        .iter()
        .map(|t| {
            vec![
                part(t, ExpectedVersion::NoStream, vec![event(1)]),
                part(&org, ExpectedVersion::Exact(1), vec![]),
            ]
        })
        .collect();
    let slices: Vec<&[StreamAppend]> = units.iter().map(Vec::as_slice).collect();
    let outcomes = append_group(&pool, &slices).await.unwrap();
    let commits: HashSet<u64> = outcomes
        .iter()
        .map(|o| match o {
            GroupOutcome::Appended(r) => r[0].last_position.commit,
            other => panic!("appended: {other:?}"),
        })
        .collect();
    assert_eq!(commits.len(), 1, "one transaction");
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn appends_made_at_once_that_check_one_stream_still_share_transactions(pool: PgPool) {
    let store = one_at_a_time(&pool);
    let org = new_stream();
    store
        .append(&org, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|n| {
            let (store, start, org) = (store.clone(), start.clone(), org.clone());
            tokio::spawn(async move {
                start.wait().await;
                let appended = store
                    .append_all(vec![
                        part(&new_stream(), ExpectedVersion::NoStream, vec![event(n)]),
                        part(&org, ExpectedVersion::Exact(1), vec![]),
                    ])
                    .await
                    .unwrap();
                appended[0].last_position.commit
            })
        })
        .collect();
    let mut commits = HashSet::new();
    for t in tasks {
        commits.insert(t.await.unwrap());
    }
    assert!(
        commits.len() < 16,
        "{} commits for 32 appends",
        commits.len()
    );
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn appends_to_one_stream_made_at_once_store_one_and_the_others_see_it(pool: PgPool) {
    let store = one_at_a_time(&pool);
    let stream = new_stream();
    // All at once, each expecting the stream to be new: one appends, the
    // others find it moved on, in its group or a later one.
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (store, start, stream) = (store.clone(), start.clone(), stream.clone());
            tokio::spawn(async move {
                start.wait().await;
                store
                    .append(&stream, ExpectedVersion::NoStream, vec![event(n)])
                    .await
            })
        })
        .collect();
    let mut appended = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                appended += 1;
                assert_eq!(r.stream_version, 1);
            }
            Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Some(1)),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(appended, 1);
    assert_eq!(store.read_stream(&stream, 1).await.unwrap().len(), 1);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn concurrent_appends_share_transactions_and_each_gets_its_own_result(pool: PgPool) {
    let store = one_at_a_time(&pool);
    let streams: Vec<String> = (0..64).map(|_| new_stream()).collect();
    let start = Arc::new(tokio::sync::Barrier::new(streams.len()));
    let tasks: Vec<_> = streams
        .iter()
        .cloned()
        .map(|s| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store
                    .append(&s, ExpectedVersion::NoStream, vec![event(1), event(2)])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut commits = HashSet::new();
    for (task, stream) in tasks.into_iter().zip(&streams) {
        let result = task.await.unwrap();
        let read = store.read_stream(stream, 1).await.unwrap();
        assert_eq!(result.stream_version, 2);
        assert_eq!(
            (result.first_position, result.last_position),
            (read[0].position, read[1].position),
            "each append gets the positions of its own events"
        );
        verify_stream(&read).unwrap();
        commits.insert(result.last_position.commit);
    }
    assert!(
        commits.len() < streams.len() / 2,
        "64 appends made at once shared transactions: {} commits",
        commits.len()
    );
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_group_that_fails_as_a_whole_stores_nothing(pool: PgPool) {
    let (contended, bystander) = (new_stream(), new_stream());
    let mut holder = hold_first_version(&pool, &contended).await;
    let units = [
        vec![part(&contended, ExpectedVersion::NoStream, vec![event(1)])],
        vec![part(&bystander, ExpectedVersion::NoStream, vec![event(2)])],
    ];
    let group = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let slices: Vec<&[StreamAppend]> = units.iter().map(Vec::as_slice).collect();
            append_group(&pool, &slices).await.map(|_| ())
        })
    };
    // The group's check saw no version yet; its insert waits for the holder.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let failed = group.await.unwrap();
    assert!(
        failed.is_err(),
        "the late unique violation fails the statement"
    );
    let store = PgEventStore::open_with(pool.clone(), None);
    assert!(store.read_stream(&bystander, 1).await.unwrap().is_empty());
    assert_eq!(store.read_stream(&contended, 1).await.unwrap().len(), 1);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn neighbours_of_an_append_that_fails_its_group_still_append_and_it_fails_alone(
    pool: PgPool,
) {
    let store = one_at_a_time(&pool);
    let (first, contended, bystander) = (new_stream(), new_stream(), new_stream());
    let mut hold_first = hold_first_version(&pool, &first).await;
    let mut hold_contended = hold_first_version(&pool, &contended).await;

    // The only slot: a group that waits on the first holder ...
    let waiting = {
        let store = store.clone();
        let first = first.clone();
        tokio::spawn(async move {
            store
                .append(&first, ExpectedVersion::Any, vec![event(1)])
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ... while these two queue, and go out together once it is done.
    let append = |s: &String, n| {
        let (store, s) = (store.clone(), s.clone());
        tokio::spawn(async move {
            store
                .append(&s, ExpectedVersion::NoStream, vec![event(n)])
                .await
        })
    };
    let (contending, bystanding) = (append(&contended, 2), append(&bystander, 3));
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("COMMIT")
        .execute(&mut hold_first)
        .await
        .unwrap();
    // The waiting group failed (the holder took version 1); alone, `Any` appends after it.
    let appended = waiting.await.unwrap().unwrap();
    assert_eq!(appended.stream_version, 2);

    // The queued pair is now written and waits on the second holder.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("COMMIT")
        .execute(&mut hold_contended)
        .await
        .unwrap();
    match contending.await.unwrap() {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Some(1)),
        other => panic!("the contended append conflicts alone: {other:?}"),
    }
    let bystanding = bystanding.await.unwrap().unwrap();
    assert_eq!(bystanding.stream_version, 1, "its neighbour still appends");
    let read = store.read_stream(&bystander, 1).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(store.read_stream(&contended, 1).await.unwrap().len(), 1);
}
