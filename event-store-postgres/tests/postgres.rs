//! The PostgreSQL backend: the shared contract, plus what only PostgreSQL can
//! get wrong (late-committing transactions, rollbacks, the app role).

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tasklog_event_store::contract::{event, new_stream, read_own};
use tasklog_event_store::{EventStore, ExpectedVersion, LogPosition, RecordedEvent};
use tasklog_event_store_postgres::{projector_pool, AppendOutcome, PgEventStore};
use tasklog_testkit::as_app_role;

tasklog_event_store::contract_tests!(
    #[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
    |pool: PgPool| PgEventStore::open(pool)
);

async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut pos = LogPosition::START;
    loop {
        let batch = store.read_all(pos, 1000).await.unwrap();
        let Some(last) = batch.last() else { return out };
        pos = last.position;
        out.extend(batch);
    }
}

/// Starts an append in its own connection and leaves its transaction open.
async fn open_append(pool: &PgPool, stream: &str) -> PgConnection {
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    let outcome =
        PgEventStore::append_in(&mut conn, stream, ExpectedVersion::NoStream, &[event(1)])
            .await
            .unwrap();
    assert!(matches!(outcome, AppendOutcome::Appended(_)));
    conn
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_reader_never_skips_an_append_that_commits_after_a_later_one(pool: PgPool) {
    let store = PgEventStore::open(pool.clone());
    let (slow, fast) = (new_stream(), new_stream());

    // The slow append takes the lower position and stays open ...
    let mut slow_tx = open_append(&pool, &slow).await;
    // ... while an append to another stream commits: no shared lock blocks it.
    let fast_result = tokio::time::timeout(
        Duration::from_secs(5),
        store.append(&fast, ExpectedVersion::NoStream, vec![event(2)]),
    )
    .await
    .expect("an append to another stream is not blocked by an open one")
    .unwrap();

    // A reader now must not pass the open append by reading the fast one.
    let seen = read_everything(store.as_ref()).await;
    assert!(
        seen.is_empty(),
        "nothing is safe to read while the slow append is open: {seen:?}"
    );
    let hwm = store.high_water_mark().await.unwrap();
    assert_eq!(
        hwm.held_back_events, 1,
        "the committed fast append is visible as held back"
    );
    assert_eq!(hwm.head, Some(fast_result.last_position));
    assert!(
        hwm.oldest_open_transaction.is_some(),
        "the open transaction is named"
    );

    sqlx::query("COMMIT").execute(&mut slow_tx).await.unwrap();
    let own: HashSet<String> = [slow.clone(), fast.clone()].into();
    let seen: Vec<String> = read_own(store.as_ref(), LogPosition::START, &own, 2)
        .await
        .into_iter()
        .map(|e| e.stream_id)
        .collect();
    assert_eq!(
        seen,
        [slow, fast],
        "both, in commit-safe order, none skipped"
    );
}

/// Opens a transaction that holds a transaction id and appends nothing.
async fn open_silent(pool: &PgPool) -> PgConnection {
    let mut conn = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_projector_session_may_not_append_events(pool: PgPool) {
    let projectors = projector_pool(&pool, 1);
    let stream = new_stream();
    let refused = PgEventStore::open(projectors.clone())
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await;
    projectors.close().await;
    assert!(
        // 42501: the role lacks the right to insert (the trigger would say the same).
        matches!(&refused, Err(e) if format!("{e:?}").contains("42501")),
        "a projector session appended: {refused:?}"
    );
    let store = PgEventStore::open(pool);
    assert!(store.read_stream(&stream, 1).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn readers_wait_for_open_transactions_except_projector_sessions(pool: PgPool) {
    let store = PgEventStore::open(pool.clone());
    let projectors = projector_pool(&pool, 1);

    // A projector's open batch does not hold readers back ...
    let mut batch = open_silent(&projectors).await;
    let first = new_stream();
    store
        .append(&first, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let own: HashSet<String> = [first.clone()].into();
    assert_eq!(
        read_own(store.as_ref(), LogPosition::START, &own, 1)
            .await
            .len(),
        1,
        "the append is readable while the projector's transaction is open"
    );

    // ... any other open transaction does, and the page says so.
    let mut other = open_silent(&pool).await;
    let second = new_stream();
    let appended = store
        .append(&second, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let page = store.read_page(LogPosition::START, 10_000).await.unwrap();
    assert!(page.held_back, "the committed append is reported held back");
    assert!(
        page.events.iter().all(|e| e.stream_id != second),
        "nothing behind the open transaction is read"
    );
    assert!(store.high_water_mark().await.unwrap().safe < Some(appended.last_position));

    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let own: HashSet<String> = [second].into();
    assert_eq!(
        read_own(store.as_ref(), LogPosition::START, &own, 1)
            .await
            .len(),
        1
    );
    sqlx::query("COMMIT").execute(&mut batch).await.unwrap();
    projectors.close().await;
}

/// The sealer may not append either, so its open transaction (it inserts
/// leaves and heads) does not hold the application's readers back.
#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn an_open_sealer_transaction_does_not_hold_the_applications_readers_back(pool: PgPool) {
    let app = PgPool::connect_with(as_app_role(&pool)).await.unwrap();
    let store = PgEventStore::open(app.clone());
    let sealers = tasklog_event_store_postgres::seals::sealer_pool(&pool, 1);
    let mut sealing = open_silent(&sealers).await;
    let stream = new_stream();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let own: HashSet<String> = [stream].into();
    assert_eq!(
        read_own(store.as_ref(), LogPosition::START, &own, 1)
            .await
            .len(),
        1,
        "the append is readable while the sealer's transaction is open"
    );
    sqlx::query("COMMIT").execute(&mut sealing).await.unwrap();
    sealers.close().await;
    app.close().await;
}

/// Whether readers wait for a transaction rests on the role its session
/// logged in as, which the session cannot change: a session that appends and
/// then takes on every mark it can change (`application_name`, `SET ROLE`)
/// still holds readers back until it commits, and its event is read then.
#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_session_that_appends_then_poses_as_a_projector_still_holds_readers_back(pool: PgPool) {
    let store = PgEventStore::open(pool.clone());
    let (posing, later) = (new_stream(), new_stream());
    let mut conn = PgConnection::connect_with(&as_app_role(&pool))
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    let outcome =
        PgEventStore::append_in(&mut conn, &posing, ExpectedVersion::NoStream, &[event(1)])
            .await
            .unwrap();
    assert!(matches!(outcome, AppendOutcome::Appended(_)));
    sqlx::query("SET application_name = 'tasklog-projector'")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("SET ROLE tasklog_projector")
        .execute(&mut conn)
        .await
        .unwrap();

    store
        .append(&later, ExpectedVersion::NoStream, vec![event(2)])
        .await
        .unwrap();
    let page = store.read_page(LogPosition::START, 10_000).await.unwrap();
    assert!(page.held_back, "the later append is reported held back");
    assert!(
        page.events.is_empty(),
        "nothing is read past the posing session's open append: {:?}",
        page.events
    );

    sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
    let own: HashSet<String> = [posing.clone(), later.clone()].into();
    let seen: Vec<String> = read_own(store.as_ref(), LogPosition::START, &own, 2)
        .await
        .into_iter()
        .map(|e| e.stream_id)
        .collect();
    assert_eq!(seen, [posing, later], "both read, in order, none skipped");
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_rolled_back_append_leaves_no_hole_readers_wait_on(pool: PgPool) {
    let store = PgEventStore::open(pool.clone());
    let (rolled_back, kept) = (new_stream(), new_stream());
    let mut tx = open_append(&pool, &rolled_back).await;
    store
        .append(&kept, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    assert!(read_everything(store.as_ref()).await.is_empty());

    sqlx::query("ROLLBACK").execute(&mut tx).await.unwrap();
    let own: HashSet<String> = [rolled_back.clone(), kept.clone()].into();
    let seen: Vec<String> = read_own(store.as_ref(), LogPosition::START, &own, 1)
        .await
        .into_iter()
        .map(|e| e.stream_id)
        .collect();
    assert_eq!(
        seen,
        [kept],
        "the kept append is readable, the rolled back one never appears"
    );
    assert!(store.read_stream(&rolled_back, 1).await.unwrap().is_empty());
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn a_live_subscriber_receives_every_event_of_interleaved_slow_and_fast_appends(pool: PgPool) {
    use futures::StreamExt;
    let store = PgEventStore::open(pool.clone());
    let mut sub = store.subscribe_all(LogPosition::START);

    let mut expected = HashSet::new();
    for round in 0..5 {
        let slow = new_stream();
        let mut tx = open_append(&pool, &slow).await;
        let fast = new_stream();
        store
            .append(&fast, ExpectedVersion::NoStream, vec![event(round)])
            .await
            .unwrap();
        if round % 2 == 0 {
            sqlx::query("COMMIT").execute(&mut tx).await.unwrap();
            expected.insert(slow);
        } else {
            sqlx::query("ROLLBACK").execute(&mut tx).await.unwrap();
        }
        expected.insert(fast);
    }
    let mut got = HashSet::new();
    let mut last = LogPosition::START;
    while got.len() < expected.len() {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        assert!(e.position > last, "positions only grow");
        last = e.position;
        assert!(got.insert(e.stream_id), "no event is delivered twice");
    }
    assert_eq!(got, expected);
}

async fn connect_as_app_role(pool: &PgPool) -> PgConnection {
    PgConnection::connect_with(&as_app_role(pool))
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn the_application_role_can_append_but_never_change_or_delete_events(pool: PgPool) {
    let store = PgEventStore::open(pool.clone());
    let stream = new_stream();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();

    let mut app = connect_as_app_role(&pool).await;
    let mut tx = app.begin().await.unwrap();
    PgEventStore::append_in(&mut tx, &stream, ExpectedVersion::Exact(1), &[event(2)])
        .await
        .expect("the app role appends");
    tx.commit().await.unwrap();

    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let r = sqlx::query(statement).execute(&mut app).await;
        assert!(r.is_err(), "{statement} must fail for the app role");
    }
    // Even the owner is stopped by the trigger.
    assert!(sqlx::query("UPDATE events SET payload = '{}'")
        .execute(&pool)
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM events")
        .execute(&pool)
        .await
        .is_err());
    assert_eq!(store.read_stream(&stream, 1).await.unwrap().len(), 2);
}

#[sqlx::test(migrator = "tasklog_testkit::MIGRATOR")]
async fn every_append_is_announced_to_listeners_after_it_commits(pool: PgPool) {
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener
        .listen(tasklog_event_store_postgres::CHANNEL)
        .await
        .unwrap();
    let store = PgEventStore::open(pool.clone());
    for round in 0..3 {
        store
            .append(&new_stream(), ExpectedVersion::NoStream, vec![event(round)])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .unwrap_or_else(|_| panic!("append {round} was never announced"))
            .unwrap();
        while listener.next_buffered().is_some() {}
    }
}
