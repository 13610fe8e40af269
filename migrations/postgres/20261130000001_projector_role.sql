-- Projector sessions log in as a role of their own, `tasklog_projector`,
-- which may read events but never insert them. Readers of the global log skip
-- the open transactions of sessions that *logged in* as this role (see
-- event-store/src/postgres.rs, HORIZON): a session cannot change the user it
-- logged in as, so no session can append events and then pass as a projector
-- (an `application_name`, the earlier mark, can be set by anyone at any time).
--
-- The application role is a member of the projector role: it can do all a
-- projector can (read models, checkpoints), and append events besides.
DO $$
BEGIN
    CREATE ROLE tasklog_projector LOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL; -- roles are cluster-wide; parallel test databases race here
END
$$;

DO $$
BEGIN
    GRANT tasklog_projector TO tasklog_app;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO tasklog_projector', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO tasklog_projector;
GRANT USAGE, CREATE ON SCHEMA read TO tasklog_projector;
GRANT SELECT ON events TO tasklog_projector;
GRANT SELECT, INSERT, UPDATE, DELETE ON projections, projection_checkpoints,
    projection_dead_letters TO tasklog_projector;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO tasklog_projector;
REVOKE USAGE ON SEQUENCE events_global_position_seq FROM tasklog_projector;

-- Projection tables the application role created (generation schemas, the
-- views in `read`) become the projector role's; the application keeps its
-- rights to them through its membership.
REASSIGN OWNED BY tasklog_app TO tasklog_projector;

-- The trigger stays as a second line of defence, now keyed to the login role.
CREATE OR REPLACE FUNCTION events_refuse_projector_sessions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF session_user = 'tasklog_projector' THEN
        RAISE EXCEPTION 'a projector session (role tasklog_projector) may not append events'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
