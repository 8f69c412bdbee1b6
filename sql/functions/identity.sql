-- identity: resolution of identifiers to one customer, blocked values and
-- limits, the customer locks (every path follows one lock order: see
-- docs/identity.md, "Lock order", and sql/007_identity_junk_and_lock_order.sql),
-- traits, merge, unmerge and merge history.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- ---- customer locks (the lock order: docs/identity.md) ----------------------------

-- A row lock that waited for a merge keeps the absorbed row locked even
-- though the row no longer qualifies (merged_into IS NULL is re-checked after
-- locking): a stray lock outside the order. So every lock attempt that can
-- fail runs in a subtransaction, rolled back (SQLSTATE P0L01) to give the
-- stray lock back before the next attempt.

-- Lock the surviving customer of p_id until commit (FOR NO KEY UPDATE, the
-- writers' lock mode), so no merge can absorb it while we write to it; if a
-- merge wins the race, follow it (a failed attempt's lock is given back).
-- Returns NULL when the customer does not exist or is erased.
CREATE OR REPLACE FUNCTION crm.lock_survivor(p_id uuid) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    gone boolean;
BEGIN
    FOR attempt IN 1..5 LOOP
        sid := crm.survivor_of(p_id);
        IF sid IS NULL THEN
            RETURN NULL;
        END IF;
        BEGIN
            SELECT erased_at IS NOT NULL INTO gone FROM crm.customers
             WHERE customer_id = sid AND merged_into IS NULL FOR NO KEY UPDATE;
            -- Still p_id's survivor (an unmerge may have committed meanwhile)?
            IF FOUND AND crm.survivor_of(p_id) = sid THEN
                RETURN CASE WHEN gone THEN NULL ELSE sid END;
            END IF;
            RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
        EXCEPTION WHEN SQLSTATE 'P0L01' THEN
            NULL;
        END;
    END LOOP;
    RAISE EXCEPTION 'customer % kept being merged', p_id USING ERRCODE = '40001';
END $$;

-- Set traits from a JSON object; null removes. attributes is merged per key.
CREATE OR REPLACE FUNCTION crm.apply_traits(p_customer uuid, p_traits jsonb, p_source text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k text;
    v jsonb;
    ak text;
    av jsonb;
BEGIN
    IF p_traits IS NULL OR jsonb_typeof(p_traits) <> 'object' THEN
        RETURN;
    END IF;
    FOR k, v IN SELECT key, value FROM jsonb_each(p_traits) LOOP
        IF k = 'attributes' AND jsonb_typeof(v) = 'object' THEN
            FOR ak, av IN SELECT key, value FROM jsonb_each(v) LOOP
                PERFORM crm.set_trait(p_customer, 'attributes.' || ak, av, p_source);
            END LOOP;
        ELSIF k = 'attributes' AND jsonb_typeof(v) = 'null' THEN
            DELETE FROM crm.traits WHERE customer_id = p_customer AND name LIKE 'attributes.%';
            DELETE FROM crm.trait_values WHERE customer_id = p_customer AND name LIKE 'attributes.%';
        ELSE
            PERFORM crm.set_trait(p_customer, k, v, p_source);
        END IF;
    END LOOP;
END $$;

-- One source's value of one trait (null removes the trait, every source's
-- value of it too). The source's value is recorded in crm.trait_values (a
-- value given again counts one more time); crm.traits, which has triggers
-- (events, profile cache, live membership), is written only when the
-- winner changes. Under most_recent (no rule set: the default) the value
-- just given wins, without a query; under another rule the winner is
-- resolved again (crm.resolve_traits, survivorship.sql) and the profile is
-- made stale (its trait_sources shows the losing values' sightings).
CREATE OR REPLACE FUNCTION crm.set_trait(p_customer uuid, p_name text, p_value jsonb, p_source text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := clock_timestamp();
    rule text;
    holds boolean;
BEGIN
    IF jsonb_typeof(p_value) = 'null' THEN
        DELETE FROM crm.traits WHERE customer_id = p_customer AND name = p_name;
        DELETE FROM crm.trait_values WHERE customer_id = p_customer AND name = p_name;
        RETURN;
    END IF;
    INSERT INTO crm.trait_values AS t (customer_id, name, source, value, first_seen, last_seen)
    VALUES (p_customer, p_name, p_source, p_value, at, at)
    ON CONFLICT (customer_id, name, source) DO UPDATE
        SET value = excluded.value, last_seen = excluded.last_seen,
            first_seen = CASE WHEN t.value = excluded.value THEN t.first_seen ELSE excluded.first_seen END,
            times_seen = CASE WHEN t.value = excluded.value THEN t.times_seen + 1 ELSE 1 END;
    SELECT (SELECT r.rule FROM crm.survivorship_rules r
             WHERE r.trait IN (p_name, '*') ORDER BY r.trait = '*' LIMIT 1),
           EXISTS (SELECT 1 FROM crm.traits WHERE customer_id = p_customer AND name = p_name
                      AND value = p_value AND source = p_source)
      INTO rule, holds;
    IF rule IS NOT NULL AND rule <> 'most_recent' THEN
        PERFORM crm.resolve_traits(ARRAY[p_customer], ARRAY[p_name]);
        PERFORM crm.profile_stale(p_customer);
    ELSIF NOT holds THEN
        INSERT INTO crm.traits (customer_id, name, value, source, updated_at)
        VALUES (p_customer, p_name, p_value, p_source, at)
        ON CONFLICT (customer_id, name) DO UPDATE
            SET value = excluded.value, source = excluded.source, updated_at = excluded.updated_at;
    END IF;
END $$;

-- A customer's identifier or trait rows as a JSON array (merge snapshots).
CREATE OR REPLACE FUNCTION crm.snapshot_rows(p_what text, p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT CASE p_what
                WHEN 'identifiers' THEN
                    (SELECT coalesce(jsonb_agg(jsonb_build_object('kind', kind, 'namespace', namespace,
                                                                  'value', value, 'source', source,
                                                                  'created_at', created_at)), '[]')
                       FROM crm.identifiers WHERE customer_id = p_customer)
                ELSE
                    (SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'value', value,
                                                                  'source', source,
                                                                  'updated_at', updated_at)), '[]')
                       FROM crm.traits WHERE customer_id = p_customer)
                END
    );
END $$;

-- Move everything of p_absorbed into p_survivor, first recording in
-- crm.merges what an unmerge needs. Caller holds row locks on both.
CREATE OR REPLACE FUNCTION crm.merge_into(p_survivor uuid, p_absorbed uuid, p_actor text,
                               p_reason text, p_trigger jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO crm.merges (survivor_id, absorbed_id, actor, reason, trigger_identifiers,
                            absorbed_members, absorbed_identifiers, absorbed_traits,
                            survivor_traits, absorbed_updated_at, survivor_updated_at)
    SELECT p_survivor, p_absorbed, p_actor, p_reason, p_trigger,
           ARRAY(SELECT p_absorbed UNION SELECT customer_id FROM crm.customers
                  WHERE merged_into = p_absorbed),
           crm.snapshot_rows('identifiers', p_absorbed),
           crm.snapshot_rows('traits', p_absorbed),
           crm.snapshot_rows('traits', p_survivor),
           (SELECT updated_at FROM crm.customers WHERE customer_id = p_absorbed),
           (SELECT updated_at FROM crm.customers WHERE customer_id = p_survivor);

    UPDATE crm.identifiers SET customer_id = p_survivor WHERE customer_id = p_absorbed;
    UPDATE crm.interactions SET customer_id = p_survivor WHERE customer_id = p_absorbed;

    -- Traits: the union of both sides' source values, resolved by the
    -- survivorship rules (survivorship.sql).
    PERFORM crm.merge_traits(p_survivor, p_absorbed);

    INSERT INTO crm.interaction_stats AS s
    SELECT p_survivor, channel, type, currency, n, amount, cost, first_at, last_at
      FROM crm.interaction_stats WHERE customer_id = p_absorbed
    ON CONFLICT (customer_id, channel, type, currency) DO UPDATE
        SET n = s.n + excluded.n, amount = s.amount + excluded.amount,
            cost = s.cost + excluded.cost,
            first_at = least(s.first_at, excluded.first_at),
            last_at = greatest(s.last_at, excluded.last_at);
    DELETE FROM crm.interaction_stats WHERE customer_id = p_absorbed;

    INSERT INTO crm.customer_needs AS s
    SELECT p_survivor, need, n, first_at, last_at
      FROM crm.customer_needs WHERE customer_id = p_absorbed
    ON CONFLICT (customer_id, need) DO UPDATE
        SET n = s.n + excluded.n,
            first_at = least(s.first_at, excluded.first_at),
            last_at = greatest(s.last_at, excluded.last_at);
    DELETE FROM crm.customer_needs WHERE customer_id = p_absorbed;

    -- Earlier absorbed customers now point straight at the new survivor.
    UPDATE crm.customers SET merged_into = p_survivor
     WHERE merged_into = p_absorbed;
    UPDATE crm.customers SET merged_into = p_survivor, merged_at = clock_timestamp(),
                             updated_at = clock_timestamp()
     WHERE customer_id = p_absorbed;
    UPDATE crm.customers SET updated_at = clock_timestamp() WHERE customer_id = p_survivor;
    PERFORM crm.stage_merged(p_survivor, p_absorbed);  -- the survivor's stage, again (stage.sql)
END $$;

-- ---- blocked values ----------------------------------------------------------------

-- Whether a blocked pattern may go into an alternation (?:p1)|(?:p2)|...:
-- not when it holds a backslash followed by a digit (a back-reference
-- counts the groups of the whole expression; an octal escape), nor when it
-- starts with a ***: or ***= director or with embedded options such as
-- (?i), which only work at the start of an expression.
CREATE OR REPLACE FUNCTION crm.pattern_combinable(p_pattern text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_pattern !~ '\\[0-9]' AND p_pattern !~ '^\*\*\*' AND p_pattern !~ '^\(\?[a-z]*\)'
$$;

-- Rebuild crm.blocked_compiled (sql/014_write_path.sql) from
-- crm.blocked_identifiers: one row per kind (those of crm.identifier_limits
-- and any other that has blocked rows) and one for '*', each with the exact values of its kind and of '*' (NULL above 64
-- values: crm.identifier_block probes the table instead) and their
-- patterns. Five or more combinable patterns are joined into one
-- alternation (each stays alone if that does not compile, e.g. too
-- complex): PostgreSQL matched the three built-in email patterns in 47,000
-- instructions one by one and 69,000 joined, but ten typical ones in
-- 55,000 one by one and 40,000 joined, thirty in 180,000 and 92,000; and
-- a backend keeps only 32 compiled expressions. Rows are written only when
-- something changed. One rebuild at a time (the lock), each reading the
-- table after the lock, so one that waited sees the change it waited for.
CREATE OR REPLACE FUNCTION crm.compile_blocked_patterns() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    joinable text[];
    combined text;
    rows crm.blocked_compiled[] := '{}';
BEGIN
    LOCK TABLE crm.blocked_compiled IN SHARE ROW EXCLUSIVE MODE;
    FOR r IN
        SELECT k.kind,
               ARRAY(SELECT b.value FROM crm.blocked_identifiers b
                      WHERE b.kind IN (k.kind, '*') AND NOT b.pattern ORDER BY b.value) AS exact,
               ARRAY(SELECT b.value FROM crm.blocked_identifiers b
                      WHERE b.kind IN (k.kind, '*') AND b.pattern ORDER BY b.value) AS patterns
          FROM (SELECT kind FROM crm.blocked_identifiers UNION SELECT kind FROM crm.identifier_limits
                UNION SELECT '*') AS k(kind)
         ORDER BY k.kind
    LOOP
        joinable := ARRAY(SELECT x FROM unnest(r.patterns) AS x WHERE crm.pattern_combinable(x));
        IF cardinality(joinable) >= 5 THEN
            combined := '(?:' || array_to_string(joinable, ')|(?:') || ')';
            BEGIN
                PERFORM '' ~ combined;
                r.patterns := ARRAY[combined]
                              || ARRAY(SELECT x FROM unnest(r.patterns) AS x
                                        WHERE NOT crm.pattern_combinable(x));
            EXCEPTION WHEN invalid_regular_expression OR program_limit_exceeded THEN
                NULL; -- each pattern alone
            END;
        END IF;
        rows := rows || ROW(r.kind, CASE WHEN cardinality(r.exact) <= 64 THEN r.exact END,
                            r.patterns)::crm.blocked_compiled;
    END LOOP;
    IF EXISTS (SELECT * FROM crm.blocked_compiled EXCEPT SELECT * FROM unnest(rows))
       OR EXISTS (SELECT * FROM unnest(rows) EXCEPT SELECT * FROM crm.blocked_compiled) THEN
        DELETE FROM crm.blocked_compiled;
        INSERT INTO crm.blocked_compiled SELECT * FROM unnest(rows);
        -- A few rows, never analysed by autovacuum: the plans of the
        -- statements that inline crm.identifier_block change with these
        -- statistics (100,000 instructions per ingest), so they are kept.
        ANALYZE crm.blocked_compiled;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION crm.blocked_identifiers_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM crm.compile_blocked_patterns();
    RETURN NULL;
END $$;

SELECT crm.define_trigger('blocked_identifiers_compile', 'crm.blocked_identifiers', $def$
CREATE OR REPLACE TRIGGER blocked_identifiers_compile
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.blocked_identifiers
    FOR EACH STATEMENT EXECUTE FUNCTION crm.blocked_identifiers_changed()
$def$);

-- Derived data, so rebuilt whenever the functions are applied (at every
-- start; nothing is written when nothing changed).
SELECT crm.compile_blocked_patterns();

-- An identifier as crm.resolve receives it ({kind, namespace?, value, raw?})
-- is blocked when its value or its raw value (trimmed), lower-cased, is an
-- exact blocked value of its kind or of '*', or matches a pattern of its
-- kind or of '*': checked against the one row of crm.blocked_compiled of
-- its kind (or '*'), the values taken out of the JSON once. A
-- set-returning SQL function so that the planner inlines it into the
-- calling statement (CROSS JOIN LATERAL crm.identifier_block(i.id)), whose
-- plan the calling plpgsql function keeps: no call, no planning per
-- identifier (the scalar SQL function it replaces, with a subquery, was not
-- inlined and was planned again at every call).
DROP FUNCTION IF EXISTS crm.identifier_blocked(jsonb);
DROP FUNCTION IF EXISTS crm.is_blocked(text, text);
CREATE OR REPLACE FUNCTION crm.identifier_block(p_id jsonb) RETURNS TABLE (blocked boolean)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
               (SELECT (CASE WHEN c.exact IS NULL
                             THEN EXISTS (SELECT 1 FROM crm.blocked_identifiers b
                                           WHERE b.kind IN (s.k, '*') AND b.value IN (s.v, s.r)
                                             AND NOT b.pattern)
                             ELSE s.v = ANY (c.exact) OR s.r = ANY (c.exact) END
                        OR s.v ~ ANY (c.regexes) OR s.r ~ ANY (c.regexes)) IS TRUE
                  FROM crm.blocked_compiled c WHERE c.kind = s.k),
               (SELECT (CASE WHEN c.exact IS NULL
                             THEN EXISTS (SELECT 1 FROM crm.blocked_identifiers b
                                           WHERE b.kind = '*' AND b.value IN (s.v, s.r)
                                             AND NOT b.pattern)
                             ELSE s.v = ANY (c.exact) OR s.r = ANY (c.exact) END
                        OR s.v ~ ANY (c.regexes) OR s.r ~ ANY (c.regexes)) IS TRUE
                  FROM crm.blocked_compiled c WHERE c.kind = '*'),
               false)
      FROM (SELECT p_id->>'kind' AS k, lower(p_id->>'value') AS v,
                   lower(btrim(p_id->>'raw', E' \t\n\r\f\x0b')) AS r OFFSET 0) AS s
$$;

-- Identifier counts of the given customers together that would break a
-- limit: [{kind, namespace, count, limit}] (namespace only for external).
CREATE OR REPLACE FUNCTION crm.limit_violations(p_customers uuid[], p_extra jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'kind', x.kind, 'namespace', nullif(x.bucket, ''), 'count', x.n,
                       'limit', l.max_per_customer)) ORDER BY l.priority, x.bucket), '[]')
              FROM (SELECT kind, bucket, count(DISTINCT (namespace, value)) AS n
                      FROM (SELECT kind, namespace, value,
                                   CASE WHEN kind = 'external' THEN namespace ELSE '' END AS bucket
                              FROM crm.identifiers WHERE customer_id = ANY (p_customers)
                            UNION
                            SELECT i->>'kind', coalesce(i->>'namespace', ''), i->>'value',
                                   CASE WHEN i->>'kind' = 'external' THEN coalesce(i->>'namespace', '')
                                        ELSE '' END
                              FROM jsonb_array_elements(coalesce(p_extra, '[]')) AS i) AS all_ids
                     GROUP BY kind, bucket) AS x
              JOIN crm.identifier_limits l ON l.kind = x.kind
             WHERE x.n > l.max_per_customer
    );
END $$;

-- crm.resolve with that shortcut in front: a known customer needs no
-- advisory locks, no limit checks and no exclusive row lock. The answer is
-- the one crm.resolve gives in that case. Callers (crm.resolve_customer,
-- crm.ingest_batch) call it by name; crm.ingest calls its two halves itself,
-- so that a known customer's answer is not built only to be read again.
CREATE OR REPLACE FUNCTION crm.resolve(p_identifiers jsonb, p_source text, p_new_id uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    known uuid := crm.known_customer(p_identifiers);
BEGIN
    IF known IS NOT NULL THEN
        RETURN jsonb_build_object('customer_id', known, 'created', false,
                                  'merged_ids', '[]'::jsonb, 'ignored', '[]'::jsonb,
                                  'conflicts', '[]'::jsonb);
    END IF;
    RETURN crm.resolve_general(p_identifiers, p_source, p_new_id);
END $$;

-- Resolve (optionally) and set traits; returns {customer_id, created, merged_ids, customer}.
CREATE OR REPLACE FUNCTION crm.resolve_customer(p_identifiers jsonb, p_traits jsonb, p_source text,
                                     p_new_id uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := crm.resolve(p_identifiers, p_source, p_new_id);
    cid uuid := (r->>'customer_id')::uuid;
BEGIN
    IF r->>'status' = 'blocked' THEN
        RETURN r;
    END IF;
    PERFORM crm.apply_traits(cid, p_traits, p_source);
    RETURN r || jsonb_build_object('customer', crm.profile(cid));
END $$;

-- Set traits on an existing customer (absorbed ids follow to the survivor).
-- Returns the profile, or NULL when the customer does not exist.
CREATE OR REPLACE FUNCTION crm.patch_traits(p_id uuid, p_traits jsonb, p_source text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
BEGIN
    sid := crm.lock_survivor(p_id);
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM crm.apply_traits(sid, p_traits, p_source);
    RETURN crm.profile(p_id);
END $$;

-- Trait fields on which two customers disagree and which value a merge of
-- p_absorbed into p_survivor keeps under most_recent (the one its source
-- gave last: crm.trait_values' last_seen, as crm.merge_traits decides; a
-- trait under another survivorship rule is decided by that rule, which
-- this does not model).
CREATE OR REPLACE FUNCTION crm.trait_conflicts(p_survivor uuid, p_absorbed uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'trait', s.name, 'survivor_value', s.value, 'absorbed_value', a.value,
                       'winner', CASE WHEN coalesce(av.last_seen, a.updated_at)
                                           > coalesce(sv.last_seen, s.updated_at)
                                      THEN 'absorbed' ELSE 'survivor' END)
                     ORDER BY s.name), '[]')
              FROM crm.traits s JOIN crm.traits a ON a.name = s.name
              LEFT JOIN crm.trait_values sv ON sv.customer_id = s.customer_id AND sv.name = s.name
                                           AND sv.source = s.source
              LEFT JOIN crm.trait_values av ON av.customer_id = a.customer_id AND av.name = a.name
                                           AND av.source = a.source
             WHERE s.customer_id = p_survivor AND a.customer_id = p_absorbed AND a.value <> s.value
    );
END $$;

-- ---- merge, unmerge, erasure: the same lock order ----------------------------------

-- Merge on demand (admin). Returns {status: merged|dry_run|conflict|not_found|
-- same_customer, survivor_id, absorbed_id, trait_conflicts, limit_violations,
-- customer}. A dry run does the merge inside a subtransaction, takes the
-- resulting profile and rolls the subtransaction back: nothing is written.
-- Limits are enforced unless p_force. Both customers are locked in id order
-- by crm.lock_survivors (locking the survivor, then the absorbed customer,
-- deadlocked two merges of the same pair the other way round).
CREATE OR REPLACE FUNCTION crm.manual_merge(p_survivor uuid, p_absorbed uuid, p_actor text, p_reason text,
                                 p_dry_run boolean, p_force boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    survivors uuid[];
    sid uuid;
    aid uuid;
    traits jsonb;
    violations jsonb;
    rules jsonb;
    doc jsonb;
BEGIN
    -- Both locked in id order (absent and erased customers are NULL).
    survivors := crm.lock_survivors(ARRAY[p_survivor, p_absorbed]);
    sid := survivors[1];
    aid := survivors[2];
    IF sid IS NULL OR aid IS NULL THEN
        RETURN jsonb_build_object('status', 'not_found');
    END IF;
    IF sid = aid THEN
        RETURN jsonb_build_object('status', 'same_customer', 'survivor_id', sid);
    END IF;
    traits := crm.trait_conflicts(sid, aid);
    violations := crm.limit_violations(ARRAY[sid, aid], NULL);
    rules := crm.never_merge_pairs(ARRAY[sid, aid]);
    IF (jsonb_array_length(violations) > 0 OR jsonb_array_length(rules) > 0) AND NOT p_force THEN
        RETURN jsonb_build_object('status', 'conflict', 'survivor_id', sid, 'absorbed_id', aid,
                                  'trait_conflicts', traits, 'limit_violations', violations,
                                  'never_merge', rules);
    END IF;
    BEGIN
        PERFORM crm.merge_into(sid, aid, p_actor, p_reason, '[]');
        doc := crm.profile(sid);
        IF p_dry_run THEN
            RAISE EXCEPTION 'dry run' USING ERRCODE = 'P0D01';
        END IF;
    EXCEPTION WHEN SQLSTATE 'P0D01' THEN
        NULL; -- rolled back; doc keeps the would-be profile
    END;
    RETURN jsonb_build_object('status', CASE WHEN p_dry_run THEN 'dry_run' ELSE 'merged' END,
                              'survivor_id', sid, 'absorbed_id', aid, 'trait_conflicts', traits,
                              'limit_violations', violations, 'customer', doc);
END $$;

-- The survivor of merge m was itself absorbed later (m2, maybe further up a
-- chain): those later snapshots still hold what m brought in. Make them as
-- if m had never happened, so undoing them later restores the survivor as
-- it was before m: m's absorbed trait rows become the survivor's earlier
-- rows, its members and identifiers leave, and the survivor's updated_at
-- goes back.
CREATE OR REPLACE FUNCTION crm.forget_in_later_snapshots(m crm.merges) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    cur uuid := m.survivor_id;
    later crm.merges%ROWTYPE;
    first boolean := true;
BEGIN
    LOOP
        SELECT * INTO later FROM crm.merges
         WHERE absorbed_id = cur AND unmerged_at IS NULL AND merge_id > m.merge_id
         ORDER BY merge_id DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        UPDATE crm.merges SET
            absorbed_traits = (
                SELECT coalesce(jsonb_agg(r), '[]') FROM (
                    SELECT r FROM jsonb_array_elements(later.absorbed_traits) AS r
                     WHERE NOT (r IN (SELECT jsonb_array_elements(m.absorbed_traits)))
                    UNION ALL
                    SELECT s FROM jsonb_array_elements(m.survivor_traits) AS s
                     WHERE s->>'name' IN (SELECT a->>'name' FROM jsonb_array_elements(m.absorbed_traits) AS a
                                           WHERE a IN (SELECT jsonb_array_elements(later.absorbed_traits)))
                ) AS kept),
            absorbed_members = ARRAY(SELECT unnest(later.absorbed_members)
                                     EXCEPT SELECT unnest(m.absorbed_members)),
            absorbed_identifiers = (
                SELECT coalesce(jsonb_agg(i), '[]') FROM jsonb_array_elements(later.absorbed_identifiers) AS i
                 WHERE NOT (i IN (SELECT jsonb_array_elements(m.absorbed_identifiers)))),
            absorbed_updated_at = CASE WHEN first THEN m.survivor_updated_at
                                       ELSE absorbed_updated_at END
         WHERE merge_id = later.merge_id;
        first := false;
        cur := later.survivor_id;
    END LOOP;
END $$;

-- Unmerge, for a table of (customer_id, name, value, source, updated_at) rows
-- whose two sides a merge snapshotted (crm.traits: crm.merges'
-- absorbed_traits and survivor_traits; crm.preferences: crm.merge_preferences):
-- every field of the survivor p_sid still holding the row the merge brought
-- over goes back to the survivor's own earlier value (or away), and the
-- absorbed customer gets its rows back. With p_members, a row that one of
-- them (other than p_absorbed) took back by an unmerge of its own since is
-- left alone.
CREATE OR REPLACE FUNCTION crm.restore_snapshot(p_table regclass, p_sid uuid, p_absorbed uuid,
                                                p_absorbed_rows jsonb, p_survivor_rows jsonb,
                                                p_members uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
    taken boolean;
    n bigint;
BEGIN
    FOR r IN SELECT * FROM jsonb_array_elements(p_absorbed_rows) LOOP
        IF p_members IS NOT NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s x
                             WHERE x.customer_id = ANY ($1) AND x.customer_id <> $2
                               AND x.name = $3->>''name'' AND x.value = $3->''value''
                               AND x.source = $3->>''source''
                               AND x.updated_at = ($3->>''updated_at'')::timestamptz)', p_table)
               INTO taken USING p_members, p_absorbed, r;
            CONTINUE WHEN taken;
        END IF;
        EXECUTE format('DELETE FROM %s
                         WHERE customer_id = $1 AND name = $2->>''name'' AND value = $2->''value''
                           AND source = $2->>''source''
                           AND updated_at = ($2->>''updated_at'')::timestamptz', p_table)
          USING p_sid, r;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n > 0 THEN
            EXECUTE format('INSERT INTO %s (customer_id, name, value, source, updated_at)
                            SELECT $1, s->>''name'', s->''value'', s->>''source'',
                                   (s->>''updated_at'')::timestamptz
                              FROM jsonb_array_elements($2) AS s
                             WHERE s->>''name'' = $3->>''name''', p_table)
              USING p_sid, p_survivor_rows, r;
        END IF;
        EXECUTE format('INSERT INTO %s (customer_id, name, value, source, updated_at)
                        VALUES ($1, $2->>''name'', $2->''value'', $2->>''source'',
                                ($2->>''updated_at'')::timestamptz)
                        ON CONFLICT (customer_id, name) DO NOTHING', p_table)
          USING p_absorbed, r;
    END LOOP;
END $$;

-- Split p_absorbed out of the customer that absorbed it, undoing its latest
-- merge: its members, identifiers, traits and interactions go back as they
-- were; interactions added after the merge follow the identifier (or id)
-- they were addressed to; survivor traits written by the merge are restored.
-- Returns {status: unmerged|not_merged, survivor_id, customer_id, merge_id}.
-- Locks in the writers' lock mode: the survivor first, re-checked after
-- locking (a concurrent merge of the survivor would have changed it), then the
-- absorbed row, which belongs to it (locking both in id order let a merge of
-- the survivor, which updates its absorbed rows, deadlock with it).
CREATE OR REPLACE FUNCTION crm.unmerge(p_absorbed uuid, p_actor text, p_reason text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    m crm.merges%ROWTYPE;
    sid uuid;
BEGIN
    SELECT * INTO m FROM crm.merges
     WHERE absorbed_id = p_absorbed AND unmerged_at IS NULL
     ORDER BY merge_id DESC LIMIT 1;
    IF NOT FOUND OR (SELECT merged_into FROM crm.customers WHERE customer_id = p_absorbed) IS NULL
    THEN
        RETURN jsonb_build_object('status', 'not_merged');
    END IF;
    -- The survivor and the absorbed row, in id order; again if a merge moved
    -- the survivor meanwhile.
    FOR attempt IN 1..5 LOOP
        sid := crm.survivor_of(p_absorbed);
        BEGIN
            PERFORM 1 FROM crm.customers WHERE customer_id = sid AND merged_into IS NULL
               FOR NO KEY UPDATE;
            IF FOUND AND crm.survivor_of(p_absorbed) = sid THEN
                -- The absorbed row belongs to the survivor (step 3).
                PERFORM 1 FROM crm.customers WHERE customer_id = p_absorbed FOR NO KEY UPDATE;
                EXIT;
            END IF;
            RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
        EXCEPTION WHEN SQLSTATE 'P0L01' THEN
            NULL;
        END;
        IF attempt = 5 THEN
            RAISE EXCEPTION 'customer % kept being merged', p_absorbed USING ERRCODE = '40001';
        END IF;
    END LOOP;
    -- Read again under the locks: a concurrent unmerge may have won.
    SELECT * INTO m FROM crm.merges
     WHERE absorbed_id = p_absorbed AND unmerged_at IS NULL
     ORDER BY merge_id DESC LIMIT 1;
    IF NOT FOUND OR sid = p_absorbed THEN
        RETURN jsonb_build_object('status', 'not_merged');
    END IF;

    UPDATE crm.customers SET merged_into = NULL, merged_at = NULL,
                             updated_at = m.absorbed_updated_at
     WHERE customer_id = p_absorbed;
    -- Members it had absorbed, unless one was unmerged on its own since.
    UPDATE crm.customers SET merged_into = p_absorbed
     WHERE customer_id = ANY (m.absorbed_members) AND customer_id <> p_absorbed
       AND merged_into = sid;

    UPDATE crm.identifiers d SET customer_id = p_absorbed
      FROM jsonb_array_elements(m.absorbed_identifiers) AS s
     WHERE d.customer_id = sid AND d.kind = s->>'kind' AND d.namespace = s->>'namespace'
       AND d.value = s->>'value';

    UPDATE crm.interactions i SET customer_id = p_absorbed
     WHERE i.customer_id = sid
       AND (i.origin_customer_id = ANY (m.absorbed_members)
            OR (i.received_at > m.merged_at AND EXISTS (
                    SELECT 1 FROM jsonb_array_elements(coalesce(i.resolved_by, '[]')) AS r
                      JOIN crm.identifiers d ON d.kind = r->>'kind'
                       AND d.namespace = coalesce(r->>'namespace', '') AND d.value = r->>'value'
                     WHERE d.customer_id = p_absorbed)));

    -- Traits: the absorbed customer's as they were; on the survivor, every
    -- field still holding what the merge brought over goes back to the
    -- survivor's own earlier value (or away). A member unmerged on its own
    -- since took its rows back already.
    PERFORM crm.restore_snapshot('crm.traits', sid, p_absorbed, m.absorbed_traits,
                                 m.survivor_traits, m.absorbed_members);

    PERFORM crm.rebuild_aggregates(sid);
    PERFORM crm.rebuild_aggregates(p_absorbed);
    PERFORM crm.stage_update(ARRAY[sid, p_absorbed], 'unmerge');  -- stage.sql
    IF sid = m.survivor_id AND NOT EXISTS (SELECT 1 FROM crm.merges
                                            WHERE survivor_id = sid AND merge_id > m.merge_id
                                              AND unmerged_at IS NULL) THEN
        UPDATE crm.customers SET updated_at = m.survivor_updated_at WHERE customer_id = sid;
    ELSE
        PERFORM crm.forget_in_later_snapshots(m);
    END IF;
    UPDATE crm.merges SET unmerged_at = clock_timestamp(), unmerged_by = p_actor,
                          unmerge_reason = p_reason
     WHERE merge_id = m.merge_id;
    -- Profiles read here, after the changes (a caller's own statement
    -- snapshot would still show the merged state).
    RETURN jsonb_build_object('status', 'unmerged', 'survivor_id', sid,
                              'customer_id', p_absorbed, 'merge_id', m.merge_id,
                              'survivor', crm.profile(sid), 'customer', crm.profile(p_absorbed));
END $$;

-- Merge history of a customer (as survivor or absorbed, any id it ever had).
CREATE OR REPLACE FUNCTION crm.merge_history(p_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        WITH me AS (SELECT crm.survivor_of(p_id) AS sid)
            SELECT CASE WHEN (SELECT sid FROM me) IS NULL THEN NULL ELSE jsonb_build_object(
                'customer_id', (SELECT sid FROM me),
                'items', coalesce((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                            'merge_id', m.merge_id, 'survivor_id', m.survivor_id,
                            'absorbed_id', m.absorbed_id, 'actor', m.actor, 'reason', m.reason,
                            'trigger_identifiers', m.trigger_identifiers,
                            'merged_at', crm.ts(m.merged_at), 'unmerged_at', crm.ts(m.unmerged_at),
                            'unmerged_by', m.unmerged_by, 'unmerge_reason', m.unmerge_reason))
                          ORDER BY m.merge_id)
                     FROM crm.merges m
                    WHERE m.survivor_id IN (p_id, (SELECT sid FROM me))
                       OR m.absorbed_id IN (p_id, (SELECT sid FROM me))
                       OR m.survivor_id IN (SELECT customer_id FROM crm.customers
                                             WHERE merged_into = (SELECT sid FROM me))), '[]'),
                -- identifiers taken off the customer or moved to it (detach)
                'detachments', coalesce((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                            'detach_id', d.detach_id, 'mode', d.mode, 'customer_id', d.customer_id,
                            'new_customer_id', d.new_customer_id, 'identifier', d.identifier,
                            'interaction_ids', to_jsonb(d.interaction_ids), 'actor', d.actor,
                            'reason', d.reason, 'detached_at', crm.ts(d.detached_at)))
                          ORDER BY d.detach_id)
                     FROM crm.identifier_detachments d
                    WHERE d.customer_id IN (p_id, (SELECT sid FROM me))
                       OR d.new_customer_id IN (p_id, (SELECT sid FROM me))
                       OR d.customer_id IN (SELECT customer_id FROM crm.customers
                                             WHERE merged_into = (SELECT sid FROM me))
                       OR d.new_customer_id IN (SELECT customer_id FROM crm.customers
                                                 WHERE merged_into = (SELECT sid FROM me))), '[]'))
            END
    );
END $$;

-- The one customer that p_identifiers all belong to when every identifier
-- exists and none is blocked (normalised or raw value, exact or pattern);
-- NULL otherwise (a new or blocked identifier, or several owners: work for
-- crm.resolve). No lock taken. Blocks are only looked at once the
-- identifiers name one customer (a new identifier goes to crm.resolve_general,
-- which checks them).
CREATE OR REPLACE FUNCTION crm.known_owner(p_identifiers jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    owner_id uuid;
BEGIN
    SELECT CASE WHEN count(*) = count(d.customer_id) AND count(DISTINCT d.customer_id) = 1
                THEN min(d.customer_id::text)::uuid END
      INTO owner_id
      FROM jsonb_array_elements(p_identifiers) AS i(id)
      LEFT JOIN LATERAL (
            SELECT y.customer_id FROM crm.identifiers y
             WHERE y.kind = i.id->>'kind' AND y.namespace = coalesce(i.id->>'namespace', '')
               AND y.value = i.id->>'value'
             LIMIT 1) AS d ON true;
    IF owner_id IS NULL OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_identifiers) AS i(id)
                                    CROSS JOIN LATERAL crm.identifier_block(i.id) AS b
                                    WHERE b.blocked) THEN
        RETURN NULL;
    END IF;
    RETURN owner_id;
END $$;

-- The customer p_identifiers already name, locked in the writers' lock mode,
-- when there is nothing for crm.resolve to do (see crm.known_owner); NULL
-- otherwise. The lock keeps a merge from absorbing the customer until
-- commit, as crm.lock_survivor does for writes by customer id. Under the
-- lock, the identifiers are looked up again (an unmerge may have moved some
-- of them while we waited): each must still belong to that customer. Only
-- that: what the lock protects. Blocks are not protected by it (an
-- administrator's block committed just after this check has the same
-- effect as one committed just before the lock), so they are not checked a
-- second time.
--
-- The first attempt takes only a lock that is free (SKIP LOCKED) and runs
-- outside a subtransaction: under 64 clients the subtransaction of every
-- ingest (its own transaction id) cost 6-8 % of the ingest statement's rate
-- (bench/ingest_profile.md, "Write path"). That attempt waits for nothing,
-- so the lock order holds; but it cannot give its lock back, so when it
-- finds the row merged or erased (it may have locked the row's new version)
-- or the identifiers moved, the whole transaction starts over (40001, which
-- the server retries) before it waits for anything. A row locked by another
-- writer is waited for as before, in a subtransaction that gives a failed
-- attempt's lock back.
CREATE OR REPLACE FUNCTION crm.known_customer(p_identifiers jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    found_owner uuid := crm.known_owner(p_identifiers);
    live boolean;
BEGIN
    IF found_owner IS NULL THEN
        RETURN NULL;
    END IF;
    -- No condition on the row's state in the lock statement: the lock, if
    -- free, is taken on the row's newest version, whose state comes back.
    SELECT merged_into IS NULL AND erased_at IS NULL INTO live FROM crm.customers
     WHERE customer_id = found_owner FOR NO KEY UPDATE SKIP LOCKED;
    IF FOUND THEN
        IF live AND NOT EXISTS (
               SELECT 1 FROM jsonb_array_elements(p_identifiers) AS i(id)
                WHERE NOT EXISTS (SELECT 1 FROM crm.identifiers y
                                   WHERE y.kind = i.id->>'kind'
                                     AND y.namespace = coalesce(i.id->>'namespace', '')
                                     AND y.value = i.id->>'value'
                                     AND y.customer_id = found_owner)) THEN
            RETURN found_owner;
        END IF;
        RAISE EXCEPTION 'lock order: customer % changed before it was locked', found_owner
            USING ERRCODE = '40001';
    END IF;
    -- Locked by another writer: wait for it.
    BEGIN
        PERFORM 1 FROM crm.customers
          WHERE customer_id = found_owner AND merged_into IS NULL AND erased_at IS NULL
            FOR NO KEY UPDATE;
        IF FOUND AND NOT EXISTS (
               SELECT 1 FROM jsonb_array_elements(p_identifiers) AS i(id)
                WHERE NOT EXISTS (SELECT 1 FROM crm.identifiers y
                                   WHERE y.kind = i.id->>'kind'
                                     AND y.namespace = coalesce(i.id->>'namespace', '')
                                     AND y.value = i.id->>'value'
                                     AND y.customer_id = found_owner)) THEN
            RETURN found_owner;
        END IF;
        RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
    EXCEPTION WHEN SQLSTATE 'P0L01' THEN
        RETURN NULL; -- merged meanwhile: crm.resolve_general takes it from here
    END;
END $$;

-- The identifiers without the raw values (what is stored and answered).
-- Most carry none (the server sends raw only when it differs from the
-- normalised value): an array of objects without raw is returned as it
-- is. A SQL function without a subquery, so it is inlined into its callers'
-- statements; the copy without raw values is made by crm.without_raw_items.
-- (As one SQL function with a subquery it was not inlined, and planned
-- again at every call: 20 % of an ingest's instructions.)
CREATE OR REPLACE FUNCTION crm.without_raw_items(p_identifiers jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(i - 'raw' ORDER BY n), '[]')
      FROM jsonb_array_elements(p_identifiers) WITH ORDINALITY AS x(i, n)
$$;

CREATE OR REPLACE FUNCTION crm.without_raw(p_identifiers jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_identifiers) IS DISTINCT FROM 'array' THEN NULL
                WHEN p_identifiers @? '$[*] ? (@.type() != "object" || exists (@.raw))'
                THEN crm.without_raw_items(p_identifiers)
                ELSE p_identifiers END
$$;

-- Admin: block a value or a pattern. A pattern must be a valid regular
-- expression: {"invalid": message} otherwise.
CREATE OR REPLACE FUNCTION crm.block_identifier(p_kind text, p_value text, p_reason text, p_pattern boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    doc jsonb;
BEGIN
    IF p_pattern THEN
        BEGIN
            PERFORM '' ~ p_value;
        EXCEPTION WHEN invalid_regular_expression THEN
            RETURN jsonb_build_object('invalid', SQLERRM);
        END;
    END IF;
    INSERT INTO crm.blocked_identifiers AS b (kind, value, reason, pattern)
    VALUES (p_kind, p_value, p_reason, p_pattern)
    ON CONFLICT (kind, value) DO UPDATE SET reason = excluded.reason, pattern = excluded.pattern
    RETURNING jsonb_build_object('kind', b.kind, 'value', b.value, 'pattern', b.pattern,
                                 'reason', b.reason, 'builtin', b.builtin,
                                 'created_at', crm.ts(b.created_at))
      INTO doc;
    RETURN doc;
END $$;

--
-- ---- lock order: how a failed attempt gives its locks back (issue 13) ------
--
-- The order (docs/identity.md, "Lock order") stands: advisory locks on identifier keys
-- ascending; customer rows FOR NO KEY UPDATE ascending customer_id,
-- re-checked after locking; then the rows that belong to them. What the first
-- version got wrong is how a failed attempt gives back its locks. crm.lock_batch,
-- crm.lock_survivors and crm.resolve_general locked all their customers in
-- one statement and checked the result afterwards. A customer absorbed by a
-- merge that committed while the statement waited for it fails the
-- statement's "merged_into IS NULL" re-check, but PostgreSQL has locked the
-- row's new version all the same: a lock on an absorbed row, kept while the
-- statement went on to wait for the higher ids of the set, and given back
-- only when the subtransaction was rolled back after the statement.
--
-- An absorbed row is otherwise locked only after its survivor's row (merge,
-- unmerge and erasure write the rows of the customers the survivor absorbed,
-- step 3 of the order): crm.unmerge locks the survivor, then the absorbed
-- row. So the stray lock closed cycles: an unmerge holding survivor S waits
-- for absorbed A (A < S), held by a batch that waits for X (A < X < S), held
-- by a batch or merge that waits (directly or through others queued on the
-- same row) for S. The mixed storm of tests/e2e/test_identity.py
-- (LockOrderTests) logged two of them in a CI run on the AddressSanitizer
-- build (three batches and an unmerge; crm.manual_merge in
-- crm.lock_survivors and an unmerge) and three in one of 4 runs on the plain
-- build here (two batches, a resolve, crm.manual_merge and an unmerge);
-- LockOrderTests now also replays the interleaving step by step.
--
-- Now every multi-customer lock goes through crm.lock_customers: one row at
-- a time, ascending, and at the first row found merged (or gone) it raises
-- at once, so the caller's subtransaction rolls back and gives back every
-- lock of the attempt, the stray one included, before the attempt waits for
-- anything else. Hence the rule the order relies on:
--   a lock on the row of an absorbed customer is held only by the holder of
--   its survivor's lock (merge, unmerge, erasure), or for the instant between
--   a failed attempt and its rollback, when that transaction waits for
--   nothing.
-- crm.unmerge keeps locking the survivor first and the absorbed row second,
-- unchanged: the absorbed row belongs to the survivor. Locking the two in
-- ascending id order instead would break the rule the other way: a merge of
-- the survivor S into T (holding S and T) moves S's absorbed rows to T, and
-- would wait for an unmerge that had locked an absorbed row A < S and then
-- waited for S.
-- (crm.lock_survivor and crm.known_customer lock one row per attempt and
-- roll back at once already.)

-- Lock the rows of customers p_ids (survivors), FOR NO KEY UPDATE, one at a
-- time in ascending customer_id order. A row found merged (or absent) raises
-- SQLSTATE P0L01 at once: callers call this inside a block that catches
-- P0L01, whose rollback gives back every lock taken in it before they look
-- again. Never holds a lock on an absorbed row while waiting for another.
-- One statement: the nested loop locks one row per id, in the order of the
-- ids, and the row that comes back without its lock raises
-- (crm.lock_order_restart) before the next id is looked at; as a loop of one
-- statement per id it cost a batch of 100 items 2 % more.
CREATE OR REPLACE FUNCTION crm.lock_order_restart(p_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lock order: start over (customer %)', p_id USING ERRCODE = 'P0L01';
END $$;

CREATE OR REPLACE FUNCTION crm.lock_customers(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM CASE WHEN l.customer_id IS NULL THEN crm.lock_order_restart(k.id) END
       FROM (SELECT DISTINCT id FROM unnest(p_ids) AS u(id) WHERE id IS NOT NULL ORDER BY id) AS k
       LEFT JOIN LATERAL (
             SELECT c.customer_id FROM crm.customers c
              WHERE c.customer_id = k.id AND c.merged_into IS NULL
                FOR NO KEY UPDATE OFFSET 0) AS l ON true;
END $$;

-- The survivors of p_ids (in the order of p_ids; NULL for an absent or erased
-- one), all locked in ascending customer_id order. A merge that moves one of
-- them while we wait gives the locks back (subtransaction) and starts over,
-- so the order holds.
CREATE OR REPLACE FUNCTION crm.lock_survivors(p_ids uuid[]) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    want uuid[];
BEGIN
    FOR attempt IN 1..5 LOOP
        want := ARRAY(SELECT DISTINCT s FROM (SELECT crm.survivor_of(x) AS s FROM unnest(p_ids) AS x) AS y
                       WHERE s IS NOT NULL ORDER BY s);
        BEGIN
            PERFORM crm.lock_customers(want);
            -- Looked up again under the locks: an unmerge that committed
            -- while we waited makes an absorbed id a survivor of its own.
            IF want = ARRAY(SELECT DISTINCT s FROM (SELECT crm.survivor_of(x) AS s
                                                      FROM unnest(p_ids) AS x) AS y
                             WHERE s IS NOT NULL ORDER BY s) THEN
                RETURN ARRAY(SELECT CASE WHEN c.erased_at IS NULL THEN c.customer_id END
                               FROM unnest(p_ids) WITH ORDINALITY AS x(id, n)
                               LEFT JOIN crm.customers c ON c.customer_id = crm.survivor_of(x.id)
                              ORDER BY x.n);
            END IF;
            RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
        EXCEPTION WHEN SQLSTATE 'P0L01' THEN
            NULL;
        END;
    END LOOP;
    RAISE EXCEPTION 'customers % kept being merged', p_ids USING ERRCODE = '40001';
END $$;

-- crm.resolve's general path (crm.resolve puts the known-customer shortcut
-- in front of it). Returns {customer_id, created, merged_ids, ignored, conflicts}, or
-- {status: 'blocked', ignored} when every identifier is blocked.
CREATE OR REPLACE FUNCTION crm.resolve_general(p_identifiers jsonb, p_source text, p_new_id uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    usable jsonb;       -- identifiers still used for matching
    ignored jsonb;
    ids uuid[];         -- the customers they name, locked
    targets uuid[];     -- the customer(s) the request will land on
    survivor uuid;
    absorbed uuid;
    merged uuid[] := '{}';
    conflicts jsonb := '[]';
    merge_violations jsonb;
    forbidden jsonb := '[]';  -- never-merge rules among ids (crm.never_merge_pairs)
    violations jsonb;
    accepted jsonb;     -- new identifiers to attach
    refused jsonb;      -- new identifiers the customer cannot take: [{item, violations}]
    dropped jsonb;      -- identifiers not used for matching: [{item, customer, violations}]
    created boolean := false;
    attempt int;
    item jsonb;
    r jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(i.id - 'raw' ORDER BY i.n) FILTER (WHERE NOT b.blocked), '[]'),
           coalesce(jsonb_agg((i.id - 'raw') || '{"reason": "blocked"}' ORDER BY i.n)
                        FILTER (WHERE b.blocked), '[]')
      INTO usable, ignored
      FROM jsonb_array_elements(p_identifiers) WITH ORDINALITY AS i(id, n)
     CROSS JOIN LATERAL crm.identifier_block(i.id) AS b;
    IF jsonb_array_length(usable) = 0 THEN
        RETURN jsonb_build_object('status', 'blocked', 'ignored', ignored);
    END IF;

    PERFORM pg_advisory_xact_lock(h)
       FROM (SELECT DISTINCT hashtextextended(i->>'kind' || chr(31) || coalesce(i->>'namespace', '')
                                              || chr(31) || (i->>'value'), 0) AS h
               FROM jsonb_array_elements(usable) AS i) AS keys
      ORDER BY h;

    -- Decide before writing anything. Each round drops the identifiers that
    -- led to a customer who cannot take the request's new identifiers; the
    -- customers they name are already locked, so later rounds lock nothing new.
    LOOP
        FOR attempt IN 1..5 LOOP
            SELECT array_agg(DISTINCT d.customer_id ORDER BY d.customer_id) INTO ids
              FROM jsonb_array_elements(usable) AS i
              CROSS JOIN LATERAL (
                    SELECT x.customer_id FROM crm.identifiers x
                     WHERE x.kind = i->>'kind' AND x.namespace = coalesce(i->>'namespace', '')
                       AND x.value = i->>'value'
                     LIMIT 1) AS d;
            IF ids IS NULL THEN
                EXIT;
            END IF;
            BEGIN
                -- One row at a time; the first one merged meanwhile gives
                -- them all back at once (crm.lock_customers).
                PERFORM crm.lock_customers(ids);
                IF ids IS NOT DISTINCT FROM (
                        SELECT array_agg(DISTINCT d.customer_id ORDER BY d.customer_id)
                          FROM jsonb_array_elements(usable) AS i
                          CROSS JOIN LATERAL (
                                SELECT x.customer_id FROM crm.identifiers x
                                 WHERE x.kind = i->>'kind'
                                   AND x.namespace = coalesce(i->>'namespace', '')
                                   AND x.value = i->>'value'
                                 LIMIT 1) AS d) THEN
                    EXIT;
                END IF;
                -- A concurrent merge or unmerge moved identifiers while we
                -- waited: give the locks back and look again.
                RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
            EXCEPTION WHEN SQLSTATE 'P0L01' THEN
                NULL;
            END;
            IF attempt = 5 THEN
                RAISE EXCEPTION 'identity graph kept changing during resolve'
                    USING ERRCODE = '40001';
            END IF;
        END LOOP;

        merge_violations := NULL;
        forbidden := '[]';
        IF ids IS NULL THEN
            targets := '{}';
            survivor := NULL;
        ELSIF cardinality(ids) = 1 THEN
            targets := ids;
            survivor := ids[1];
        ELSE
            merge_violations := crm.limit_violations(ids, NULL);
            -- Only here, where a merge would happen, are never-merge rules
            -- read (the known-customer path and single-customer resolves
            -- never look at them).
            IF jsonb_array_length(merge_violations) = 0 THEN
                forbidden := crm.never_merge_pairs(ids);
            END IF;
            IF jsonb_array_length(merge_violations) = 0 AND jsonb_array_length(forbidden) = 0 THEN
                targets := ids;
                SELECT customer_id INTO survivor FROM crm.customers
                 WHERE customer_id = ANY (ids) ORDER BY created_at, customer_id LIMIT 1;
            ELSE
                -- No merge: the customer of the most trusted identifier.
                SELECT d.customer_id INTO survivor
                  FROM jsonb_array_elements(usable) AS i
                  JOIN crm.identifiers d ON d.kind = i->>'kind'
                   AND d.namespace = coalesce(i->>'namespace', '') AND d.value = i->>'value'
                  JOIN crm.identifier_limits l ON l.kind = d.kind
                  JOIN crm.customers c ON c.customer_id = d.customer_id
                 ORDER BY l.priority, c.created_at, c.customer_id LIMIT 1;
                targets := ARRAY[survivor];
            END IF;
        END IF;

        -- The new identifiers, one by one, against the target customer(s).
        accepted := '[]';
        refused := '[]';
        FOR item IN
            SELECT i FROM (SELECT DISTINCT ON (i) i, n
                             FROM jsonb_array_elements(usable) WITH ORDINALITY AS x(i, n)
                            ORDER BY i, n) AS u
             WHERE NOT EXISTS (SELECT 1 FROM crm.identifiers
                                WHERE kind = i->>'kind' AND namespace = coalesce(i->>'namespace', '')
                                  AND value = i->>'value')
             ORDER BY n
        LOOP
            violations := crm.limit_violations(targets, accepted || item);
            IF jsonb_array_length(violations) = 0 THEN
                accepted := accepted || item;
            ELSE
                refused := refused || jsonb_build_object('item', item, 'violations', violations);
            END IF;
        END LOOP;

        -- A refused identifier whose kind the request does not also use to
        -- name the customer: the identifiers that led there are the culprits.
        dropped := '[]';
        IF cardinality(targets) > 0 THEN
            FOR r IN SELECT * FROM jsonb_array_elements(refused) LOOP
                CONTINUE WHEN EXISTS (
                    SELECT 1 FROM jsonb_array_elements(usable) AS i
                      JOIN crm.identifiers d ON d.kind = i->>'kind'
                       AND d.namespace = coalesce(i->>'namespace', '') AND d.value = i->>'value'
                     WHERE d.customer_id = ANY (targets) AND d.kind = r->'item'->>'kind');
                SELECT coalesce(jsonb_agg(jsonb_build_object('item', i, 'customer_id', d.customer_id,
                                                             'violations', r->'violations')
                                          ORDER BY n), '[]')
                  INTO dropped
                  FROM jsonb_array_elements(usable) WITH ORDINALITY AS x(i, n)
                  JOIN crm.identifiers d ON d.kind = i->>'kind'
                   AND d.namespace = coalesce(i->>'namespace', '') AND d.value = i->>'value'
                 WHERE d.customer_id = ANY (targets);
                EXIT;
            END LOOP;
        END IF;
        EXIT WHEN jsonb_array_length(dropped) = 0;

        FOR r IN SELECT * FROM jsonb_array_elements(dropped) LOOP
            ignored := ignored || ((r->'item') || jsonb_build_object(
                'reason', 'match_would_exceed_limit', 'customer_id', r->'customer_id',
                'violations', r->'violations'));
            conflicts := conflicts || jsonb_build_object(
                'reason', 'match_would_exceed_limit', 'identifier', r->'item',
                'customer_id', r->'customer_id', 'violations', r->'violations');
            INSERT INTO crm.identity_conflicts (source, reason, customer_ids, identifiers, detail)
            VALUES (p_source, 'match_would_exceed_limit', ARRAY[(r->>'customer_id')::uuid],
                    jsonb_build_array(r->'item'), jsonb_build_object('violations', r->'violations'));
        END LOOP;
        SELECT coalesce(jsonb_agg(i ORDER BY n), '[]') INTO usable
          FROM jsonb_array_elements(usable) WITH ORDINALITY AS x(i, n)
         WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(dropped) AS d WHERE d->'item' = i);
    END LOOP;

    IF survivor IS NULL THEN
        INSERT INTO crm.customers (customer_id) VALUES (p_new_id);
        survivor := p_new_id;
        created := true;
    ELSIF jsonb_array_length(forbidden) > 0 THEN
        conflicts := conflicts || jsonb_build_object(
            'reason', 'never_merge', 'customer_ids', to_jsonb(ids), 'chosen', survivor,
            'rules', forbidden);
        INSERT INTO crm.identity_conflicts (source, reason, customer_ids, identifiers, detail)
        VALUES (p_source, 'never_merge', ids, usable,
                jsonb_build_object('chosen', survivor, 'rules', forbidden));
    ELSIF merge_violations IS NOT NULL AND jsonb_array_length(merge_violations) = 0 THEN
        FOREACH absorbed IN ARRAY ids LOOP
            IF absorbed <> survivor THEN
                PERFORM crm.merge_into(survivor, absorbed, p_source,
                                       'identifiers matched more than one customer', usable);
                merged := merged || absorbed;
            END IF;
        END LOOP;
    ELSIF merge_violations IS NOT NULL THEN
        conflicts := conflicts || jsonb_build_object(
            'reason', 'merge_would_exceed_limits', 'customer_ids', to_jsonb(ids),
            'chosen', survivor, 'violations', merge_violations);
        INSERT INTO crm.identity_conflicts (source, reason, customer_ids, identifiers, detail)
        VALUES (p_source, 'merge_would_exceed_limits', ids, usable,
                jsonb_build_object('chosen', survivor, 'violations', merge_violations));
    END IF;

    FOR r IN SELECT * FROM jsonb_array_elements(refused) LOOP
        ignored := ignored || ((r->'item') || jsonb_build_object(
            'reason', 'identifier_would_exceed_limit', 'customer_id', survivor,
            'violations', r->'violations'));
        conflicts := conflicts || jsonb_build_object(
            'reason', 'identifier_would_exceed_limit', 'identifier', r->'item',
            'customer_id', survivor, 'violations', r->'violations');
        INSERT INTO crm.identity_conflicts (source, reason, customer_ids, identifiers, detail)
        VALUES (p_source, 'identifier_would_exceed_limit', ARRAY[survivor],
                jsonb_build_array(r->'item'), jsonb_build_object('violations', r->'violations'));
    END LOOP;

    INSERT INTO crm.identifiers (kind, namespace, value, customer_id, source)
    SELECT i->>'kind', coalesce(i->>'namespace', ''), i->>'value', survivor, p_source
      FROM jsonb_array_elements(accepted) AS i
    ON CONFLICT (kind, namespace, value) DO NOTHING;

    RETURN jsonb_build_object('customer_id', survivor, 'created', created,
                              'merged_ids', to_jsonb(merged), 'ignored', ignored,
                              'conflicts', conflicts);
END $$;

-- ---- identity rules: never merge, detach (issue 18; docs/identity.md) -------------

-- The never-merge rules that forbid merging customers p_ids (survivors)
-- together: [{customer_id, other_id}] for every rule whose two sides,
-- followed to their survivors (merges flatten chains: one hop), are two
-- different members of p_ids. So a rule on A and B also keeps apart the
-- customer that absorbed A and the one that absorbed B. Called by
-- crm.resolve_general only when its identifiers name several customers,
-- and by crm.manual_merge.
CREATE OR REPLACE FUNCTION crm.never_merge_pairs(p_ids uuid[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH m AS (SELECT customer_id, coalesce(merged_into, customer_id) AS sid
                 FROM crm.customers
                WHERE customer_id = ANY (p_ids) OR merged_into = ANY (p_ids))
    SELECT coalesce(jsonb_agg(jsonb_build_object('customer_id', n.customer_id,
                                                 'other_id', n.other_id)
                              ORDER BY n.customer_id, n.other_id), '[]')
      FROM crm.never_merge n
      JOIN m a ON a.customer_id = n.customer_id
      JOIN m b ON b.customer_id = n.other_id
     WHERE a.sid <> b.sid
$$;

CREATE OR REPLACE FUNCTION crm.never_merge_doc(n crm.never_merge) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('customer_id', n.customer_id, 'other_id', n.other_id,
                              'survivors', jsonb_build_array(crm.survivor_of(n.customer_id),
                                                             crm.survivor_of(n.other_id)),
                              'reason', n.reason, 'created_by', n.created_by,
                              'created_at', crm.ts(n.created_at))
$$;

-- Admin: keep customers p_a and p_b apart. Both are locked (their survivors,
-- in id order, crm.lock_survivors) so that a resolve merging them cannot
-- commit between the check and the rule. Returns {status: created|exists|
-- not_found|same_customer, rule}. A pair stored again keeps its first reason.
CREATE OR REPLACE FUNCTION crm.never_merge_add(p_a uuid, p_b uuid, p_actor text, p_reason text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    survivors uuid[];
    n crm.never_merge%ROWTYPE;
BEGIN
    survivors := crm.lock_survivors(ARRAY[p_a, p_b]);
    IF survivors[1] IS NULL OR survivors[2] IS NULL THEN
        RETURN jsonb_build_object('status', 'not_found');
    END IF;
    IF survivors[1] = survivors[2] THEN
        RETURN jsonb_build_object('status', 'same_customer', 'survivor_id', survivors[1]);
    END IF;
    INSERT INTO crm.never_merge (customer_id, other_id, reason, created_by)
    VALUES (least(p_a, p_b), greatest(p_a, p_b), p_reason, p_actor)
    ON CONFLICT DO NOTHING
    RETURNING * INTO n;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'created', 'rule', crm.never_merge_doc(n));
    END IF;
    SELECT * INTO n FROM crm.never_merge
     WHERE customer_id = least(p_a, p_b) AND other_id = greatest(p_a, p_b);
    RETURN jsonb_build_object('status', 'exists', 'rule', crm.never_merge_doc(n));
END $$;

-- Admin: the rules, newest first; with p_customer, those whose one side is
-- p_customer or now survives into it (its survivor, or a customer it absorbed).
CREATE OR REPLACE FUNCTION crm.never_merge_list(p_customer uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('items', coalesce(jsonb_agg(crm.never_merge_doc(n)
                                                          ORDER BY n.created_at DESC,
                                                                   n.customer_id, n.other_id),
                                                '[]'))
      FROM crm.never_merge n
     WHERE p_customer IS NULL
        OR crm.survivor_of(p_customer) IN (crm.survivor_of(n.customer_id),
                                           crm.survivor_of(n.other_id))
$$;

-- Admin: remove the rule on a pair (either order). {deleted: true|false}.
CREATE OR REPLACE FUNCTION crm.never_merge_remove(p_a uuid, p_b uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crm.never_merge WHERE customer_id = least(p_a, p_b) AND other_id = greatest(p_a, p_b);
    RETURN jsonb_build_object('deleted', FOUND);
END $$;

-- Admin: take identifier p_identifier ({kind, namespace?, value},
-- normalised by the server) off customer p_customer (absorbed ids follow to
-- their survivor).
--   move:   the identifier goes to a new customer p_new_id, with the
--           interactions it brought: those of the customer that were sent
--           with it (resolved_by names it) and with no other identifier the
--           customer still holds, and that belong to no case. They become
--           the new customer's own (origin_customer_id), so no later unmerge
--           takes them back.
--           With p_never_merge, a never-merge rule on the two is added, so
--           that the next event carrying both identifiers does not merge
--           them back.
--   delete: the identifier is deleted; every interaction stays.
-- Either way the identifier leaves the snapshots of the customer's open
-- merges (an unmerge afterwards restores everything else exactly and does
-- not bring it back), aggregates are recomputed, and a row of
-- crm.identifier_detachments records it. Lock order: the identifier key's
-- advisory lock (step 1), then the survivor's row (step 2); the new
-- customer is a new row. Returns {status: detached|not_found|not_attached,
-- ...}.
CREATE OR REPLACE FUNCTION crm.detach_identifier(p_customer uuid, p_identifier jsonb, p_mode text,
                                                 p_new_id uuid, p_actor text, p_reason text,
                                                 p_never_merge boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    k text := p_identifier->>'kind';
    ns text := coalesce(p_identifier->>'namespace', '');
    v text := p_identifier->>'value';
    sid uuid;
    gone jsonb;
    moved uuid[] := '{}';
    d crm.identifier_detachments%ROWTYPE;
BEGIN
    gone := (SELECT o.gone FROM crm.open_customer(p_customer) AS o);
    IF gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(k || chr(31) || ns || chr(31) || v, 0));
    sid := crm.lock_survivor(p_customer);
    IF sid IS NULL THEN
        RETURN jsonb_build_object('status', 'not_found');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM crm.identifiers
                    WHERE kind = k AND namespace = ns AND value = v AND customer_id = sid) THEN
        RETURN jsonb_build_object('status', 'not_attached', 'customer_id', sid);
    END IF;

    IF p_mode = 'move' THEN
        INSERT INTO crm.customers (customer_id) VALUES (p_new_id);
        UPDATE crm.identifiers SET customer_id = p_new_id
         WHERE kind = k AND namespace = ns AND value = v;
        WITH m AS (
            UPDATE crm.interactions i SET customer_id = p_new_id, origin_customer_id = p_new_id
             WHERE i.customer_id = sid AND i.case_id IS NULL
               AND EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(i.resolved_by, '[]')) AS r
                            WHERE r->>'kind' = k AND coalesce(r->>'namespace', '') = ns
                              AND r->>'value' = v)
               AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(i.resolved_by) AS r
                                 JOIN crm.identifiers x ON x.kind = r->>'kind'
                                  AND x.namespace = coalesce(r->>'namespace', '')
                                  AND x.value = r->>'value'
                                WHERE x.customer_id = sid)
            RETURNING i.interaction_id)
        SELECT coalesce(array_agg(interaction_id ORDER BY interaction_id), '{}') INTO moved FROM m;
        PERFORM crm.rebuild_aggregates(sid);
        PERFORM crm.rebuild_aggregates(p_new_id);
        IF p_never_merge THEN
            INSERT INTO crm.never_merge (customer_id, other_id, reason, created_by)
            VALUES (least(sid, p_new_id), greatest(sid, p_new_id), p_reason, p_actor);
        END IF;
    ELSE
        DELETE FROM crm.identifiers WHERE kind = k AND namespace = ns AND value = v;
    END IF;

    UPDATE crm.merges SET absorbed_identifiers = (
               SELECT coalesce(jsonb_agg(x), '[]') FROM jsonb_array_elements(absorbed_identifiers) AS x
                WHERE NOT (x->>'kind' = k AND x->>'namespace' = ns AND x->>'value' = v))
     WHERE unmerged_at IS NULL
       AND absorbed_id IN (SELECT customer_id FROM crm.customers WHERE merged_into = sid)
       AND absorbed_identifiers @> jsonb_build_array(jsonb_build_object('kind', k, 'namespace', ns,
                                                                        'value', v));
    UPDATE crm.customers SET updated_at = clock_timestamp() WHERE customer_id = sid;

    INSERT INTO crm.identifier_detachments (customer_id, new_customer_id, mode, identifier,
                                            interaction_ids, actor, reason)
    VALUES (sid, CASE WHEN p_mode = 'move' THEN p_new_id END, p_mode,
            jsonb_strip_nulls(jsonb_build_object('kind', k, 'namespace', nullif(ns, ''), 'value', v)),
            moved, p_actor, p_reason)
    RETURNING * INTO d;
    RETURN jsonb_build_object('status', 'detached', 'detach_id', d.detach_id, 'mode', p_mode,
                              'customer_id', sid, 'identifier', d.identifier,
                              'new_customer_id', d.new_customer_id,
                              'interactions_moved', cardinality(moved),
                              'never_merge', p_mode = 'move' AND p_never_merge,
                              'customer', crm.profile(sid),
                              'new_customer', CASE WHEN p_mode = 'move'
                                                   THEN crm.profile(p_new_id) END);
END $$;
