//! A known history, written through the aggregates' `decide` with chosen
//! times, and the analytics projection stepped over it: what the reporting
//! tests compute their figures from by hand.
//!
//! Organization A ("Acme": ann owner, bob and cat members) has two projects
//! with the default workflow, WEB and API. Organization B ("Other": zed
//! owner, yan member) has one, OPS, with events on the same days as A's, so
//! a figure of B's that leaked into A's rows would change them. Times are
//! March 2026 (UTC): week 1 is Mon 2 – Sun 8, week 2 is Mon 9 – Sun 15.
//!
//! Week 1 (Mar 2–8), `d/hh` = March d, hh:00:
//! * WEB-1: created 2/09 (backlog) assigned bob; todo 2/10, in_progress 3/09,
//!   in_review 4/09, done 4/15 (reopened in week 2).
//! * WEB-2: created 2/11 assigned bob; todo 3/10, in_progress 3/11,
//!   reassigned cat 5/09, in_review 5/12, done 6/12 (reassigned bob in week 2).
//! * WEB-3: created 3/09; todo 3/12, cancelled 4/12. Unassigned.
//! * WEB-4: created 3/10 assigned cat, due 2026-03-05; todo 4/10, archived 6/10.
//! * bob reads his WEB-1 assignment 2/12.
//! * OPS-1 (org B): created 2/09 assigned yan; todo 2/10, in_progress 3/09,
//!   in_review 4/09, done 4/15.
//!
//! Week 2 (Mar 9–13):
//! * WEB-5: created 9/09 assigned cat, due 2026-03-10; todo 9/10,
//!   in_progress 10/09 (still open). Comments: ann adds C1 9/12 mentioning bob
//!   and cat, edits it 10/08 (same mentions); bob adds C2 11/09 mentioning
//!   ann, deletes it 12/09.
//! * WEB-6: created 9/08 assigned cat; todo 9/09, in_progress 9/12,
//!   in_review 10/12, in_progress 10/15, in_review 11/09, done 12/09. cat
//!   adds C3 11/10 (no mentions).
//! * WEB-7: created 10/08 assigned bob; todo 10/09, in_progress 10/10,
//!   in_review 13/10, done 13/14.
//! * WEB-1: todo 10/09 (reopened), in_progress 10/10, in_review 11/10, done 11/16.
//! * WEB-2: reassigned bob 12/09 (after its completion).
//! * API-1: created 9/10 unassigned; todo 9/11, in_progress 12/10,
//!   in_review 13/09, done 13/10.
//! * API-2: created 10/09 unassigned; todo 10/10, in_progress 10/12,
//!   in_review 12/10, done 12/12.
//! * API-3: created 11/09 unassigned, stays in backlog.
//! * Reads: cat reads her C1 mention 10/09, bob his 11/08, ann her C2
//!   mention 11/10.
//! * Org B: zed comments on OPS-1 9/12 mentioning yan; yan reads it 9/13.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sqlx::PgPool;
use tasklog_analytics::{Analytics, ClickHouseConfig};
use tasklog_domain::*;
use tasklog_event_store::LogPosition;
use tasklog_projectors::projections::notification_id;
use tasklog_projectors::{generation, Projection, Projector, ProjectorConfig};
use tasklog_testkit::{Appended, By, EventLog};
use uuid::Uuid;

/// March `day` 2026, `hour`:00 UTC.
pub fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

/// An aggregate's stream and state: each command is decided on the state
/// its earlier events left, as the command API does.
pub struct Agg<A: Aggregate> {
    stream: String,
    pub state: A,
}

impl<A: Aggregate> Agg<A> {
    pub fn new(id: Uuid) -> Self {
        Self {
            stream: stream_name::<A>(id),
            state: A::default(),
        }
    }

    pub async fn run(&mut self, log: &EventLog, by: By, command: A::Command) -> Appended {
        let events = self
            .state
            .decide(command)
            .unwrap_or_else(|e| panic!("{}: the story's command is refused: {e:?}", self.stream));
        assert!(
            !events.is_empty(),
            "{}: every command of the story changes something",
            self.stream
        );
        for e in &events {
            self.state = std::mem::take(&mut self.state).evolve(e);
        }
        log.append(&self.stream, by, events).await
    }
}

/// The history, and the ids a test needs to name its rows.
pub struct Story {
    log: EventLog,
    pub org: Uuid,
    pub other_org: Uuid,
    pub ann: Uuid,
    pub bob: Uuid,
    pub cat: Uuid,
    pub zed: Uuid,
    pub yan: Uuid,
    orgs: BTreeMap<Uuid, Agg<Organization>>,
    projects: BTreeMap<&'static str, (Uuid, Agg<Project>)>,
    tasks: BTreeMap<String, Agg<Task>>,
    inboxes: BTreeMap<Uuid, Agg<Inbox>>,
    /// Every uuid of the story and its name, for readable rows.
    names: Vec<(Uuid, String)>,
    /// The event that caused each notification, by (cause, recipient).
    causes: BTreeMap<&'static str, Uuid>,
    /// Events appended per organization.
    pub events: BTreeMap<Uuid, usize>,
    /// The last event's position.
    pub head: LogPosition,
}

impl Story {
    /// Week 1: both organizations, their projects and the first tasks.
    pub async fn week_one(log: &EventLog) -> Self {
        let mut s = Story {
            log: log.clone(),
            org: Uuid::now_v7(),
            other_org: Uuid::now_v7(),
            ann: Uuid::now_v7(),
            bob: Uuid::now_v7(),
            cat: Uuid::now_v7(),
            zed: Uuid::now_v7(),
            yan: Uuid::now_v7(),
            orgs: BTreeMap::new(),
            projects: BTreeMap::new(),
            tasks: BTreeMap::new(),
            inboxes: BTreeMap::new(),
            names: Vec::new(),
            causes: BTreeMap::new(),
            events: BTreeMap::new(),
            head: LogPosition::START,
        };
        let (a, b) = (s.org, s.other_org);
        for (id, name) in [
            (a, "A"),
            (b, "B"),
            (s.ann, "ann"),
            (s.bob, "bob"),
            (s.cat, "cat"),
            (s.zed, "zed"),
            (s.yan, "yan"),
        ] {
            s.names.push((id, name.into()));
        }
        let (ann, bob, cat, zed, yan) = (s.ann, s.bob, s.cat, s.zed, s.yan);
        s.organization(a, "Acme", ann, "ann", &[(bob, "bob"), (cat, "cat")])
            .await;
        s.organization(b, "Other", zed, "zed", &[(yan, "yan")])
            .await;
        s.project(a, ann, "WEB", "Web").await;
        s.project(a, ann, "API", "Api").await;
        s.project(b, zed, "OPS", "Ops").await;

        let t1 = s.create(a, "WEB", (2, 9), Some(bob), None).await;
        s.causes.insert("WEB-1 assigned bob", t1);
        s.status(a, "WEB-1", (2, 10), "todo").await;
        s.status(a, "WEB-1", (3, 9), "in_progress").await;
        s.status(a, "WEB-1", (4, 9), "in_review").await;
        s.status(a, "WEB-1", (4, 15), "done").await;

        s.create(a, "WEB", (2, 11), Some(bob), None).await;
        s.status(a, "WEB-2", (3, 10), "todo").await;
        s.status(a, "WEB-2", (3, 11), "in_progress").await;
        s.assign(a, "WEB-2", (5, 9), cat).await;
        s.status(a, "WEB-2", (5, 12), "in_review").await;
        s.status(a, "WEB-2", (6, 12), "done").await;

        s.create(a, "WEB", (3, 9), None, None).await;
        s.status(a, "WEB-3", (3, 12), "todo").await;
        s.status(a, "WEB-3", (4, 12), "cancelled").await;

        let due = NaiveDate::from_ymd_opt(2026, 3, 5);
        s.create(a, "WEB", (3, 10), Some(cat), due).await;
        s.status(a, "WEB-4", (4, 10), "todo").await;
        s.task(a, "WEB-4", ann, (6, 10), TaskCommand::ArchiveTask)
            .await;

        s.read(a, bob, (2, 12), "WEB-1 assigned bob").await;

        s.create(b, "OPS", (2, 9), Some(yan), None).await;
        s.status(b, "OPS-1", (2, 10), "todo").await;
        s.status(b, "OPS-1", (3, 9), "in_progress").await;
        s.status(b, "OPS-1", (4, 9), "in_review").await;
        s.status(b, "OPS-1", (4, 15), "done").await;
        s
    }

    /// Week 2: more tasks, a reopening, comments and reads.
    pub async fn week_two(&mut self) {
        let (a, b) = (self.org, self.other_org);
        let (ann, bob, cat, zed, yan) = (self.ann, self.bob, self.cat, self.zed, self.yan);
        let due = NaiveDate::from_ymd_opt(2026, 3, 10);
        self.create(a, "WEB", (9, 9), Some(cat), due).await;
        self.status(a, "WEB-5", (9, 10), "todo").await;
        let c1 = Uuid::now_v7();
        let added = self
            .comment(
                a,
                "WEB-5",
                ann,
                (9, 12),
                c1,
                "@bob @cat look",
                vec![bob, cat],
            )
            .await;
        self.causes.insert("C1", added);
        self.task(
            a,
            "WEB-5",
            ann,
            (10, 8),
            TaskCommand::EditComment {
                comment_id: c1,
                editor: ann,
                body: "@bob @cat look again".into(),
                mentions: vec![bob, cat],
            },
        )
        .await;
        self.status(a, "WEB-5", (10, 9), "in_progress").await;

        self.create(a, "WEB", (9, 8), Some(cat), None).await;
        self.status(a, "WEB-6", (9, 9), "todo").await;
        self.status(a, "WEB-6", (9, 12), "in_progress").await;
        self.status(a, "WEB-6", (10, 12), "in_review").await;
        self.status(a, "WEB-6", (10, 15), "in_progress").await;
        self.status(a, "WEB-6", (11, 9), "in_review").await;
        self.status(a, "WEB-6", (12, 9), "done").await;

        self.create(a, "WEB", (10, 8), Some(bob), None).await;
        self.status(a, "WEB-7", (10, 9), "todo").await;
        self.status(a, "WEB-7", (10, 10), "in_progress").await;
        self.status(a, "WEB-7", (13, 10), "in_review").await;
        self.status(a, "WEB-7", (13, 14), "done").await;

        self.status(a, "WEB-1", (10, 9), "todo").await;
        self.status(a, "WEB-1", (10, 10), "in_progress").await;
        self.status(a, "WEB-1", (11, 10), "in_review").await;
        self.status(a, "WEB-1", (11, 16), "done").await;

        self.assign(a, "WEB-2", (12, 9), bob).await;

        let c2 = Uuid::now_v7();
        let added = self
            .comment(a, "WEB-5", bob, (11, 9), c2, "@ann ok", vec![ann])
            .await;
        self.causes.insert("C2", added);
        self.comment(a, "WEB-6", cat, (11, 10), Uuid::now_v7(), "on it", vec![])
            .await;
        self.task(
            a,
            "WEB-5",
            bob,
            (12, 9),
            TaskCommand::DeleteComment {
                comment_id: c2,
                by: bob,
                by_is_admin: false,
            },
        )
        .await;

        self.create(a, "API", (9, 10), None, None).await;
        self.status(a, "API-1", (9, 11), "todo").await;
        self.status(a, "API-1", (12, 10), "in_progress").await;
        self.status(a, "API-1", (13, 9), "in_review").await;
        self.status(a, "API-1", (13, 10), "done").await;

        self.create(a, "API", (10, 9), None, None).await;
        self.status(a, "API-2", (10, 10), "todo").await;
        self.status(a, "API-2", (10, 12), "in_progress").await;
        self.status(a, "API-2", (12, 10), "in_review").await;
        self.status(a, "API-2", (12, 12), "done").await;

        self.create(a, "API", (11, 9), None, None).await;

        self.read(a, cat, (10, 9), "C1").await;
        self.read(a, bob, (11, 8), "C1").await;
        self.read(a, ann, (11, 10), "C2").await;

        let added = self
            .comment(
                b,
                "OPS-1",
                zed,
                (9, 12),
                Uuid::now_v7(),
                "@yan see",
                vec![yan],
            )
            .await;
        self.causes.insert("OPS C", added);
        self.read(b, yan, (9, 13), "OPS C").await;
    }

    /// Both weeks.
    pub async fn write(log: &EventLog) -> Self {
        let mut s = Self::week_one(log).await;
        s.week_two().await;
        s
    }

    /// `text` with every uuid of the story replaced by its name.
    pub fn named(&self, text: &str) -> String {
        self.names.iter().fold(text.to_owned(), |t, (id, name)| {
            t.replace(&id.to_string(), name)
        })
    }

    pub fn task_id(&self, key: &str) -> Uuid {
        self.tasks[key].state.id
    }

    pub fn project_id(&self, key: &str) -> Uuid {
        self.projects[key].0
    }

    fn owner(&self, org: Uuid) -> Uuid {
        if org == self.org {
            self.ann
        } else {
            self.zed
        }
    }

    async fn append<A: Aggregate>(
        log: &EventLog,
        events: &mut BTreeMap<Uuid, usize>,
        head: &mut LogPosition,
        agg: &mut Agg<A>,
        by: By,
        command: A::Command,
    ) -> Appended {
        let appended = agg.run(log, by, command).await;
        *events.entry(by.org).or_default() += appended.event_ids.len();
        *head = (*head).max(appended.position);
        appended
    }

    async fn organization(
        &mut self,
        org: Uuid,
        name: &str,
        owner: Uuid,
        handle: &str,
        members: &[(Uuid, &str)],
    ) {
        let by = By {
            org,
            actor: owner,
            at: at(2, 8),
        };
        let mut agg = Agg::<Organization>::new(org);
        let command = OrgCommand::CreateOrganization {
            org_id: org,
            name: name.into(),
            owner_id: owner,
            owner_handle: handle.into(),
        };
        Self::append(
            &self.log,
            &mut self.events,
            &mut self.head,
            &mut agg,
            by,
            command,
        )
        .await;
        for (user, handle) in members {
            let command = OrgCommand::AddMember {
                by: owner,
                user_id: *user,
                handle: (*handle).into(),
                role: Role::Member,
            };
            Self::append(
                &self.log,
                &mut self.events,
                &mut self.head,
                &mut agg,
                by,
                command,
            )
            .await;
        }
        self.orgs.insert(org, agg);
    }

    async fn project(&mut self, org: Uuid, owner: Uuid, key: &'static str, name: &str) {
        let by = By {
            org,
            actor: owner,
            at: at(2, 8),
        };
        let id = Uuid::now_v7();
        let register = OrgCommand::RegisterProjectKey {
            project_id: id,
            key: key.into(),
        };
        let org_agg = self.orgs.get_mut(&org).unwrap();
        Self::append(
            &self.log,
            &mut self.events,
            &mut self.head,
            org_agg,
            by,
            register,
        )
        .await;
        let mut agg = Agg::<Project>::new(id);
        let create = ProjectCommand::CreateProject {
            project_id: id,
            org_id: org,
            name: name.into(),
            key: key.into(),
        };
        Self::append(
            &self.log,
            &mut self.events,
            &mut self.head,
            &mut agg,
            by,
            create,
        )
        .await;
        self.projects.insert(key, (id, agg));
        self.names.push((id, key.into()));
    }

    /// Creates a task in `project` (number reserved first, as the command
    /// API does) and assigns it; returns the assignment's event id.
    async fn create(
        &mut self,
        org: Uuid,
        project: &'static str,
        (day, hour): (u32, u32),
        assignee: Option<Uuid>,
        due_date: Option<NaiveDate>,
    ) -> Uuid {
        let owner = self.owner(org);
        let by = By {
            org,
            actor: owner,
            at: at(day, hour),
        };
        let task_id = Uuid::now_v7();
        let (project_id, agg) = self.projects.get_mut(project).unwrap();
        let project_id = *project_id;
        let reserve = ProjectCommand::ReserveTaskNumber { task_id };
        Self::append(
            &self.log,
            &mut self.events,
            &mut self.head,
            agg,
            by,
            reserve,
        )
        .await;
        let number = agg.state.next_task_number - 1;
        let key = format!("{project}-{number}");
        let mut task = Agg::<Task>::new(task_id);
        let create = TaskCommand::CreateTask {
            task_id,
            org_id: org,
            project_id,
            number,
            project_key: project.into(),
            title: format!("Task {key}"),
            description: String::new(),
            priority: Priority::Medium,
            due_date,
            workflow: agg.state.workflow.clone(),
            created_by: owner,
        };
        Self::append(
            &self.log,
            &mut self.events,
            &mut self.head,
            &mut task,
            by,
            create,
        )
        .await;
        self.names.push((task_id, key.clone()));
        self.tasks.insert(key.clone(), task);
        match assignee {
            Some(user) => self.assign(org, &key, (day, hour), user).await,
            None => Uuid::nil(),
        }
    }

    async fn task(
        &mut self,
        org: Uuid,
        key: &str,
        actor: Uuid,
        (day, hour): (u32, u32),
        command: TaskCommand,
    ) -> Uuid {
        let by = By {
            org,
            actor,
            at: at(day, hour),
        };
        let agg = self.tasks.get_mut(key).unwrap();
        Self::append(
            &self.log,
            &mut self.events,
            &mut self.head,
            agg,
            by,
            command,
        )
        .await
        .event_ids[0]
    }

    async fn assign(&mut self, org: Uuid, key: &str, when: (u32, u32), assignee: Uuid) -> Uuid {
        let owner = self.owner(org);
        let command = TaskCommand::AssignTask {
            assignee,
            assignee_is_member: true,
        };
        self.task(org, key, owner, when, command).await
    }

    async fn status(&mut self, org: Uuid, key: &str, when: (u32, u32), to: &str) {
        let owner = self.owner(org);
        let command = TaskCommand::ChangeTaskStatus {
            to: to.into(),
            workflow: Workflow::default_workflow(),
        };
        self.task(org, key, owner, when, command).await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn comment(
        &mut self,
        org: Uuid,
        key: &str,
        author: Uuid,
        when: (u32, u32),
        comment_id: Uuid,
        body: &str,
        mentions: Vec<Uuid>,
    ) -> Uuid {
        let command = TaskCommand::AddComment {
            comment_id,
            author,
            body: body.into(),
            mentions,
        };
        self.task(org, key, author, when, command).await
    }

    /// `user` marks read the notification `cause` sent them.
    async fn read(&mut self, org: Uuid, user: Uuid, (day, hour): (u32, u32), cause: &str) {
        let by = By {
            org,
            actor: user,
            at: at(day, hour),
        };
        let command = InboxCommand::MarkNotificationRead {
            notification_id: notification_id(self.causes[cause], user),
        };
        let inbox = self.inboxes.entry(user).or_insert_with(|| Agg::new(user));
        Self::append(
            &self.log,
            &mut self.events,
            &mut self.head,
            inbox,
            by,
            command,
        )
        .await;
    }
}

/// Steps the real analytics projection (its first generation in `pool`'s
/// database, writing to `config`'s ClickHouse databases) until it has
/// applied `target`.
pub async fn project(
    pool: &PgPool,
    log: &EventLog,
    config: &ClickHouseConfig,
    target: LogPosition,
) {
    let analytics: Arc<dyn Projection> = Arc::new(Analytics::new(config).unwrap());
    let g = generation::ensure_active(pool, analytics.as_ref())
        .await
        .unwrap();
    let projector = Projector::new(
        pool.clone(),
        log.store(),
        analytics,
        ProjectorConfig::default(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let outcome = projector.project_next_batch(g, true).await.unwrap();
        assert_eq!(outcome.parked, 0, "nothing is parked");
        if outcome.position >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the analytics projection reaches {target}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
