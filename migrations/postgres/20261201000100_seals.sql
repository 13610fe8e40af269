-- Seals (docs/audit.md, "Seals"): one Merkle tree over the whole log, in log
-- order, hashed as RFC 6962 does, and signed heads of it.
--
-- The sealer logs in as a role of its own, `tasklog_sealer`, the only one
-- (besides the schema owner) that may insert here. The application role is
-- not a member of it: what an intruder holding the application role can do
-- is read. Nobody may update, delete or truncate (triggers, as on events).

DO $$
BEGIN
    CREATE ROLE tasklog_sealer LOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL; -- roles are cluster-wide; parallel test databases race here
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tasklog_sealer', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO tasklog_sealer;
GRANT SELECT ON events TO tasklog_sealer;
GRANT EXECUTE ON FUNCTION tasklog_open_transactions() TO tasklog_sealer;

-- Leaf i of the tree: the i-th event in log order, its leaf hash
-- SHA-256(0x00 || events.hash). The key makes a second leaf i impossible, the
-- unique position a second leaf for one event.
CREATE TABLE seal_leaves (
    leaf_index      bigint PRIMARY KEY CHECK (leaf_index >= 0),
    commit_id       bigint NOT NULL,
    global_position bigint NOT NULL UNIQUE,
    hash            bytea  NOT NULL CHECK (length(hash) = 32)
);

-- The hash of every complete, aligned subtree above the leaves: level L,
-- index i covers leaves i·2^L .. (i+1)·2^L - 1. Any proof is a few of them.
CREATE TABLE seal_nodes (
    level smallint NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx   bigint   NOT NULL CHECK (idx >= 0),
    hash  bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed tree heads (tasklog-tree-head-v1), also published outside the database.
CREATE TABLE seal_heads (
    tree_size      bigint      PRIMARY KEY CHECK (tree_size >= 0),
    root_hash      bytea       NOT NULL CHECK (length(root_hash) = 32),
    last_commit    bigint      NOT NULL,
    last_position  bigint      NOT NULL,
    sealed_at      timestamptz NOT NULL,
    signature      bytea       NOT NULL CHECK (length(signature) = 64)
);

CREATE FUNCTION seals_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'seals are append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER seal_leaves_no_update_or_delete BEFORE UPDATE OR DELETE ON seal_leaves
    FOR EACH ROW EXECUTE FUNCTION seals_are_append_only();
CREATE TRIGGER seal_leaves_no_truncate BEFORE TRUNCATE ON seal_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION seals_are_append_only();
CREATE TRIGGER seal_nodes_no_update_or_delete BEFORE UPDATE OR DELETE ON seal_nodes
    FOR EACH ROW EXECUTE FUNCTION seals_are_append_only();
CREATE TRIGGER seal_nodes_no_truncate BEFORE TRUNCATE ON seal_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION seals_are_append_only();
CREATE TRIGGER seal_heads_no_update_or_delete BEFORE UPDATE OR DELETE ON seal_heads
    FOR EACH ROW EXECUTE FUNCTION seals_are_append_only();
CREATE TRIGGER seal_heads_no_truncate BEFORE TRUNCATE ON seal_heads
    FOR EACH STATEMENT EXECUTE FUNCTION seals_are_append_only();

-- The default privileges of public give new tables to the application role:
-- not these.
REVOKE ALL ON seal_leaves, seal_nodes, seal_heads FROM PUBLIC, tasklog_app, tasklog_projector;
GRANT SELECT ON seal_leaves, seal_nodes, seal_heads TO tasklog_app, tasklog_projector;
GRANT SELECT, INSERT ON seal_leaves, seal_nodes, seal_heads TO tasklog_sealer;
