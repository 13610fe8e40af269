-- The analytics projection's own state, kept with its checkpoint: the facts
-- of each task, project, member and tag that the rows it sends ClickHouse
-- are computed from (kind: task, project, member, tag; org_id is nil for
-- tasks and projects, whose id names them alone). `json`, not `jsonb`: only
-- this projection reads the facts, whole, and a rebuild writes them all at
-- once, which costs PostgreSQL a third less as text it only checks.
CREATE TABLE analytics_facts (
    kind text NOT NULL,
    org_id uuid NOT NULL,
    id uuid NOT NULL,
    facts json NOT NULL
);
-- A rebuild writes every fact at once, then builds this index.
CREATE UNIQUE INDEX analytics_facts_key ON analytics_facts (kind, org_id, id);
