-- A projector's batch is opened and closed with one round trip each: under
-- load every round trip waits for a CPU, and a live batch used to make eight.
-- The projector sends `BEGIN; SELECT projection_batch_begin(...)` and
-- `SELECT projection_batch_advance(...); COMMIT` as simple queries: when
-- the function raises, the rest of the string does not run.

-- Points the transaction at a generation's tables and lets it commit without
-- waiting for the disk (a read model and its checkpoint commit together, so a
-- commit lost in a crash loses both and the batch is applied again). A live
-- batch also takes the projection's switch lock shared, which a rebuild takes
-- exclusively before it drops the old generation, and checks that its
-- generation is still the active one: SQLSTATE TLG01, the active generation
-- in DETAIL, when a rebuild switched it. An advisory lock, not a row lock: a
-- row lock would give the batch a transaction id from its first statement.
CREATE FUNCTION projection_batch_begin(p_projection text, p_generation integer, p_live boolean)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    active integer;
BEGIN
    PERFORM set_config('search_path', format('rm_%s_g%s, public', p_projection, p_generation), true);
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_live THEN
        PERFORM pg_advisory_xact_lock_shared(
            hashtextextended('tasklog.projection.switch.' || p_projection, 0));
        SELECT active_generation INTO active FROM public.projections WHERE name = p_projection;
        IF active IS NOT NULL AND active <> p_generation THEN
            RAISE EXCEPTION 'projection % switched to generation %', p_projection, active
                USING ERRCODE = 'TLG01', DETAIL = active::text;
        END IF;
    END IF;
END
$$;

-- Moves a generation's checkpoint from one position to the next, only if it
-- still holds the first (compare and set: SQLSTATE TLC01 otherwise, so no
-- event is applied twice), and announces the new position on channel
-- `tasklog_checkpoints` (payload "<projection> <generation> <commit>.<event>")
-- when the transaction commits: readers waiting for a consistency token
-- listen instead of polling.
CREATE FUNCTION projection_batch_advance(
    p_projection text, p_generation integer,
    p_from_commit bigint, p_from_event bigint,
    p_to_commit bigint, p_to_event bigint,
    p_applied bigint, p_last_event_at timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.projection_checkpoints
       SET commit_id = p_to_commit, event_position = p_to_event,
           events_applied = events_applied + p_applied,
           last_event_at = p_last_event_at, updated_at = now()
     WHERE projection = p_projection AND generation = p_generation
       AND commit_id = p_from_commit AND event_position = p_from_event;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the checkpoint of % generation % moved under this writer',
            p_projection, p_generation
            USING ERRCODE = 'TLC01';
    END IF;
    PERFORM pg_notify('tasklog_checkpoints',
        format('%s %s %s.%s', p_projection, p_generation, p_to_commit, p_to_event));
END
$$;
