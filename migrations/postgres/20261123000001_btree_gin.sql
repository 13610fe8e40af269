-- GIN indexes that lead with a plain column (a task list's text and tag
-- filters are always within one project) need btree_gin's operator classes.
-- A trusted extension: a database owner may create it.
CREATE EXTENSION IF NOT EXISTS btree_gin;
