-- 001_foundation: customers, identifiers, traits, interactions, aggregates, merges.
--
-- Every table that holds customer data is keyed by customer_id so the schema
-- can later be distributed by it. Identity resolution and ingestion are SQL
-- functions so that each API call is one database round trip and runs in one
-- transaction (no partial writes).

CREATE SCHEMA IF NOT EXISTS crm;

CREATE TABLE crm.customers (
    customer_id  uuid PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    merged_into  uuid REFERENCES crm.customers (customer_id),
    merged_at    timestamptz
);
CREATE INDEX customers_merged_into_idx ON crm.customers (merged_into) WHERE merged_into IS NOT NULL;

-- (kind, namespace, value) belongs to exactly one customer: the primary key
-- is what makes concurrent resolution produce one customer.
CREATE TABLE crm.identifiers (
    kind         text NOT NULL,
    namespace    text NOT NULL DEFAULT '',
    value        text NOT NULL,
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    source       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, namespace, value)
);
CREATE INDEX identifiers_customer_idx ON crm.identifiers (customer_id);

-- One row per field; attributes are stored as 'attributes.<key>'.
CREATE TABLE crm.traits (
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    name         text NOT NULL,
    value        jsonb NOT NULL,
    source       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (customer_id, name)
);

CREATE TABLE crm.interactions (
    interaction_id uuid PRIMARY KEY,
    customer_id    uuid NOT NULL REFERENCES crm.customers (customer_id),
    source         text NOT NULL,
    external_id    text NOT NULL,
    channel        text NOT NULL,
    type           text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    amount         numeric(18,4),
    currency       char(3),
    cost           numeric(18,4),
    tags           text[] NOT NULL DEFAULT '{}',
    payload        jsonb NOT NULL DEFAULT '{}',
    -- For unmerge: the customer the interaction was addressed to (the id
    -- given, or the one its identifiers resolved to) and those identifiers.
    origin_customer_id uuid NOT NULL,
    resolved_by    jsonb,
    UNIQUE (source, external_id)
);
CREATE INDEX interactions_timeline_idx
    ON crm.interactions (customer_id, occurred_at DESC, interaction_id DESC);

-- Running totals per customer, channel, type and currency ('' when none),
-- maintained in the ingest transaction so a profile read never scans the
-- timeline.
CREATE TABLE crm.interaction_stats (
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    channel      text NOT NULL,
    type         text NOT NULL,
    currency     text NOT NULL,
    n            bigint NOT NULL,
    amount       numeric NOT NULL,
    cost         numeric NOT NULL,
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    PRIMARY KEY (customer_id, channel, type, currency)
);

-- Needs derived from interactions: every tag (reason for calling, product
-- use, interest) counted per customer with its latest occurrence. Declared
-- needs live in traits (attributes.interests) and are combined on read.
CREATE TABLE crm.customer_needs (
    customer_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    need         text NOT NULL,
    n            bigint NOT NULL,
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    PRIMARY KEY (customer_id, need)
);
CREATE INDEX customer_needs_need_idx ON crm.customer_needs (need, last_at);

-- Every merge, with what unmerge needs to split it again: the absorbed
-- customer's members (itself and what it had absorbed), identifiers and
-- traits, and the survivor's traits, as they were just before.
CREATE TABLE crm.merges (
    merge_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    survivor_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    absorbed_id  uuid NOT NULL REFERENCES crm.customers (customer_id),
    actor        text NOT NULL,
    reason       text NOT NULL,
    trigger_identifiers jsonb NOT NULL,
    merged_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    absorbed_members     uuid[] NOT NULL,
    absorbed_identifiers jsonb NOT NULL,
    absorbed_traits      jsonb NOT NULL,
    survivor_traits      jsonb NOT NULL,
    absorbed_updated_at  timestamptz NOT NULL,
    survivor_updated_at  timestamptz NOT NULL,
    unmerged_at  timestamptz,
    unmerged_by  text,
    unmerge_reason text
);
CREATE INDEX merges_survivor_idx ON crm.merges (survivor_id);
CREATE INDEX merges_absorbed_idx ON crm.merges (absorbed_id);

-- Placeholder values that must never glue customers together ("null",
-- "anonymous", test@test.com, a shop's shared phone...). Matched on the
-- lower-cased normalised value; kind '*' blocks a value for every kind.
CREATE TABLE crm.blocked_identifiers (
    kind        text NOT NULL,
    value       text NOT NULL,
    reason      text NOT NULL,
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, value)
);
INSERT INTO crm.blocked_identifiers (kind, value, reason, builtin)
SELECT '*', v, 'placeholder value', true
  FROM unnest(ARRAY['null', 'none', 'nil', 'undefined', 'unknown', 'anonymous', 'n/a', 'na',
                    '-1', '0', 'test', 'guest', '00000000-0000-0000-0000-000000000000']) AS v
UNION ALL
SELECT 'email', v, 'placeholder email', true
  FROM unnest(ARRAY['test@test.com', 'test@example.com', 'example@example.com', 'a@a.com',
                    'none@none.com', 'null@null.com', 'noemail@noemail.com', 'no@email.com',
                    'email@email.com', 'noreply@noreply.com', 'unknown@unknown.com']) AS v
UNION ALL
SELECT 'phone', v, 'placeholder phone', true
  FROM unnest(ARRAY['+10000000000', '+11111111111', '+12345678900', '+1234567890',
                    '+123456789', '+99999999999']) AS v;

-- How many identifiers of a kind one customer may hold (external: per
-- namespace), and which kinds are trusted most when they disagree.
CREATE TABLE crm.identifier_limits (
    kind              text PRIMARY KEY,
    max_per_customer  integer NOT NULL CHECK (max_per_customer >= 1),
    priority          integer NOT NULL  -- 1 = most trusted
);
INSERT INTO crm.identifier_limits VALUES
    ('external', 1, 1), ('loyalty_card', 2, 2), ('email', 5, 3), ('phone', 3, 4), ('device', 20, 5);

-- Requests that would have broken a limit: recorded instead of merged.
CREATE TABLE crm.identity_conflicts (
    conflict_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    source        text NOT NULL,
    reason        text NOT NULL,
    customer_ids  uuid[] NOT NULL,
    identifiers   jsonb NOT NULL,
    detail        jsonb NOT NULL
);
CREATE INDEX identity_conflicts_customers_idx ON crm.identity_conflicts USING gin (customer_ids);

-- Follow merged_into to the surviving customer (merges flatten chains, so
-- this is at most one hop; the loop is defensive).
CREATE FUNCTION crm.survivor_of(p_id uuid) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cur uuid := p_id;
    nxt uuid;
    found_row boolean;
BEGIN
    FOR i IN 1..16 LOOP
        SELECT merged_into, true INTO nxt, found_row FROM crm.customers WHERE customer_id = cur;
        IF found_row IS NULL THEN
            RETURN NULL;
        END IF;
        IF nxt IS NULL THEN
            RETURN cur;
        END IF;
        cur := nxt;
    END LOOP;
    RETURN cur;
END $$;

CREATE FUNCTION crm.ts(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- Share-lock the surviving customer of p_id until commit, so no merge can
-- absorb it while we write to it; if a merge wins the race, follow it.
-- Returns NULL when the customer does not exist.
CREATE FUNCTION crm.lock_survivor(p_id uuid) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
BEGIN
    FOR attempt IN 1..5 LOOP
        sid := crm.survivor_of(p_id);
        IF sid IS NULL THEN
            RETURN NULL;
        END IF;
        PERFORM 1 FROM crm.customers
          WHERE customer_id = sid AND merged_into IS NULL FOR SHARE;
        IF FOUND THEN
            RETURN sid;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'customer % kept being merged', p_id USING ERRCODE = '40001';
END $$;

-- Set traits from a JSON object; null removes. attributes is merged per key.
CREATE FUNCTION crm.apply_traits(p_customer uuid, p_traits jsonb, p_source text)
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
        ELSE
            PERFORM crm.set_trait(p_customer, k, v, p_source);
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION crm.set_trait(p_customer uuid, p_name text, p_value jsonb, p_source text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_typeof(p_value) = 'null' THEN
        DELETE FROM crm.traits WHERE customer_id = p_customer AND name = p_name;
    ELSE
        INSERT INTO crm.traits (customer_id, name, value, source, updated_at)
        VALUES (p_customer, p_name, p_value, p_source, clock_timestamp())
        ON CONFLICT (customer_id, name) DO UPDATE
            SET value = excluded.value, source = excluded.source, updated_at = excluded.updated_at;
    END IF;
END $$;

-- A customer's identifier or trait rows as a JSON array (merge snapshots).
CREATE FUNCTION crm.snapshot_rows(p_what text, p_customer uuid) RETURNS jsonb
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
CREATE FUNCTION crm.merge_into(p_survivor uuid, p_absorbed uuid, p_actor text,
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

    -- Traits: the most recently written value of each field wins.
    INSERT INTO crm.traits (customer_id, name, value, source, updated_at)
    SELECT p_survivor, name, value, source, updated_at
      FROM crm.traits WHERE customer_id = p_absorbed
    ON CONFLICT (customer_id, name) DO UPDATE
        SET value = excluded.value, source = excluded.source, updated_at = excluded.updated_at
        WHERE excluded.updated_at > crm.traits.updated_at;
    DELETE FROM crm.traits WHERE customer_id = p_absorbed;

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
END $$;

-- True when a normalised identifier is a blocked placeholder value.
CREATE FUNCTION crm.is_blocked(p_kind text, p_value text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT EXISTS (SELECT 1 FROM crm.blocked_identifiers
                            WHERE kind IN (p_kind, '*') AND value = lower(p_value))
    );
END $$;

-- Identifier counts of the given customers together that would break a
-- limit: [{kind, namespace, count, limit}] (namespace only for external).
CREATE FUNCTION crm.limit_violations(p_customers uuid[], p_extra jsonb) RETURNS jsonb
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

-- Resolve normalised identifiers (JSON array of {kind, namespace, value}) to
-- one customer, creating or merging as needed. Returns {customer_id,
-- created, merged_ids, ignored, conflicts}, or {status: 'blocked', ignored}
-- when every identifier is a blocked placeholder. p_new_id is the id to use
-- if a customer is created (generated by the caller with libuuid).
--
-- Safety: blocked identifiers are neither matched nor stored (ignored).
-- Customers are merged only if the merged customer keeps within the
-- per-kind limits; otherwise nothing is merged, the customer found through
-- the most trusted kind is used, and the conflict is recorded. A new
-- identifier that would break its kind's limit is not attached (conflict).
--
-- Concurrency: a transaction-scoped advisory lock per identifier, taken in a
-- fixed order, serialises requests that share an identifier; customer rows are
-- then locked in id order and re-checked, so a concurrent merge is seen.
CREATE FUNCTION crm.resolve(p_identifiers jsonb, p_source text, p_new_id uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    usable jsonb;
    ignored jsonb;
    ids uuid[];
    locked_ids uuid[];
    survivor uuid;
    absorbed uuid;
    merged uuid[] := '{}';
    conflicts jsonb := '[]';
    violations jsonb;
    created boolean := false;
    attempt int;
    item jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(i) FILTER (WHERE NOT crm.is_blocked(i->>'kind', i->>'value')), '[]'),
           coalesce(jsonb_agg(i) FILTER (WHERE crm.is_blocked(i->>'kind', i->>'value')), '[]')
      INTO usable, ignored
      FROM jsonb_array_elements(p_identifiers) AS i;
    IF jsonb_array_length(usable) = 0 THEN
        RETURN jsonb_build_object('status', 'blocked', 'ignored', ignored);
    END IF;

    PERFORM pg_advisory_xact_lock(h)
       FROM (SELECT DISTINCT hashtextextended(i->>'kind' || chr(31) || coalesce(i->>'namespace', '')
                                              || chr(31) || (i->>'value'), 0) AS h
               FROM jsonb_array_elements(usable) AS i) AS keys
      ORDER BY h;

    FOR attempt IN 1..5 LOOP
        -- One primary-key lookup per identifier: LIMIT 1 stops the planner
        -- from flattening this into a hash join over all identifiers.
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
        SELECT array_agg(customer_id ORDER BY customer_id) INTO locked_ids
          FROM (SELECT customer_id FROM crm.customers
                 WHERE customer_id = ANY (ids) AND merged_into IS NULL
                 ORDER BY customer_id FOR UPDATE) AS l;
        -- A concurrent merge moved identifiers while we waited: look again.
        IF locked_ids IS NOT DISTINCT FROM ids THEN
            EXIT;
        END IF;
        IF attempt = 5 THEN
            RAISE EXCEPTION 'identity graph kept changing during resolve'
                USING ERRCODE = '40001';
        END IF;
    END LOOP;

    IF ids IS NULL THEN
        INSERT INTO crm.customers (customer_id) VALUES (p_new_id);
        survivor := p_new_id;
        created := true;
    ELSIF cardinality(ids) = 1 THEN
        survivor := ids[1];
    ELSE
        violations := crm.limit_violations(ids, NULL);
        IF jsonb_array_length(violations) = 0 THEN
            SELECT customer_id INTO survivor FROM crm.customers
             WHERE customer_id = ANY (ids) ORDER BY created_at, customer_id LIMIT 1;
            FOREACH absorbed IN ARRAY ids LOOP
                IF absorbed <> survivor THEN
                    PERFORM crm.merge_into(survivor, absorbed, p_source,
                                           'identifiers matched more than one customer',
                                           usable);
                    merged := merged || absorbed;
                END IF;
            END LOOP;
        ELSE
            -- No merge: answer with the customer of the most trusted identifier.
            SELECT d.customer_id INTO survivor
              FROM jsonb_array_elements(usable) AS i
              JOIN crm.identifiers d ON d.kind = i->>'kind'
               AND d.namespace = coalesce(i->>'namespace', '') AND d.value = i->>'value'
              JOIN crm.identifier_limits l ON l.kind = d.kind
              JOIN crm.customers c ON c.customer_id = d.customer_id
             ORDER BY l.priority, c.created_at, c.customer_id LIMIT 1;
            conflicts := conflicts || jsonb_build_object(
                'reason', 'merge_would_exceed_limits', 'customer_ids', to_jsonb(ids),
                'chosen', survivor, 'violations', violations);
            INSERT INTO crm.identity_conflicts (source, reason, customer_ids, identifiers, detail)
            VALUES (p_source, 'merge_would_exceed_limits', ids, usable,
                    jsonb_build_object('chosen', survivor, 'violations', violations));
        END IF;
    END IF;

    -- Attach the identifiers nobody owns yet, one by one, within the limits.
    FOR item IN SELECT DISTINCT i FROM jsonb_array_elements(usable) AS i LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM crm.identifiers
                               WHERE kind = item->>'kind'
                                 AND namespace = coalesce(item->>'namespace', '')
                                 AND value = item->>'value');
        violations := crm.limit_violations(ARRAY[survivor], jsonb_build_array(item));
        IF jsonb_array_length(violations) > 0 THEN
            conflicts := conflicts || jsonb_build_object(
                'reason', 'identifier_would_exceed_limit', 'identifier', item,
                'customer_id', survivor, 'violations', violations);
            INSERT INTO crm.identity_conflicts (source, reason, customer_ids, identifiers, detail)
            VALUES (p_source, 'identifier_would_exceed_limit', ARRAY[survivor],
                    jsonb_build_array(item), jsonb_build_object('violations', violations));
            CONTINUE;
        END IF;
        INSERT INTO crm.identifiers (kind, namespace, value, customer_id, source)
        VALUES (item->>'kind', coalesce(item->>'namespace', ''), item->>'value', survivor, p_source)
        ON CONFLICT (kind, namespace, value) DO NOTHING;
    END LOOP;

    RETURN jsonb_build_object('customer_id', survivor, 'created', created,
                              'merged_ids', to_jsonb(merged), 'ignored', ignored,
                              'conflicts', conflicts);
END $$;

-- Needs: derived (interaction tags, with counts and recency) merged with
-- declared ones (the attributes.interests trait, an array of strings).
CREATE FUNCTION crm.customer_needs_doc(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'need', need, 'declared', declared, 'count', coalesce(n, 0),
                       'first_at', crm.ts(first_at), 'last_at', crm.ts(last_at))
                     ORDER BY coalesce(n, 0) DESC, need), '[]')
              FROM (SELECT coalesce(d.need, dc.need) AS need, dc.need IS NOT NULL AS declared,
                           d.n, d.first_at, d.last_at
                      FROM (SELECT need, n, first_at, last_at FROM crm.customer_needs
                             WHERE customer_id = p_customer) AS d
                      FULL JOIN (SELECT DISTINCT lower(e) AS need
                                   FROM crm.traits t,
                                        jsonb_array_elements_text(
                                            CASE WHEN jsonb_typeof(t.value) = 'array' THEN t.value
                                                 ELSE '[]' END) AS e
                                  WHERE t.customer_id = p_customer
                                    AND t.name = 'attributes.interests') AS dc
                        ON dc.need = d.need) AS x
    );
END $$;

-- Extra profile sections added by later migrations (value, preferences...).
CREATE FUNCTION crm.profile_sections(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT '{}'::jsonb
    );
END $$;

-- The single customer view as one JSON document. p_id may be an absorbed id.
CREATE FUNCTION crm.profile(p_id uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    sid uuid := crm.survivor_of(p_id);
    doc jsonb;
BEGIN
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_build_object(
        'customer_id', c.customer_id,
        'created_at', crm.ts(c.created_at),
        'updated_at', crm.ts(greatest(c.updated_at,
                                      (SELECT max(t.updated_at) FROM crm.traits t
                                        WHERE t.customer_id = c.customer_id),
                                      (SELECT max(d.created_at) FROM crm.identifiers d
                                        WHERE d.customer_id = c.customer_id))),
        'merged_ids', coalesce((SELECT jsonb_agg(m.customer_id ORDER BY m.merged_at, m.customer_id)
                                  FROM crm.customers m WHERE m.merged_into = c.customer_id), '[]'),
        'identifiers', coalesce((SELECT jsonb_agg(
                                    jsonb_strip_nulls(jsonb_build_object(
                                        'kind', d.kind,
                                        'namespace', nullif(d.namespace, ''),
                                        'value', d.value,
                                        'source', d.source,
                                        'created_at', crm.ts(d.created_at)))
                                    ORDER BY d.kind, d.namespace, d.value)
                                   FROM crm.identifiers d WHERE d.customer_id = c.customer_id), '[]'),
        'traits', (SELECT coalesce(jsonb_object_agg(t.name, t.value)
                                     FILTER (WHERE t.name NOT LIKE 'attributes.%'), '{}')
                          || jsonb_build_object('attributes',
                                 coalesce(jsonb_object_agg(substr(t.name, 12), t.value)
                                            FILTER (WHERE t.name LIKE 'attributes.%'), '{}'))
                     FROM crm.traits t WHERE t.customer_id = c.customer_id),
        'trait_sources', coalesce((SELECT jsonb_object_agg(t.name, jsonb_build_object(
                                        'source', t.source, 'updated_at', crm.ts(t.updated_at)))
                                     FROM crm.traits t WHERE t.customer_id = c.customer_id), '{}'),
        'aggregates', (SELECT jsonb_build_object(
                'first_seen', crm.ts(min(s.first_at)),
                'last_seen', crm.ts(max(s.last_at)),
                'interaction_count', coalesce(sum(s.n), 0),
                'by_channel', coalesce((SELECT jsonb_object_agg(channel, n) FROM (
                        SELECT channel, sum(n) AS n FROM crm.interaction_stats
                         WHERE customer_id = c.customer_id GROUP BY channel) x), '{}'),
                'by_type', coalesce((SELECT jsonb_object_agg(type, n) FROM (
                        SELECT type, sum(n) AS n FROM crm.interaction_stats
                         WHERE customer_id = c.customer_id GROUP BY type) x), '{}'),
                'revenue', coalesce((SELECT jsonb_object_agg(currency, amount) FROM (
                        SELECT currency, trim_scale(sum(amount)) AS amount FROM crm.interaction_stats
                         WHERE customer_id = c.customer_id AND type = 'purchase' AND currency <> ''
                         GROUP BY currency) x), '{}'),
                'returns', jsonb_build_object(
                    'count', coalesce(sum(s.n) FILTER (WHERE s.type = 'return'), 0),
                    'amount', coalesce((SELECT jsonb_object_agg(currency, amount) FROM (
                        SELECT currency, trim_scale(sum(amount)) AS amount FROM crm.interaction_stats
                         WHERE customer_id = c.customer_id AND type = 'return' AND currency <> ''
                         GROUP BY currency) x), '{}')),
                'complaints', coalesce(sum(s.n) FILTER (WHERE s.type = 'complaint'), 0),
                'cost', coalesce((SELECT jsonb_object_agg(currency, cost) FROM (
                        SELECT currency, trim_scale(sum(cost)) AS cost FROM crm.interaction_stats
                         WHERE customer_id = c.customer_id AND currency <> ''
                         GROUP BY currency HAVING sum(cost) <> 0) x), '{}'))
              FROM crm.interaction_stats s WHERE s.customer_id = c.customer_id),
        'needs', crm.customer_needs_doc(c.customer_id))
        || crm.profile_sections(c.customer_id)
      INTO doc
      FROM crm.customers c WHERE c.customer_id = sid;
    IF sid <> p_id THEN
        doc := doc || jsonb_build_object('requested_id', p_id, 'merged_into', sid);
    END IF;
    RETURN doc;
END $$;

-- Resolve (optionally) and set traits; returns {customer_id, created, merged_ids, customer}.
CREATE FUNCTION crm.resolve_customer(p_identifiers jsonb, p_traits jsonb, p_source text,
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
CREATE FUNCTION crm.patch_traits(p_id uuid, p_traits jsonb, p_source text)
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

-- Store one interaction idempotently. The customer is given either by id
-- (p_customer) or by identifiers (p_identifiers, resolved as crm.resolve).
-- Returns {status: created|duplicate|not_found, interaction_id, customer_id}.
CREATE FUNCTION crm.ingest(p_customer uuid, p_identifiers jsonb, p_new_customer uuid,
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
            coalesce(p_customer, cid), p_identifiers)
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

-- One page of a customer's timeline, newest first, keyset-paginated on
-- (occurred_at, interaction_id). Returns {customer_id, items,
-- next_cursor_at, next_cursor_id} (cursor fields null on the last page), or
-- NULL when the customer does not exist.
CREATE FUNCTION crm.timeline(p_id uuid, p_limit int, p_cursor_at timestamptz, p_cursor_id uuid,
                             p_channel text, p_type text, p_since timestamptz,
                             p_until timestamptz)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    sid uuid := crm.survivor_of(p_id);
    doc jsonb;
BEGIN
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    WITH page AS (
        SELECT i.*, row_number() OVER (ORDER BY i.occurred_at DESC, i.interaction_id DESC) AS rn
          FROM (SELECT * FROM crm.interactions i
                 WHERE i.customer_id = sid
                   AND (p_cursor_at IS NULL
                        OR (i.occurred_at, i.interaction_id) < (p_cursor_at, p_cursor_id))
                   AND (p_channel IS NULL OR i.channel = p_channel)
                   AND (p_type IS NULL OR i.type = p_type)
                   AND (p_since IS NULL OR i.occurred_at >= p_since)
                   AND (p_until IS NULL OR i.occurred_at < p_until)
                 ORDER BY i.occurred_at DESC, i.interaction_id DESC
                 LIMIT p_limit + 1) AS i)
    SELECT jsonb_build_object(
               'customer_id', sid,
               'items', coalesce(jsonb_agg(jsonb_build_object(
                        'interaction_id', interaction_id,
                        'customer_id', customer_id,
                        'source', source,
                        'external_id', external_id,
                        'channel', channel,
                        'type', type,
                        'occurred_at', crm.ts(occurred_at),
                        'received_at', crm.ts(received_at),
                        'amount', trim_scale(amount),
                        'currency', currency,
                        'cost', trim_scale(cost),
                        'tags', to_jsonb(tags),
                        'payload', payload) ORDER BY rn) FILTER (WHERE rn <= p_limit), '[]'),
               'next_cursor_at', CASE WHEN count(*) > p_limit THEN
                    (array_agg(crm.ts(occurred_at)) FILTER (WHERE rn = p_limit))[1] END,
               'next_cursor_id', CASE WHEN count(*) > p_limit THEN
                    (array_agg(interaction_id) FILTER (WHERE rn = p_limit))[1] END)
      INTO doc
      FROM page;
    RETURN doc;
END $$;

-- Recompute a customer's running totals and needs from its interactions
-- (after an unmerge moved interactions between customers).
CREATE FUNCTION crm.rebuild_aggregates(p_customer uuid) RETURNS void
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

-- Trait fields on which two customers disagree and which value a merge of
-- p_absorbed into p_survivor keeps (the most recently written one).
CREATE FUNCTION crm.trait_conflicts(p_survivor uuid, p_absorbed uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'trait', s.name, 'survivor_value', s.value, 'absorbed_value', a.value,
                       'winner', CASE WHEN a.updated_at > s.updated_at THEN 'absorbed' ELSE 'survivor' END)
                     ORDER BY s.name), '[]')
              FROM crm.traits s JOIN crm.traits a ON a.name = s.name
             WHERE s.customer_id = p_survivor AND a.customer_id = p_absorbed AND a.value <> s.value
    );
END $$;

-- Merge on demand (admin). Returns {status: merged|dry_run|conflict|not_found|
-- same_customer, survivor_id, absorbed_id, trait_conflicts, limit_violations,
-- customer}. A dry run does the merge inside a subtransaction, takes the
-- resulting profile and rolls the subtransaction back: nothing is written.
-- Limits are enforced unless p_force.
CREATE FUNCTION crm.manual_merge(p_survivor uuid, p_absorbed uuid, p_actor text, p_reason text,
                                 p_dry_run boolean, p_force boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    aid uuid;
    traits jsonb;
    violations jsonb;
    doc jsonb;
BEGIN
    -- lock_survivor: absent (and, once erasure exists, erased) customers are NULL.
    sid := crm.lock_survivor(p_survivor);
    aid := crm.lock_survivor(p_absorbed);
    IF sid IS NULL OR aid IS NULL THEN
        RETURN jsonb_build_object('status', 'not_found');
    END IF;
    IF sid = aid THEN
        RETURN jsonb_build_object('status', 'same_customer', 'survivor_id', sid);
    END IF;
    PERFORM 1 FROM crm.customers WHERE customer_id IN (sid, aid)
     ORDER BY customer_id FOR UPDATE;
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

-- The survivor of merge m was itself absorbed later (m2, maybe further up a
-- chain): those later snapshots still hold what m brought in. Make them as
-- if m had never happened, so undoing them later restores the survivor as
-- it was before m: m's absorbed trait rows become the survivor's earlier
-- rows, its members and identifiers leave, and the survivor's updated_at
-- goes back.
CREATE FUNCTION crm.forget_in_later_snapshots(m crm.merges) RETURNS void
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

-- Split p_absorbed out of the customer that absorbed it, undoing its latest
-- merge: its members, identifiers, traits and interactions go back as they
-- were; interactions added after the merge follow the identifier (or id)
-- they were addressed to; survivor traits written by the merge are restored.
-- Returns {status: unmerged|not_merged, survivor_id, customer_id, merge_id}.
CREATE FUNCTION crm.unmerge(p_absorbed uuid, p_actor text, p_reason text)
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
    sid := crm.survivor_of(p_absorbed);
    PERFORM 1 FROM crm.customers WHERE customer_id IN (sid, p_absorbed)
     ORDER BY customer_id FOR UPDATE;

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

-- Merge history of a customer (as survivor or absorbed, any id it ever had).
CREATE FUNCTION crm.merge_history(p_id uuid) RETURNS jsonb
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
                                             WHERE merged_into = (SELECT sid FROM me))), '[]'))
            END
    );
END $$;
