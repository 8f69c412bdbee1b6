-- 006_ingest_batch_probes: crm.ingest_batch (005) finds the batch's
-- customers by index, whatever the size of crm.customers.
--
-- On a small table (10,000 customers in bench/run.sh) the planner chose a
-- scan of all of crm.customers, hashed against the batch, for two of the
-- batch's statements: the share lock on its known customers and the join
-- that follows merges before the insert (1.3-2 ms and 0.7 ms of a 100-item
-- batch, against 0.3-0.6 ms for 100 index probes), and the whole table's
-- worth whenever costs tip that way. Each customer is now a probe of its
-- own. The last statement looked up every item's (source, external_id)
-- again to answer repeats within the batch; it now looks up only the items
-- that have no answer yet. Behaviour, answers and lock order are unchanged.

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
    locked uuid[];
BEGIN
    -- Known customers, found set-based: every identifier of the item exists,
    -- none is blocked, all belong to one customer. crm.resolve would find
    -- that customer and change nothing, so only its row lock is needed (an
    -- earlier item of the batch can only merge that customer away, which the
    -- insert below follows). All other items go through crm.resolve.
    -- (crm.known_owner's rule, inlined: calling it per item made batches
    -- 19 % slower.)
    SELECT coalesce(jsonb_object_agg(k.ord::text, k.owner_id), '{}') INTO known
      FROM (SELECT x.ord, min(d.customer_id::text)::uuid AS owner_id
              FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
             CROSS JOIN LATERAL jsonb_array_elements(x.item->'identifiers') AS i(id)
              LEFT JOIN LATERAL (
                    SELECT y.customer_id FROM crm.identifiers y
                     WHERE y.kind = i.id->>'kind' AND y.namespace = coalesce(i.id->>'namespace', '')
                       AND y.value = i.id->>'value'
                     LIMIT 1) AS d ON true
             CROSS JOIN LATERAL (
                    SELECT EXISTS (SELECT 1 FROM crm.blocked_identifiers b
                                    WHERE b.kind IN (i.id->>'kind', '*')
                                      AND b.value = lower(i.id->>'value')) AS blocked) AS bl
             WHERE x.item ? 'identifiers'
             GROUP BY x.ord
            HAVING count(*) = count(d.customer_id) AND count(DISTINCT d.customer_id) = 1
               AND NOT bool_or(bl.blocked)) AS k;
    -- One index probe per customer, in customer_id order (the order every
    -- batch locks in). OFFSET 0 keeps each probe a subquery of its own, so
    -- the planner cannot turn it into a scan of the whole table.
    SELECT coalesce(array_agg(l.customer_id ORDER BY k.id), '{}') INTO locked
      FROM (SELECT DISTINCT (value #>> '{}')::uuid AS id FROM jsonb_each(known) ORDER BY 1) AS k
     CROSS JOIN LATERAL (
            SELECT c.customer_id FROM crm.customers c
             WHERE c.customer_id = k.id AND c.merged_into IS NULL AND c.erased_at IS NULL
               FOR SHARE OFFSET 0) AS l;

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
            cid := crm.lock_survivor((r.item->>'customer_id')::uuid);
            IF cid IS NULL THEN
                results[r.ord] := jsonb_build_object('status', 'not_found');
                CONTINUE;
            END IF;
            origin[r.ord] := (r.item->>'customer_id')::uuid;
        ELSIF (known->>r.ord::text)::uuid = ANY (locked) THEN
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
               coalesce(item->'payload', '{}'), origin_id, item->'identifiers'
          FROM todo ORDER BY ord
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
