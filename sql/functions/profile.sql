-- profile: the profile document and the timeline; the profile cache, its
-- invalidation triggers and the profile read (crm.profile_read).
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- Needs: derived (interaction tags, with counts and recency) merged with
-- declared ones (the attributes.interests trait, an array of strings).
CREATE OR REPLACE FUNCTION crm.customer_needs_doc(p_customer uuid) RETURNS jsonb
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

-- Satisfaction (sql/015_satisfaction.sql): the customer's latest score of
-- each kind, {score, at, channel, type, interaction_id} or null, by
-- occurred_at (then interaction id), and the NPS category of the latest NPS.
-- Each is one probe of interactions_scored_idx. The profile cache needs no
-- trigger of its own: a scored interaction is written with its aggregates
-- (crm.interaction_stats) in the same transaction, and so are merges and
-- unmerges; erasure marks the customer.
CREATE OR REPLACE FUNCTION crm.satisfaction_doc(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    nps jsonb;
BEGIN
    nps := (SELECT jsonb_build_object('score', i.nps, 'at', crm.ts(i.occurred_at),
                                      'channel', i.channel, 'type', i.type,
                                      'interaction_id', i.interaction_id)
              FROM crm.interactions i WHERE i.customer_id = p_customer AND i.nps IS NOT NULL
             ORDER BY i.occurred_at DESC, i.interaction_id DESC LIMIT 1);
    RETURN jsonb_build_object(
        'nps', nps,
        'nps_category', crm.nps_category((nps->>'score')::smallint),
        'csat', (SELECT jsonb_build_object('score', i.csat, 'at', crm.ts(i.occurred_at),
                                           'channel', i.channel, 'type', i.type,
                                           'interaction_id', i.interaction_id)
                   FROM crm.interactions i WHERE i.customer_id = p_customer AND i.csat IS NOT NULL
                  ORDER BY i.occurred_at DESC, i.interaction_id DESC LIMIT 1),
        'ces', (SELECT jsonb_build_object('score', i.ces, 'at', crm.ts(i.occurred_at),
                                          'channel', i.channel, 'type', i.type,
                                          'interaction_id', i.interaction_id)
                  FROM crm.interactions i WHERE i.customer_id = p_customer AND i.ces IS NOT NULL
                 ORDER BY i.occurred_at DESC, i.interaction_id DESC LIMIT 1));
END $$;

-- ---- profile ----------------------------------------------------------------------

-- The profile's extra sections: value (crm.value_section), preferences,
-- current consents, satisfaction and the open cases (crm.open_cases_doc,
-- cases.sql; its table has its own invalidation trigger there).
CREATE OR REPLACE FUNCTION crm.profile_sections(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
                'value', crm.value_section(p_customer),
                'preferences', crm.preferences_doc(p_customer)->'preferences',
                'consents', crm.consent_current(p_customer, now()),
                'satisfaction', crm.satisfaction_doc(p_customer),
                'cases', crm.open_cases_doc(p_customer),
                'stage', crm.stage_doc(p_customer))
    );
END $$;

-- The single customer view as one JSON document. p_id may be an absorbed id.
CREATE OR REPLACE FUNCTION crm.profile(p_id uuid) RETURNS jsonb
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
        -- with, for a trait other sources give another value, the rule that
        -- decided and the losing values (survivorship, docs/identity.md)
        'trait_sources', coalesce((SELECT jsonb_object_agg(t.name, jsonb_build_object(
                'source', t.source, 'updated_at', crm.ts(t.updated_at))
                || coalesce((SELECT jsonb_build_object(
                                 'rule', coalesce((SELECT r.rule FROM crm.survivorship_rules r
                                                    WHERE r.trait IN (t.name, '*')
                                                    ORDER BY r.trait = '*' LIMIT 1), 'most_recent'),
                                 'losing', jsonb_agg(jsonb_build_object(
                                     'source', v.source, 'value', v.value,
                                     'first_seen', crm.ts(v.first_seen),
                                     'last_seen', crm.ts(v.last_seen), 'times_seen', v.times_seen)
                                     ORDER BY v.last_seen DESC, v.source))
                               FROM crm.trait_values v
                              WHERE v.customer_id = t.customer_id AND v.name = t.name
                                AND v.value <> t.value
                             HAVING count(*) > 0), '{}'))
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
        'needs', crm.customer_needs_doc(c.customer_id),
        'segments', crm.customer_segments_doc(c.customer_id))
        || crm.profile_sections(c.customer_id)
      INTO doc
      FROM crm.customers c WHERE c.customer_id = sid;
    IF sid <> p_id THEN
        doc := doc || jsonb_build_object('requested_id', p_id, 'merged_into', sid);
    END IF;
    RETURN doc;
END $$;

-- One page of a customer's timeline, newest first, keyset-paginated on
-- (occurred_at, interaction_id). Returns {customer_id, items,
-- next_cursor_at, next_cursor_id} (cursor fields null on the last page), or
-- NULL when the customer does not exist.
CREATE OR REPLACE FUNCTION crm.timeline(p_id uuid, p_limit int, p_cursor_at timestamptz, p_cursor_id uuid,
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
                        'payload', payload,
                        'scores', crm.scores_doc(nps, csat, ces),
                        'case_id', case_id) ORDER BY rn)
                        FILTER (WHERE rn <= p_limit), '[]'),
               'next_cursor_at', CASE WHEN count(*) > p_limit THEN
                    (array_agg(crm.ts(occurred_at)) FILTER (WHERE rn = p_limit))[1] END,
               'next_cursor_id', CASE WHEN count(*) > p_limit THEN
                    (array_agg(interaction_id) FILTER (WHERE rn = p_limit))[1] END)
      INTO doc
      FROM page;
    RETURN doc;
END $$;

-- Invalidate one customer's document. Once per transaction is enough: a
-- row this transaction already bumped (xmin is ours) is left alone, so the
-- many rows of one write (stats, needs, identifiers) cost one version bump.
-- A plain UPDATE first: the common case (the row exists) then writes one
-- heap-only update to the WAL, where INSERT .. ON CONFLICT DO UPDATE first
-- locked the row (one more WAL record, 54 bytes per ingest, bench/wal.sh).
-- Only a customer without a row yet (new, or never read) takes the upsert,
-- which also settles a concurrent first insert by bumping the version.
CREATE OR REPLACE FUNCTION crm.profile_stale(p_customer uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_customer IS NULL THEN
        RETURN;
    END IF;
    UPDATE crm.profile_cache AS c SET version = c.version + 1, doc = NULL
     WHERE c.customer_id = p_customer
       AND (c.doc IS NOT NULL OR c.xmin <> xid(pg_current_xact_id()));
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM crm.profile_cache WHERE customer_id = p_customer) THEN
        INSERT INTO crm.profile_cache AS c (customer_id, version) VALUES (p_customer, 1)
        ON CONFLICT (customer_id) DO UPDATE SET version = c.version + 1, doc = NULL
            WHERE c.doc IS NOT NULL OR c.xmin <> xid(pg_current_xact_id());
    END IF;
END $$;

CREATE OR REPLACE FUNCTION crm.profile_stale_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM crm.profile_stale(OLD.customer_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.customer_id <> OLD.customer_id) THEN
        PERFORM crm.profile_stale(NEW.customer_id);
    END IF;
    RETURN NULL;
END $$;

-- Every table the profile document is built from (see crm.profile and
-- crm.profile_sections), except the value tables, which use the epoch, and
-- crm.segment_members, whose statement triggers are in membership.sql.
SELECT crm.define_trigger('identifiers_profile_stale', 'crm.identifiers', $def$
CREATE OR REPLACE TRIGGER identifiers_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.identifiers
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row()
$def$);

SELECT crm.define_trigger('traits_profile_stale', 'crm.traits', $def$
CREATE OR REPLACE TRIGGER traits_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.traits
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row()
$def$);

SELECT crm.define_trigger('interaction_stats_profile_stale', 'crm.interaction_stats', $def$
CREATE OR REPLACE TRIGGER interaction_stats_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.interaction_stats FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row()
$def$);

SELECT crm.define_trigger('customer_needs_profile_stale', 'crm.customer_needs', $def$
CREATE OR REPLACE TRIGGER customer_needs_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.customer_needs FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row()
$def$);

SELECT crm.define_trigger('preferences_profile_stale', 'crm.preferences', $def$
CREATE OR REPLACE TRIGGER preferences_profile_stale AFTER INSERT OR UPDATE OR DELETE ON crm.preferences
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row()
$def$);

SELECT crm.define_trigger('consent_events_profile_stale', 'crm.consent_events', $def$
CREATE OR REPLACE TRIGGER consent_events_profile_stale AFTER INSERT OR UPDATE OR DELETE
    ON crm.consent_events FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row()
$def$);

-- A customer row: its own document, and the merged_ids of the survivors it
-- joins or leaves.
CREATE OR REPLACE FUNCTION crm.profile_stale_customer() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM crm.profile_stale(NEW.customer_id);
    IF NEW.merged_into IS DISTINCT FROM OLD.merged_into THEN
        PERFORM crm.profile_stale(OLD.merged_into);
        PERFORM crm.profile_stale(NEW.merged_into);
    END IF;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('customers_profile_stale', 'crm.customers', $def$
CREATE OR REPLACE TRIGGER customers_profile_stale AFTER UPDATE ON crm.customers
    FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_customer()
$def$);

CREATE OR REPLACE FUNCTION crm.profile_stale_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.profile_cache_epoch SET epoch = epoch + 1;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('customer_value_profile_stale', 'crm.customer_value', $def$
CREATE OR REPLACE TRIGGER customer_value_profile_stale AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON crm.customer_value FOR EACH STATEMENT EXECUTE FUNCTION crm.profile_stale_all()
$def$);

SELECT crm.define_trigger('settings_profile_stale', 'crm.settings', $def$
CREATE OR REPLACE TRIGGER settings_profile_stale AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON crm.settings FOR EACH STATEMENT EXECUTE FUNCTION crm.profile_stale_all()
$def$);

-- The profile read: the cached document of p_id's survivor when it is still
-- good, else built (crm.profile, or the gone document of an erased customer)
-- and stored. On a streaming replica nothing is stored; the replica serves
-- what the primary's cache holds and builds the rest. No audit row here: the
-- server writes read-audit rows in batches (crm.audit_reads).
CREATE OR REPLACE FUNCTION crm.cached_profile(p_id uuid) RETURNS jsonb
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
SELECT crm.define_view('crm.profile_read', $def$
CREATE OR REPLACE VIEW crm.profile_read AS
SELECT c.customer_id,
       CASE WHEN pc.doc IS NOT NULL AND pc.epoch = e.epoch AND c.merged_into IS NULL
                 AND (pc.valid_until IS NULL OR pc.valid_until > now())
            THEN pc.doc
            ELSE crm.cached_profile(c.customer_id) END AS doc
  FROM crm.customers c
 CROSS JOIN crm.profile_cache_epoch e
  LEFT JOIN crm.profile_cache pc ON pc.customer_id = c.customer_id
$def$);

CREATE OR REPLACE FUNCTION crm.profile_cache_store(p_customer uuid, p_version bigint, p_epoch bigint,
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
