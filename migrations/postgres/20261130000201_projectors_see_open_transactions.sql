-- A rebuild (`tasklog projections rebuild`, as the projector role) reads the
-- log's high-water mark, which names the open transactions holding readers
-- back: the projector role may ask too (the application role inherits it).
GRANT EXECUTE ON FUNCTION tasklog_open_transactions() TO tasklog_projector;
