-- Which tables each generation was built with: a hash of its projection's
-- DDL (comments left out). A runner that finds the active generation built
-- from other DDL (or from before this column, NULL) rebuilds the projection
-- before it applies an event to it (projectors/src/runner/live.rs).
ALTER TABLE projection_checkpoints ADD COLUMN ddl_hash text;
