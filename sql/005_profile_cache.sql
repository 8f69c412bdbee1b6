-- 005_profile_cache: the profile document, maintained instead of rebuilt on
-- every read, and read-audit rows written in batches by the server.
--
-- crm.profile() runs about twenty subqueries; the call centre reads the same
-- profile many times between two writes. The built document is kept in
-- crm.profile_cache and invalidated by triggers in the same transaction as
-- every write that changes what the profile shows, so a read that follows a
-- committed write never sees the old document.
--
-- The invalidation protocol (why a concurrent read cannot put back a stale
-- document): every cache row carries a version. A write bumps the version
-- (inserting the row if needed) and clears the document; a read that misses
-- remembers the version it saw, builds the document, and stores it only if
-- the version is still the same (or, with no row, only if nobody inserted
-- one meanwhile). A write that committed after the reader's snapshot has
-- bumped the version, so the reader's store does nothing. Changes that touch
-- every customer at once (a value run, a settings change) bump one global
-- epoch instead; a document stored under an older epoch is a miss.
-- Consents recorded with a future occurred_at change the document with no
-- write at all, so a document is also only valid until the next such time.

CREATE TABLE crm.profile_cache (
    customer_id  uuid PRIMARY KEY,
    version      bigint NOT NULL DEFAULT 0,
    epoch        bigint NOT NULL DEFAULT 0,
    doc          jsonb,          -- NULL: invalidated, build again
    valid_until  timestamptz     -- NULL: until the next write
) WITH (fillfactor = 80);

CREATE TABLE crm.profile_cache_epoch (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch     bigint NOT NULL
);
INSERT INTO crm.profile_cache_epoch VALUES (true, 1);
ANALYZE crm.profile_cache_epoch; -- one row: let the planner know from the start

-- Invalidate one customer's document. Once per transaction is enough: a
-- row this transaction already bumped (xmin is ours) is left alone, so the
-- many rows of one write (stats, needs, identifiers) cost one version bump.
CREATE FUNCTION crm.profile_stale(p_customer uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_customer IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO crm.profile_cache AS c (customer_id, version) VALUES (p_customer, 1)
    ON CONFLICT (customer_id) DO UPDATE SET version = c.version + 1, doc = NULL
        WHERE c.doc IS NOT NULL OR c.xmin <> xid(pg_current_xact_id());
END $$;

CREATE FUNCTION crm.profile_stale_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM crm.profile_stale(OLD.customer_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND (TG_OP = 'INSERT' OR NEW.customer_id <> OLD.customer_id) THEN
        PERFORM crm.profile_stale(NEW.customer_id);
    END IF;
    RETURN NULL;
END $$;

-- Every table the profile document is built from (see crm.profile and
-- crm.profile_sections), except the value tables, which use the epoch.
CREATE TRIGGER identifiers_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.identifiers
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER traits_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.traits
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER interaction_stats_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.interaction_stats FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER customer_needs_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.customer_needs FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER preferences_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.preferences
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();
CREATE TRIGGER consent_events_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.consent_events FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();

-- A customer row: its own document, and the merged_ids of the survivors it
-- joins or leaves.
CREATE FUNCTION crm.profile_stale_customer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM crm.profile_stale(NEW.customer_id);
    IF NEW.merged_into IS DISTINCT FROM OLD.merged_into THEN
        PERFORM crm.profile_stale(OLD.merged_into);
        PERFORM crm.profile_stale(NEW.merged_into);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER customers_profile_stale AFTER UPDATE ON crm.customers
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_customer();

CREATE FUNCTION crm.profile_stale_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.profile_cache_epoch SET epoch = epoch + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER customer_value_profile_stale AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON crm.customer_value FOR EACH STATEMENT EXECUTE FUNCTION crm.profile_stale_all();
CREATE TRIGGER settings_profile_stale AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON crm.settings FOR EACH STATEMENT EXECUTE FUNCTION crm.profile_stale_all();

-- The profile read: the cached document of p_id's survivor when it is still
-- good, else built (crm.profile, or the gone document of an erased customer)
-- and stored. On a streaming replica nothing is stored; the replica serves
-- what the primary's cache holds and builds the rest. No audit row here: the
-- server writes read-audit rows in batches (crm.audit_reads).
CREATE FUNCTION crm.cached_profile(p_id uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid := crm.survivor_of(p_id);
    c record;
    doc jsonb;
BEGIN
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT pc.doc, pc.version, pc.epoch = e.epoch AS current_epoch, pc.valid_until,
           e.epoch AS epoch
      INTO c
      FROM crm.profile_cache_epoch e LEFT JOIN crm.profile_cache pc ON pc.customer_id = sid;
    IF c.doc IS NOT NULL AND c.current_epoch AND (c.valid_until IS NULL OR c.valid_until > now()) THEN
        doc := c.doc;
    ELSE
        doc := coalesce(crm.gone_doc(sid), crm.profile(sid));
        IF doc IS NOT NULL AND NOT pg_is_in_recovery() THEN
            PERFORM crm.profile_cache_store(sid, c.version, c.epoch, doc);
        END IF;
    END IF;
    IF sid <> p_id AND NOT (doc ? 'gone') THEN
        doc := doc || jsonb_build_object('requested_id', p_id, 'merged_into', sid);
    END IF;
    RETURN doc;
END $$;

-- The profile read as the server runs it: a stored document that is still
-- good is answered by this plain join, without entering PL/pgSQL (about 40 %
-- faster than calling crm.cached_profile); anything else (a miss, an absorbed
-- id) goes through crm.cached_profile. No row: no such customer.
CREATE VIEW crm.profile_read AS
SELECT c.customer_id,
       CASE WHEN pc.doc IS NOT NULL AND pc.epoch = e.epoch AND c.merged_into IS NULL
                 AND (pc.valid_until IS NULL OR pc.valid_until > now())
            THEN pc.doc
            ELSE crm.cached_profile(c.customer_id) END AS doc
  FROM crm.customers c
 CROSS JOIN crm.profile_cache_epoch e
  LEFT JOIN crm.profile_cache pc ON pc.customer_id = c.customer_id;

-- crm.read_profile (003/004) read and audited in one call; reads now go
-- through crm.profile_read and the server's audit batches, so it has no caller.
DROP FUNCTION crm.read_profile(uuid, uuid, text, text);

CREATE FUNCTION crm.profile_cache_store(p_customer uuid, p_version bigint, p_epoch bigint,
                                        p_doc jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    until timestamptz := (SELECT min(occurred_at) FROM crm.consent_events
                           WHERE customer_id = p_customer AND occurred_at > now());
BEGIN
    -- The document is a cache: its row need not survive a crash, and the
    -- read should not wait for a WAL flush.
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_version IS NULL THEN
        INSERT INTO crm.profile_cache (customer_id, version, epoch, doc, valid_until)
        VALUES (p_customer, 0, p_epoch, p_doc, until)
        ON CONFLICT (customer_id) DO NOTHING;
    ELSE
        UPDATE crm.profile_cache SET doc = p_doc, epoch = p_epoch, valid_until = until
         WHERE customer_id = p_customer AND version = p_version;
    END IF;
END $$;

-- Read-audit rows, batched by the server: p_rows is a JSON array of
-- {at, key_id, role, action, customer_id}. Returns the number written.
CREATE FUNCTION crm.audit_reads(p_rows jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO crm.audit_log (at, key_id, role, action, customer_id)
    SELECT r.at, r.key_id, r.role, r.action, r.customer_id
      FROM jsonb_to_recordset(p_rows)
           AS r(at timestamptz, key_id uuid, role text, action text, customer_id uuid);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN to_jsonb(n);
END $$;

-- ---- batch ingestion -----------------------------------------------------------

-- The one customer that p_identifiers all belong to when every identifier
-- exists and none is blocked; NULL otherwise (a new or blocked identifier,
-- or several owners: work for crm.resolve). No lock taken.
CREATE FUNCTION crm.known_owner(p_identifiers jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT CASE WHEN count(*) = count(d.customer_id) AND count(DISTINCT d.customer_id) = 1
                         AND NOT bool_or(bl.blocked)
                    THEN min(d.customer_id::text)::uuid END
          FROM jsonb_array_elements(p_identifiers) AS i(id)
          LEFT JOIN LATERAL (
                SELECT y.customer_id FROM crm.identifiers y
                 WHERE y.kind = i.id->>'kind' AND y.namespace = coalesce(i.id->>'namespace', '')
                   AND y.value = i.id->>'value'
                 LIMIT 1) AS d ON true
         CROSS JOIN LATERAL (
                SELECT EXISTS (SELECT 1 FROM crm.blocked_identifiers b
                                WHERE b.kind IN (i.id->>'kind', '*')
                                  AND b.value = lower(i.id->>'value')) AS blocked) AS bl
    );
END $$;

-- A whole batch in one call. p_items is a JSON array of valid items, as the
-- server sends them: {customer_id | identifiers, new_customer_id,
-- interaction_id, source, external_id, channel, type, occurred_at, amount,
-- currency, cost, tags, payload}. Customers are found item by item, in
-- order (duplicates first, so a redelivery creates or merges nobody), as
-- crm.ingest does; then all new interactions, their aggregates and needs are
-- written with one statement each. Returns one result per item, in order,
-- shaped as crm.ingest's. An error fails the whole call; the server then
-- stores the batch item by item (crm.ingest under savepoints).
CREATE FUNCTION crm.ingest_batch(p_items jsonb) RETURNS jsonb
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
    SELECT coalesce(array_agg(customer_id), '{}') INTO locked
      FROM (SELECT customer_id FROM crm.customers
             WHERE customer_id IN (SELECT (value #>> '{}')::uuid FROM jsonb_each(known))
               AND merged_into IS NULL AND erased_at IS NULL
             ORDER BY customer_id FOR SHARE) AS l;

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
        SELECT x.ord::int AS ord, x.item, coalesce(c.merged_into, c.customer_id) AS customer_id,
               origin[x.ord] AS origin_id
          FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
          JOIN crm.customers c ON c.customer_id = owner[x.ord]
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
    SELECT array_agg(
               CASE WHEN results[x.ord] ? 'status' THEN results[x.ord]
                    WHEN d.interaction_id IS NOT NULL
                    THEN jsonb_build_object('status', 'duplicate',
                                            'interaction_id', d.interaction_id,
                                            'customer_id', d.customer_id)
                    ELSE results[x.first_ord] END
               ORDER BY x.ord)
      INTO results
      FROM (SELECT ord::int AS ord, item,
                   (min(ord) OVER (PARTITION BY item->>'source', item->>'external_id'))::int
                       AS first_ord
              FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(item, ord)) AS x
      LEFT JOIN crm.interactions d
        ON d.source = x.item->>'source' AND d.external_id = x.item->>'external_id';
    RETURN to_jsonb(results);
END $$;

-- ---- known customers -------------------------------------------------------------

-- The customer p_identifiers already name, share-locked, when there is
-- nothing for crm.resolve to do (see crm.known_owner); NULL otherwise. The
-- share lock keeps a merge from absorbing the customer until commit, as
-- crm.lock_survivor does for writes by customer id.
CREATE FUNCTION crm.known_customer(p_identifiers jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    found_owner uuid := crm.known_owner(p_identifiers);
BEGIN
    IF found_owner IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM crm.customers
      WHERE customer_id = found_owner AND merged_into IS NULL AND erased_at IS NULL FOR SHARE;
    RETURN CASE WHEN FOUND THEN found_owner END;
END $$;

-- crm.resolve with that shortcut in front: a known customer needs no
-- advisory locks, no limit checks and no exclusive row lock. The answer is
-- the one crm.resolve gives in that case. Callers (crm.ingest,
-- crm.resolve_customer, crm.ingest_batch) call it by name.
ALTER FUNCTION crm.resolve(jsonb, text, uuid) RENAME TO resolve_general;
CREATE FUNCTION crm.resolve(p_identifiers jsonb, p_source text, p_new_id uuid)
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
