//! `tasklog audit verify` against a real database whose events were changed
//! as a superuser would change them (triggers off), one kind of tampering per
//! test, each in an organization of its own: the verifier names the event.

use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tasklog_event_store::hash;
use tasklog_event_store::verify::Finding;
use tasklog_event_store::{EventMetadata, ExpectedVersion, NewEvent};
use tasklog_testkit::{as_app_role, tamper, TestDatabase};
use uuid::Uuid;

fn verify(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .args(["audit", "verify"])
        .args(args)
        .env("TASKLOG_DATABASE_URL", &db.app_url)
        .env("TASKLOG_ADMIN_DATABASE_URL", &db.owner_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the tasklog binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One organization's two streams of five events each, appended by the
/// application role; returns the organization and the streams' event ids.
struct Org {
    id: Uuid,
    stream: String,
    events: Vec<Uuid>,
}

async fn org_with_events(db: &TestDatabase) -> Org {
    let app = PgPool::connect_with(as_app_role(&PgPool::connect_lazy(&db.owner_url).unwrap()))
        .await
        .unwrap();
    let store = tasklog_testkit::store(&app);
    let org = Uuid::now_v7();
    let mut first = None;
    for _ in 0..2 {
        let stream = format!("task-{}", Uuid::now_v7());
        let events: Vec<NewEvent> = (1..=5)
            .map(|n| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "TaskRenamed".into(),
                schema_version: 1,
                payload: json!({ "title": format!("title {n}") }),
                personal: &["/title"],
                metadata: EventMetadata {
                    org_id: org,
                    actor_id: Some(Uuid::now_v7()),
                    correlation_id: Uuid::now_v7(),
                    causation_id: None,
                    occurred_at: Utc::now(),
                },
            })
            .collect();
        let ids = events.iter().map(|e| e.event_id).collect();
        for e in events {
            store
                .append(&stream, ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
        }
        first.get_or_insert(Org {
            id: org,
            stream,
            events: ids,
        });
    }
    app.close().await;
    first.unwrap()
}

/// `audit verify --org` fails and prints exactly `findings`, then the summary.
fn assert_findings(db: &TestDatabase, org: &Org, events: u64, findings: &[Finding]) {
    let out = verify(db, &["--org", &org.id.to_string()]);
    let mut expected: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
    expected.push(format!(
        "verified 2 streams, {events} events: {} findings",
        findings.len()
    ));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        expected,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "findings fail the command");
}

#[tokio::test]
async fn a_clean_log_verifies_with_exit_code_zero() {
    let (db, owner) = TestDatabase::migrated("tasklog_audit_clean").await;
    let generated = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .args(["generate", "--orgs", "2", "--events", "400"])
        .env("TASKLOG_ADMIN_DATABASE_URL", &db.owner_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    org_with_events(&db).await;
    let (streams, events): (i64, i64) =
        sqlx::query_as("SELECT count(DISTINCT stream_id), count(*) FROM events")
            .fetch_one(&owner)
            .await
            .unwrap();

    let out = verify(&db, &[]);

    assert_eq!(
        stdout(&out),
        format!(
            "verified {streams} streams, {events} events: 0 findings\n\
             verified 0 tree heads over 0 leaves: 0 findings\n"
        ),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    owner.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn an_edited_payload_is_named_as_changed_content() {
    let (db, owner) = TestDatabase::shared("tasklog_audit").await;
    let org = org_with_events(&db).await;
    tamper(
        &owner,
        &[&format!(
            "UPDATE events SET payload = '{{\"title\": \"edited\"}}' \
             WHERE stream_id = '{}' AND stream_version = 3",
            org.stream
        )],
    )
    .await;
    assert_findings(
        &db,
        &org,
        10,
        &[Finding::ContentChanged {
            stream: org.stream.clone(),
            version: 3,
            event_id: org.events[2],
        }],
    );
}

#[tokio::test]
async fn an_edited_actor_or_time_is_named_as_changed_content() {
    let (db, owner) = TestDatabase::shared("tasklog_audit").await;
    let org = org_with_events(&db).await;
    tamper(
        &owner,
        &[
            &format!(
                "UPDATE events SET actor_id = gen_random_uuid() \
                 WHERE stream_id = '{}' AND stream_version = 2",
                org.stream
            ),
            &format!(
                "UPDATE events SET occurred_at = occurred_at - interval '1 day' \
                 WHERE stream_id = '{}' AND stream_version = 4",
                org.stream
            ),
        ],
    )
    .await;
    assert_findings(
        &db,
        &org,
        10,
        &[2, 4].map(|v| Finding::ContentChanged {
            stream: org.stream.clone(),
            version: v,
            event_id: org.events[v as usize - 1],
        }),
    );
}

#[tokio::test]
async fn an_event_removed_mid_stream_is_named_by_its_version_and_the_event_after_it() {
    let (db, owner) = TestDatabase::shared("tasklog_audit").await;
    let org = org_with_events(&db).await;
    tamper(
        &owner,
        &[&format!(
            "DELETE FROM events WHERE stream_id = '{}' AND stream_version = 3",
            org.stream
        )],
    )
    .await;
    assert_findings(
        &db,
        &org,
        9,
        &[Finding::Removed {
            stream: org.stream.clone(),
            first_version: 3,
            count: 1,
            before: org.events[3],
            before_version: 4,
            renumbered: 0,
        }],
    );
}

#[tokio::test]
async fn two_swapped_events_are_each_named_with_the_version_they_were_written_as() {
    let (db, owner) = TestDatabase::shared("tasklog_audit").await;
    let org = org_with_events(&db).await;
    let s = &org.stream;
    tamper(
        &owner,
        &[
            &format!("UPDATE events SET stream_version = 100 WHERE stream_id = '{s}' AND stream_version = 2"),
            &format!("UPDATE events SET stream_version = 2 WHERE stream_id = '{s}' AND stream_version = 3"),
            &format!("UPDATE events SET stream_version = 3 WHERE stream_id = '{s}' AND stream_version = 100"),
        ],
    )
    .await;
    assert_findings(
        &db,
        &org,
        10,
        &[
            Finding::Reordered {
                stream: s.clone(),
                version: 2,
                event_id: org.events[2],
                written_as: 3,
                count: 1,
            },
            Finding::Reordered {
                stream: s.clone(),
                version: 3,
                event_id: org.events[1],
                written_as: 2,
                count: 1,
            },
        ],
    );
}

#[tokio::test]
async fn a_forged_event_inserted_mid_stream_is_named() {
    let (db, owner) = TestDatabase::shared("tasklog_audit").await;
    let org = org_with_events(&db).await;
    let s = &org.stream;
    let forged = Uuid::now_v7();
    // The forger makes room at version 3, links the forgery to version 2 and
    // gives it a hash of the right length.
    tamper(
        &owner,
        &[
            &format!("UPDATE events SET stream_version = stream_version + 100 WHERE stream_id = '{s}' AND stream_version >= 3"),
            &format!("UPDATE events SET stream_version = stream_version - 99 WHERE stream_id = '{s}' AND stream_version > 100"),
            &format!(
                "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, \
                     occurred_at, org_id, actor_id, correlation_id, causation_id, payload, prev_hash, hash) \
                 SELECT '{forged}', stream_id, 3, event_type, schema_version, occurred_at, org_id, \
                     actor_id, gen_random_uuid(), NULL, '{{\"title\": \"forged\"}}', hash, sha256(hash) \
                 FROM events WHERE stream_id = '{s}' AND stream_version = 2"
            ),
        ],
    )
    .await;
    assert_findings(
        &db,
        &org,
        11,
        &[Finding::Inserted {
            stream: s.clone(),
            version: 3,
            event_id: forged,
            renumbered: 3,
        }],
    );
}

/// The ten envelope keys from a row's columns (selected as text, as an
/// auditor's SQL would), with `payload` as given.
fn envelope_of(row: &sqlx::postgres::PgRow, payload: Value) -> Value {
    json!({
        "event_id": row.get::<String, _>("event_id"),
        "stream_id": row.get::<String, _>("stream_id"),
        "event_type": row.get::<String, _>("event_type"),
        "schema_version": row.get::<i32, _>("schema_version"),
        "occurred_at": row.get::<String, _>("occurred_at"),
        "org_id": row.get::<String, _>("org_id"),
        "actor_id": row.get::<Option<String>, _>("actor_id"),
        "correlation_id": row.get::<String, _>("correlation_id"),
        "causation_id": row.get::<Option<String>, _>("causation_id"),
        "payload": payload,
    })
}

/// The worked example of docs/audit.md: these bytes, hashed as documented,
/// give the stored hash.
const EXAMPLE_CANONICAL: &str = r#"{"actor_id":"0192f5a0-0000-7000-8000-0000000000a2","causation_id":null,"correlation_id":"0192f5a0-0000-7000-8000-0000000000c3","event_id":"0192f5a0-0000-7000-8000-0000000000e1","event_type":"TaskRenamed","occurred_at":"2026-11-30T12:00:00.123456Z","org_id":"0192f5a0-0000-7000-8000-0000000000a1","payload":{"task_id":"0192f5a0-0000-7000-8000-0000000000b1","title":"Prüfbericht \"Q4\""},"schema_version":1,"stream_id":"task-0192f5a0-0000-7000-8000-0000000000b1"}"#;

/// JSON with object keys sorted, no whitespace: what an auditor's own tool
/// would write (kept apart from the writer's code on purpose).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), canonical(v)))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        scalar => scalar.to_string(),
    }
}

/// Rows written before `tasklog-event-v2` keep v1: this one is written as
/// an older binary wrote it, through the twelve-argument `append_events`.
#[tokio::test]
async fn the_documented_v1_recipe_recomputes_a_stored_v1_events_hash_from_its_row() {
    let (db, owner) = TestDatabase::migrated("tasklog_audit_example").await;
    let id = |n: &str| Uuid::parse_str(&format!("0192f5a0-0000-7000-8000-0000000000{n}")).unwrap();
    let stream = format!("task-{}", id("b1"));
    let metadata = EventMetadata {
        org_id: id("a1"),
        actor_id: Some(id("a2")),
        correlation_id: id("c3"),
        causation_id: None,
        occurred_at: "2026-11-30T12:00:00.123456Z"
            .parse::<DateTime<Utc>>()
            .unwrap(),
    };
    let payload = json!({ "title": "Prüfbericht \"Q4\"", "task_id": id("b1") });
    let v1 = hash::content_hash(&hash::HashInput {
        event_id: id("e1"),
        stream_id: &stream,
        event_type: "TaskRenamed",
        schema_version: 1,
        metadata: &metadata,
        payload: &payload,
    });
    sqlx::query(
        "SELECT * FROM append_events($1, 0, $2, ARRAY['TaskRenamed'], ARRAY[1], $3, $4, $5, $6, \
         ARRAY[NULL::uuid], $7, $8)",
    )
    .bind(&stream)
    .bind(vec![id("e1")])
    .bind(vec![metadata.occurred_at])
    .bind(vec![metadata.org_id])
    .bind(vec![metadata.actor_id])
    .bind(vec![metadata.correlation_id])
    .bind(vec![sqlx::types::Json(&payload)])
    .bind(vec![v1])
    .execute(&owner)
    .await
    .unwrap();
    let scheme: i16 = sqlx::query_scalar("SELECT hash_scheme FROM events WHERE stream_id = $1")
        .bind(&stream)
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(scheme, 1, "the old append function writes v1 rows");
    let out = verify(&db, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // The envelope, from the stored row's columns.
    let row = sqlx::query(
        "SELECT event_id::text, stream_id, event_type, schema_version, \
             to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS occurred_at, \
             org_id::text, actor_id::text, correlation_id::text, causation_id::text, payload, \
             stream_version, encode(hash, 'hex') AS hash \
         FROM events WHERE stream_id = $1",
    )
    .bind(&stream)
    .fetch_one(&owner)
    .await
    .unwrap();
    let envelope = envelope_of(&row, row.get::<Value, _>("payload"));
    assert_eq!(canonical(&envelope), EXAMPLE_CANONICAL);

    // The hashes, computed by PostgreSQL as an independent tool.
    let (content, chained): (String, String) = sqlx::query_as(
        "WITH c AS (SELECT sha256(convert_to(E'tasklog-event-v1\\n' || $1, 'UTF8')) AS h) \
         SELECT encode(h, 'hex'), encode(sha256(''::bytea || int8send($2) || h), 'hex') FROM c",
    )
    .bind(EXAMPLE_CANONICAL)
    .bind(row.get::<i64, _>("stream_version"))
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(chained, row.get::<String, _>("hash"));

    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit.md")).unwrap();
    for documented in [EXAMPLE_CANONICAL, content.as_str(), chained.as_str()] {
        assert!(
            docs.contains(documented),
            "docs/audit.md shows {documented}"
        );
    }
    owner.close().await;
    db.drop_database().await;
}

#[test]
fn a_verify_that_cannot_reach_the_database_exits_2_not_1() {
    // Port 9 (discard) has no PostgreSQL: the check cannot run at all, which
    // a script must be able to tell from "something was found".
    let out = Command::new(env!("CARGO_BIN_EXE_tasklog"))
        .args(["audit", "verify"])
        .env("TASKLOG_DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
        .env(
            "TASKLOG_ADMIN_DATABASE_URL",
            "postgres://nobody@127.0.0.1:9/none",
        )
        .env("RUST_LOG", "off")
        .output()
        .expect("the tasklog binary runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stdout(&out).is_empty(),
        "no summary when nothing was checked"
    );
}

/// v2 rows, recomputed from what PostgreSQL stored with a second RFC 8785
/// implementation (not the writer's), salts read from `event_salts`: floats,
/// large integers, escapes and non-ASCII text come back from `jsonb` so that
/// the same bytes hash.
#[tokio::test]
async fn stored_v2_hashes_recompute_from_their_rows_with_an_independent_jcs() {
    let (db, owner) = TestDatabase::migrated("tasklog_audit_v2_rows").await;
    let app = PgPool::connect_with(as_app_role(&owner)).await.unwrap();
    let stream = format!("task-{}", Uuid::now_v7());
    let payloads = [
        json!({"title": "Grüße, 東京, emoji 🦀, RTL עברית", "n": 0}),
        json!({"title": "quote \" backslash \\ tab \t nl \n del \u{7f} ls \u{2028}"}),
        json!({"title": "floats", "float": 0.1, "neg": -1.5e-7, "big": 1e300, "whole": 3.0}),
        json!({"title": "integers", "max_exact": 9_007_199_254_740_992_u64, "min": -9_007_199_254_740_992_i64}),
        json!({"title": {"nested": [1.5, "ß"]}, "\u{e000}": 1, "😀": 2, "keys": {"é": 1, "e": 2}}),
        json!({"title": null, "note": "a null personal field has no salt"}),
    ];
    let events = payloads
        .iter()
        .map(|payload| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "TaskRenamed".into(),
            schema_version: 1,
            payload: payload.clone(),
            personal: &["/title"],
            metadata: EventMetadata {
                org_id: Uuid::now_v7(),
                actor_id: Some(Uuid::now_v7()),
                correlation_id: Uuid::now_v7(),
                causation_id: Some(Uuid::now_v7()),
                occurred_at: Utc::now(),
            },
        })
        .collect();
    tasklog_testkit::store(&app)
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();

    let rows = sqlx::query(
        "SELECT event_id::text, stream_id, event_type, schema_version, \
             to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS occurred_at, \
             org_id::text, actor_id::text, correlation_id::text, causation_id::text, \
             payload::text AS payload, stream_version, prev_hash, hash, hash_scheme, s.salts \
         FROM events LEFT JOIN event_salts s USING (event_id) \
         WHERE stream_id = $1 ORDER BY stream_version",
    )
    .bind(&stream)
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(rows.len(), payloads.len());
    let jcs = |v: &Value| serde_json_canonicalizer::to_vec(v).unwrap();
    for row in &rows {
        assert_eq!(row.get::<i16, _>("hash_scheme"), 2);
        let mut payload: Value = serde_json::from_str(&row.get::<String, _>("payload")).unwrap();
        let salts = row.get::<Option<Value>, _>("salts").unwrap_or(json!({}));
        for (path, salt) in salts.as_object().unwrap() {
            let field = payload.pointer_mut(path).unwrap();
            let salt = hex::decode(salt.as_str().unwrap()).unwrap();
            let commitment = Sha256::new()
                .chain_update(&salt)
                .chain_update(jcs(field))
                .finalize();
            *field = json!({ "$commit": hex::encode(commitment) });
        }
        let envelope = envelope_of(row, payload);
        let content = Sha256::new()
            .chain_update(b"tasklog-event-v2\n")
            .chain_update(jcs(&envelope))
            .finalize();
        let hash = Sha256::new()
            .chain_update(
                row.get::<Option<Vec<u8>>, _>("prev_hash")
                    .unwrap_or_default(),
            )
            .chain_update(row.get::<i64, _>("stream_version").to_be_bytes())
            .chain_update(content)
            .finalize();
        assert_eq!(
            hex::encode(hash),
            hex::encode(row.get::<Vec<u8>, _>("hash")),
            "{}",
            row.get::<String, _>("payload")
        );
    }
    let salted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event_salts JOIN events USING (event_id) WHERE stream_id = $1",
    )
    .bind(&stream)
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(
        salted,
        payloads.len() as i64 - 1,
        "no salt for a null field"
    );
    let out = verify(&db, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    app.close().await;
    owner.close().await;
    db.drop_database().await;
}
