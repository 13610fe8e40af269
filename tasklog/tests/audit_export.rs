//! `tasklog audit export` of an organization from a real database, and
//! `tasklog audit verify --file` over the file with no database: a whole
//! export verifies; an export edited, cut or short of a line is named.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgPool;
use tasklog_event_store::export::{ExportFinding, ExportTrailer};
use tasklog_event_store::verify::Finding;
use tasklog_event_store::{EventMetadata, ExpectedVersion, NewEvent};
use tasklog_testkit::{as_app_role, TestDatabase};
use uuid::Uuid;

fn tasklog(db: Option<&TestDatabase>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tasklog"));
    command.args(args).env("RUST_LOG", "warn");
    match db {
        Some(db) => command
            .env("TASKLOG_DATABASE_URL", &db.app_url)
            .env("TASKLOG_ADMIN_DATABASE_URL", &db.owner_url),
        // Offline: no database reachable at all.
        None => command
            .env("TASKLOG_DATABASE_URL", "postgres://nobody@127.0.0.1:9/none")
            .env(
                "TASKLOG_ADMIN_DATABASE_URL",
                "postgres://nobody@127.0.0.1:9/none",
            ),
    };
    command
}

/// `tasklog audit export --org <org> --output <file>` (with extra `args`).
fn export(db: &TestDatabase, org: Uuid, args: &[&str]) -> PathBuf {
    let file = std::env::temp_dir().join(format!("tasklog-export-{}.ndjson", Uuid::now_v7()));
    let out = tasklog(Some(db), &["audit", "export", "--org", &org.to_string()])
        .arg("--output")
        .arg(&file)
        .args(args)
        .output()
        .expect("the tasklog binary runs");
    assert!(out.status.success(), "export failed: {out:?}");
    file
}

fn verify_file(file: &Path) -> Output {
    tasklog(None, &["audit", "verify", "--file"])
        .arg(file)
        .output()
        .expect("the tasklog binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write_lines(file: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(file, text).unwrap();
}

/// `verify --file` prints exactly `findings`, then the summary, and exits 1.
fn assert_findings(file: &Path, streams: u64, events: u64, findings: &[ExportFinding]) {
    let out = verify_file(file);
    let mut expected: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
    expected.push(format!(
        "verified {streams} streams, {events} events: {} findings",
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

/// One organization's two streams of five events each, appended by the
/// application role.
struct Org {
    id: Uuid,
    /// The streams in export order, each with its event ids by version.
    streams: Vec<(String, Vec<Uuid>)>,
}

async fn org_with_events(db: &TestDatabase) -> Org {
    let app = PgPool::connect_with(as_app_role(&PgPool::connect_lazy(&db.owner_url).unwrap()))
        .await
        .unwrap();
    let store = tasklog_testkit::store(&app);
    let org = Uuid::now_v7();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let stream = format!("task-{}", Uuid::now_v7());
        let mut ids = Vec::new();
        for n in 1..=5 {
            let event = NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "TaskRenamed".into(),
                schema_version: 1,
                payload: json!({ "title": format!("title {n}"), "note": "Prüfbericht \"Q4\"" }),
                personal: &["/note"],
                metadata: EventMetadata {
                    org_id: org,
                    actor_id: Some(Uuid::now_v7()),
                    correlation_id: Uuid::now_v7(),
                    causation_id: None,
                    occurred_at: Utc::now(),
                },
            };
            ids.push(event.event_id);
            store
                .append(&stream, ExpectedVersion::Any, vec![event])
                .await
                .unwrap();
        }
        streams.push((stream, ids));
    }
    app.close().await;
    // Export order is by stream id, as the database orders text.
    streams.sort_by(|a, b| a.0.cmp(&b.0));
    Org { id: org, streams }
}

#[tokio::test]
async fn an_export_of_many_pages_verifies_offline_with_exit_code_zero() {
    let (db, owner) = TestDatabase::migrated("tasklog_export_clean").await;
    let generated = tasklog(Some(&db), &["generate", "--orgs", "2", "--events", "3000"])
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let (org, streams, events): (Uuid, i64, i64) = sqlx::query_as(
        "SELECT org_id, count(DISTINCT stream_id), count(*) FROM events \
         GROUP BY org_id ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_one(&owner)
    .await
    .unwrap();

    // Pages of 100 events: more than ten pages, each crossing streams.
    let file = export(&db, org, &["--page-size", "100"]);
    let out = verify_file(&file);

    let summary = format!("verified {streams} streams, {events} events: 0 findings\n");
    assert_eq!(
        stdout(&out),
        summary,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    let lines = lines(&file);
    assert_eq!(lines[0]["line"], "header");
    assert_eq!(lines[0]["format"], "tasklog-export-v2");
    // Each event names its scheme; each comment carries the salt of its body.
    let events_lines = &lines[1..lines.len() - 1];
    assert!(events_lines
        .iter()
        .all(|event| event["hash_scheme"] == "tasklog-event-v2"));
    let comments: Vec<_> = events_lines
        .iter()
        .filter(|event| event["event_type"] == "CommentAdded")
        .collect();
    assert!(!comments.is_empty());
    for comment in comments {
        let salt = comment["salts"]["/body"]
            .as_str()
            .expect("a salt for /body");
        assert_eq!(salt.len(), 64, "{comment}");
    }
    assert_eq!(lines[0]["org"], org.to_string());
    assert_eq!(
        lines.last().unwrap(),
        &json!({ "line": "trailer", "streams": streams, "events": events })
    );

    // The same from standard input.
    let mut child = tasklog(None, &["audit", "verify", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&file).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), summary);
    assert_eq!(out.status.code(), Some(0));

    std::fs::remove_file(file).unwrap();
    owner.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn an_export_holds_its_organizations_events_and_no_other() {
    let (db, owner) = TestDatabase::shared("tasklog_export").await;
    let org = org_with_events(&db).await;
    let other = org_with_events(&db).await;

    let file = export(&db, org.id, &[]);

    let lines = lines(&file);
    let events: Vec<(String, u64, String)> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| {
            assert_eq!(l["line"], "event");
            assert_eq!(l["org_id"], org.id.to_string(), "no event of {}", other.id);
            let id = l["event_id"].as_str().unwrap().to_owned();
            (
                l["stream_id"].as_str().unwrap().to_owned(),
                l["stream_version"].as_u64().unwrap(),
                id,
            )
        })
        .collect();
    let expected: Vec<(String, u64, String)> = org
        .streams
        .iter()
        .flat_map(|(s, ids)| {
            ids.iter()
                .zip(1..)
                .map(|(id, v)| (s.clone(), v, id.to_string()))
        })
        .collect();
    assert_eq!(events, expected, "by stream, then version");
    // The whole envelope, as stored.
    let first = &lines[1];
    let stored: (String, String, String) = sqlx::query_as(
        "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             transaction_id::text || '.' || global_position, encode(hash, 'hex') \
         FROM events WHERE event_id = $1",
    )
    .bind(org.streams[0].1[0])
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(
        (
            first["occurred_at"].as_str().unwrap(),
            first["position"].as_str().unwrap(),
            first["hash"].as_str().unwrap()
        ),
        (stored.0.as_str(), stored.1.as_str(), stored.2.as_str())
    );
    assert_eq!(first["prev_hash"], Value::Null);
    assert_eq!(lines[2]["prev_hash"], first["hash"]);
    for key in [
        "stream_id",
        "event_type",
        "schema_version",
        "recorded_at",
        "actor_id",
        "correlation_id",
        "causation_id",
        "payload",
    ] {
        assert!(first.get(key).is_some(), "an event line has {key}");
    }
    assert_eq!(verify_file(&file).status.code(), Some(0));
    std::fs::remove_file(file).unwrap();
}

#[tokio::test]
async fn a_payload_edited_in_the_export_is_named_as_changed_content() {
    let (db, _owner) = TestDatabase::shared("tasklog_export").await;
    let org = org_with_events(&db).await;
    let file = export(&db, org.id, &[]);
    let mut lines = lines(&file);
    // Line 0 is the header: the first stream's version 3 is line 3.
    lines[3]["payload"]["title"] = json!("edited");
    write_lines(&file, &lines);

    assert_findings(
        &file,
        2,
        10,
        &[ExportFinding::Stream(Finding::ContentChanged {
            stream: org.streams[0].0.clone(),
            version: 3,
            event_id: org.streams[0].1[2],
        })],
    );
    std::fs::remove_file(file).unwrap();
}

#[tokio::test]
async fn a_line_removed_mid_stream_is_named_by_its_version_and_the_event_after_it() {
    let (db, _owner) = TestDatabase::shared("tasklog_export").await;
    let org = org_with_events(&db).await;
    let file = export(&db, org.id, &[]);
    let mut lines = lines(&file);
    // The second stream's version 3.
    lines.remove(8);
    write_lines(&file, &lines);

    let (stream, ids) = &org.streams[1];
    assert_findings(
        &file,
        2,
        9,
        &[
            ExportFinding::Stream(Finding::Removed {
                stream: stream.clone(),
                first_version: 3,
                count: 1,
                before: ids[3],
                before_version: 4,
                renumbered: 0,
            }),
            ExportFinding::CountsDiffer {
                trailer: ExportTrailer {
                    streams: 2,
                    events: 10,
                },
                found: ExportTrailer {
                    streams: 2,
                    events: 9,
                },
            },
        ],
    );
    std::fs::remove_file(file).unwrap();
}

#[tokio::test]
async fn an_export_cut_before_its_trailer_is_a_finding() {
    let (db, _owner) = TestDatabase::shared("tasklog_export").await;
    let org = org_with_events(&db).await;
    let file = export(&db, org.id, &[]);
    let mut lines = lines(&file);
    lines.pop();
    write_lines(&file, &lines);

    assert_findings(&file, 2, 10, &[ExportFinding::NoTrailer { lines: 11 }]);

    // Cut in the middle of a line: that line is unreadable, the end missing.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, &text[..text.len() - 40]).unwrap();
    let out = verify_file(&file);
    let stdout = stdout(&out);
    let printed: Vec<&str> = stdout.lines().collect();
    assert!(
        printed[0].starts_with("unreadable: line 11 is not an export line"),
        "{stdout}"
    );
    assert_eq!(
        printed[1..],
        [
            ExportFinding::NoTrailer { lines: 11 }.to_string().as_str(),
            "verified 2 streams, 9 events: 2 findings"
        ]
    );
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_file(file).unwrap();
}

#[test]
fn a_file_that_cannot_be_read_exits_2_not_1() {
    let out = verify_file(Path::new("/nonexistent/tasklog-export.ndjson"));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stdout(&out).is_empty(),
        "no summary when nothing was checked"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("opening /nonexistent/tasklog-export.ndjson"),
        "{out:?}"
    );
}
