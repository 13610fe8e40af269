-- Readers of the global log wait for every open transaction that may still
-- add events below them, except those of projector sessions (application_name
-- 'tasklog-projector', see event-store/src/postgres.rs): a projector's batch
-- writes read models for some milliseconds and would otherwise hold back
-- every other reader meanwhile. That shortcut is sound only while such
-- sessions never insert events; this trigger holds them to it.
CREATE FUNCTION events_refuse_projector_sessions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') = 'tasklog-projector' THEN
        RAISE EXCEPTION 'a projector session (application_name tasklog-projector) may not append events'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_refuse_projector_sessions
    BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_projector_sessions();
