-- 007_identity_junk_and_lock_order: placeholder values by pattern and on
-- the raw value; an identifier that would break a limit is not matched; one
-- lock order for every path that locks customers.
--
-- ---- lock order ---------------------------------------------------------------------
--
-- Every transaction that writes customer data takes its locks in this order,
-- each step complete before the next begins:
--   1. advisory transaction locks on identifier keys (pg_advisory_xact_lock of
--      hashtextextended(kind || chr(31) || namespace || chr(31) || value, 0)),
--      ascending: crm.resolve for its identifiers, crm.lock_batch for those of
--      every batch item crm.resolve will look at;
--   2. the rows in crm.customers of every customer it will write to (for an
--      absorbed id, its survivor), FOR NO KEY UPDATE - one mode for every
--      writer, so one writer per customer at a time - ascending customer_id,
--      re-checked after locking (a merge may have moved identifiers meanwhile:
--      the locks are then given back by rolling back a subtransaction and taken
--      again); crm.resolve, crm.lock_survivor(s), crm.lock_batch, merge,
--      unmerge, erasure;
--   3. the rows that belong to those customers (identifiers, traits,
--      interactions, interaction_stats, customer_needs, profile_cache,
--      preferences, consents, merges, and the crm.customers rows of the
--      customers they absorbed), in any order: only the holder of a
--      customer's lock writes them. A lock attempt that finds its row merged
--      meanwhile is rolled back (subtransaction) so that no stray lock on an
--      absorbed row is kept;
--   4. interaction idempotency keys (source, external_id): a batch inserts its
--      interactions in ascending (source, external_id) order.
-- Before 007 a batch share-locked its known customers up front, then resolved
-- the other items one by one (advisory locks and exclusive row locks taken in
-- item order, upgrading share locks other batches also held) and wrote stats,
-- needs and profile_cache rows of many customers in whatever order the plan
-- produced: a storm of 1,600 mixed requests (tests/e2e/test_identity.py,
-- LockOrderTests) saw 103 deadlocks. Readers lock nothing but a profile_cache
-- row (crm.profile_cache_store), one at a time.
--
-- ---- blocked values -------------------------------------------------------------
--
-- A blocked row is either an exact value (as before) or, with pattern, a
-- PostgreSQL regular expression matched against the lower-cased value. Both
-- are checked on the normalised value and on the value as the client wrote
-- it ("raw", trimmed, sent by the server when it differs): normalisation
-- turns the loyalty card "-1" into "1", which matched no block.
--
-- ---- limits -----------------------------------------------------------------------
--
-- crm.resolve found the customer first and checked the limits afterwards, so
-- a junk value nobody had blocked (a card "1" on a customer who had reached
-- five emails) handed its owner to every new person who sent it with their
-- own email: their email was dropped, their interactions and traits landed
-- on the owner. Now, before anything is written:
--   * a new identifier the customer found cannot take (its kind is at the
--     limit) is not attached, as before, if the request also names that
--     customer by an identifier of the same kind (one email too many for a
--     person it clearly names): ignored, reason identifier_would_exceed_limit;
--   * otherwise the identifiers that led to that customer are the ones that
--     would break the limit: they are not used for matching (ignored, reason
--     match_would_exceed_limit) and the request goes on with the others, a
--     new customer when nothing else matches.
-- Every ignored identifier is listed in the answer's `ignored` with its
-- reason (blocked ones with reason "blocked"); the limit cases are also
-- conflicts, recorded in crm.identity_conflicts.

ALTER TABLE crm.blocked_identifiers ADD COLUMN pattern boolean NOT NULL DEFAULT false;

INSERT INTO crm.blocked_identifiers (kind, value, reason, builtin)
SELECT '*', v, 'placeholder value', true
  FROM unnest(ARRAY['[object object]', 'nan', 'undefined undefined', 'null null',
                    'none none', 'n.a.', 'n/a n/a']) AS v
ON CONFLICT (kind, value) DO NOTHING;

-- example.com and the .example top-level domain are left out on purpose: this
-- repository's tests, benchmarks and documentation use them for real,
-- distinct customers (RFC 2606 documentation names). A production database
-- adds them with POST /v1/admin/blocked-identifiers (docs/identity.md).
INSERT INTO crm.blocked_identifiers (kind, value, reason, builtin, pattern) VALUES
    ('phone', '^\+([0-9])\1+$', 'placeholder phone: every digit the same', true, true),
    ('loyalty_card', '^([0-9])\1*$', 'placeholder card: every digit the same', true, true),
    ('email', '^(anonymous|anon|nobody|noemail|no-email|nomail|no-mail|noreply|no-reply|'
              'donotreply|do-not-reply|none|null|nil|n/a|unknown|undefined|guest|test)@',
     'placeholder mailbox', true, true),
    ('email', '@([a-z0-9-]+\.)*(example\.org|example\.net|test\.com)$',
     'reserved or test mail domain', true, true),
    ('email', '\.(test|invalid|localhost)$', 'reserved top-level domain', true, true)
ON CONFLICT (kind, value) DO NOTHING;

-- True when a (normalised or raw) value is blocked for its kind.
CREATE OR REPLACE FUNCTION crm.is_blocked(p_kind text, p_value text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM crm.blocked_identifiers b
                    WHERE b.kind IN (p_kind, '*')
                      AND CASE WHEN b.pattern THEN lower(p_value) ~ b.value
                               ELSE b.value = lower(p_value) END)
$$;

-- An identifier as crm.resolve receives it ({kind, namespace?, value, raw?}):
-- blocked when its value or its raw value is.
CREATE FUNCTION crm.identifier_blocked(p_id jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT crm.is_blocked(p_id->>'kind', p_id->>'value')
           OR (p_id ? 'raw' AND crm.is_blocked(p_id->>'kind', btrim(p_id->>'raw', E' \t\n\r\f\v')))
$$;

-- The identifiers without the raw values (what is stored and answered).
CREATE FUNCTION crm.without_raw(p_identifiers jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_identifiers) = 'array' THEN
                (SELECT coalesce(jsonb_agg(i - 'raw' ORDER BY n), '[]')
                   FROM jsonb_array_elements(p_identifiers) WITH ORDINALITY AS x(i, n))
           END
$$;

-- Admin: block a value or a pattern. A pattern must be a valid regular
-- expression: {"invalid": message} otherwise.
CREATE FUNCTION crm.block_identifier(p_kind text, p_value text, p_reason text, p_pattern boolean)
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

-- As in 005, with the raw values and patterns: the one customer that
-- p_identifiers all belong to when every identifier exists and none is
-- blocked; NULL otherwise.
CREATE OR REPLACE FUNCTION crm.known_owner(p_identifiers jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT CASE WHEN count(*) = count(d.customer_id) AND count(DISTINCT d.customer_id) = 1
                         AND NOT bool_or(crm.identifier_blocked(i.id))
                    THEN min(d.customer_id::text)::uuid END
          FROM jsonb_array_elements(p_identifiers) AS i(id)
          LEFT JOIN LATERAL (
                SELECT y.customer_id FROM crm.identifiers y
                 WHERE y.kind = i.id->>'kind' AND y.namespace = coalesce(i.id->>'namespace', '')
                   AND y.value = i.id->>'value'
                 LIMIT 1) AS d ON true
    );
END $$;

-- ---- customer locks (see the lock order at the top) --------------------------------

-- A row lock that waited for a merge keeps the absorbed row locked even
-- though the row no longer qualifies (merged_into IS NULL is re-checked after
-- locking): a stray lock outside the order. So every lock attempt that can
-- fail runs in a subtransaction, rolled back (SQLSTATE P0L01) to give the
-- stray lock back before the next attempt.

-- As in 004 (an erased customer counts as absent), with the writers' lock
-- mode and a failed attempt's lock given back.
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

-- The survivors of p_ids (in the order of p_ids; NULL for an absent or erased
-- one), all locked in ascending customer_id order. A merge that moves one of
-- them while we wait gives the locks back (subtransaction) and starts over,
-- so the order holds.
CREATE FUNCTION crm.lock_survivors(p_ids uuid[]) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    want uuid[];
    got uuid[];
BEGIN
    FOR attempt IN 1..5 LOOP
        want := ARRAY(SELECT DISTINCT s FROM (SELECT crm.survivor_of(x) AS s FROM unnest(p_ids) AS x) AS y
                       WHERE s IS NOT NULL ORDER BY s);
        BEGIN
            got := ARRAY(SELECT l.customer_id
                           FROM (SELECT id FROM unnest(want) AS u(id) ORDER BY id) AS k
                          CROSS JOIN LATERAL (
                                SELECT c.customer_id FROM crm.customers c
                                 WHERE c.customer_id = k.id AND c.merged_into IS NULL
                                   FOR NO KEY UPDATE OFFSET 0) AS l);
            -- Looked up again under the locks: an unmerge that committed
            -- while we waited makes an absorbed id a survivor of its own.
            IF got = want AND want = ARRAY(SELECT DISTINCT s FROM (SELECT crm.survivor_of(x) AS s
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

-- As in 005, with the writers' lock mode.
CREATE OR REPLACE FUNCTION crm.known_customer(p_identifiers jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    found_owner uuid := crm.known_owner(p_identifiers);
BEGIN
    IF found_owner IS NULL THEN
        RETURN NULL;
    END IF;
    BEGIN
        PERFORM 1 FROM crm.customers
          WHERE customer_id = found_owner AND merged_into IS NULL AND erased_at IS NULL
            FOR NO KEY UPDATE;
        -- Looked up again under the lock (an unmerge may have moved some of
        -- the identifiers while we waited).
        IF FOUND AND crm.known_owner(p_identifiers) IS NOT DISTINCT FROM found_owner THEN
            RETURN found_owner;
        END IF;
        RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
    EXCEPTION WHEN SQLSTATE 'P0L01' THEN
        RETURN NULL; -- merged meanwhile: crm.resolve_general takes it from here
    END;
END $$;

-- crm.resolve's general path (005 put the known-customer shortcut in front
-- of it). Returns {customer_id, created, merged_ids, ignored, conflicts}, or
-- {status: 'blocked', ignored} when every identifier is blocked.
CREATE OR REPLACE FUNCTION crm.resolve_general(p_identifiers jsonb, p_source text, p_new_id uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    usable jsonb;       -- identifiers still used for matching
    ignored jsonb;
    ids uuid[];         -- the customers they name, locked
    locked_ids uuid[];
    targets uuid[];     -- the customer(s) the request will land on
    survivor uuid;
    absorbed uuid;
    merged uuid[] := '{}';
    conflicts jsonb := '[]';
    merge_violations jsonb;
    violations jsonb;
    accepted jsonb;     -- new identifiers to attach
    refused jsonb;      -- new identifiers the customer cannot take: [{item, violations}]
    dropped jsonb;      -- identifiers not used for matching: [{item, customer, violations}]
    created boolean := false;
    attempt int;
    item jsonb;
    r jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(i.id - 'raw' ORDER BY i.n)
                        FILTER (WHERE NOT crm.identifier_blocked(i.id)), '[]'),
           coalesce(jsonb_agg((i.id - 'raw') || '{"reason": "blocked"}' ORDER BY i.n)
                        FILTER (WHERE crm.identifier_blocked(i.id)), '[]')
      INTO usable, ignored
      FROM jsonb_array_elements(p_identifiers) WITH ORDINALITY AS i(id, n);
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
                SELECT array_agg(customer_id ORDER BY customer_id) INTO locked_ids
                  FROM (SELECT customer_id FROM crm.customers
                         WHERE customer_id = ANY (ids) AND merged_into IS NULL
                         ORDER BY customer_id FOR NO KEY UPDATE) AS l;
                IF locked_ids IS NOT DISTINCT FROM ids
                   AND ids IS NOT DISTINCT FROM (
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
        IF ids IS NULL THEN
            targets := '{}';
            survivor := NULL;
        ELSIF cardinality(ids) = 1 THEN
            targets := ids;
            survivor := ids[1];
        ELSE
            merge_violations := crm.limit_violations(ids, NULL);
            IF jsonb_array_length(merge_violations) = 0 THEN
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

-- ---- ingestion --------------------------------------------------------------------

-- The customers a batch will write to: the owners of its items' identifiers
-- and the survivors of its customer ids, ascending.
CREATE FUNCTION crm.batch_customers(p_items jsonb) RETURNS uuid[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(DISTINCT c ORDER BY c), '{}')
      FROM (SELECT d.customer_id AS c
              FROM jsonb_array_elements(p_items) AS x(item)
             CROSS JOIN LATERAL jsonb_array_elements(
                    CASE WHEN x.item ? 'identifiers' THEN x.item->'identifiers' ELSE '[]' END) AS i(id)
             CROSS JOIN LATERAL (
                    SELECT y.customer_id FROM crm.identifiers y
                     WHERE y.kind = i.id->>'kind' AND y.namespace = coalesce(i.id->>'namespace', '')
                       AND y.value = i.id->>'value'
                     LIMIT 1) AS d
            UNION ALL
            SELECT crm.survivor_of((x.item->>'customer_id')::uuid)
              FROM jsonb_array_elements(p_items) AS x(item)
             WHERE x.item ? 'customer_id') AS all_customers
     WHERE c IS NOT NULL
$$;

-- Every lock a batch needs, in the order at the top of this migration, before
-- it writes anything: the advisory locks of the identifiers of the items that
-- go through crm.resolve, then every customer the batch will write to. Returns
-- the known items {ord: customer}: every identifier exists, none is blocked,
-- all belong to one customer (crm.resolve would change nothing there). The
-- set is looked up again after locking; if a merge changed it meanwhile, the
-- locks are given back (subtransaction) and taken again.
CREATE FUNCTION crm.lock_batch(p_items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    known jsonb;
    want uuid[];
    got uuid[];
BEGIN
    FOR attempt IN 1..5 LOOP
        BEGIN
            -- (crm.known_owner's rule, inlined: calling it per item made
            -- batches 19 % slower.)
            SELECT coalesce(jsonb_object_agg(k.ord::text, k.owner_id), '{}') INTO known
              FROM (SELECT x.ord, min(d.customer_id::text)::uuid AS owner_id
                      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
                     CROSS JOIN LATERAL jsonb_array_elements(x.item->'identifiers') AS i(id)
                      LEFT JOIN LATERAL (
                            SELECT y.customer_id FROM crm.identifiers y
                             WHERE y.kind = i.id->>'kind'
                               AND y.namespace = coalesce(i.id->>'namespace', '')
                               AND y.value = i.id->>'value'
                             LIMIT 1) AS d ON true
                     WHERE x.item ? 'identifiers'
                     GROUP BY x.ord
                    HAVING count(*) = count(d.customer_id) AND count(DISTINCT d.customer_id) = 1
                       AND NOT bool_or(crm.identifier_blocked(i.id))) AS k;
            PERFORM pg_advisory_xact_lock(h)
               FROM (SELECT DISTINCT hashtextextended(i.id->>'kind' || chr(31)
                                                      || coalesce(i.id->>'namespace', '') || chr(31)
                                                      || (i.id->>'value'), 0) AS h
                       FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
                      CROSS JOIN LATERAL jsonb_array_elements(x.item->'identifiers') AS i(id)
                      WHERE x.item ? 'identifiers' AND NOT known ? x.ord::text) AS keys
              ORDER BY h;
            want := crm.batch_customers(p_items);
            -- One index probe per customer, ascending. OFFSET 0 keeps each
            -- probe a subquery of its own (no scan of the whole table).
            got := ARRAY(SELECT l.customer_id
                           FROM (SELECT id FROM unnest(want) AS u(id) ORDER BY id) AS k
                          CROSS JOIN LATERAL (
                                SELECT c.customer_id FROM crm.customers c
                                 WHERE c.customer_id = k.id AND c.merged_into IS NULL
                                   FOR NO KEY UPDATE OFFSET 0) AS l);
            IF got = want AND crm.batch_customers(p_items) = want THEN
                RETURN known;
            END IF;
            RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
        EXCEPTION WHEN SQLSTATE 'P0L01' THEN
            NULL;
        END;
    END LOOP;
    RAISE EXCEPTION 'the customers of a batch kept being merged' USING ERRCODE = '40001';
END $$;

-- As in 006, but every lock is taken first, in the order at the top of this
-- migration (crm.lock_batch), and interactions are inserted in (source,
-- external_id) order; with crm.identifier_blocked (raw values, patterns) and
-- interactions' resolved_by without the raw values.
CREATE OR REPLACE FUNCTION crm.ingest_batch(p_items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n int := jsonb_array_length(p_items);
    results jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
    owner uuid[] := array_fill(NULL::uuid, ARRAY[n]);  -- the customer found for each item
    origin uuid[] := array_fill(NULL::uuid, ARRAY[n]);
    r record;
    resolved jsonb;
    cid uuid;
    known jsonb;      -- {ord: customer} for items a plain lookup resolves
BEGIN
    -- Known items need only their customer's lock (an earlier item of the
    -- batch can only merge that customer away, which the insert below
    -- follows); all other items go through crm.resolve, whose locks
    -- crm.lock_batch holds already, so it takes none out of order.
    known := crm.lock_batch(p_items);

    FOR r IN
        SELECT x.ord::int AS ord, x.item, d.interaction_id AS dup_id, d.customer_id AS dup_customer,
               row_number() OVER (PARTITION BY x.item->>'source', x.item->>'external_id'
                                  ORDER BY x.ord) AS nth
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
          LEFT JOIN crm.interactions d
            ON d.source = x.item->>'source' AND d.external_id = x.item->>'external_id'
         ORDER BY x.ord
    LOOP
        IF r.dup_id IS NOT NULL THEN
            results[r.ord] := jsonb_build_object('status', 'duplicate', 'interaction_id', r.dup_id,
                                                 'customer_id', r.dup_customer);
            CONTINUE;
        END IF;
        CONTINUE WHEN r.nth > 1; -- a repeat within the batch: answered after the insert
        IF r.item ? 'customer_id' THEN
            -- crm.lock_batch holds the survivor's lock: a plain lookup.
            SELECT c.customer_id INTO cid FROM crm.customers c
             WHERE c.customer_id = crm.survivor_of((r.item->>'customer_id')::uuid)
               AND c.erased_at IS NULL;
            IF cid IS NULL THEN
                results[r.ord] := jsonb_build_object('status', 'not_found');
                CONTINUE;
            END IF;
            origin[r.ord] := (r.item->>'customer_id')::uuid;
        ELSIF known ? r.ord::text THEN
            cid := (known->>r.ord::text)::uuid;
            origin[r.ord] := cid;
        ELSE
            resolved := crm.resolve(r.item->'identifiers', r.item->>'source',
                                    (r.item->>'new_customer_id')::uuid);
            IF resolved->>'status' = 'blocked' THEN
                results[r.ord] := resolved;
                CONTINUE;
            END IF;
            cid := (resolved->>'customer_id')::uuid;
            origin[r.ord] := cid;
            IF jsonb_array_length(coalesce(resolved->'conflicts', '[]')) > 0
               OR jsonb_array_length(coalesce(resolved->'ignored', '[]')) > 0 THEN
                results[r.ord] := jsonb_build_object('conflicts', resolved->'conflicts',
                                                     'ignored', resolved->'ignored');
            END IF;
        END IF;
        owner[r.ord] := cid;
    END LOOP;

    -- A later item's resolve may have merged an earlier item's customer:
    -- write to the survivor (merges flatten chains, so one hop).
    WITH todo AS (
        SELECT x.ord::int AS ord, x.item, c.customer_id, origin[x.ord] AS origin_id
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
         CROSS JOIN LATERAL (
                SELECT coalesce(s.merged_into, s.customer_id) AS customer_id
                  FROM crm.customers s WHERE s.customer_id = owner[x.ord] OFFSET 0) AS c
    ), ins AS (
        INSERT INTO crm.interactions (interaction_id, customer_id, source, external_id, channel,
                                      type, occurred_at, amount, currency, cost, tags, payload,
                                      origin_customer_id, resolved_by)
        SELECT (item->>'interaction_id')::uuid, customer_id, item->>'source',
               item->>'external_id', item->>'channel', item->>'type',
               (item->>'occurred_at')::timestamptz, (item->>'amount')::numeric,
               item->>'currency', (item->>'cost')::numeric,
               ARRAY(SELECT jsonb_array_elements_text(coalesce(item->'tags', '[]'))),
               coalesce(item->'payload', '{}'), origin_id, crm.without_raw(item->'identifiers')
          FROM todo ORDER BY item->>'source', item->>'external_id'
        ON CONFLICT (source, external_id) DO NOTHING
        RETURNING interaction_id, customer_id, channel, type, occurred_at, amount, currency,
                  cost, tags
    ), stats AS (
        INSERT INTO crm.interaction_stats AS s (customer_id, channel, type, currency, n, amount,
                                               cost, first_at, last_at)
        SELECT customer_id, channel, type, coalesce(currency, ''), count(*),
               sum(coalesce(amount, 0)), sum(coalesce(cost, 0)), min(occurred_at),
               max(occurred_at)
          FROM ins GROUP BY customer_id, channel, type, coalesce(currency, '')
        ON CONFLICT (customer_id, channel, type, currency) DO UPDATE
            SET n = s.n + excluded.n, amount = s.amount + excluded.amount,
                cost = s.cost + excluded.cost, first_at = least(s.first_at, excluded.first_at),
                last_at = greatest(s.last_at, excluded.last_at)
    ), needs AS (
        INSERT INTO crm.customer_needs AS s (customer_id, need, n, first_at, last_at)
        SELECT ins.customer_id, t, count(*), min(ins.occurred_at), max(ins.occurred_at)
          FROM ins, unnest(ins.tags) AS t GROUP BY ins.customer_id, t
        ON CONFLICT (customer_id, need) DO UPDATE
            SET n = s.n + excluded.n, first_at = least(s.first_at, excluded.first_at),
                last_at = greatest(s.last_at, excluded.last_at)
    )
    SELECT array_agg(
               CASE WHEN ins.interaction_id IS NOT NULL
                    THEN jsonb_build_object('status', 'created',
                                            'interaction_id', ins.interaction_id,
                                            'customer_id', ins.customer_id)
                         || coalesce(results[todo.ord], '{}')
                    ELSE results[todo.ord] END
               ORDER BY todo.ord)
      INTO results
      FROM generate_series(1, n) AS todo(ord)
      LEFT JOIN ins ON ins.interaction_id = (p_items->(todo.ord - 1)->>'interaction_id')::uuid;

    -- Items that lost to a repeat within the batch or to a concurrent
    -- delivery of the same key: answer with the stored interaction, or,
    -- when the first of the repeats stored nothing, with its answer.
    -- (The stored interaction is looked up only for those items.)
    SELECT array_agg(
               CASE WHEN results[x.ord] ? 'status' THEN results[x.ord]
                    ELSE coalesce(
                        (SELECT jsonb_build_object('status', 'duplicate',
                                                   'interaction_id', d.interaction_id,
                                                   'customer_id', d.customer_id)
                           FROM crm.interactions d
                          WHERE d.source = x.item->>'source'
                            AND d.external_id = x.item->>'external_id'),
                        results[x.first_ord]) END
               ORDER BY x.ord)
      INTO results
      FROM (SELECT ord::int AS ord, item,
                   (min(ord) OVER (PARTITION BY item->>'source', item->>'external_id'))::int
                       AS first_ord
              FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(item, ord)) AS x;
    RETURN to_jsonb(results);
END $$;

-- As in 001, with interactions' resolved_by without the raw values.
CREATE OR REPLACE FUNCTION crm.ingest(p_customer uuid, p_identifiers jsonb, p_new_customer uuid,
                           p_interaction_id uuid, p_source text, p_external_id text,
                           p_channel text, p_type text, p_occurred_at timestamptz,
                           p_amount numeric, p_currency text, p_cost numeric,
                           p_tags text[], p_payload jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cid uuid;
    existing record;
    new_id uuid;
    resolved jsonb;
BEGIN
    -- Cheap duplicate check first: a redelivery must not create or merge customers.
    SELECT interaction_id, customer_id INTO existing FROM crm.interactions
     WHERE source = p_source AND external_id = p_external_id;
    IF FOUND THEN
        RETURN jsonb_build_object('status', 'duplicate', 'interaction_id', existing.interaction_id,
                                  'customer_id', existing.customer_id);
    END IF;

    IF p_customer IS NOT NULL THEN
        cid := crm.lock_survivor(p_customer);
        IF cid IS NULL THEN
            RETURN jsonb_build_object('status', 'not_found');
        END IF;
    ELSE
        resolved := crm.resolve(p_identifiers, p_source, p_new_customer);
        IF resolved->>'status' = 'blocked' THEN
            RETURN resolved;
        END IF;
        cid := (resolved->>'customer_id')::uuid;
    END IF;

    INSERT INTO crm.interactions (interaction_id, customer_id, source, external_id, channel, type,
                                  occurred_at, amount, currency, cost, tags, payload,
                                  origin_customer_id, resolved_by)
    VALUES (p_interaction_id, cid, p_source, p_external_id, p_channel, p_type, p_occurred_at,
            p_amount, p_currency, p_cost, coalesce(p_tags, '{}'), coalesce(p_payload, '{}'),
            coalesce(p_customer, cid), crm.without_raw(p_identifiers))
    ON CONFLICT (source, external_id) DO NOTHING
    RETURNING interaction_id INTO new_id;

    IF new_id IS NULL THEN
        -- Lost a race with a concurrent delivery of the same key.
        SELECT interaction_id, customer_id INTO existing FROM crm.interactions
         WHERE source = p_source AND external_id = p_external_id;
        RETURN jsonb_build_object('status', 'duplicate', 'interaction_id', existing.interaction_id,
                                  'customer_id', existing.customer_id);
    END IF;

    INSERT INTO crm.interaction_stats AS s (customer_id, channel, type, currency, n, amount, cost,
                                           first_at, last_at)
    VALUES (cid, p_channel, p_type, coalesce(p_currency, ''), 1, coalesce(p_amount, 0),
            coalesce(p_cost, 0), p_occurred_at, p_occurred_at)
    ON CONFLICT (customer_id, channel, type, currency) DO UPDATE
        SET n = s.n + 1, amount = s.amount + excluded.amount, cost = s.cost + excluded.cost,
            first_at = least(s.first_at, excluded.first_at),
            last_at = greatest(s.last_at, excluded.last_at);

    INSERT INTO crm.customer_needs AS s (customer_id, need, n, first_at, last_at)
    SELECT cid, t, 1, p_occurred_at, p_occurred_at FROM unnest(p_tags) AS t
    ON CONFLICT (customer_id, need) DO UPDATE
        SET n = s.n + 1, first_at = least(s.first_at, excluded.first_at),
            last_at = greatest(s.last_at, excluded.last_at);

    RETURN jsonb_build_object('status', 'created', 'interaction_id', new_id, 'customer_id', cid)
           || CASE WHEN jsonb_array_length(coalesce(resolved->'conflicts', '[]')) > 0
                     OR jsonb_array_length(coalesce(resolved->'ignored', '[]')) > 0
                   THEN jsonb_build_object('conflicts', resolved->'conflicts',
                                           'ignored', resolved->'ignored')
                   ELSE '{}'::jsonb END;
END $$;

-- ---- merge, unmerge, erasure: the same lock order ----------------------------------

-- As in 001, with both customers locked in id order by crm.lock_survivors
-- (001 share-locked the survivor, then the absorbed customer, then upgraded
-- both: two merges of the same pair the other way round deadlocked).
CREATE OR REPLACE FUNCTION crm.manual_merge(p_survivor uuid, p_absorbed uuid, p_actor text, p_reason text,
                                 p_dry_run boolean, p_force boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    survivors uuid[];
    sid uuid;
    aid uuid;
    traits jsonb;
    violations jsonb;
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
    IF jsonb_array_length(violations) > 0 AND NOT p_force THEN
        RETURN jsonb_build_object('status', 'conflict', 'survivor_id', sid, 'absorbed_id', aid,
                                  'trait_conflicts', traits, 'limit_violations', violations);
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

-- As in 001, with the writers' lock mode: the survivor first, re-checked after
-- locking (a concurrent merge of the survivor would have changed it), then the
-- absorbed row, which belongs to it (001 locked both in id order, so a merge of
-- the survivor, which updates its absorbed rows, could deadlock with it).
CREATE OR REPLACE FUNCTION crm.unmerge(p_absorbed uuid, p_actor text, p_reason text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    m crm.merges%ROWTYPE;
    sid uuid;
    t jsonb;
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
    -- survivor's own earlier value (or away).
    FOR t IN SELECT * FROM jsonb_array_elements(m.absorbed_traits) LOOP
        -- A member unmerged on its own since took this very row back already.
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM crm.traits x
             WHERE x.customer_id = ANY (m.absorbed_members) AND x.customer_id <> p_absorbed
               AND x.name = t->>'name' AND x.value = t->'value' AND x.source = t->>'source'
               AND x.updated_at = (t->>'updated_at')::timestamptz);
        DELETE FROM crm.traits
         WHERE customer_id = sid AND name = t->>'name' AND value = t->'value'
           AND source = t->>'source' AND updated_at = (t->>'updated_at')::timestamptz;
        IF FOUND THEN
            INSERT INTO crm.traits (customer_id, name, value, source, updated_at)
            SELECT sid, s->>'name', s->'value', s->>'source', (s->>'updated_at')::timestamptz
              FROM jsonb_array_elements(m.survivor_traits) AS s
             WHERE s->>'name' = t->>'name';
        END IF;
        INSERT INTO crm.traits (customer_id, name, value, source, updated_at)
        VALUES (p_absorbed, t->>'name', t->'value', t->>'source', (t->>'updated_at')::timestamptz);
    END LOOP;

    PERFORM crm.rebuild_aggregates(sid);
    PERFORM crm.rebuild_aggregates(p_absorbed);
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

-- As in 004, with the writers' lock mode.
CREATE OR REPLACE FUNCTION crm.erase_customer(p_id uuid, p_key uuid, p_role text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    ids uuid[];
    n_identifiers bigint;
    n_traits bigint;
    n_preferences bigint;
    n_interactions bigint;
    at timestamptz := clock_timestamp();
    result jsonb;
BEGIN
    IF crm.is_erased(p_id) THEN
        RETURN crm.gone_doc(p_id);
    END IF;
    -- Locks the survivor (erased or not; NULL for an erased one).
    PERFORM crm.lock_survivors(ARRAY[p_id]);
    sid := crm.survivor_of(p_id);
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    IF crm.is_erased(sid) THEN
        RETURN crm.gone_doc(sid);
    END IF;
    ids := ARRAY[sid] || ARRAY(SELECT customer_id FROM crm.customers WHERE merged_into = sid
                               ORDER BY customer_id);

    DELETE FROM crm.identifiers WHERE customer_id = ANY (ids);
    GET DIAGNOSTICS n_identifiers = ROW_COUNT;
    DELETE FROM crm.traits WHERE customer_id = ANY (ids);
    GET DIAGNOSTICS n_traits = ROW_COUNT;
    DELETE FROM crm.preferences WHERE customer_id = ANY (ids);
    GET DIAGNOSTICS n_preferences = ROW_COUNT;
    UPDATE crm.interactions SET payload = '{}', resolved_by = NULL WHERE customer_id = ANY (ids);
    GET DIAGNOSTICS n_interactions = ROW_COUNT;
    -- Merge records keep who merged with whom and when, not the data.
    UPDATE crm.merges SET trigger_identifiers = '[]', absorbed_identifiers = '[]',
                          absorbed_traits = '[]', survivor_traits = '[]'
     WHERE survivor_id = ANY (ids) OR absorbed_id = ANY (ids);
    UPDATE crm.merge_preferences SET absorbed_preferences = '[]', survivor_preferences = '[]'
     WHERE merge_id IN (SELECT merge_id FROM crm.merges
                         WHERE survivor_id = ANY (ids) OR absorbed_id = ANY (ids));
    UPDATE crm.identity_conflicts SET identifiers = '[]' WHERE customer_ids && ids;
    UPDATE crm.customers SET erased_at = at, updated_at = at WHERE customer_id = ANY (ids);

    result := jsonb_build_object(
        'customer_id', sid, 'erased_at', crm.ts(at), 'erased_ids', to_jsonb(ids[2:]),
        'identifiers_deleted', n_identifiers, 'traits_deleted', n_traits,
        'preferences_deleted', n_preferences, 'interactions_anonymised', n_interactions);
    PERFORM crm.audit(p_key, p_role, 'customer.erase', sid, result - 'customer_id');
    RETURN result;
END $$;
