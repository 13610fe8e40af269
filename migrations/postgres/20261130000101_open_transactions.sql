-- The sessions with an open transaction that holds a transaction id, with the
-- transaction's age. The application role sees only its own sessions'
-- `xact_start` in pg_stat_activity (other roles' read as NULL, so `tasklog
-- store` and /readyz reported age 0); this function runs as its owner, the
-- superuser that applies migrations, and shows nothing but these columns.
CREATE FUNCTION tasklog_open_transactions()
RETURNS TABLE (pid integer, usename name, application_name text, state text,
               backend_xid xid, age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.pid, a.usename, a.application_name, a.state, a.backend_xid,
           EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start)::float8
    FROM pg_catalog.pg_stat_activity a
    WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_catalog.pg_backend_pid()
$$;
REVOKE ALL ON FUNCTION tasklog_open_transactions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tasklog_open_transactions() TO tasklog_app;
