-- 008_lock_order_unmerge: a lock attempt that finds its customer merged
-- gives its locks back before it waits for any other lock.
--
-- ---- lock order (amends 007) ---------------------------------------------------
--
-- The order at the top of 007 stands: advisory locks on identifier keys
-- ascending; customer rows FOR NO KEY UPDATE ascending customer_id,
-- re-checked after locking; then the rows that belong to them. What 007 got
-- wrong is how a failed attempt gives back its locks. crm.lock_batch,
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
CREATE FUNCTION crm.lock_customers(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    k uuid;
BEGIN
    FOREACH k IN ARRAY ARRAY(SELECT DISTINCT id FROM unnest(p_ids) AS u(id)
                              WHERE id IS NOT NULL ORDER BY id) LOOP
        PERFORM 1 FROM crm.customers WHERE customer_id = k AND merged_into IS NULL
           FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
        END IF;
    END LOOP;
END $$;

-- As in 007, with crm.lock_customers.
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

-- As in 007, with crm.lock_customers.
CREATE OR REPLACE FUNCTION crm.lock_batch(p_items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    known jsonb;
    want uuid[];
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
            PERFORM crm.lock_customers(want);
            IF crm.batch_customers(p_items) = want THEN
                RETURN known;
            END IF;
            RAISE EXCEPTION 'lock order: start over' USING ERRCODE = 'P0L01';
        EXCEPTION WHEN SQLSTATE 'P0L01' THEN
            NULL;
        END;
    END LOOP;
    RAISE EXCEPTION 'the customers of a batch kept being merged' USING ERRCODE = '40001';
END $$;

-- As in 007, with crm.lock_customers.
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

