//! `tasklog generate`: writes a realistic, valid event log straight into the
//! `events` table with `COPY`, fast, for benchmarks and load tests.
//!
//! Every row is what the command API would have stored for the same
//! commands. The generator only chooses commands (who does what, when, with
//! which text); each event is what the aggregate's `decide` makes of its
//! command, and each stream keeps its aggregate's state by `evolve`, so the
//! domain alone says what is valid: keys are registered before their project,
//! task numbers reserved from the project before the task (whose key the
//! domain formats), statuses move only as the project's workflow allows, and
//! mentions are resolved from the comment's text. Payloads are encoded with
//! `encode_event`, streams named by `stream_name`, versions count up from 1
//! per stream, and `hash` is chained exactly as `append_events` does
//! (`chain_hash(prev, version, content_hash)`). Ids are UUID v7 stamped with
//! the event's time; times are spread over the last [`GenerateOptions::days`]
//! days. The same seed and end time give the same log.
//!
//! Shape per organization: `OrganizationCreated` and ~10 `MemberAdded`;
//! 3 projects (`ProjectKeyRegistered` on the org stream, `ProjectCreated`,
//! one `TaskNumberReserved` per task); ~8 `TagCreated`; then tasks,
//! interleaved over all organizations: `TaskCreated`, then a few of
//! `TaskStatusChanged` (onward along the workflow, sometimes back, rarely
//! cancelled), `CommentAdded` (some with an `@mention`), `TaskAssigned`,
//! `TaskTagAdded` and `TaskDetailsEdited`.
//!
//! Rows are written in chunks, one `COPY` (one transaction) each, in order,
//! so the log's reading order (transaction id, position) is the order the
//! commands were generated in: every event comes after the ones it needs.
//! Generating runs on its own thread while the previous chunk is copied.

use std::iter;
use std::time::Instant;

use anyhow::Context as _;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tasklog_domain::{
    encode_event, mentioned_handles, stream_name, Aggregate, DomainEvent, OrgCommand, Organization,
    Priority, Project, ProjectCommand, ProjectEvent, Role, StatusCategory, TagCatalog, TagCommand,
    Task, TaskCommand, TaskEvent, Workflow,
};
use tasklog_event_store::hash::{
    chain_hash, content_hash_v2, salts_with, to_micros, HashInput, HashScheme, Salt, Salts,
};
use tasklog_event_store::EventMetadata;
use tasklog_event_store_postgres::bulk::{self, BulkRow, CopyChunk};
use uuid::Uuid;

/// Active (still changing) tasks kept per organization; new tasks are
/// created while an organization has fewer.
const ACTIVE_TASKS_PER_ORG: usize = 30;
/// Follow-up events per task on average when only an event budget is given.
const DEFAULT_FOLLOW_UPS: f64 = 4.0;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Organizations.
    pub orgs: usize,
    /// Events in all (the budget; may be raised to fit `tasks`).
    pub events: usize,
    /// Exactly this many tasks, when set; the events left over after their
    /// creation (two events each) become follow-ups. Unset: tasks are created
    /// as the budget allows (about one per six events).
    pub tasks: Option<usize>,
    /// The PRNG's seed.
    pub seed: u64,
    /// The last event's time; events are spread over `days` before it.
    pub end: DateTime<Utc>,
    pub days: u32,
    /// Rows per COPY (and per transaction).
    pub chunk_rows: usize,
}

impl GenerateOptions {
    /// `orgs` organizations and `events` events, seed 42, ending at the start of today (UTC).
    pub fn new(orgs: usize, events: usize) -> Self {
        let today = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight");
        Self {
            orgs,
            events,
            tasks: None,
            seed: 42,
            end: today.and_utc(),
            days: 30,
            chunk_rows: 50_000,
        }
    }
}

/// A member of a generated organization.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedMember {
    pub user_id: Uuid,
    pub handle: String,
    pub role: Role,
}

/// A generated project.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedProject {
    pub project_id: Uuid,
    pub name: String,
    pub key: String,
    pub tasks: u64,
}

/// A generated organization: what a benchmark needs to query it.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedOrg {
    pub org_id: Uuid,
    pub name: String,
    /// The owner first.
    pub members: Vec<GeneratedMember>,
    pub projects: Vec<GeneratedProject>,
    pub tags: Vec<Uuid>,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    pub events: u64,
    pub tasks: u64,
    pub comments: u64,
    pub chunks: u64,
    pub seconds: f64,
    pub orgs: Vec<GeneratedOrg>,
}

impl GenerateReport {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

/// Generates `orgs` organizations and about `events` events into the
/// database of `pool` (connect as the schema owner). `progress` gets the
/// number of rows written after each chunk.
pub async fn generate(
    pool: &PgPool,
    orgs: usize,
    events: usize,
    progress: impl Fn(u64),
) -> anyhow::Result<GenerateReport> {
    generate_with(pool, &GenerateOptions::new(orgs, events), progress).await
}

/// [`generate`] with every option.
pub async fn generate_with(
    pool: &PgPool,
    options: &GenerateOptions,
    progress: impl Fn(u64),
) -> anyhow::Result<GenerateReport> {
    anyhow::ensure!(options.orgs > 0, "at least one organization");
    anyhow::ensure!(options.chunk_rows > 0, "chunks need at least one row");
    let started = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<CopyChunk>(2);
    let generator = Generator::new(options.clone(), tx);
    let producer = tokio::task::spawn_blocking(move || generator.run());
    // A failed COPY drops the receiver, which stops the producer.
    let copied = bulk::copy_chunks(pool, rx, progress).await;
    let produced = producer.await?;
    let copied = copied?;
    let mut report = produced?;
    let (written, chunks) = (copied.rows, copied.chunks);
    report.chunks = chunks;
    report.seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        written == report.events,
        "wrote {written} rows of {} generated",
        report.events
    );
    Ok(report)
}

/// `tasklog generate`: connects as the schema owner and prints what it wrote.
pub async fn cli(admin_database_url: &str, options: GenerateOptions) -> anyhow::Result<()> {
    let pool = crate::connect(admin_database_url, 2).await?;
    let total = options.events.max(options.tasks.unwrap_or(0) * 2) as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "generating [{bar:40}] {pos}/{len} events, {per_sec}, ETA {eta} ({elapsed})",
        )?
        .progress_chars("=> "),
    );
    let report = generate_with(&pool, &options, |n| {
        bar.set_length(bar.length().unwrap_or(0).max(n));
        bar.set_position(n);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "{} events ({} tasks, {} comments) in {} organizations in {:.1} s ({:.0} events/s, {} COPY chunks)",
        report.events,
        report.tasks,
        report.comments,
        report.orgs.len(),
        report.seconds,
        report.events_per_second(),
        report.chunks
    );
    Ok(())
}

/// Salts for a generated event's personal fields, derived from its id and
/// field so that the same seed gives the same log (generated text is not
/// anyone's personal data; the store's appends draw random salts).
fn generated_salts(event_id: Uuid, payload: &serde_json::Value, personal: &[&str]) -> Salts {
    salts_with(payload, personal, |path| {
        Salt(
            Sha256::new()
                .chain_update(b"tasklog-generate-salt\n")
                .chain_update(event_id.as_bytes())
                .chain_update(path.as_bytes())
                .finalize()
                .into(),
        )
    })
}

/// splitmix64: small, fast, good enough to shape test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A UUID v7 for `at`, its random bits from this generator.
    fn v7(&mut self, at: DateTime<Utc>) -> Uuid {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next().to_le_bytes());
        random[8..].copy_from_slice(&self.next().to_le_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis().max(0) as u64, &random)
            .into_uuid()
    }

    /// Ids for the events of one command: UUID v7s for `at`, drawn as needed.
    fn ids(&mut self, at: DateTime<Utc>) -> impl Iterator<Item = Uuid> + '_ {
        std::iter::repeat_with(move || self.v7(at))
    }
}

/// One aggregate's stream: its name, version and last hash, and the state its
/// events fold into (what `decide` sees next).
struct Stream<A> {
    id: String,
    version: u64,
    hash: Option<Vec<u8>>,
    state: A,
}

impl<A: Aggregate> Stream<A> {
    fn new(id: Uuid) -> Self {
        Self {
            id: stream_name::<A>(id),
            version: 0,
            hash: None,
            state: A::default(),
        }
    }
}

/// Builds COPY rows and hands full chunks to the writer.
struct Sink {
    tx: tokio::sync::mpsc::Sender<CopyChunk>,
    chunk_rows: usize,
    chunk: CopyChunk,
    total: u64,
}

impl Sink {
    /// Runs `command` through the aggregate's `decide` and appends the events
    /// it yields, each folded into the stream's state with `evolve`: the domain
    /// alone says what happens. Each event takes the next of `event_ids`.
    fn execute<A: Aggregate>(
        &mut self,
        stream: &mut Stream<A>,
        command: A::Command,
        meta: &EventMetadata,
        mut event_ids: impl Iterator<Item = Uuid>,
    ) -> anyhow::Result<Vec<A::Event>> {
        let events = stream
            .state
            .decide(command)
            .with_context(|| format!("the domain refused a generated command on {}", stream.id))?;
        for event in &events {
            let event_id = event_ids.next().context("no id left for an event")?;
            self.emit(stream, event_id, event, meta)?;
            stream.state = std::mem::take(&mut stream.state).evolve(event);
        }
        Ok(events)
    }

    /// Appends one event to `stream`, chained like `append_events`.
    fn emit<A: Aggregate>(
        &mut self,
        stream: &mut Stream<A>,
        event_id: Uuid,
        event: &A::Event,
        meta: &EventMetadata,
    ) -> anyhow::Result<()> {
        let (event_type, payload) = encode_event(event);
        let salts = generated_salts(event_id, &payload, event.personal_fields());
        let content = content_hash_v2(
            &HashInput {
                event_id,
                stream_id: &stream.id,
                event_type,
                schema_version: event.schema_version(),
                metadata: meta,
                payload: &payload,
            },
            &salts,
        )?;
        stream.version += 1;
        let hash = chain_hash(stream.hash.as_deref(), stream.version, &content);

        self.chunk.push(&BulkRow {
            event_id,
            stream_id: &stream.id,
            stream_version: stream.version,
            event_type,
            schema_version: event.schema_version(),
            metadata: meta,
            payload: &payload,
            prev_hash: stream.hash.as_deref(),
            hash: &hash,
            hash_scheme: HashScheme::V2,
            salts: &salts,
        })?;
        stream.hash = Some(hash);
        self.total += 1;
        if self.chunk.rows as usize >= self.chunk_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.chunk.rows == 0 {
            return Ok(());
        }
        self.tx
            .blocking_send(self.chunk.take())
            .map_err(|_| anyhow::anyhow!("the COPY writer stopped"))
    }
}

const HANDLES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara", "zoe",
    "quinn", "uma", "xena",
];
const ORG_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Wonka",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Aperture",
    "Massive",
    "Dunder",
    "Pied Piper",
];
const ORG_SUFFIXES: &[&str] = &["Labs", "Inc", "Group", "Systems", "Works", "Software"];
const PROJECTS: &[(&str, &str)] = &[
    ("Website", "WEB"),
    ("Backend API", "API"),
    ("Operations", "OPS"),
    ("Mobile app", "MOB"),
    ("Data platform", "DATA"),
    ("Design system", "DS"),
    ("Billing", "BILL"),
    ("Infrastructure", "INFRA"),
];
const TAGS: &[(&str, Option<&str>)] = &[
    ("bug", Some("#d73a4a")),
    ("feature", Some("#a2eeef")),
    ("docs", Some("#0075ca")),
    ("tech-debt", None),
    ("security", Some("#b60205")),
    ("performance", Some("#fbca04")),
    ("ux", Some("#c5def5")),
    ("infra", None),
    ("customer", Some("#5319e7")),
    ("good first issue", Some("#7057ff")),
];
const VERBS: &[&str] = &[
    "Fix",
    "Add",
    "Remove",
    "Refactor",
    "Investigate",
    "Document",
    "Speed up",
    "Migrate",
    "Test",
    "Redesign",
];
const THINGS: &[&str] = &[
    "login page",
    "billing export",
    "search index",
    "onboarding flow",
    "CSV import",
    "rate limiter",
    "dark mode",
    "audit log",
    "email notifications",
    "API pagination",
    "password reset",
    "dashboard charts",
    "webhook retries",
    "user settings",
    "release pipeline",
    "cache invalidation",
];
const WHERE: &[&str] = &[
    "",
    "",
    " on mobile",
    " for admins",
    " in the EU region",
    " after the upgrade",
    " for large teams",
];
const DESCRIPTIONS: &[&str] = &[
    "",
    "",
    "Steps to reproduce are in the linked support ticket.",
    "Customers have asked for this several times this quarter.",
    "Keep the change small; we can iterate after the release.",
    "The current behaviour is confusing and slow. Measure before and after.",
    "Follow the design in the spec; ping design if anything is unclear.",
    "Happens intermittently, roughly once a day in production.",
];
const COMMENTS: &[&str] = &[
    "Looks good to me.",
    "I can take this one.",
    "Blocked on the API change, will pick it up after.",
    "Pushed a fix, please review.",
    "Can we split this into smaller tasks?",
    "Reproduced on staging.",
    "This is more work than estimated, moving the due date.",
    "Added tests for the edge cases.",
    "Not sure this is still needed, thoughts?",
    "Deployed to production, monitoring.",
];

/// An organization as generated: its streams, and the order things were
/// made in (the aggregates keep them by id), which the random picks index.
struct Org {
    stream: Stream<Organization>,
    tags_stream: Stream<TagCatalog>,
    /// Member ids in the order they joined, the owner first.
    members: Vec<Uuid>,
    /// Indexes into `members` of those who may change tasks.
    writers: Vec<usize>,
    projects: Vec<Stream<Project>>,
    /// Tag ids in the order they were created.
    tags: Vec<Uuid>,
}

impl Org {
    /// The writer `pick` lands on.
    fn writer(&self, pick: usize) -> Uuid {
        self.members[self.writers[pick % self.writers.len()]]
    }

    /// The members `body` mentions, as the command API resolves them.
    fn mentioned(&self, body: &str) -> Vec<Uuid> {
        mentioned_handles(body)
            .iter()
            .filter_map(|handle| self.stream.state.member_by_handle(handle))
            .collect()
    }
}

/// A task that still gets follow-ups.
struct ActiveTask {
    stream: Stream<Task>,
    /// Its project, an index into `Org::projects`.
    project: usize,
    follow_ups: u32,
}

struct Generator {
    options: GenerateOptions,
    rng: Rng,
    sink: Sink,
    orgs: Vec<Org>,
    /// Tasks that still get follow-ups, per organization (indexed like `orgs`).
    active_tasks: Vec<Vec<ActiveTask>>,
    start: DateTime<Utc>,
    span_micros: f64,
    /// Events the clock spreads over.
    planned: u64,
    budget: u64,
    tasks_created: u64,
    comments: u64,
    /// Follow-ups still planned on active tasks.
    planned_follow_ups: u64,
    active: usize,
}

impl Generator {
    fn new(options: GenerateOptions, tx: tokio::sync::mpsc::Sender<CopyChunk>) -> Self {
        let start = options.end - Duration::days(i64::from(options.days.max(1)));
        let span_micros = (options.end - start).num_microseconds().unwrap_or(0) as f64;
        Self {
            rng: Rng(options.seed ^ 0x7461_736B_6C6F_6721),
            sink: Sink {
                tx,
                chunk_rows: options.chunk_rows,
                chunk: CopyChunk {
                    data: String::with_capacity(options.chunk_rows * 700),
                    rows: 0,
                    salts: String::new(),
                },
                total: 0,
            },
            orgs: Vec::with_capacity(options.orgs),
            active_tasks: Vec::with_capacity(options.orgs),
            start,
            span_micros,
            // Fixed up front so times never go back.
            planned: options
                .events
                .max(options.tasks.unwrap_or(0) * 2 + options.orgs * 26)
                .max(1) as u64,
            budget: options.events as u64,
            tasks_created: 0,
            comments: 0,
            planned_follow_ups: 0,
            active: 0,
            options,
        }
    }

    /// The time of the next command: evenly along the span, never going back.
    fn now(&mut self) -> DateTime<Utc> {
        let done = (self.sink.total as f64 / self.planned as f64).min(1.0);
        let jitter = self.rng.below(1000) as f64;
        let micros = (done * self.span_micros + jitter).min(self.span_micros) as i64;
        to_micros(self.start + Duration::microseconds(micros))
    }

    fn meta(&mut self, org_id: Uuid, actor: Uuid, at: DateTime<Utc>) -> EventMetadata {
        EventMetadata {
            org_id,
            actor_id: Some(actor),
            correlation_id: self.rng.v7(at),
            causation_id: None,
            occurred_at: at,
        }
    }

    fn run(mut self) -> anyhow::Result<GenerateReport> {
        for _ in 0..self.options.orgs {
            self.create_org()?;
        }
        let setup = self.sink.total;
        if let Some(tasks) = self.options.tasks {
            self.budget = self.budget.max(setup + 2 * tasks as u64);
        }
        loop {
            let remaining = self.budget.saturating_sub(self.sink.total);
            let creates_left = match self.options.tasks {
                Some(n) => (n as u64).saturating_sub(self.tasks_created),
                None => u64::MAX,
            };
            // Done when the budget is spent (and, with a task count, every task exists).
            if remaining == 0 && (creates_left == 0 || self.options.tasks.is_none()) {
                break;
            }
            let can_create = creates_left > 0 && (remaining >= 2 || self.options.tasks.is_some());
            if !can_create && self.active == 0 {
                break;
            }
            let o = self.rng.below(self.orgs.len());
            let org_active = self.active_tasks[o].len();
            if can_create && (org_active < ACTIVE_TASKS_PER_ORG || self.active == 0) {
                self.create_task(o, creates_left)?;
            } else if org_active > 0 {
                self.follow_up(o)?;
            }
        }
        self.sink.flush()?;
        Ok(self.report())
    }

    fn report(&self) -> GenerateReport {
        GenerateReport {
            events: self.sink.total,
            tasks: self.tasks_created,
            comments: self.comments,
            chunks: 0,
            seconds: 0.0,
            orgs: self
                .orgs
                .iter()
                .map(|o| GeneratedOrg {
                    org_id: o.stream.state.id,
                    name: o.stream.state.name.clone(),
                    members: o
                        .members
                        .iter()
                        .map(|id| {
                            let member = &o.stream.state.members[id];
                            GeneratedMember {
                                user_id: *id,
                                handle: member.handle.clone(),
                                role: member.role,
                            }
                        })
                        .collect(),
                    projects: o
                        .projects
                        .iter()
                        .map(|p| GeneratedProject {
                            project_id: p.state.id,
                            name: p.state.name.clone(),
                            key: p.state.key.clone(),
                            tasks: p.state.next_task_number - 1,
                        })
                        .collect(),
                    tags: o.tags.clone(),
                })
                .collect(),
        }
    }

    /// `k` distinct indexes of `0..n`, in random order.
    fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in 0..k.min(n) {
            let j = i + self.rng.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }

    fn create_org(&mut self) -> anyhow::Result<()> {
        let at = self.now();
        let org_id = self.rng.v7(at);
        let owner_id = self.rng.v7(at);
        let members_count = 8 + self.rng.below(5);
        let handles: Vec<String> = self
            .distinct(HANDLES.len(), members_count + 1)
            .into_iter()
            .map(|i| HANDLES[i].to_owned())
            .collect();
        let name = format!(
            "{} {}",
            self.rng.pick(ORG_WORDS),
            self.rng.pick(ORG_SUFFIXES)
        );
        let mut org = Org {
            stream: Stream::new(org_id),
            tags_stream: Stream::new(org_id),
            members: vec![owner_id],
            writers: Vec::new(),
            projects: Vec::new(),
            tags: Vec::new(),
        };
        let meta = self.meta(org_id, owner_id, at);
        let create = OrgCommand::CreateOrganization {
            org_id,
            name,
            owner_id,
            owner_handle: handles[0].clone(),
        };
        self.sink
            .execute(&mut org.stream, create, &meta, self.rng.ids(at))?;

        for (i, handle) in handles.iter().enumerate().skip(1) {
            let role = match i {
                1 => Role::Admin,
                _ if i == members_count && self.rng.chance(0.5) => Role::Viewer,
                _ => Role::Member,
            };
            let at = self.now();
            let user_id = self.rng.v7(at);
            let meta = self.meta(org_id, owner_id, at);
            let add = OrgCommand::AddMember {
                by: owner_id,
                user_id,
                handle: handle.clone(),
                role,
            };
            self.sink
                .execute(&mut org.stream, add, &meta, self.rng.ids(at))?;
            org.members.push(user_id);
        }
        let roles = &org.stream.state;
        org.writers = (0..org.members.len())
            .filter(|&i| roles.role_of(org.members[i]).is_some_and(Role::can_write))
            .collect();

        for p in self.distinct(PROJECTS.len(), 3) {
            let (name, key) = PROJECTS[p];
            let at = self.now();
            let project_id = self.rng.v7(at);
            // The owner or the admin.
            let admin = org.members[self.rng.below(2)];
            let meta = self.meta(org_id, admin, at);
            // The key is registered with the organization first, then the project created under it.
            let register = OrgCommand::RegisterProjectKey {
                project_id,
                key: key.to_owned(),
            };
            self.sink
                .execute(&mut org.stream, register, &meta, self.rng.ids(at))?;
            let mut project = Stream::new(project_id);
            let create = ProjectCommand::CreateProject {
                project_id,
                org_id,
                name: name.to_owned(),
                key: key.to_owned(),
            };
            self.sink
                .execute(&mut project, create, &meta, self.rng.ids(at))?;
            org.projects.push(project);
        }

        for t in self.distinct(TAGS.len(), 8) {
            let (name, color) = TAGS[t];
            let at = self.now();
            let tag_id = self.rng.v7(at);
            let actor = org.writer(self.rng.below(org.writers.len()));
            let meta = self.meta(org_id, actor, at);
            let create = TagCommand::CreateTag {
                tag_id,
                name: name.to_owned(),
                color: color.map(str::to_owned),
            };
            self.sink
                .execute(&mut org.tags_stream, create, &meta, self.rng.ids(at))?;
            org.tags.push(tag_id);
        }
        self.orgs.push(org);
        self.active_tasks.push(Vec::new());
        Ok(())
    }

    fn title(&mut self) -> String {
        format!(
            "{} {}{}",
            self.rng.pick(VERBS),
            self.rng.pick(THINGS),
            self.rng.pick(WHERE)
        )
    }

    fn priority(&mut self) -> Priority {
        match self.rng.below(100) {
            0..=29 => Priority::None,
            30..=49 => Priority::Low,
            50..=74 => Priority::Medium,
            75..=92 => Priority::High,
            _ => Priority::Urgent,
        }
    }

    fn due_date(&mut self, at: DateTime<Utc>) -> NaiveDate {
        at.date_naive() + Duration::days(self.rng.below(60) as i64 - 5)
    }

    /// How many follow-up events a new task gets.
    fn follow_ups_for_new_task(&mut self, creates_left: u64) -> u32 {
        let mean = match self.options.tasks {
            None => DEFAULT_FOLLOW_UPS,
            Some(_) => {
                let spare = self
                    .budget
                    .saturating_sub(self.sink.total)
                    .saturating_sub(2 * creates_left)
                    .saturating_sub(self.planned_follow_ups);
                spare as f64 / creates_left.max(1) as f64
            }
        };
        if mean < 0.5 {
            u32::from(self.rng.chance(mean))
        } else {
            self.rng.below((2.0 * mean) as usize + 1) as u32
        }
    }

    fn create_task(&mut self, o: usize, creates_left: u64) -> anyhow::Result<()> {
        let at = self.now();
        let follow_ups = self.follow_ups_for_new_task(creates_left);
        let title = self.title();
        let description = self.rng.pick(DESCRIPTIONS).to_string();
        let priority = self.priority();
        let due_date = self.rng.chance(0.35).then(|| self.due_date(at));
        let p = match self.rng.below(10) {
            0..=4 => 0,
            5..=7 => 1,
            _ => 2,
        };
        let org = &self.orgs[o];
        let org_id = org.stream.state.id;
        let actor = org.writer(self.rng.below(org.writers.len()));
        let task_id = self.rng.v7(at);
        let meta = self.meta(org_id, actor, at);
        // The project hands out the next number, then the task is created under it.
        let project = &mut self.orgs[o].projects[p];
        let reserve = ProjectCommand::ReserveTaskNumber { task_id };
        let reserved = self
            .sink
            .execute(project, reserve, &meta, self.rng.ids(at))?;
        let number = reserved
            .iter()
            .find_map(|event| match event {
                ProjectEvent::TaskNumberReserved(r) if r.task_id == task_id => Some(r.number),
                _ => None,
            })
            .context("no task number was reserved")?;
        let mut task = Stream::new(task_id);
        let create = TaskCommand::CreateTask {
            task_id,
            org_id,
            project_id: project.state.id,
            number,
            project_key: project.state.key.clone(),
            title,
            description,
            priority,
            due_date,
            workflow: project.state.workflow.clone(),
            created_by: actor,
        };
        self.sink
            .execute(&mut task, create, &meta, self.rng.ids(at))?;
        self.tasks_created += 1;
        if follow_ups > 0 {
            self.active_tasks[o].push(ActiveTask {
                stream: task,
                project: p,
                follow_ups,
            });
            self.active += 1;
            self.planned_follow_ups += u64::from(follow_ups);
        }
        Ok(())
    }

    /// One more change to an active task of organization `o`.
    fn follow_up(&mut self, o: usize) -> anyhow::Result<()> {
        let at = self.now();
        let t = self.rng.below(self.active_tasks[o].len());
        let roll = self.rng.below(100);
        let title = self.title();
        let new_priority = self.priority();
        let new_due = self.due_date(at);
        let comment = *self.rng.pick(COMMENTS);
        let mention = self.rng.chance(0.25);
        let cancel = self.rng.chance(0.04);
        let back = self.rng.chance(0.15);
        let r1 = self.rng.next() as usize;
        let r2 = self.rng.next() as usize;
        let correlation_id = self.rng.v7(at);
        let event_id = self.rng.v7(at);
        let comment_id = self.rng.v7(at);

        let org = &self.orgs[o];
        let actor_index = org.writers[r1 % org.writers.len()];
        let actor = org.members[actor_index];
        let meta = EventMetadata {
            org_id: org.stream.state.id,
            actor_id: Some(actor),
            correlation_id,
            causation_id: None,
            occurred_at: at,
        };
        let active = &mut self.active_tasks[o];
        let task = &mut active[t];
        let state = &task.stream.state;
        let workflow = &org.projects[task.project].state.workflow;
        let next_status = (roll < 35 && state.status_category.is_open())
            .then(|| next_status(workflow, &state.status, cancel, back))
            .flatten();
        // status 35, comment 30, assign 15, tag 10, edit 10; else a comment.
        let change = if let Some(to) = next_status {
            Some(TaskCommand::ChangeTaskStatus {
                to: to.to_owned(),
                workflow: workflow.clone(),
            })
        } else if (65..80).contains(&roll) {
            let mut assignee = org.writer(r2);
            if Some(assignee) == state.assignee {
                assignee = org.writer(r2 + 1);
            }
            Some(TaskCommand::AssignTask {
                assignee,
                assignee_is_member: org.stream.state.is_member(assignee),
            })
        } else if (80..90).contains(&roll) && state.tags.len() < org.tags.len() {
            let mut i = r2 % org.tags.len();
            while state.tags.contains(&org.tags[i]) {
                i = (i + 1) % org.tags.len();
            }
            Some(TaskCommand::AddTag {
                tag_id: org.tags[i],
                tag_exists: org.tags_stream.state.contains(org.tags[i]),
            })
        } else if roll >= 90 {
            let (title, priority, due_date) = match r2 % 3 {
                0 if title != state.title => (Some(title), None, None),
                1 if new_priority != state.priority => (None, Some(new_priority), None),
                _ => match state.due_date {
                    Some(due) if due == new_due => (None, None, Some(None)),
                    _ => (None, None, Some(Some(new_due))),
                },
            };
            Some(TaskCommand::EditTaskDetails {
                title,
                description: None,
                priority,
                due_date,
            })
        } else {
            None
        };
        let mut events = match change {
            Some(command) => {
                self.sink
                    .execute(&mut task.stream, command, &meta, iter::once(event_id))?
            }
            None => Vec::new(),
        };
        if events.is_empty() {
            // Nothing else applied (or it changed nothing): a comment.
            let others: Vec<Uuid> = (0..org.members.len())
                .filter(|&i| i != actor_index)
                .map(|i| org.members[i])
                .collect();
            let body = if mention && !others.is_empty() {
                let handle = &org.stream.state.members[&others[r2 % others.len()]].handle;
                if r2.is_multiple_of(2) {
                    format!("@{handle} {comment}")
                } else {
                    format!("{comment} cc @{handle}")
                }
            } else {
                comment.to_owned()
            };
            let add = TaskCommand::AddComment {
                comment_id,
                author: actor,
                mentions: org.mentioned(&body),
                body,
            };
            events = self
                .sink
                .execute(&mut task.stream, add, &meta, iter::once(event_id))?;
        }
        self.comments += events
            .iter()
            .filter(|event| matches!(event, TaskEvent::CommentAdded(_)))
            .count() as u64;
        task.follow_ups -= 1;
        self.planned_follow_ups -= 1;
        if task.follow_ups == 0 {
            active.swap_remove(t);
            self.active -= 1;
        }
        Ok(())
    }
}

/// Where an open task in `from` moves: the first status the workflow allows
/// (onward), another it allows when `back`, a cancelled one when `cancel`.
fn next_status<'w>(
    workflow: &'w Workflow,
    from: &str,
    cancel: bool,
    back: bool,
) -> Option<&'w str> {
    let allowed = workflow
        .transitions
        .iter()
        .filter(|(f, _)| f == from)
        .map(|(_, to)| to.as_str());
    let cancels = |to: &&str| workflow.category_of(to) == Some(StatusCategory::Cancelled);
    if cancel {
        if let Some(to) = allowed.clone().find(cancels) {
            return Some(to);
        }
    }
    let mut onward = allowed.filter(|to| !cancels(to));
    let first = onward.next()?;
    Some(if back {
        onward.next().unwrap_or(first)
    } else {
        first
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tasklog_domain::{decode_event, OrgEvent, TagEvent};

    use super::*;

    fn generate_in_memory(options: GenerateOptions) -> (GenerateReport, Vec<String>) {
        let (report, rows, _) = generate_with_salts(options);
        (report, rows)
    }

    /// The COPY rows, and the salts rows by event id.
    fn generate_with_salts(
        options: GenerateOptions,
    ) -> (GenerateReport, Vec<String>, HashMap<Uuid, Salts>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let report = std::thread::spawn(move || Generator::new(options, tx).run())
            .join()
            .expect("generator thread")
            .expect("generated");
        let (mut rows, mut salts) = (Vec::new(), HashMap::new());
        while let Ok(chunk) = rx.try_recv() {
            rows.extend(chunk.data.lines().map(str::to_owned));
            for line in chunk.salts.lines() {
                let (id, json) = line.split_once('\t').expect("two fields");
                salts.insert(id.parse().unwrap(), serde_json::from_str(json).unwrap());
            }
        }
        (report, rows, salts)
    }

    fn options(orgs: usize, events: usize) -> GenerateOptions {
        GenerateOptions {
            end: DateTime::from_timestamp(1_800_000_000, 0).expect("a time"),
            chunk_rows: 1000,
            ..GenerateOptions::new(orgs, events)
        }
    }

    #[test]
    fn the_event_budget_is_met_and_the_log_is_deterministic() {
        let (report, rows) = generate_in_memory(options(3, 5000));
        assert_eq!(report.events, 5000);
        assert_eq!(rows.len(), 5000);
        assert!(report.tasks > 300, "{} tasks", report.tasks);
        let (_, again) = generate_in_memory(options(3, 5000));
        assert_eq!(rows, again);
        for row in &rows {
            assert_eq!(row.split('\t').count(), 14, "{row}");
        }
    }

    #[test]
    fn a_task_count_makes_exactly_that_many_tasks() {
        let (report, rows) = generate_in_memory(GenerateOptions {
            tasks: Some(2000),
            ..options(2, 10)
        });
        assert_eq!(report.tasks, 2000);
        let created = rows
            .iter()
            .filter(|r| r.contains("\tTaskCreated\t"))
            .count();
        assert_eq!(created, 2000);
        let projects: u64 = report
            .orgs
            .iter()
            .flat_map(|o| &o.projects)
            .map(|p| p.tasks)
            .sum();
        assert_eq!(projects, 2000);
    }

    /// A COPY row read back: its envelope, and its payload with COPY's
    /// escaping undone.
    struct Row<'a> {
        event_id: Uuid,
        stream_id: &'a str,
        version: u64,
        event_type: &'a str,
        schema_version: u16,
        meta: EventMetadata,
        payload: serde_json::Value,
        prev_hash: &'a str,
        hash: &'a str,
    }

    fn parse(line: &str) -> Row<'_> {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 14, "{line}");
        assert_eq!(f[13], "2", "written as tasklog-event-v2: {line}");
        let uuid = |s: &str| s.parse::<Uuid>().expect("a uuid");
        let maybe = |s: &str| (s != "\\N").then(|| uuid(s));
        Row {
            event_id: uuid(f[0]),
            stream_id: f[1],
            version: f[2].parse().expect("a version"),
            event_type: f[3],
            schema_version: f[4].parse().expect("a schema version"),
            meta: EventMetadata {
                occurred_at: f[5].parse().expect("a time"),
                org_id: uuid(f[6]),
                actor_id: maybe(f[7]),
                correlation_id: uuid(f[8]),
                causation_id: maybe(f[9]),
            },
            payload: serde_json::from_str(&f[10].replace("\\\\", "\\")).expect("JSON"),
            prev_hash: f[11],
            hash: f[12],
        }
    }

    /// The event in `row`, decoded as its stream's aggregate's, after checking
    /// that encoding it again gives the stored type and payload.
    fn decode<A: Aggregate>(row: &Row<'_>) -> A::Event {
        let event: A::Event = decode_event(row.event_type, row.payload.clone())
            .unwrap_or_else(|e| panic!("{} {}: {e}", row.stream_id, row.event_type));
        assert_eq!(encode_event(&event), (row.event_type, row.payload.clone()));
        assert_eq!(event.schema_version(), row.schema_version);
        event
    }

    /// Asks `state` to decide `command` and checks it makes exactly `event`,
    /// then folds the event in.
    fn redecide<A: Aggregate>(state: &mut A, command: A::Command, event: A::Event)
    where
        A::Event: PartialEq,
    {
        assert_eq!(state.decide(command), Ok(vec![event.clone()]));
        *state = std::mem::take(state).evolve(&event);
    }

    #[test]
    fn every_row_decodes_and_its_hash_chain_recomputes() {
        let (_, rows, salts) = generate_with_salts(options(2, 3000));
        let mut chains: HashMap<&str, (u64, Option<Vec<u8>>)> = HashMap::new();
        for line in &rows {
            let row = parse(line);
            match row.stream_id.split_once('-').expect("a category").0 {
                "org" => drop(decode::<Organization>(&row)),
                "project" => drop(decode::<Project>(&row)),
                "tags" => drop(decode::<TagCatalog>(&row)),
                "task" => drop(decode::<Task>(&row)),
                other => panic!("unexpected category {other}"),
            }
            let (version, prev) = chains.entry(row.stream_id).or_default();
            *version += 1;
            assert_eq!(row.version, *version, "{line}");
            let no_salts = Salts::new();
            let salted = salts
                .get(&row.event_id)
                .map(|s| s.keys().map(String::as_str).collect::<Vec<_>>());
            match row.event_type {
                "CommentAdded" => assert_eq!(salted, Some(vec!["/body"]), "{line}"),
                "TaskCreated" => assert!(salted.is_some_and(|s| s.contains(&"/title")), "{line}"),
                "TaskAssigned" | "TaskStatusChanged" => assert_eq!(salted, None, "{line}"),
                _ => {}
            }
            let content = content_hash_v2(
                &HashInput {
                    event_id: row.event_id,
                    stream_id: row.stream_id,
                    event_type: row.event_type,
                    schema_version: row.schema_version,
                    metadata: &row.meta,
                    payload: &row.payload,
                },
                salts.get(&row.event_id).unwrap_or(&no_salts),
            )
            .unwrap();
            let hash = chain_hash(prev.as_deref(), row.version, &content);
            let mut expected = (String::new(), String::new());
            match prev {
                Some(prev) => bulk::push_bytea(&mut expected.0, prev),
                None => expected.0.push_str("\\N"),
            }
            bulk::push_bytea(&mut expected.1, &hash);
            assert_eq!((row.prev_hash, row.hash), (&*expected.0, &*expected.1));
            *prev = Some(hash);
        }
    }

    /// Replays the log in order, asking each aggregate to decide the command
    /// each event records (with what the command API would have looked up
    /// then: membership, the project's key and workflow, the tag catalog).
    #[test]
    fn replaying_the_log_through_decide_reproduces_every_event() {
        let (report, rows) = generate_in_memory(options(2, 3000));
        let mut orgs: HashMap<Uuid, Organization> = HashMap::new();
        let mut projects: HashMap<Uuid, Project> = HashMap::new();
        let mut catalogs: HashMap<Uuid, TagCatalog> = HashMap::new();
        let mut tasks: HashMap<Uuid, Task> = HashMap::new();
        let mut reserved: HashMap<Uuid, u64> = HashMap::new();
        for line in &rows {
            let row = parse(line);
            let (category, id) = row.stream_id.split_once('-').expect("a category");
            let id: Uuid = id.parse().expect("a stream uuid");
            let actor = row.meta.actor_id.expect("an actor");
            let org = orgs.get(&row.meta.org_id);
            let role = org.and_then(|org| org.role_of(actor));
            match category {
                "org" => {
                    let state = orgs.entry(id).or_default();
                    let event = decode::<Organization>(&row);
                    let command = match &event {
                        OrgEvent::OrganizationCreated(e) => OrgCommand::CreateOrganization {
                            org_id: e.org_id,
                            name: e.name.clone(),
                            owner_id: e.owner_id,
                            owner_handle: e.owner_handle.clone(),
                        },
                        OrgEvent::MemberAdded(e) => OrgCommand::AddMember {
                            by: actor,
                            user_id: e.user_id,
                            handle: e.handle.clone(),
                            role: e.role,
                        },
                        OrgEvent::ProjectKeyRegistered(e) => {
                            assert!(role.is_some_and(Role::is_admin), "{line}");
                            OrgCommand::RegisterProjectKey {
                                project_id: e.project_id,
                                key: e.key.clone(),
                            }
                        }
                        other => panic!("not generated: {other:?}"),
                    };
                    redecide(state, command, event);
                }
                "project" => {
                    let state = projects.entry(id).or_default();
                    let event = decode::<Project>(&row);
                    let command = match &event {
                        ProjectEvent::ProjectCreated(e) => {
                            assert!(role.is_some_and(Role::is_admin), "{line}");
                            let org = org.expect("the project's organization");
                            assert_eq!(org.project_keys.get(&e.key), Some(&e.project_id));
                            ProjectCommand::CreateProject {
                                project_id: e.project_id,
                                org_id: e.org_id,
                                name: e.name.clone(),
                                key: e.key.clone(),
                            }
                        }
                        ProjectEvent::TaskNumberReserved(e) => {
                            reserved.insert(e.task_id, e.number);
                            ProjectCommand::ReserveTaskNumber { task_id: e.task_id }
                        }
                        other => panic!("not generated: {other:?}"),
                    };
                    redecide(state, command, event);
                }
                "tags" => {
                    assert!(role.is_some_and(Role::can_write), "{line}");
                    let TagEvent::TagCreated(e) = decode::<TagCatalog>(&row) else {
                        panic!("not generated: {line}");
                    };
                    let command = TagCommand::CreateTag {
                        tag_id: e.tag_id,
                        name: e.name.clone(),
                        color: e.color.clone(),
                    };
                    redecide(catalogs.entry(id).or_default(), command, e.into());
                }
                "task" => {
                    assert!(role.is_some_and(Role::can_write), "{line}");
                    let org = org.expect("the task's organization");
                    let state = tasks.entry(id).or_default();
                    let event = decode::<Task>(&row);
                    let project_id = match &event {
                        TaskEvent::TaskCreated(e) => e.project_id,
                        _ => state.project_id,
                    };
                    let project = &projects[&project_id];
                    let command = match &event {
                        TaskEvent::TaskCreated(e) => {
                            assert_eq!(reserved.get(&e.task_id), Some(&e.number), "{line}");
                            TaskCommand::CreateTask {
                                task_id: e.task_id,
                                org_id: e.org_id,
                                project_id: e.project_id,
                                number: e.number,
                                project_key: project.key.clone(),
                                title: e.title.clone(),
                                description: e.description.clone(),
                                priority: e.priority,
                                due_date: e.due_date,
                                workflow: project.workflow.clone(),
                                created_by: e.created_by,
                            }
                        }
                        TaskEvent::TaskDetailsEdited(e) => TaskCommand::EditTaskDetails {
                            title: Some(e.title.clone()),
                            description: Some(e.description.clone()),
                            priority: Some(e.priority),
                            due_date: Some(e.due_date),
                        },
                        TaskEvent::TaskAssigned(e) => TaskCommand::AssignTask {
                            assignee: e.assignee,
                            assignee_is_member: org.is_member(e.assignee),
                        },
                        TaskEvent::TaskStatusChanged(e) => TaskCommand::ChangeTaskStatus {
                            to: e.to.clone(),
                            workflow: project.workflow.clone(),
                        },
                        TaskEvent::TaskTagAdded(e) => TaskCommand::AddTag {
                            tag_id: e.tag_id,
                            tag_exists: catalogs[&row.meta.org_id].contains(e.tag_id),
                        },
                        TaskEvent::CommentAdded(e) => {
                            assert_eq!(e.author, actor);
                            TaskCommand::AddComment {
                                comment_id: e.comment_id,
                                author: e.author,
                                body: e.body.clone(),
                                mentions: mentioned_handles(&e.body)
                                    .iter()
                                    .filter_map(|handle| org.member_by_handle(handle))
                                    .collect(),
                            }
                        }
                        other => panic!("not generated: {other:?}"),
                    };
                    redecide(state, command, event);
                }
                other => panic!("unexpected category {other}"),
            }
        }
        // The report is what the aggregates hold.
        for generated in &report.orgs {
            let org = &orgs[&generated.org_id];
            assert_eq!(org.name, generated.name);
            assert_eq!(org.members.len(), generated.members.len());
            for member in &generated.members {
                assert_eq!(org.role_of(member.user_id), Some(member.role));
            }
            for p in &generated.projects {
                assert_eq!(projects[&p.project_id].next_task_number, p.tasks + 1);
            }
        }
        let comments = tasks.values().map(|t| t.comments.len()).sum::<usize>();
        assert_eq!(comments as u64, report.comments);
        assert_eq!(reserved.len() as u64, report.tasks);
    }
}
