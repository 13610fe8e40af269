-- Projection `tasks`: tasks, their comments, and tag usage.
CREATE TABLE tasks (
    task_id         uuid        PRIMARY KEY,
    org_id          uuid        NOT NULL,
    project_id      uuid        NOT NULL,
    number          bigint      NOT NULL,
    key             text        NOT NULL,
    title           text        NOT NULL,
    description     text        NOT NULL,
    status          text        NOT NULL,
    status_category text        NOT NULL,
    priority        text        NOT NULL,
    -- none 0 < low 1 < medium 2 < high 3 < urgent 4, for sorting.
    priority_rank   smallint    NOT NULL,
    assignee        uuid,
    due_date        date,
    tags            uuid[]      NOT NULL DEFAULT '{}',
    comment_count   integer     NOT NULL DEFAULT 0,
    archived        boolean     NOT NULL DEFAULT false,
    created_by      uuid        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL,
    -- to_tsvector('simple', title || ' ' || description), written by the
    -- projection when the text changes. A generated column would parse the
    -- whole description again on every update, a comment's included.
    search          tsvector    NOT NULL
-- Room on each page for a row's next version: an update that changes no
-- indexed column (a comment, an edit of the description) then stays on its
-- page as a HOT update and writes none of the ten index entries below.
) WITH (fillfactor = 80);
-- A project belongs to one organization, so a filter on both is no narrower
-- than one on the project; without this the planner multiplies the two
-- selectivities, expects a handful of rows, and sorts a whole project.
CREATE STATISTICS tasks_project_org (dependencies) ON project_id, org_id FROM tasks;
-- One index per sort order the task list offers, each led by the project (a
-- list is always of one project); filters ride on them or on the GIN indexes,
-- which lead with the project too (btree_gin), so a common word or tag is
-- matched within the project, not across every organization.
CREATE INDEX tasks_by_created  ON tasks (project_id, created_at, task_id);
CREATE INDEX tasks_by_priority ON tasks (project_id, priority_rank, task_id);
CREATE INDEX tasks_by_due      ON tasks (project_id, due_date, task_id);
-- Tasks without a due date come last in both directions.
CREATE INDEX tasks_by_due_desc ON tasks (project_id, due_date DESC NULLS LAST, task_id DESC);
CREATE INDEX tasks_by_status   ON tasks (project_id, status, created_at, task_id);
CREATE INDEX tasks_by_assignee ON tasks (project_id, assignee, created_at, task_id);
-- A small pending list: every update of a task, whatever it changes, adds
-- entries to both, and a pending list merges into its index all at once
-- inside whichever update fills it. At the default 4 MB that stalled the
-- live projector for a couple of hundred milliseconds every few seconds;
-- without one (fastupdate off) every update paid more.
CREATE INDEX tasks_tags   ON tasks USING gin (project_id, tags) WITH (gin_pending_list_limit = 128);
CREATE INDEX tasks_search ON tasks USING gin (project_id, search) WITH (gin_pending_list_limit = 128);

-- The `updated` sort order, kept beside `tasks` rather than as an index of
-- it: every event of a task moves `updated_at`, and an indexed column that
-- changes makes every update of `tasks` write all of its indexes (no HOT).
-- Here a change writes one narrow row and its two entries; the task list
-- sorted by `updated` walks this index and joins `tasks` by its key.
CREATE TABLE task_recency (
    task_id    uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL,
    project_id uuid        NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX task_recency_by_updated ON task_recency (project_id, updated_at, task_id);

CREATE TABLE comments (
    comment_id uuid        PRIMARY KEY,
    task_id    uuid        NOT NULL,
    org_id     uuid        NOT NULL,
    author     uuid        NOT NULL,
    body       text        NOT NULL,
    mentions   uuid[]      NOT NULL,
    created_at timestamptz NOT NULL,
    edited_at  timestamptz,
    deleted    boolean     NOT NULL DEFAULT false
);
CREATE INDEX comments_task ON comments (task_id, created_at, comment_id);

CREATE TABLE tag_usage (
    org_id uuid   NOT NULL,
    tag_id uuid   NOT NULL,
    tasks  bigint NOT NULL,
    PRIMARY KEY (org_id, tag_id)
);
