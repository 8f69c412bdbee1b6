-- ingest: interactions, one at a time (crm.ingest) or a batch at once
-- (crm.ingest_batch), with their aggregates and needs.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- Store one interaction idempotently. The customer is given either by id
-- (p_customer) or by identifiers (p_identifiers, resolved as crm.resolve).
-- Returns {status: created|duplicate|not_found, interaction_id, customer_id},
-- with merged_ids (the customers its identifiers merged into customer_id)
-- when there are any, and conflicts and ignored when either is non-empty.
-- Interactions' resolved_by holds the identifiers without their raw values.
-- p_nps, p_csat, p_ces: satisfaction scores (sql/015_satisfaction.sql),
-- validated by the server; they default to NULL so that a caller of the
-- 14-argument form (a server of the previous release during a rolling
-- upgrade, bench/run.sh) still finds the function.
-- p_case, p_case_role: the case the interaction names and what it does to a
-- case, as the server decides it (src/cases.c: 'open' opens one, 'complaint',
-- 'response', 'follow' follow p_case; NULL: no case). The case must belong
-- to the customer the interaction is stored for, after resolution; if not,
-- nothing is written (the resolution too is undone) and the answer is
-- {status: case_mismatch}. Then crm.case_follow (cases.sql) opens, reopens
-- or answers the case. docs/cases.md.
DROP FUNCTION IF EXISTS crm.ingest(uuid, jsonb, uuid, uuid, text, text, text, text, timestamptz,
                                   numeric, text, numeric, text[], jsonb);
DROP FUNCTION IF EXISTS crm.ingest(uuid, jsonb, uuid, uuid, text, text, text, text, timestamptz,
                                   numeric, text, numeric, text[], jsonb, smallint, smallint,
                                   smallint);
CREATE OR REPLACE FUNCTION crm.ingest(p_customer uuid, p_identifiers jsonb, p_new_customer uuid,
                           p_interaction_id uuid, p_source text, p_external_id text,
                           p_channel text, p_type text, p_occurred_at timestamptz,
                           p_amount numeric, p_currency text, p_cost numeric,
                           p_tags text[], p_payload jsonb, p_nps smallint DEFAULT NULL,
                           p_csat smallint DEFAULT NULL, p_ces smallint DEFAULT NULL,
                           p_case uuid DEFAULT NULL, p_case_role text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cid uuid;
    existing record;
    new_id uuid;
    resolved jsonb;
    case_ref uuid := CASE WHEN p_case_role = 'open' THEN gen_random_uuid() ELSE p_case END;
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
        IF p_case IS NOT NULL AND NOT crm.case_of_customer(p_case, cid) THEN
            RETURN jsonb_build_object('status', 'case_mismatch', 'case_id', p_case);
        END IF;
    ELSIF p_case IS NULL THEN
        -- crm.resolve, without building and reading its answer for a known
        -- customer (the common case: 7 % of an ingest's instructions).
        cid := crm.known_customer(p_identifiers);
        IF cid IS NULL THEN
            resolved := crm.resolve_general(p_identifiers, p_source, p_new_customer);
            IF resolved->>'status' = 'blocked' THEN
                RETURN resolved;
            END IF;
            cid := (resolved->>'customer_id')::uuid;
        END IF;
    ELSE
        -- The case is checked against the customer the identifiers resolve
        -- to; when it is another's, what the resolution wrote is undone.
        BEGIN
            resolved := crm.resolve(p_identifiers, p_source, p_new_customer);
            IF resolved->>'status' IS DISTINCT FROM 'blocked'
               AND NOT crm.case_of_customer(p_case, (resolved->>'customer_id')::uuid) THEN
                RAISE EXCEPTION 'case % is not this customer''s', p_case USING ERRCODE = 'P0C01';
            END IF;
        EXCEPTION WHEN SQLSTATE 'P0C01' THEN
            RETURN jsonb_build_object('status', 'case_mismatch', 'case_id', p_case);
        END;
        IF resolved->>'status' = 'blocked' THEN
            RETURN resolved;
        END IF;
        cid := (resolved->>'customer_id')::uuid;
    END IF;

    INSERT INTO crm.interactions (interaction_id, customer_id, source, external_id, channel, type,
                                  occurred_at, amount, currency, cost, tags, payload,
                                  origin_customer_id, resolved_by, nps, csat, ces, case_id)
    VALUES (p_interaction_id, cid, p_source, p_external_id, p_channel, p_type, p_occurred_at,
            p_amount, p_currency, p_cost, coalesce(p_tags, '{}'), coalesce(p_payload, '{}'),
            coalesce(p_customer, cid), crm.without_raw(p_identifiers), p_nps, p_csat, p_ces,
            case_ref)
    ON CONFLICT (source, external_id) DO NOTHING
    RETURNING interaction_id INTO new_id;

    IF new_id IS NULL THEN
        -- Lost a race with a concurrent delivery of the same key.
        SELECT interaction_id, customer_id INTO existing FROM crm.interactions
         WHERE source = p_source AND external_id = p_external_id;
        RETURN jsonb_build_object('status', 'duplicate', 'interaction_id', existing.interaction_id,
                                  'customer_id', existing.customer_id);
    END IF;

    -- A plain UPDATE first: a customer's stats row for this channel, type
    -- and currency usually exists, and INSERT .. ON CONFLICT DO UPDATE locks
    -- it before updating (one more WAL record, 54 bytes, bench/wal.sh).
    UPDATE crm.interaction_stats AS s
       SET n = s.n + 1, amount = s.amount + coalesce(p_amount, 0),
           cost = s.cost + coalesce(p_cost, 0), first_at = least(s.first_at, p_occurred_at),
           last_at = greatest(s.last_at, p_occurred_at)
     WHERE s.customer_id = cid AND s.channel = p_channel AND s.type = p_type
       AND s.currency = coalesce(p_currency, '');
    IF NOT FOUND THEN
        INSERT INTO crm.interaction_stats AS s (customer_id, channel, type, currency, n, amount,
                                               cost, first_at, last_at)
        VALUES (cid, p_channel, p_type, coalesce(p_currency, ''), 1, coalesce(p_amount, 0),
                coalesce(p_cost, 0), p_occurred_at, p_occurred_at)
        ON CONFLICT (customer_id, channel, type, currency) DO UPDATE
            SET n = s.n + 1, amount = s.amount + excluded.amount, cost = s.cost + excluded.cost,
                first_at = least(s.first_at, excluded.first_at),
                last_at = greatest(s.last_at, excluded.last_at);
    END IF;

    -- The journey stage (stage.sql; one HOT update in the common case).
    IF p_type = 'purchase' THEN
        PERFORM crm.stage_purchase(cid, p_occurred_at);
    END IF;

    IF cardinality(p_tags) > 0 THEN
        INSERT INTO crm.customer_needs AS s (customer_id, need, n, first_at, last_at)
        SELECT cid, t, 1, p_occurred_at, p_occurred_at FROM unnest(p_tags) AS t
        ON CONFLICT (customer_id, need) DO UPDATE
            SET n = s.n + 1, first_at = least(s.first_at, excluded.first_at),
                last_at = greatest(s.last_at, excluded.last_at);
    END IF;

    IF case_ref IS NOT NULL THEN
        PERFORM crm.case_follow(case_ref, p_case_role, cid, coalesce(p_customer, cid), new_id,
                                p_channel, p_source, p_occurred_at);
    END IF;

    RETURN jsonb_build_object('status', 'created', 'interaction_id', new_id, 'customer_id', cid)
           || CASE WHEN case_ref IS NULL THEN '{}'::jsonb
                   ELSE jsonb_build_object('case_id', case_ref,
                                           'case_opened', p_case_role = 'open') END
           || CASE WHEN resolved IS NULL THEN '{}'::jsonb
                   WHEN jsonb_array_length(coalesce(resolved->'conflicts', '[]')) > 0
                     OR jsonb_array_length(coalesce(resolved->'ignored', '[]')) > 0
                   THEN jsonb_build_object('conflicts', resolved->'conflicts',
                                           'ignored', resolved->'ignored')
                   ELSE '{}'::jsonb END
           -- the customers its identifiers merged into cid, as resolve says
           || CASE WHEN jsonb_array_length(coalesce(resolved->'merged_ids', '[]')) > 0
                   THEN jsonb_build_object('merged_ids', resolved->'merged_ids')
                   ELSE '{}'::jsonb END;
END $$;

-- Recompute a customer's running totals and needs from its interactions
-- (after an unmerge moved interactions between customers).
CREATE OR REPLACE FUNCTION crm.rebuild_aggregates(p_customer uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crm.interaction_stats WHERE customer_id = p_customer;
    INSERT INTO crm.interaction_stats (customer_id, channel, type, currency, n, amount, cost,
                                       first_at, last_at)
    SELECT customer_id, channel, type, coalesce(currency, ''), count(*),
           coalesce(sum(amount), 0), coalesce(sum(cost), 0), min(occurred_at), max(occurred_at)
      FROM crm.interactions WHERE customer_id = p_customer
     GROUP BY customer_id, channel, type, coalesce(currency, '');
    DELETE FROM crm.customer_needs WHERE customer_id = p_customer;
    INSERT INTO crm.customer_needs (customer_id, need, n, first_at, last_at)
    SELECT customer_id, t, count(*), min(occurred_at), max(occurred_at)
      FROM crm.interactions, unnest(tags) AS t WHERE customer_id = p_customer
     GROUP BY customer_id, t;
END $$;

-- A whole batch in one call. p_items is a JSON array of valid items, as the
-- server sends them: {customer_id | identifiers, new_customer_id,
-- interaction_id, source, external_id, channel, type, occurred_at, amount,
-- currency, cost, tags, payload, nps, csat, ces, case_id, case_role}. An item
-- with a case_role (it opens or follows a case, src/cases.c) is stored by
-- crm.ingest, in item order, within the batch. Every lock is taken first, in the lock
-- order (crm.lock_batch; sql/007_identity_junk_and_lock_order.sql and
-- docs/identity.md), duplicates are answered first (a redelivery creates or
-- merges nobody), customers are found as crm.ingest finds them
-- (crm.identifier_block: raw values, patterns), then all new interactions
-- (in (source, external_id) order), their aggregates and needs are written
-- with one statement each; each customer is an index probe of its own.
-- Returns one result per item, in order, shaped as crm.ingest's. An error
-- fails the whole call; the server then stores the batch item by item
-- (crm.ingest under savepoints).
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
    via_ingest boolean := false;  -- an item was stored by crm.ingest (a case)
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
        IF r.item ? 'case_role' THEN
            -- An item that opens or follows a case is stored as crm.ingest
            -- stores one (its locks are held already); the set-based insert
            -- below skips it (no owner).
            results[r.ord] := crm.ingest(
                (r.item->>'customer_id')::uuid, r.item->'identifiers',
                (r.item->>'new_customer_id')::uuid, (r.item->>'interaction_id')::uuid,
                r.item->>'source', r.item->>'external_id', r.item->>'channel', r.item->>'type',
                (r.item->>'occurred_at')::timestamptz, (r.item->>'amount')::numeric,
                r.item->>'currency', (r.item->>'cost')::numeric,
                ARRAY(SELECT jsonb_array_elements_text(coalesce(r.item->'tags', '[]'))),
                coalesce(r.item->'payload', '{}'), (r.item->>'nps')::smallint,
                (r.item->>'csat')::smallint, (r.item->>'ces')::smallint,
                (r.item->>'case_id')::uuid, r.item->>'case_role');
            via_ingest := true;
            CONTINUE;
        END IF;
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
            IF jsonb_array_length(coalesce(resolved->'merged_ids', '[]')) > 0 THEN
                results[r.ord] := coalesce(results[r.ord], '{}')
                                  || jsonb_build_object('merged_ids', resolved->'merged_ids');
            END IF;
        END IF;
        owner[r.ord] := cid;
    END LOOP;

    -- Items stored by crm.ingest: a later item's resolve may have merged
    -- their customer away since (the merge moved the interaction); the
    -- answer names the survivor, as for the others.
    IF via_ingest THEN
        FOR i IN 1..n LOOP
            IF results[i]->>'status' = 'created' THEN
                results[i] := results[i] || jsonb_build_object(
                    'customer_id', crm.survivor_of((results[i]->>'customer_id')::uuid));
            END IF;
        END LOOP;
    END IF;

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
                                      origin_customer_id, resolved_by, nps, csat, ces)
        SELECT (item->>'interaction_id')::uuid, customer_id, item->>'source',
               item->>'external_id', item->>'channel', item->>'type',
               (item->>'occurred_at')::timestamptz, (item->>'amount')::numeric,
               item->>'currency', (item->>'cost')::numeric,
               ARRAY(SELECT jsonb_array_elements_text(coalesce(item->'tags', '[]'))),
               coalesce(item->'payload', '{}'), origin_id, crm.without_raw(item->'identifiers'),
               (item->>'nps')::smallint, (item->>'csat')::smallint, (item->>'ces')::smallint
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

    -- The journey stage of each customer who bought (stage.sql), in
    -- customer order, after the purchase statistics it reads.
    PERFORM crm.stage_purchase(b.customer_id, b.last_at)
       FROM (SELECT (results[x.ord]->>'customer_id')::uuid AS customer_id,
                    max((x.item->>'occurred_at')::timestamptz) AS last_at
               FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
              WHERE x.item->>'type' = 'purchase' AND results[x.ord]->>'status' = 'created'
              GROUP BY 1 ORDER BY 1) AS b;

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

-- ---- ingestion --------------------------------------------------------------------

-- The customers a batch will write to: the owners of its items' identifiers
-- and the survivors of its customer ids, ascending. (plpgsql, whose plan is
-- kept: as a SQL function it was planned at each of its two calls per batch.)
CREATE OR REPLACE FUNCTION crm.batch_customers(p_items jsonb) RETURNS uuid[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
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
     WHERE c IS NOT NULL);
END $$;

-- Every lock a batch needs, in the lock order (docs/identity.md), before
-- it writes anything: the advisory locks of the identifiers of the items that
-- go through crm.resolve, then every customer the batch will write to. Returns
-- the known items {ord: customer}: every identifier exists, none is blocked,
-- all belong to one customer (crm.resolve would change nothing there). The
-- set is looked up again after locking; if a merge changed it meanwhile, the
-- locks are given back (subtransaction) and taken again.
CREATE OR REPLACE FUNCTION crm.lock_batch(p_items jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    known jsonb;
    want uuid[];
BEGIN
    FOR attempt IN 1..5 LOOP
        BEGIN
            -- One look at every identifier of the batch gives the known
            -- items (crm.known_owner's rule, inlined: calling it per item
            -- made batches 19 % slower) and the customers the batch will
            -- write to (crm.batch_customers' set: a second pass over the
            -- identifiers cost a batch of 100 items 2 %).
            WITH ids AS (
                SELECT x.ord, d.customer_id, bl.blocked
                  FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
                 CROSS JOIN LATERAL jsonb_array_elements(x.item->'identifiers') AS i(id)
                  LEFT JOIN LATERAL (
                        SELECT y.customer_id FROM crm.identifiers y
                         WHERE y.kind = i.id->>'kind'
                           AND y.namespace = coalesce(i.id->>'namespace', '')
                           AND y.value = i.id->>'value'
                         LIMIT 1) AS d ON true
                 CROSS JOIN LATERAL crm.identifier_block(i.id) AS bl
                 WHERE x.item ? 'identifiers')
            SELECT (SELECT coalesce(jsonb_object_agg(k.ord::text, k.owner_id), '{}')
                      FROM (SELECT ord, min(customer_id::text)::uuid AS owner_id FROM ids
                             GROUP BY ord
                            HAVING count(*) = count(customer_id)
                               AND count(DISTINCT customer_id) = 1 AND NOT bool_or(blocked)) AS k),
                   (SELECT coalesce(array_agg(DISTINCT c ORDER BY c), '{}')
                      FROM (SELECT customer_id FROM ids
                            UNION ALL
                            SELECT crm.survivor_of((x.item->>'customer_id')::uuid)
                              FROM jsonb_array_elements(p_items) AS x(item)
                             WHERE x.item ? 'customer_id') AS all_customers(c)
                     WHERE c IS NOT NULL)
              INTO known, want;
            PERFORM pg_advisory_xact_lock(h)
               FROM (SELECT DISTINCT hashtextextended(i.id->>'kind' || chr(31)
                                                      || coalesce(i.id->>'namespace', '') || chr(31)
                                                      || (i.id->>'value'), 0) AS h
                       FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
                      CROSS JOIN LATERAL jsonb_array_elements(x.item->'identifiers') AS i(id)
                      WHERE x.item ? 'identifiers' AND NOT known ? x.ord::text) AS keys
              ORDER BY h;
            IF FOUND THEN
                -- Looked up again after the advisory locks, which may have
                -- waited for a transaction that created some of these
                -- identifiers.
                want := crm.batch_customers(p_items);
            END IF;
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
