-- Group commit: the appends of many callers in one statement, so that one
-- transaction and one WAL flush serve them all (event-store-postgres/src/group.rs).
--
-- The batch is a list of units, each one caller's append: one or more parts
-- (a stream, its expected version, its events), all stored or none. Each
-- unit keeps its own outcome: a unit whose stream moved on, or whose event
-- ids are stored already, stores nothing and is answered alone; the units
-- around it still append. A unit is checked whole before any of its events
-- is inserted, so a failed check never leaves half a unit behind. A part
-- with no events is a check only: the stream must be at its version.
--
-- What a check cannot see (a concurrent transaction of another process
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
    v_parts    integer := coalesce(array_length(p_streams, 1), 0);
    v_first    integer := 1;  -- the unit's first part
    v_last     integer;       -- and its last
    v_event    integer := 1;  -- the unit's first event
    v_count    integer;
    v_ok       boolean;
    v_versions bigint[];
    v_hashes   bytea[];
    v_version  bigint;
    v_hash     bytea;
    v_prev     bytea;
    v_at       integer;
BEGIN
    WHILE v_first <= v_parts LOOP
        v_last := v_first;
        v_count := p_counts[v_first];
        WHILE v_last < v_parts AND p_units[v_last + 1] = p_units[v_first] LOOP
            v_last := v_last + 1;
            v_count := v_count + p_counts[v_last];
        END LOOP;

        v_ok := true;
        v_versions := '{}';
        v_hashes := '{}';
        FOR i IN v_first .. v_last LOOP
            SELECT e.stream_version, e.hash INTO v_version, v_hash
            FROM events e WHERE e.stream_id = p_streams[i]
            ORDER BY e.stream_version DESC LIMIT 1;
            IF NOT FOUND THEN
                v_version := 0;
                v_hash := NULL;
            END IF;
            IF p_expected[i] >= 0 AND p_expected[i] <> v_version THEN
                RETURN QUERY SELECT p_units[i], i - v_first, 1::smallint, NULL::bigint, NULL::bigint,
                                    v_version;
                v_ok := false;
                EXIT;
            END IF;
            v_versions := array_append(v_versions, v_version);
            v_hashes := array_append(v_hashes, v_hash);
        END LOOP;

        -- One probe of the unique index per id: `= ANY (slice)` got a cached
        -- generic plan that scanned the whole table.
        IF v_ok THEN
            FOR k IN v_event .. v_event + v_count - 1 LOOP
                IF EXISTS (SELECT FROM events e WHERE e.event_id = p_ids[k]) THEN
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
                v_version := v_versions[i - v_first + 1];
                v_hash := v_hashes[i - v_first + 1];
                FOR k IN 1 .. p_counts[i] LOOP
                    v_version := v_version + 1;
                    v_prev := v_hash;
                    v_hash := sha256(coalesce(v_prev, ''::bytea) || int8send(v_version)
                                     || p_content_hashes[v_at]);
                    RETURN QUERY
                    INSERT INTO events AS e (event_id, stream_id, stream_version, event_type,
                                             schema_version, occurred_at, org_id, actor_id,
                                             correlation_id, causation_id, payload, prev_hash,
                                             hash, hash_scheme)
                    VALUES (p_ids[v_at], p_streams[i], v_version, p_types[v_at],
                            p_schema_versions[v_at], p_occurred[v_at], p_orgs[v_at],
                            p_actors[v_at], p_correlations[v_at], p_causations[v_at],
                            p_payloads[v_at], v_prev, v_hash, p_hash_scheme)
                    RETURNING p_units[i], i - v_first, 0::smallint, e.transaction_id::text::bigint,
                              e.global_position, e.stream_version;
                    IF p_salts[v_at] IS NOT NULL THEN
                        INSERT INTO event_salts (event_id, salts) VALUES (p_ids[v_at], p_salts[v_at]);
                    END IF;
                    v_at := v_at + 1;
                END LOOP;
            END LOOP;
        END IF;

        v_event := v_event + v_count;
        v_first := v_last + 1;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION append_batch(integer[], text[], bigint[], integer[], uuid[], text[],
    integer[], timestamptz[], uuid[], uuid[], uuid[], uuid[], jsonb[], bytea[], smallint, jsonb[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_batch(integer[], text[], bigint[], integer[], uuid[], text[],
    integer[], timestamptz[], uuid[], uuid[], uuid[], uuid[], jsonb[], bytea[], smallint, jsonb[])
    TO tasklog_app;
