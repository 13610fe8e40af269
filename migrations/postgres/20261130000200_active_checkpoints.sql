-- Each projection with the checkpoint of its active generation (NULLs before
-- it has one): the one definition of where a projection stands, read by the
-- projectors (status, lag) and by the query API's consistency waits.
CREATE VIEW active_checkpoints AS
SELECT p.name AS projection,
       p.active_generation AS generation,
       c.commit_id,
       c.event_position,
       c.events_applied
  FROM projections p
  LEFT JOIN projection_checkpoints c
    ON c.projection = p.name AND c.generation = p.active_generation;

-- The application role reads it through its membership of the projector role.
GRANT SELECT ON active_checkpoints TO tasklog_projector;
