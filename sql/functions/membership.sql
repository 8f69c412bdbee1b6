-- membership: live segment membership (docs/segments.md). A segment's
-- stored compiled rule is evaluated set-wise for a set of customers (or all)
-- and the difference with crm.segment_members is applied: members in or
-- out, history rows, segment.entered / segment.exited events in
-- crm.events. The refresher (crm.segment_refresh, run by every server's
-- refresher thread, one instance at a time by the advisory lock
-- (74120930, 2), which segment changes wait for) follows the change feed after its own cursor
-- and re-evaluates only the segments that depend on what changed, for the
-- customers it changed; a finished value run diffs the value segments over
-- everyone, and every p_sweep_s the time-dependent ones. Every writer of
-- memberships (the refresher, segment create/PATCH/delete) holds that row
-- lock, so two never diff the same segment at once.
-- Tables: sql/012_segment_membership.sql.


-- The bits of a rule's dependencies (the names of segment.c's
-- segment_dep_name, in bit order; tests/unit/test_segment.c checks the C side).
CREATE OR REPLACE FUNCTION crm.segment_dep_bits(p_depends text[]) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(bit_or(CASE d WHEN 'interactions' THEN 1 WHEN 'traits' THEN 2
                                  WHEN 'needs' THEN 4 WHEN 'value' THEN 8
                                  WHEN 'identifiers' THEN 16 WHEN 'customer' THEN 32
                                  WHEN 'consents' THEN 64 WHEN 'preferences' THEN 128
                                  WHEN 'time' THEN 256 WHEN 'stage' THEN 512 ELSE 0 END), 0)
      FROM unnest(p_depends) AS d
$$;

-- What a feed event changes, as dependency bits: an interaction changes
-- interactions and derived needs; a traits change traits and declared needs
-- (attributes.interests); a new customer, a merge, an unmerge or an erasure
-- may change anything (-1: every bit); the refresher's own events nothing.
CREATE OR REPLACE FUNCTION crm.feed_change_bits(p_type text) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_type
        WHEN 'interaction.created' THEN 1 | 4
        WHEN 'traits.changed' THEN 2 | 4
        WHEN 'identifier.added' THEN 16
        WHEN 'consent.changed' THEN 64
        WHEN 'preferences.changed' THEN 128
        WHEN 'value.tier_changed' THEN 8
        WHEN 'segment.entered' THEN 0
        WHEN 'segment.exited' THEN 0
        WHEN 'customer.stage_changed' THEN 512
        ELSE -1 END
$$;


-- Evaluate segment p_segment for the customers p_ids (NULL: everyone) and
-- apply the difference with its current members: newcomers enter (row in
-- crm.segment_members, entered_at now), leavers exit (their row moves to
-- crm.segment_history with exited_at now), and with p_emit each gets a
-- segment.entered / segment.exited event {segment_id, name}. An erased
-- customer's row just goes (no history, no event: erasure removes them;
-- customer.erased says it). Returns {entered, exited}. The caller holds the
-- refresher's advisory lock (74120930, 2). The condition is the stored compiled
-- rule: SQL text from segment.c's whitelist whose values are the elements
-- of params, passed as $1; nothing from the rule is spliced into the text.
CREATE OR REPLACE FUNCTION crm.segment_apply(p_segment uuid, p_ids uuid[], p_emit boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    s crm.segments%ROWTYPE;
    n_in bigint;
    n_out bigint;
    scope_c text := CASE WHEN p_ids IS NULL THEN '' ELSE ' AND c.customer_id = ANY ($2)' END;
    scope_m text := CASE WHEN p_ids IS NULL THEN '' ELSE ' AND m.customer_id = ANY ($2)' END;
    page_cost text := current_setting('random_page_cost');
BEGIN
    SELECT * INTO s FROM crm.segments WHERE segment_id = p_segment;
    IF NOT FOUND OR s.condition IS NULL THEN
        RETURN jsonb_build_object('entered', 0, 'exited', 0);
    END IF;
    -- A refresher round's customers are a small set: one index probe per
    -- customer into interactions, needs, traits is what the data calls for.
    -- With the default random_page_cost the planner preferred a seq scan of
    -- crm.interactions (an "interaction within 90 days" segment, 1,000
    -- customers of the 10,000 of bench/gen_data.sql: 38 ms, 8 ms with 1.1).
    -- For this statement only; a full diff keeps the default.
    IF p_ids IS NOT NULL THEN
        PERFORM set_config('random_page_cost', '1.1', true);
    END IF;
    EXECUTE format($q$
        WITH now_in AS MATERIALIZED (
            SELECT c.customer_id FROM crm.customers c
              LEFT JOIN crm.customer_value v ON v.customer_id = c.customer_id
             WHERE c.merged_into IS NULL AND c.erased_at IS NULL%s AND (%s)),
        was AS MATERIALIZED (
            SELECT m.customer_id, m.entered_at FROM crm.segment_members m
             WHERE m.segment_id = $3%s),
        ent AS (
            SELECT n.customer_id FROM now_in n
             WHERE NOT EXISTS (SELECT 1 FROM was w WHERE w.customer_id = n.customer_id)),
        ext AS (
            SELECT w.customer_id, w.entered_at, c.erased_at IS NOT NULL AS erased
              FROM was w JOIN crm.customers c ON c.customer_id = w.customer_id
             WHERE NOT EXISTS (SELECT 1 FROM now_in n WHERE n.customer_id = w.customer_id)),
        ins AS (
            INSERT INTO crm.segment_members (segment_id, customer_id, entered_at)
            SELECT $3, e.customer_id, $4 FROM ent e),
        del AS (
            DELETE FROM crm.segment_members m USING ext x
             WHERE m.segment_id = $3 AND m.customer_id = x.customer_id),
        hist AS (
            INSERT INTO crm.segment_history (segment_id, customer_id, entered_at, exited_at)
            SELECT $3, x.customer_id, x.entered_at, $4 FROM ext x WHERE NOT x.erased),
        ev AS (
            INSERT INTO crm.events (type, customer_id, data)
            SELECT y.type, y.customer_id, jsonb_build_object('segment_id', $3, 'name', $5)
              FROM (SELECT 'segment.entered' AS type, e.customer_id FROM ent e
                    UNION ALL
                    SELECT 'segment.exited', x.customer_id FROM ext x WHERE NOT x.erased) AS y
             WHERE $6
             ORDER BY y.customer_id, y.type)
        SELECT (SELECT count(*) FROM ent), (SELECT count(*) FROM ext)
        $q$, scope_c, s.condition, scope_m)
      INTO n_in, n_out
      USING s.params, p_ids, s.segment_id, clock_timestamp(), s.name, p_emit;
    IF p_ids IS NOT NULL THEN
        PERFORM set_config('random_page_cost', page_cost, true);
    END IF;
    RETURN jsonb_build_object('entered', n_in, 'exited', n_out);
END $$;


-- Create (p_create) or change a segment with its compiled rule, and compute
-- its members: a new segment's first fill writes no events (its population
-- is a snapshot to read with GET .../customers or the export, not a change
-- of any customer); a changed rule's difference does. A changed name
-- is in the next events and in every profile (the cache's epoch). Returns the
-- segment's document, {"conflict": true} when the name is taken, NULL when
-- there is no such segment (change).
CREATE OR REPLACE FUNCTION crm.segment_save(p_id uuid, p_create boolean, p_name text,
                                            p_set_description boolean, p_description text,
                                            p_rule jsonb, p_condition text, p_params text[],
                                            p_depends text[], p_version int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s crm.segments%ROWTYPE;
    diff jsonb;
    at timestamptz := clock_timestamp();
BEGIN
    PERFORM pg_advisory_xact_lock(74120930, 2); -- the refresher's (crm.segment_refresh)
    IF p_create THEN
        INSERT INTO crm.segments (segment_id, name, description, rule, condition, params, depends,
                                  compiler_version, created_at, updated_at)
        VALUES (p_id, p_name, p_description, p_rule, p_condition, p_params, p_depends, p_version,
                at, at)
        ON CONFLICT (name) DO NOTHING;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('conflict', true);
        END IF;
        diff := crm.segment_apply(p_id, NULL, false);
        UPDATE crm.segments SET filled_at = clock_timestamp() WHERE segment_id = p_id
        RETURNING * INTO s;
        RETURN crm.segment_doc(s);
    END IF;
    SELECT * INTO s FROM crm.segments WHERE segment_id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_name IS NOT NULL AND p_name <> s.name
       AND EXISTS (SELECT 1 FROM crm.segments WHERE name = p_name) THEN
        RETURN jsonb_build_object('conflict', true);
    END IF;
    UPDATE crm.segments
       SET name = coalesce(p_name, name),
           description = CASE WHEN p_set_description THEN p_description ELSE description END,
           rule = coalesce(p_rule, rule),
           condition = CASE WHEN p_rule IS NULL THEN condition ELSE p_condition END,
           params = CASE WHEN p_rule IS NULL THEN params ELSE p_params END,
           depends = CASE WHEN p_rule IS NULL THEN depends ELSE p_depends END,
           compiler_version = CASE WHEN p_rule IS NULL THEN compiler_version ELSE p_version END,
           updated_at = at
     WHERE segment_id = p_id;
    IF p_rule IS NOT NULL THEN
        diff := crm.segment_apply(p_id, NULL, s.filled_at IS NOT NULL);
        UPDATE crm.segments SET filled_at = coalesce(filled_at, clock_timestamp())
         WHERE segment_id = p_id;
    END IF;
    IF p_name IS NOT NULL AND p_name <> s.name THEN
        -- cached profiles show the name: every document is rebuilt
        UPDATE crm.profile_cache_epoch SET epoch = epoch + 1;
    END IF;
    SELECT * INTO s FROM crm.segments WHERE segment_id = p_id;
    RETURN crm.segment_doc(s) || CASE WHEN diff IS NULL THEN '{}'::jsonb
                                      ELSE jsonb_build_object('recomputed', diff) END;
END $$;


-- A stored rule compiled again by a newer server (or for the first time: a
-- segment saved before live membership): the condition is replaced and the
-- members computed (with events when it had members before). p_condition
-- NULL: the rule no longer compiles; its membership stays as it is.
CREATE OR REPLACE FUNCTION crm.segment_compiled(p_id uuid, p_condition text, p_params text[],
                                                p_depends text[], p_version int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s crm.segments%ROWTYPE;
    diff jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(74120930, 2); -- the refresher's (crm.segment_refresh)
    SELECT * INTO s FROM crm.segments WHERE segment_id = p_id FOR UPDATE;
    IF NOT FOUND OR s.compiler_version >= p_version THEN
        RETURN NULL; -- gone, or compiled meanwhile by another server
    END IF;
    UPDATE crm.segments
       SET condition = coalesce(p_condition, condition), params = coalesce(p_params, params),
           depends = coalesce(p_depends, depends), compiler_version = p_version
     WHERE segment_id = p_id;
    IF p_condition IS NULL THEN
        RETURN jsonb_build_object('compiled', false);
    END IF;
    diff := crm.segment_apply(p_id, NULL, s.filled_at IS NOT NULL);
    UPDATE crm.segments SET filled_at = coalesce(filled_at, clock_timestamp())
     WHERE segment_id = p_id;
    RETURN diff;
END $$;


-- Delete a segment with its members and history (no events). Refused while
-- a webhook filters on it: {"deleted": false, "webhooks": [ids]}.
CREATE OR REPLACE FUNCTION crm.segment_delete(p_id uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    hooks jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(74120930, 2); -- the refresher's (crm.segment_refresh)
    SELECT jsonb_agg(w.webhook_id ORDER BY w.webhook_id) INTO hooks
      FROM crm.webhooks w WHERE w.segment_id = p_id;
    IF hooks IS NOT NULL THEN
        RETURN jsonb_build_object('deleted', false, 'webhooks', hooks);
    END IF;
    DELETE FROM crm.segments WHERE segment_id = p_id;
    RETURN jsonb_build_object('deleted', FOUND);
END $$;


-- The segments whose stored rule a server with compiler p_version should
-- compile again: never compiled (saved before live membership) or by an
-- older compiler. The server compiles them and calls crm.segment_compiled.
CREATE OR REPLACE FUNCTION crm.segments_to_compile(p_version int)
RETURNS TABLE (segment_id uuid, rule jsonb) LANGUAGE sql STABLE AS $$
    SELECT s.segment_id, s.rule FROM crm.segments s
     WHERE s.compiler_version IS NULL OR s.compiler_version < p_version
     ORDER BY s.segment_id
$$;


-- One refresher round: the next p_limit feed events after the cursor (the
-- feed's order and visibility rule: only transactions older than the oldest
-- still running), the customers they changed with the kinds of change, and
-- for every segment the customers whose change it depends on, evaluated
-- set-wise (crm.segment_apply). A merge re-evaluates the survivor and the
-- absorbed id (whose memberships then end: it is no customer of its own any
-- more); an unmerge both again. Then, if a value run finished since the
-- last round, the value segments over everyone; every p_sweep_s seconds
-- (0: never) the time-dependent segments over everyone. Cursor, run and
-- sweep are saved in the same transaction as the memberships and their
-- events. {"busy": true} when another instance is refreshing; else
-- {events, customers, entered, exited, value_run, swept}.
CREATE OR REPLACE FUNCTION crm.segment_refresh(p_limit int, p_sweep_s int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    st crm.segment_refresh_state%ROWTYPE;
    horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
    n_events int;
    last_xid xid8;
    last_seq bigint;
    chg_ids uuid[];
    chg_bits int[];
    seg record;
    ids uuid[];
    diff jsonb;
    n_in bigint := 0;
    n_out bigint := 0;
    run bigint;
    value_full boolean;
    sweep boolean;
BEGIN
    -- One round at a time across instances, and segment changes wait for
    -- it, by an advisory lock (74120930, 2) rather than this row's lock: a
    -- row lock is a WAL record and an xid every second on an idle server.
    IF NOT pg_try_advisory_xact_lock(74120930, 2) THEN
        RETURN jsonb_build_object('busy', true);
    END IF;
    SELECT * INTO st FROM crm.segment_refresh_state;

    -- No segment: the cursor jumps to the end of the feed (a segment made
    -- later starts from its full first fill; the events before it matter
    -- to no one). Creating a segment takes the same advisory lock, so none can
    -- appear during this round.
    IF NOT EXISTS (SELECT 1 FROM crm.segments WHERE condition IS NOT NULL) THEN
        SELECT x.xid, x.seq INTO last_xid, last_seq FROM (
            (SELECT e.xid, e.seq FROM crm.events e WHERE e.xid < horizon
              ORDER BY e.xid DESC, e.seq DESC LIMIT 1)
            UNION ALL
            (SELECT i.event_xid, i.event_seq FROM crm.interactions i
              WHERE i.event_xid < horizon
              ORDER BY i.event_xid DESC, i.event_seq DESC LIMIT 1)) AS x
         ORDER BY 1 DESC, 2 DESC LIMIT 1;
        SELECT max(r.run_id) INTO run FROM crm.model_runs r WHERE r.finished_at IS NOT NULL;
        -- written only when something moved (or once a day for swept_at)
        UPDATE crm.segment_refresh_state
           SET feed_xid = CASE WHEN (last_xid, last_seq) > (feed_xid, feed_seq) THEN last_xid
                               ELSE feed_xid END,
               feed_seq = CASE WHEN (last_xid, last_seq) > (feed_xid, feed_seq) THEN last_seq
                               ELSE feed_seq END,
               value_run_id = coalesce(run, value_run_id), swept_at = now()
         WHERE (last_xid, last_seq) > (feed_xid, feed_seq)
            OR run IS DISTINCT FROM value_run_id AND run IS NOT NULL
            OR swept_at IS NULL OR swept_at < now() - interval '1 day';
        RETURN jsonb_build_object('events', 0, 'customers', 0, 'entered', 0, 'exited', 0,
                                  'value_run', NULL, 'swept', false);
    END IF;

    WITH page AS MATERIALIZED (
        SELECT f.xid, f.seq, f.type, f.customer_id, f.data FROM (
            (SELECT e.xid, e.seq, e.type, e.customer_id, e.data FROM crm.events e
              WHERE (e.xid, e.seq) > (st.feed_xid, st.feed_seq) AND e.xid < horizon
              ORDER BY e.xid, e.seq LIMIT p_limit)
            UNION ALL
            (SELECT i.event_xid, i.event_seq, 'interaction.created', i.customer_id, NULL::jsonb
               FROM crm.interactions i
              WHERE (i.event_xid, i.event_seq) > (st.feed_xid, st.feed_seq)
                AND i.event_xid < horizon
              ORDER BY i.event_xid, i.event_seq LIMIT p_limit)) AS f
         ORDER BY f.xid, f.seq LIMIT p_limit),
    touched AS (
        SELECT p.customer_id, crm.feed_change_bits(p.type) AS bits FROM page p
        UNION ALL
        SELECT (p.data->>'absorbed_id')::uuid, -1 FROM page p WHERE p.type = 'customer.merged'
        UNION ALL
        SELECT (p.data->>'survivor_id')::uuid, -1 FROM page p WHERE p.type = 'customer.unmerged'),
    per_customer AS (
        SELECT t.customer_id, bit_or(t.bits) AS bits FROM touched t
         WHERE t.customer_id IS NOT NULL GROUP BY t.customer_id HAVING bit_or(t.bits) <> 0)
    SELECT (SELECT count(*) FROM page),
           (SELECT p.xid FROM page p ORDER BY p.xid DESC, p.seq DESC LIMIT 1),
           (SELECT p.seq FROM page p ORDER BY p.xid DESC, p.seq DESC LIMIT 1),
           (SELECT array_agg(c.customer_id ORDER BY c.customer_id) FROM per_customer c),
           (SELECT array_agg(c.bits ORDER BY c.customer_id) FROM per_customer c)
      INTO n_events, last_xid, last_seq, chg_ids, chg_bits;

    IF chg_ids IS NOT NULL THEN
        FOR seg IN SELECT s.segment_id, crm.segment_dep_bits(s.depends) AS bits
                     FROM crm.segments s WHERE s.condition IS NOT NULL ORDER BY s.segment_id LOOP
            ids := ARRAY(SELECT u.id FROM unnest(chg_ids, chg_bits) AS u(id, b)
                          WHERE u.b & seg.bits <> 0 OR u.b = -1);
            IF cardinality(ids) > 0 THEN
                diff := crm.segment_apply(seg.segment_id, ids, true);
                n_in := n_in + (diff->>'entered')::bigint;
                n_out := n_out + (diff->>'exited')::bigint;
            END IF;
        END LOOP;
    END IF;

    SELECT max(r.run_id) INTO run FROM crm.model_runs r WHERE r.finished_at IS NOT NULL;
    value_full := run IS NOT NULL AND run > st.value_run_id;
    sweep := p_sweep_s > 0 AND st.swept_at < now() - make_interval(secs => p_sweep_s);
    IF value_full OR sweep THEN
        FOR seg IN SELECT s.segment_id, crm.segment_dep_bits(s.depends) AS bits
                     FROM crm.segments s WHERE s.condition IS NOT NULL ORDER BY s.segment_id LOOP
            IF (value_full AND seg.bits & 8 <> 0) OR (sweep AND seg.bits & 256 <> 0) THEN
                diff := crm.segment_apply(seg.segment_id, NULL, true);
                n_in := n_in + (diff->>'entered')::bigint;
                n_out := n_out + (diff->>'exited')::bigint;
            END IF;
        END LOOP;
    END IF;

    UPDATE crm.segment_refresh_state
       SET feed_xid = coalesce(last_xid, feed_xid), feed_seq = coalesce(last_seq, feed_seq),
           value_run_id = CASE WHEN value_full THEN run ELSE value_run_id END,
           swept_at = CASE WHEN sweep THEN now() ELSE swept_at END
     WHERE last_xid IS NOT NULL OR value_full OR sweep; -- nothing moved: no write
    RETURN jsonb_build_object('events', n_events, 'customers', coalesce(cardinality(chg_ids), 0),
                              'entered', n_in, 'exited', n_out,
                              'value_run', CASE WHEN value_full THEN run END, 'swept', sweep);
END $$;


-- ---- reading ----------------------------------------------------------------

-- A customer's current segments, for the profile: [{segment_id, name,
-- entered_at}] by name. p_customer is a survivor.
CREATE OR REPLACE FUNCTION crm.customer_segments_doc(p_customer uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('segment_id', s.segment_id, 'name', s.name,
                                                 'entered_at', crm.ts(m.entered_at))
                              ORDER BY s.name), '[]')
      FROM crm.segment_members m JOIN crm.segments s ON s.segment_id = m.segment_id
     WHERE m.customer_id = p_customer
$$;

-- GET /v1/customers/{id}/segments: current and past memberships of p_id's
-- survivor, newest first: {customer_id, items: [{segment_id, name,
-- entered_at, exited_at (null: current)}]}; NULL for an unknown customer.
-- The read is audited (customer.segments.read).
CREATE OR REPLACE FUNCTION crm.customer_segment_history(p_id uuid, p_key uuid, p_role text,
                                                        p_limit int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    doc jsonb;
BEGIN
    SELECT o.sid, o.gone INTO sid, doc FROM crm.open_customer(p_id) AS o;
    IF sid IS NULL OR doc IS NOT NULL THEN
        RETURN doc;
    END IF;
    PERFORM crm.audit_read(p_key, p_role, 'customer.segments.read', sid);
    SELECT jsonb_build_object('customer_id', sid, 'items', coalesce(jsonb_agg(jsonb_build_object(
               'segment_id', x.segment_id, 'name', x.name, 'entered_at', crm.ts(x.entered_at),
               'exited_at', crm.ts(x.exited_at))
             ORDER BY x.exited_at DESC NULLS FIRST, x.entered_at DESC, x.segment_id), '[]'))
      INTO doc
      FROM (SELECT * FROM (
                SELECT m.segment_id, s.name, m.entered_at, NULL::timestamptz AS exited_at
                  FROM crm.segment_members m JOIN crm.segments s ON s.segment_id = m.segment_id
                 WHERE m.customer_id = sid
                UNION ALL
                SELECT h.segment_id, s.name, h.entered_at, h.exited_at
                  FROM crm.segment_history h JOIN crm.segments s ON s.segment_id = h.segment_id
                 WHERE h.customer_id = sid) AS y
             ORDER BY y.exited_at DESC NULLS FIRST, y.entered_at DESC, y.segment_id
             LIMIT p_limit) AS x;
    RETURN doc;
END $$;


-- ---- the profile cache ------------------------------------------------------

-- The profile shows the customer's segments (crm.profile), so a membership
-- change invalidates the cached document like any other write, in the
-- refresher's (or the PATCH's) transaction: per customer, in customer_id
-- order, or, for more than 1,000 customers at once (a value run's or a new
-- rule's full diff, a segment deleted), the epoch of every document. A
-- deadlock with a writer locking the same cache rows in another order (a
-- merge) is retried: the API's statements by the server (db.c), the
-- refresher's round by its next round.
CREATE OR REPLACE FUNCTION crm.segment_members_profile_stale() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY(SELECT DISTINCT n.customer_id FROM new_rows n ORDER BY 1);
    ELSE
        ids := ARRAY(SELECT DISTINCT o.customer_id FROM old_rows o ORDER BY 1);
    END IF;
    IF cardinality(ids) > 1000 THEN
        UPDATE crm.profile_cache_epoch SET epoch = epoch + 1;
    ELSE
        PERFORM crm.profile_stale(u.id) FROM unnest(ids) WITH ORDINALITY AS u(id, k) ORDER BY u.k;
    END IF;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('segment_members_insert_profile_stale', 'crm.segment_members', $def$
CREATE OR REPLACE TRIGGER segment_members_insert_profile_stale AFTER INSERT ON crm.segment_members
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crm.segment_members_profile_stale()
$def$);

SELECT crm.define_trigger('segment_members_delete_profile_stale', 'crm.segment_members', $def$
CREATE OR REPLACE TRIGGER segment_members_delete_profile_stale AFTER DELETE ON crm.segment_members
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crm.segment_members_profile_stale()
$def$);


-- ---- erasure ----------------------------------------------------------------

-- An erased customer's memberships and history go in the erasure's
-- transaction (no events). A refresher round that raced with the erasure
-- and put a row back removes it again: the erasure's customer.erased event
-- makes the refresher evaluate the customer, and an erased leaver's row
-- just goes (crm.segment_apply).
CREATE OR REPLACE FUNCTION crm.customer_erased_segments() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crm.segment_members WHERE customer_id = NEW.customer_id;
    DELETE FROM crm.segment_history WHERE customer_id = NEW.customer_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('customers_erased_segments', 'crm.customers', $def$
CREATE OR REPLACE TRIGGER customers_erased_segments AFTER UPDATE OF erased_at ON crm.customers
    FOR EACH ROW WHEN (OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL)
    EXECUTE FUNCTION crm.customer_erased_segments()
$def$);
