-- Group commit: the appends of many callers in one statement, so that one
-- transaction and one WAL flush serve them all (event-store-postgres/src/group.rs).
--
-- The batch is a list of units, each one caller's append: one or more parts
-- (a stream, its expected version, its events), all stored or none. Each
-- unit keeps its own outcome: a unit whose stream moved on, or whose event
-- ids are stored already, stores nothing and is answered alone; the units
-- around it still append. A part with no events is a check only: the stream
-- must be at its version.
--
-- Set-based: one statement reads every part's stream head, one probes every
-- event id, one inserts every accepted event (and one its salts); only the
-- checks and the hash chain run row by row, in memory. A stream appears in
-- at most one part of a batch (the dispatcher keeps a second append to it
-- for the next batch); a batch that breaks this is refused whole (SQLSTATE
-- TLA01).
--
-- What the reads cannot see (a concurrent transaction of another process
-- inserting the same version or event id) raises a unique violation and
-- fails the whole statement: the caller then appends each unit on its own
-- (append_events), which gives each its own answer.
--
-- Parts come in unit order (a unit's parts adjacent); events in part order.
-- Rows out, each naming its unit and its part within the unit: status 0, one
-- per appended event; status 1, a part not at its expected version (o_version
-- its actual one); status 2, a unit with an event id already stored. Hashes
-- chain exactly as in append_events.
CREATE FUNCTION append_batch(
    p_units           integer[],
    p_streams         text[],
    p_expected        bigint[],
    p_counts          integer[],
    p_ids             uuid[],
    p_types           text[],
    p_schema_versions integer[],
    p_occurred        timestamptz[],
    p_orgs            uuid[],
    p_actors          uuid[],
    p_correlations    uuid[],
    p_causations      uuid[],
    p_payloads        jsonb[],
    p_content_hashes  bytea[],
    p_hash_scheme     smallint,
    p_salts           jsonb[]
) RETURNS TABLE (o_unit integer, o_part integer, o_status smallint,
                 o_commit bigint, o_position bigint, o_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_parts   integer := coalesce(array_length(p_streams, 1), 0);
    v_heads   bigint[];   -- per part: its stream's version before the batch
    v_hashes  bytea[];    -- and its stream's last hash
    v_taken   boolean[];  -- per event: its id is stored already
    v_first   integer := 1;
    v_last    integer;
    v_event   integer := 1;
    v_count   integer;
    v_ok      boolean;
    v_version bigint;
    v_hash    bytea;
    v_prev    bytea;
    v_at      integer;
    -- The events that go in: their index in p_*, unit, part and chain.
    a_at      integer[] := '{}';
    a_unit    integer[] := '{}';
    a_part    integer[] := '{}';
    a_stream  text[] := '{}';
    a_version bigint[] := '{}';
    a_prev    bytea[] := '{}';
    a_hash    bytea[] := '{}';
BEGIN
    IF (SELECT count(DISTINCT s) FROM unnest(p_streams) AS s) <> v_parts THEN
        RAISE EXCEPTION 'a stream appears in two parts of one batch' USING ERRCODE = 'TLA01';
    END IF;
    SELECT array_agg(coalesce(h.stream_version, 0) ORDER BY s.i),
           array_agg(h.hash ORDER BY s.i)
      INTO v_heads, v_hashes
      FROM unnest(p_streams) WITH ORDINALITY AS s(stream, i)
      LEFT JOIN LATERAL (
          SELECT e.stream_version, e.hash FROM events e WHERE e.stream_id = s.stream
          ORDER BY e.stream_version DESC LIMIT 1) AS h ON true;
    SELECT array_agg(EXISTS (SELECT FROM events e WHERE e.event_id = x.id) ORDER BY x.i)
      INTO v_taken
      FROM unnest(p_ids) WITH ORDINALITY AS x(id, i);

    WHILE v_first <= v_parts LOOP
        v_last := v_first;
        v_count := p_counts[v_first];
        WHILE v_last < v_parts AND p_units[v_last + 1] = p_units[v_first] LOOP
            v_last := v_last + 1;
            v_count := v_count + p_counts[v_last];
        END LOOP;

        v_ok := true;
        FOR i IN v_first .. v_last LOOP
            IF p_expected[i] >= 0 AND p_expected[i] <> v_heads[i] THEN
                RETURN QUERY SELECT p_units[i], i - v_first, 1::smallint, NULL::bigint,
                                    NULL::bigint, v_heads[i];
                v_ok := false;
                EXIT;
            END IF;
        END LOOP;
        IF v_ok THEN
            FOR k IN v_event .. v_event + v_count - 1 LOOP
                IF v_taken[k] THEN
                    RETURN QUERY SELECT p_units[v_first], -1, 2::smallint, NULL::bigint,
                                        NULL::bigint, NULL::bigint;
                    v_ok := false;
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        IF v_ok THEN
            v_at := v_event;
            FOR i IN v_first .. v_last LOOP
                v_version := v_heads[i];
                v_hash := v_hashes[i];
                FOR k IN 1 .. p_counts[i] LOOP
                    v_version := v_version + 1;
                    v_prev := v_hash;
                    v_hash := sha256(coalesce(v_prev, ''::bytea) || int8send(v_version)
                                     || p_content_hashes[v_at]);
                    a_at := array_append(a_at, v_at);
                    a_unit := array_append(a_unit, p_units[i]);
                    a_part := array_append(a_part, i - v_first);
                    a_stream := array_append(a_stream, p_streams[i]);
                    a_version := array_append(a_version, v_version);
                    a_prev := array_append(a_prev, v_prev);
                    a_hash := array_append(a_hash, v_hash);
                    v_at := v_at + 1;
                END LOOP;
            END LOOP;
        END IF;

        v_event := v_event + v_count;
        v_first := v_last + 1;
    END LOOP;

    IF coalesce(array_length(a_at, 1), 0) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH incoming AS (
        SELECT a.*, x.*
        FROM unnest(a_at, a_unit, a_part, a_stream, a_version, a_prev, a_hash)
                 AS a(at, unit, part, stream, version, prev, hash)
        JOIN unnest(p_ids, p_types, p_schema_versions, p_occurred, p_orgs, p_actors,
                    p_correlations, p_causations, p_payloads, p_salts) WITH ORDINALITY
                 AS x(id, type, schema_version, occurred, org, actor, correlation, causation,
                      payload, salt, n) ON x.n = a.at
    ), stored AS (
        INSERT INTO events AS e (event_id, stream_id, stream_version, event_type, schema_version,
                                 occurred_at, org_id, actor_id, correlation_id, causation_id,
                                 payload, prev_hash, hash, hash_scheme)
        SELECT id, stream, version, type, schema_version, occurred, org, actor, correlation,
               causation, payload, prev, hash, p_hash_scheme
        FROM incoming ORDER BY at
        RETURNING e.event_id, e.transaction_id::text::bigint AS c, e.global_position AS p,
                  e.stream_version AS v
    ), salted AS (
        INSERT INTO event_salts (event_id, salts)
        SELECT id, salt FROM incoming WHERE salt IS NOT NULL
    )
    SELECT i.unit, i.part, 0::smallint, s.c, s.p, s.v
    FROM stored s JOIN incoming i ON i.id = s.event_id;
END
$$;

REVOKE ALL ON FUNCTION append_batch(integer[], text[], bigint[], integer[], uuid[], text[],
    integer[], timestamptz[], uuid[], uuid[], uuid[], uuid[], jsonb[], bytea[], smallint, jsonb[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_batch(integer[], text[], bigint[], integer[], uuid[], text[],
    integer[], timestamptz[], uuid[], uuid[], uuid[], uuid[], jsonb[], bytea[], smallint, jsonb[])
    TO tasklog_app;
