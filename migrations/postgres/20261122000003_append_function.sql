-- One round trip per append: check the expected version, chain the hashes and
-- insert, all in one statement. Readers' rules are unchanged.
--
-- hash = sha256(prev_hash || stream_version as 8 bytes big-endian || content_hash),
-- where content_hash is computed by the writer over the canonical envelope and
-- payload (event-store/src/hash.rs) and prev_hash is empty for a stream's
-- first event.
--
-- p_expected: -1 any, 0 no stream, n the stream's last version. On a mismatch
-- it inserts nothing and returns one row with o_conflict and the actual version.
CREATE FUNCTION append_events(
    p_stream          text,
    p_expected        bigint,
    p_ids             uuid[],
    p_types           text[],
    p_schema_versions integer[],
    p_occurred        timestamptz[],
    p_orgs            uuid[],
    p_actors          uuid[],
    p_correlations    uuid[],
    p_causations      uuid[],
    p_payloads        jsonb[],
    p_content_hashes  bytea[]
) RETURNS TABLE (o_commit bigint, o_position bigint, o_version bigint, o_conflict boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_version bigint;
    v_hash    bytea;
    v_prev    bytea;
BEGIN
    SELECT e.stream_version, e.hash INTO v_version, v_hash
    FROM events e WHERE e.stream_id = p_stream
    ORDER BY e.stream_version DESC LIMIT 1;
    IF NOT FOUND THEN
        v_version := 0;
        v_hash := NULL;
    END IF;
    IF p_expected >= 0 AND p_expected <> v_version THEN
        RETURN QUERY SELECT NULL::bigint, NULL::bigint, v_version, true;
        RETURN;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        v_version := v_version + 1;
        v_prev := v_hash;
        v_hash := sha256(coalesce(v_prev, ''::bytea) || int8send(v_version) || p_content_hashes[i]);
        RETURN QUERY
        INSERT INTO events AS e (event_id, stream_id, stream_version, event_type, schema_version,
                                 occurred_at, org_id, actor_id, correlation_id, causation_id,
                                 payload, prev_hash, hash)
        VALUES (p_ids[i], p_stream, v_version, p_types[i], p_schema_versions[i],
                p_occurred[i], p_orgs[i], p_actors[i], p_correlations[i], p_causations[i],
                p_payloads[i], v_prev, v_hash)
        RETURNING e.transaction_id::text::bigint, e.global_position, e.stream_version, false;
    END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION append_events(text, bigint, uuid[], text[], integer[], timestamptz[],
    uuid[], uuid[], uuid[], uuid[], jsonb[], bytea[]) TO tasklog_app;
