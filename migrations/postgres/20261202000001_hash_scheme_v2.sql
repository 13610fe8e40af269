-- The hash scheme `tasklog-event-v2` (docs/audit.md): RFC 8785 (JCS), and
-- personal fields committed to through salted hashes, so that a later
-- erasure of a value (and its salt) keeps every chain, seal and proof valid.
--
-- Each row says which scheme its hash was written with. Rows written before
-- this migration are v1: the column's stored default for them is 1 (adding a
-- column with a constant default rewrites nothing). The old append_events
-- keeps writing v1 (an older binary during a rolling deploy); the new one
-- takes the scheme and the salts from the writer.
ALTER TABLE events ADD COLUMN hash_scheme smallint NOT NULL DEFAULT 1
    CHECK (hash_scheme IN (1, 2));

-- One row per v2 event with personal fields: the salt of each, by the JSON
-- Pointer of the field ({"/title": "<64 hex>"}). Kept apart from the event
-- so that an erasure can destroy a salt with its value while the event row
-- stays as written. The application writes salts with the events (same
-- statement) and reads them for exports; it never changes or removes one.
CREATE TABLE event_salts (
    event_id uuid PRIMARY KEY REFERENCES events (event_id),
    salts    jsonb NOT NULL CHECK (jsonb_typeof(salts) = 'object')
);
REVOKE ALL ON event_salts FROM PUBLIC, tasklog_app;
GRANT SELECT, INSERT ON event_salts TO tasklog_app;

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
    p_content_hashes  bytea[],
    p_hash_scheme     smallint,
    p_salts           jsonb[]
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
                                 payload, prev_hash, hash, hash_scheme)
        VALUES (p_ids[i], p_stream, v_version, p_types[i], p_schema_versions[i],
                p_occurred[i], p_orgs[i], p_actors[i], p_correlations[i], p_causations[i],
                p_payloads[i], v_prev, v_hash, p_hash_scheme)
        RETURNING e.transaction_id::text::bigint, e.global_position, e.stream_version, false;
        IF p_salts[i] IS NOT NULL THEN
            INSERT INTO event_salts (event_id, salts) VALUES (p_ids[i], p_salts[i]);
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION append_events(text, bigint, uuid[], text[], integer[], timestamptz[],
    uuid[], uuid[], uuid[], uuid[], jsonb[], bytea[], smallint, jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_events(text, bigint, uuid[], text[], integer[], timestamptz[],
    uuid[], uuid[], uuid[], uuid[], jsonb[], bytea[], smallint, jsonb[]) TO tasklog_app;
