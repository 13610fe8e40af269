//! The world the query API tests read: written as domain events through the
//! event store, at chosen times and by chosen people, and projected by the
//! real projectors, never put into the read models by hand.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sqlx::PgPool;
use tasklog_domain::{
    CommentAdded, CommentDeleted, CommentEdited, DomainEvent, InboxEvent, MemberAdded,
    MemberRemoved, NotificationRead, OrgEvent, OrganizationCreated, Priority, ProjectCreated,
    ProjectEvent, ProjectKeyRegistered, Role, StatusCategory, StatusDef, TagCreated, TagEvent,
    TaskArchived, TaskAssigned, TaskCreated, TaskDetailsEdited, TaskEvent, TaskNumberReserved,
    TaskStatusChanged, TaskTagAdded, Workflow,
};
use tasklog_event_store::LogPosition;
use tasklog_testkit::notification_id;
use tasklog_testkit::{Appended, By, EventLog, Projections, User};
use uuid::Uuid;

/// One task of the world, as the tests expect to read it back.
#[derive(Clone, Debug)]
pub struct SeededTask {
    pub id: Uuid,
    pub title: String,
    pub status: String,
    pub priority: &'static str,
    pub rank: i16,
    pub assignee: Option<Uuid>,
    pub due: Option<NaiveDate>,
    pub tags: Vec<Uuid>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its stream's version.
    pub version: u64,
}

/// Organization A (alice owner, bob member, dave viewer) with project WEB and
/// its tasks, tags, comments, activity and notifications, and the empty
/// project MOB; organization B (carol) with project OPS and one task, where
/// alice was a member for a while.
pub struct World {
    pub org: Uuid,
    pub other_org: Uuid,
    pub alice: User,
    pub bob: User,
    pub carol: User,
    /// In no organization.
    pub eve: User,
    pub project: Uuid,
    /// Project WEB's version (one event per task it numbered).
    pub project_version: u64,
    pub empty_project: Uuid,
    pub other_project: Uuid,
    pub tasks: Vec<SeededTask>,
    pub other_task: Uuid,
    pub bug: Uuid,
    pub ui: Uuid,
    pub chore: Uuid,
    /// The live comments on "Crash on save", oldest first.
    pub comments: Vec<Uuid>,
    pub deleted_comment: Uuid,
    /// Alice's notifications in org A, oldest first; the first is read.
    pub notifications: Vec<Uuid>,
    /// Where the log ends, and every projection's checkpoint with it.
    pub checkpoint: LogPosition,
    pub log: EventLog,
    pub projections: Projections,
}

/// Minute `minutes` of 2026.
pub fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn workflow() -> Workflow {
    let status = |name: &str, category| StatusDef {
        name: name.into(),
        category,
    };
    let step = |from: &str, to: &str| (from.to_owned(), to.to_owned());
    Workflow {
        statuses: vec![
            status("todo", StatusCategory::Unstarted),
            status("doing", StatusCategory::Started),
            status("done", StatusCategory::Completed),
        ],
        transitions: vec![
            step("todo", "doing"),
            step("doing", "done"),
            step("done", "todo"),
        ],
        initial: "todo".into(),
    }
}

/// The moves along the projects' workflow from `todo` to `status`.
pub fn moves_to(status: &str) -> Vec<TaskEvent> {
    let mv = |from: &str, to: &str, from_category, to_category| {
        TaskEvent::from(TaskStatusChanged {
            from: from.into(),
            to: to.into(),
            from_category,
            to_category,
        })
    };
    use StatusCategory::{Completed, Started, Unstarted};
    match status {
        "todo" => vec![],
        "doing" => vec![mv("todo", "doing", Unstarted, Started)],
        _ => vec![
            mv("todo", "doing", Unstarted, Started),
            mv("doing", "done", Started, Completed),
        ],
    }
}

fn priority(name: &str) -> Priority {
    serde_json::from_value(serde_json::json!(name)).expect("a priority")
}

fn rank(p: &str) -> i16 {
    match p {
        "none" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        _ => 4,
    }
}

/// A task of project WEB: who assigns it to whom when, and when it last
/// changes (its status moves, tags, archiving, or else an edit of its
/// details, happen then).
struct Spec<'a> {
    title: &'static str,
    status: &'static str,
    priority: &'static str,
    assigned: Option<(&'a User, &'a User, i64)>,
    due: Option<&'static str>,
    tags: Vec<Uuid>,
    archived: bool,
    updated: i64,
}

impl World {
    /// Writes the world's events and projects them.
    pub async fn seed(db: &PgPool) -> World {
        let log = EventLog::new(db);
        // The projections' tables are made while the events are written.
        let starting = {
            let (db, log) = (db.clone(), log.clone());
            tokio::spawn(async move { Projections::start(&db, &log).await })
        };
        let (org, other_org) = (Uuid::now_v7(), Uuid::now_v7());
        let (alice, bob, carol, dave, eve) = (
            User::new("alice"),
            User::new("bob"),
            User::new("carol"),
            User::new("dave"),
            User::new("eve"),
        );
        let in_a = |user: &User, minute: i64| By {
            org,
            actor: user.id,
            at: at(minute),
        };
        let in_b = |user: &User, minute: i64| By {
            org: other_org,
            actor: user.id,
            at: at(minute),
        };
        let (org_a, org_b) = (format!("org-{org}"), format!("org-{other_org}"));

        let created = founded(org, "Acme", &alice, "alice");
        log.append(&org_a, in_a(&alice, 1), [created]).await;
        for (user, handle, role, minute) in [
            (&bob, "bob", Role::Member, 2),
            (&dave, "dave", Role::Viewer, 3),
        ] {
            log.append(&org_a, in_a(&alice, minute), [member(user, handle, role)])
                .await;
        }
        let created = founded(other_org, "Globex", &carol, "carol");
        log.append(&org_b, in_b(&carol, 1), [created]).await;

        let (project, empty_project, other_project) =
            (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for (id, o, name, key, by) in [
            (project, org, "Website", "WEB", in_a(&alice, 4)),
            (empty_project, org, "Mobile", "MOB", in_a(&alice, 5)),
            (
                other_project,
                other_org,
                "Operations",
                "OPS",
                in_b(&carol, 4),
            ),
        ] {
            let key_registered = OrgEvent::from(ProjectKeyRegistered {
                project_id: id,
                key: key.into(),
            });
            log.append(&format!("org-{o}"), by, [key_registered]).await;
            let created = ProjectEvent::from(ProjectCreated {
                project_id: id,
                org_id: o,
                name: name.into(),
                key: key.into(),
                workflow: workflow(),
            });
            log.append(&format!("project-{id}"), by, [created]).await;
        }

        let (bug, ui, chore, other_tag) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let tag = |tag_id, name: &str, color: Option<&str>| {
            TagEvent::from(TagCreated {
                tag_id,
                name: name.into(),
                color: color.map(str::to_owned),
            })
        };
        log.append(
            &format!("tags-{org}"),
            in_a(&alice, 6),
            [
                tag(ui, "ui", Some("#0000ff")),
                tag(bug, "bug", Some("#ff0000")),
                tag(chore, "chore", None),
            ],
        )
        .await;
        log.append(
            &format!("tags-{other_org}"),
            in_b(&carol, 6),
            [tag(other_tag, "secret", None)],
        )
        .await;

        let (a, b) = (&alice, &bob);
        // Bob assigns three of alice's tasks (each notifies her) and takes
        // two himself; alice gives him "Release notes" (his one notification).
        #[rustfmt::skip]
        let specs: Vec<Spec> = [
            // title, status, priority, (assignee, by whom, minute), due, tags, archived, updated
            ("Fix login redirect", "todo", "high", Some((a, b, 20)), Some("2026-03-01"), vec![bug], false, 500),
            ("Write onboarding docs", "todo", "low", Some((b, b, 30)), None, vec![], false, 30),
            ("Crash on save", "doing", "urgent", Some((a, a, 900)), Some("2026-02-15"), vec![bug, ui], false, 900),
            ("Polish dashboard colors", "doing", "medium", None, Some("2026-03-01"), vec![ui], false, 40),
            ("Release notes", "done", "high", Some((b, a, 700)), Some("2026-01-20"), vec![], false, 700),
            ("Investigate flaky test", "todo", "none", None, None, vec![], false, 60),
            ("Login timeout bug", "done", "medium", Some((a, b, 300)), None, vec![bug], false, 800),
            ("Dashboard export", "todo", "high", Some((b, b, 80)), Some("2026-04-10"), vec![], false, 80),
            ("Refactor billing", "doing", "low", Some((a, b, 200)), Some("2026-02-15"), vec![], false, 600),
            ("Old login flow", "todo", "urgent", Some((a, a, 100)), Some("2026-02-01"), vec![], true, 100),
            ("Plan sprint", "todo", "medium", None, None, vec![], false, 110),
        ]
        .into_iter()
        .map(|(title, status, priority, assigned, due, tags, archived, updated)| Spec {
            title, status, priority, assigned, due, tags, archived, updated,
        })
        .collect();

        // The project hands out the tasks' numbers (its stream takes one
        // append at a time); then the tasks' streams, and organization B's
        // story, are written side by side.
        let ids: Vec<Uuid> = specs.iter().map(|_| Uuid::new_v4()).collect();
        let reserved = ids
            .iter()
            .zip(1..)
            .map(|(&task_id, number)| ProjectEvent::from(TaskNumberReserved { task_id, number }));
        let project_version = log
            .append(&format!("project-{project}"), in_a(&alice, 20), reserved)
            .await
            .version;
        let tasks_written = futures::future::join_all(specs.into_iter().zip(ids).enumerate().map(
            |(i, (spec, id))| {
                let (log, alice, bob) = (&log, &alice, &bob);
                async move {
                    let number = i as u64 + 1;
                    let created = 10 + i as i64;
                    let task = format!("task-{id}");
                    let details = TaskDetailsEdited {
                        title: spec.title.into(),
                        description: format!("Details about {}", spec.title.to_lowercase()),
                        priority: priority(spec.priority),
                        due_date: spec.due.map(date),
                    };
                    let created_event = TaskEvent::from(TaskCreated {
                        task_id: id,
                        org_id: org,
                        project_id: project,
                        number,
                        key: format!("WEB-{number}"),
                        title: details.title.clone(),
                        description: details.description.clone(),
                        priority: details.priority,
                        due_date: details.due_date,
                        status: "todo".into(),
                        status_category: StatusCategory::Unstarted,
                        created_by: alice.id,
                    });
                    let mut last = log
                        .append(&task, in_a(alice, created), [created_event])
                        .await;
                    let comments = if spec.title == "Crash on save" {
                        Some(comments_on(log, &task, in_a, alice, bob).await)
                    } else {
                        None
                    };
                    let mut assignment = None;
                    if let Some((assignee, by, minute)) = spec.assigned {
                        let assigned = TaskEvent::from(TaskAssigned {
                            assignee: assignee.id,
                            previous: None,
                        });
                        last = log.append(&task, in_a(by, minute), [assigned]).await;
                        assignment = Some(last.event_ids[0]);
                    }
                    let mut changes = moves_to(spec.status);
                    changes.extend(
                        spec.tags
                            .iter()
                            .map(|&tag_id| TaskEvent::from(TaskTagAdded { tag_id })),
                    );
                    if spec.archived {
                        changes.push(TaskEvent::from(TaskArchived {}));
                    }
                    if changes.is_empty() && spec.assigned.is_none_or(|(.., m)| m != spec.updated) {
                        changes.push(TaskEvent::from(details));
                    }
                    if !changes.is_empty() {
                        last = log.append(&task, in_a(alice, spec.updated), changes).await;
                    }
                    let seeded = SeededTask {
                        id,
                        title: spec.title.into(),
                        status: spec.status.into(),
                        priority: spec.priority,
                        rank: rank(spec.priority),
                        assignee: spec.assigned.map(|(assignee, ..)| assignee.id),
                        due: spec.due.map(date),
                        tags: spec.tags,
                        archived: spec.archived,
                        created_at: at(created),
                        updated_at: at(spec.updated),
                        version: last.version,
                    };
                    (seeded, assignment, comments)
                }
            },
        ));
        let other_task = Uuid::new_v4();
        let (written, ()) = tokio::join!(
            tasks_written,
            organization_b(
                &log,
                other_org,
                other_project,
                other_task,
                other_tag,
                &carol,
                &alice
            )
        );
        let mut tasks = Vec::new();
        // The event of each task's assignment, by task title.
        let mut assignments = std::collections::HashMap::new();
        let mut comments = None;
        for (task, assignment, on_it) in written {
            if let Some(event) = assignment {
                assignments.insert(task.title.clone(), event);
            }
            comments = comments.or(on_it);
            tasks.push(task);
        }

        // Alice's notifications in A: assigned (read five minutes later),
        // mentioned, assigned, assigned.
        let comments = comments.expect("the comments on Crash on save");
        let notifications = vec![
            notification_id(assignments["Fix login redirect"], alice.id),
            notification_id(comments.mention, alice.id),
            notification_id(assignments["Refactor billing"], alice.id),
            notification_id(assignments["Login timeout bug"], alice.id),
        ];
        let read = InboxEvent::from(NotificationRead {
            notification_id: notifications[0],
        });
        let end = log
            .append(&format!("inbox-{}", alice.id), in_a(&alice, 25), [read])
            .await;
        let projections = starting.await.expect("the projections start");
        projections.catch_up(end.position).await;

        World {
            org,
            other_org,
            alice,
            bob,
            carol,
            eve,
            project,
            project_version,
            empty_project,
            other_project,
            tasks,
            other_task,
            bug,
            ui,
            chore,
            comments: vec![comments.repro, comments.verify],
            deleted_comment: comments.spam,
            notifications,
            checkpoint: end.position,
            log,
            projections,
        }
    }

    /// The seeded task titled `title`.
    pub fn task(&self, title: &str) -> &SeededTask {
        self.tasks
            .iter()
            .find(|t| t.title == title)
            .unwrap_or_else(|| panic!("no task {title}"))
    }

    /// Appends `events` to `stream` as `user` in organization A, now.
    pub async fn write<E: DomainEvent>(
        &self,
        stream: &str,
        user: &User,
        events: impl IntoIterator<Item = E>,
    ) -> Appended {
        self.log
            .append(stream, By::now(self.org, user.id), events)
            .await
    }
}

fn founded(org_id: Uuid, name: &str, owner: &User, handle: &str) -> OrgEvent {
    OrgEvent::from(OrganizationCreated {
        org_id,
        name: name.into(),
        owner_id: owner.id,
        owner_handle: handle.into(),
    })
}

fn member(user: &User, handle: &str, role: Role) -> OrgEvent {
    OrgEvent::from(MemberAdded {
        user_id: user.id,
        handle: handle.into(),
        role,
    })
}

/// The comments on "Crash on save", and the event of the one that mentions
/// alice.
struct Comments {
    repro: Uuid,
    spam: Uuid,
    verify: Uuid,
    mention: Uuid,
}

/// Bob's repro; alice's spam, deleted; bob asking alice to verify, then
/// naming himself instead (an edit notifies nobody).
async fn comments_on(
    log: &EventLog,
    task: &str,
    by: impl Fn(&User, i64) -> By,
    alice: &User,
    bob: &User,
) -> Comments {
    let (repro, spam, verify) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let added = |comment_id, author: &User, body: &str, mentions: Vec<Uuid>| {
        TaskEvent::from(CommentAdded {
            comment_id,
            author: author.id,
            body: body.into(),
            mentions,
        })
    };
    log.append(
        task,
        by(bob, 60),
        [added(repro, bob, "Repro attached", vec![])],
    )
    .await;
    log.append(task, by(alice, 90), [added(spam, alice, "spam", vec![])])
        .await;
    let deleted = TaskEvent::from(CommentDeleted { comment_id: spam });
    log.append(task, by(alice, 95), [deleted]).await;
    let asked = added(
        verify,
        bob,
        "Fixed in #12, @alice please verify",
        vec![alice.id],
    );
    let mention = log.append(task, by(bob, 120), [asked]).await.event_ids[0];
    let edited = TaskEvent::from(CommentEdited {
        comment_id: verify,
        body: "Fixed in #12, @bob will verify".into(),
        mentions: vec![bob.id],
    });
    log.append(task, by(bob, 130), [edited]).await;
    Comments {
        repro,
        spam,
        verify,
        mention,
    }
}

/// Organization B: carol's task, given to alice while she was a member.
async fn organization_b(
    log: &EventLog,
    other_org: Uuid,
    other_project: Uuid,
    other_task: Uuid,
    other_tag: Uuid,
    carol: &User,
    alice: &User,
) {
    // Carol does all of it.
    let by = |minute| By {
        org: other_org,
        actor: carol.id,
        at: at(minute),
    };
    let org_b = format!("org-{other_org}");
    let other = format!("task-{other_task}");
    let reserved = ProjectEvent::from(TaskNumberReserved {
        task_id: other_task,
        number: 1,
    });
    log.append(&format!("project-{other_project}"), by(10), [reserved])
        .await;
    log.append(
        &other,
        by(10),
        [
            TaskEvent::from(TaskCreated {
                task_id: other_task,
                org_id: other_org,
                project_id: other_project,
                number: 1,
                key: "OPS-1".into(),
                title: "Login secret".into(),
                description: "Details about login secret".into(),
                priority: Priority::High,
                due_date: None,
                status: "todo".into(),
                status_category: StatusCategory::Unstarted,
                created_by: carol.id,
            }),
            TaskEvent::from(TaskTagAdded { tag_id: other_tag }),
        ],
    )
    .await;
    log.append(&org_b, by(390), [member(alice, "alice", Role::Member)])
        .await;
    let to = |assignee: &User, previous: Option<&User>| {
        TaskEvent::from(TaskAssigned {
            assignee: assignee.id,
            previous: previous.map(|u| u.id),
        })
    };
    log.append(&other, by(400), [to(alice, None)]).await;
    log.append(&other, by(405), [to(carol, Some(alice))]).await;
    let left = OrgEvent::from(MemberRemoved { user_id: alice.id });
    log.append(&org_b, by(410), [left]).await;
}
