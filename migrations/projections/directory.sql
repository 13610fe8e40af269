-- Projection `directory`: organizations, members, projects, the tag catalog.
CREATE TABLE organizations (
    org_id     uuid        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL,
    version    bigint      NOT NULL
);
CREATE TABLE members (
    org_id    uuid        NOT NULL,
    user_id   uuid        NOT NULL,
    handle    text        NOT NULL,
    role      text        NOT NULL,
    joined_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX members_user ON members (user_id);
CREATE TABLE projects (
    project_id uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL,
    name       text        NOT NULL,
    key        text        NOT NULL,
    archived   boolean     NOT NULL DEFAULT false,
    workflow   jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version    bigint      NOT NULL
);
CREATE INDEX projects_org ON projects (org_id, created_at, project_id);
CREATE TABLE tags (
    tag_id     uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL,
    name       text        NOT NULL,
    color      text,
    created_at timestamptz NOT NULL
);
CREATE INDEX tags_org ON tags (org_id, name);
