//! `tasklog audit replay` against a real database: two generated
//! organizations, plus events the generator does not write (a comment
//! deleted, a notification read, a member's role changed, a member removed,
//! a task archived), projected by the real projectors. The replay finds an
//! organization's read models identical to its events until a superuser
//! changes them, then names each change, only of the organization replayed,
//! and leaves no scratch schema behind.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tasklog::audit::OrgEvents;
use tasklog_domain::{
    CommentDeleted, InboxEvent, MemberRemoved, MemberRoleChanged, NotificationRead, OrgEvent, Role,
    TaskArchived, TaskEvent,
};
use tasklog_event_store::LogPosition;
use tasklog_projectors::replay::{Comparison, Replay, SETTLE_ATTEMPTS};
use tasklog_testkit::{tamper, By, EventLog, Projections, TestDatabase};
use uuid::Uuid;

/// Two organizations' read models, projected to the head of the log.
struct World {
    db: TestDatabase,
    owner: PgPool,
    log: EventLog,
    projections: Projections,
    /// The organizations, in the order they were created.
    orgs: Vec<Uuid>,
}

impl World {
    async fn new() -> Self {
        let (db, owner) = TestDatabase::migrated("tasklog_replay").await;
        tasklog::generate::generate(&owner, 2, 600, |_| {})
            .await
            .expect("the generator writes its log");
        let orgs: Vec<Uuid> = sqlx::query_scalar(
            "SELECT org_id FROM events WHERE event_type = 'OrganizationCreated' \
             ORDER BY transaction_id, global_position",
        )
        .fetch_all(&owner)
        .await
        .unwrap();
        assert_eq!(orgs.len(), 2);
        let log = EventLog::new(&owner);
        let projections = Projections::start(&owner, &log).await;
        let world = Self {
            db,
            owner,
            log,
            projections,
            orgs,
        };
        world.catch_up().await;
        for org in world.orgs.clone() {
            world.write_what_the_generator_does_not(org).await;
        }
        world.catch_up().await;
        world
    }

    async fn head(&self) -> LogPosition {
        self.log
            .store()
            .high_water_mark()
            .await
            .unwrap()
            .head
            .unwrap()
    }

    async fn catch_up(&self) {
        self.projections.catch_up(self.head().await).await;
    }

    async fn one<T>(&self, sql: &str, org: Uuid) -> T
    where
        T: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        sqlx::query_as(sql)
            .bind(org)
            .fetch_one(&self.owner)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn write_what_the_generator_does_not(&self, org: Uuid) {
        let (comment, task, author): (Uuid, Uuid, Uuid) = self
            .one(
                "SELECT comment_id, task_id, author FROM read.comments \
                 WHERE org_id = $1 AND NOT deleted ORDER BY comment_id LIMIT 1",
                org,
            )
            .await;
        self.log
            .append(
                &format!("task-{task}"),
                By::now(org, author),
                [TaskEvent::from(CommentDeleted {
                    comment_id: comment,
                })],
            )
            .await;
        let (other_task, archiver): (Uuid, Uuid) = self
            .one(
                "SELECT task_id, created_by FROM read.tasks \
                 WHERE org_id = $1 ORDER BY task_id DESC LIMIT 1",
                org,
            )
            .await;
        self.log
            .append(
                &format!("task-{other_task}"),
                By::now(org, archiver),
                [TaskEvent::from(TaskArchived {})],
            )
            .await;
        let (notification, user): (Uuid, Uuid) = self
            .one(
                "SELECT notification_id, user_id FROM read.notifications \
                 WHERE org_id = $1 ORDER BY notification_id LIMIT 1",
                org,
            )
            .await;
        self.log
            .append(
                &format!("inbox-{}", tasklog_domain::inbox_id(org, user)),
                By::now(org, user),
                [InboxEvent::from(NotificationRead {
                    notification_id: notification,
                })],
            )
            .await;
        let members: Vec<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM read.members WHERE org_id = $1 AND role <> 'owner' \
             ORDER BY user_id LIMIT 2",
        )
        .bind(org)
        .fetch_all(&self.owner)
        .await
        .unwrap();
        let (owner,): (Uuid,) = self
            .one(
                "SELECT user_id FROM read.members WHERE org_id = $1 AND role = 'owner'",
                org,
            )
            .await;
        self.log
            .append(
                &format!("org-{org}"),
                By::now(org, owner),
                [
                    OrgEvent::from(MemberRoleChanged {
                        user_id: members[0],
                        from: Role::Member,
                        to: Role::Admin,
                    }),
                    OrgEvent::from(MemberRemoved {
                        user_id: members[1],
                    }),
                ],
            )
            .await;
    }

    /// `tasklog audit replay --org <org>` as a process, with `args`.
    fn replay(&self, org: Uuid, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tasklog"))
            .args(["audit", "replay", "--org", &org.to_string()])
            .args(args)
            .env("TASKLOG_DATABASE_URL", &self.db.app_url)
            .env("TASKLOG_ADMIN_DATABASE_URL", &self.db.owner_url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the tasklog binary runs")
    }

    /// The schemas whose name starts with `replay_`.
    async fn scratch_schemas(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'replay\\_%' ORDER BY 1",
        )
        .fetch_all(&self.owner)
        .await
        .unwrap()
    }

    async fn close(self) {
        self.owner.close().await;
        self.db.drop_database().await;
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of `out` with `text`, trimmed.
fn lines_with(out: &Output, text: &str) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| l.contains(text))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[tokio::test]
async fn an_untouched_organization_replays_identical_and_leaves_no_scratch_schema() {
    let world = World::new().await;

    let out = world.replay(world.orgs[0], &[]);

    let report = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in [
        "organizations",
        "members",
        "projects",
        "tags",
        "tasks",
        "comments",
        "tag_usage",
        "activity",
        "notifications",
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("  {table}: ")))
            .unwrap_or_else(|| panic!("{table} in the report:\n{report}"));
        assert!(line.ends_with(": identical"), "{line}");
        assert!(
            !line.contains(": 0 rows live"),
            "{table} has rows to compare: {line}"
        );
    }
    assert!(
        report.lines().last().unwrap().ends_with(": no differences"),
        "{report}"
    );
    assert_eq!(world.scratch_schemas().await, Vec::<String>::new());
    world.close().await;
}

#[tokio::test]
async fn each_tampered_row_of_the_organization_is_named_and_fails_the_replay() {
    let world = World::new().await;
    let org = world.orgs[0];
    let (task, title): (Uuid, String) = world
        .one(
            "SELECT task_id, title FROM read.tasks WHERE org_id = $1 AND length(title) < 60 \
             ORDER BY task_id LIMIT 1",
            org,
        )
        .await;
    let (comment,): (Uuid,) = world
        .one(
            "SELECT comment_id FROM read.comments WHERE org_id = $1 AND NOT deleted \
             ORDER BY comment_id LIMIT 1",
            org,
        )
        .await;
    let stray = Uuid::now_v7();
    tamper(
        &world.owner,
        &[
            format!("UPDATE rm_tasks_g1.tasks SET title = 'tampered' WHERE task_id = '{task}'"),
            format!("DELETE FROM rm_tasks_g1.comments WHERE comment_id = '{comment}'"),
            format!(
                "INSERT INTO rm_directory_g1.members (org_id, user_id, handle, role, joined_at) \
                 VALUES ('{org}', '{stray}', 'mallory', 'admin', now())"
            ),
        ],
    )
    .await;

    let out = world.replay(org, &[]);

    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        lines_with(&out, "differs: "),
        [format!(
            "differs: task_id={task}: title (live \"tampered\", replay {title:?})"
        )]
    );
    assert_eq!(
        lines_with(&out, "only in replay: "),
        [format!("only in replay: comment_id={comment}")]
    );
    assert_eq!(
        lines_with(&out, "only in live: "),
        [format!("only in live: org_id={org} user_id={stray}")]
    );
    assert!(
        stdout(&out)
            .lines()
            .last()
            .unwrap()
            .ends_with(": 3 differences"),
        "{}",
        stdout(&out)
    );
    assert_eq!(world.scratch_schemas().await, Vec::<String>::new());
    world.close().await;
}

#[tokio::test]
async fn a_change_to_another_organizations_rows_is_not_reported_for_this_one() {
    let world = World::new().await;
    let (ours, theirs) = (world.orgs[0], world.orgs[1]);
    tamper(
        &world.owner,
        &[format!(
            "UPDATE rm_tasks_g1.tasks SET title = 'tampered' WHERE task_id = \
             (SELECT task_id FROM rm_tasks_g1.tasks WHERE org_id = '{theirs}' LIMIT 1)"
        )],
    )
    .await;

    let out = world.replay(ours, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    let out = world.replay(theirs, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(lines_with(&out, "differs: ").len(), 1, "{}", stdout(&out));
    world.close().await;
}

#[tokio::test]
async fn kept_scratch_schemas_hold_the_replayed_rows() {
    let world = World::new().await;
    let org = world.orgs[1];

    let out = world.replay(org, &["--keep"]);

    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let schemas = world.scratch_schemas().await;
    assert_eq!(schemas.len(), 4, "{schemas:?}");
    let tasks = schemas
        .iter()
        .find(|s| s.starts_with("replay_tasks_"))
        .unwrap();
    let (replayed, live): (i64, i64) = world
        .one(
            &format!(
                "SELECT (SELECT count(*) FROM {tasks}.tasks), \
                        (SELECT count(*) FROM read.tasks WHERE org_id = $1)"
            ),
            org,
        )
        .await;
    assert_eq!((replayed, live > 0), (live, true));
    world.close().await;
}

#[tokio::test]
async fn a_live_projection_that_lags_is_not_compared_and_the_replay_cannot_conclude() {
    let world = World::new().await;
    let org = world.orgs[0];
    let (task, actor): (Uuid, Uuid) = world
        .one(
            "SELECT task_id, created_by FROM read.tasks WHERE org_id = $1 LIMIT 1",
            org,
        )
        .await;
    // Not projected: the projectors of this test only run when told.
    let appended = world
        .log
        .append(
            &format!("task-{task}"),
            By::now(org, actor),
            [TaskEvent::from(TaskArchived {})],
        )
        .await;
    // The replay stops at the safe position, which other tests' open
    // transactions (on any database of the server) may hold back a moment.
    while world.log.store().high_water_mark().await.unwrap().safe < Some(appended.position) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let out = world.replay(org, &["--wait-secs", "0"]);

    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    for projection in ["tasks", "activity"] {
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l.starts_with(&format!("{projection}: not compared: "))),
            "{}",
            stdout(&out)
        );
    }
    assert_eq!(world.scratch_schemas().await, Vec::<String>::new());
    world.close().await;
}

/// The live projection moves past the replay's target before it is
/// compared: the replay folds the organization's events in between, in a
/// snapshot of its own or (with one attempt) in the comparison's, and
/// compares at the live checkpoint.
#[tokio::test]
async fn events_projected_after_the_target_are_replayed_before_comparing() {
    let world = World::new().await;
    let org = world.orgs[0];
    let target = world.head().await;
    world.write_what_the_generator_does_not(org).await;
    world.catch_up().await;
    let head = world.head().await;
    let pool = world.db.owner().await;
    for (run, attempts) in [("aside", SETTLE_ATTEMPTS), ("inside", 1)] {
        let mut replay = Replay::new(
            pool.clone(),
            Arc::new(OrgEvents(org)),
            org,
            tasklog_projectors::all(),
            run,
        )
        .unwrap()
        .settling_within(attempts);

        let report = replay.run(target, Duration::from_secs(5), 10).await;
        replay.drop_schemas().await.unwrap();
        let report = report.unwrap();

        assert_eq!(report.differences(), 0, "{run}: {report:#?}");
        for p in &report.projections {
            match &p.comparison {
                Comparison::Compared { at, .. } => {
                    assert!(*at > target, "{run}: {} compared at {at}", p.projection);
                    assert_eq!(*at, head, "{run}: {} compared at {at}", p.projection);
                }
                other => panic!("{run}: {} not compared: {other:?}", p.projection),
            }
        }
    }
    pool.close().await;
    world.close().await;
}

#[tokio::test]
async fn an_organization_without_events_cannot_be_replayed() {
    let world = World::new().await;

    let out = world.replay(Uuid::now_v7(), &[]);

    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no events"));
    world.close().await;
}

#[tokio::test]
async fn a_schema_the_replay_did_not_create_is_never_dropped() {
    let world = World::new().await;
    let org = world.orgs[0];
    sqlx::query("CREATE SCHEMA replay_tasks_clash")
        .execute(&world.owner)
        .await
        .unwrap();
    let mut replay = Replay::new(
        world.owner.clone(),
        Arc::new(OrgEvents(org)),
        org,
        tasklog_projectors::all(),
        "clash",
    )
    .unwrap();

    let ran = replay
        .run(LogPosition::START, Duration::from_secs(1), 10)
        .await;
    replay.drop_schemas().await.unwrap();

    assert!(ran.is_err(), "the schema exists: {ran:?}");
    assert_eq!(world.scratch_schemas().await, ["replay_tasks_clash"]);
    world.close().await;
}
