-- The schema of a database migrated by the last release (git commit 9275496,
-- migrations 001..006), with the rows those migrations wrote (the seed rows of
-- crm.blocked_identifiers, crm.identifier_limits, crm.settings and
-- crm.profile_cache_epoch) and public.crm_schema_migrations as that release's
-- migrate.c left it. tests/schema/run.sh restores it and upgrades it with
-- `crm-server migrate`. Made with tests/schema/make_release_dump.sh: each of
-- `git show 9275496:sql/NNN_*.sql` applied with psql in its own transaction
-- on an empty database, recorded in public.crm_schema_migrations, then
--   pg_dump --no-owner --no-privileges --restrict-key=crmrelease9275496
-- (PostgreSQL 15). Do not edit by hand.
--
-- PostgreSQL database dump
--

\restrict crmrelease9275496


SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: crm; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA crm;


--
-- Name: apply_traits(uuid, jsonb, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.apply_traits(p_customer uuid, p_traits jsonb, p_source text) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: audit(uuid, text, text, uuid, jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.audit(p_key uuid, p_role text, p_action text, p_customer uuid, p_detail jsonb) RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO crm.audit_log (key_id, role, action, customer_id, detail)
    VALUES (p_key, p_role, p_action, p_customer, p_detail)
$$;


--
-- Name: audit_read(uuid, text, text, uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.audit_read(p_key uuid, p_role text, p_action text, p_customer uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM crm.audit(p_key, p_role, p_action, p_customer, NULL);
END $$;


--
-- Name: audit_reads(jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.audit_reads(p_rows jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: authenticate(uuid, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.authenticate(p_key_id uuid, p_key text) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT jsonb_strip_nulls(jsonb_build_object('key_id', key_id, 'role', role,
                                                        'namespace', namespace, 'name', name))
              FROM crm.api_keys
             WHERE key_id = p_key_id AND key_hash = sha256(convert_to(p_key, 'UTF8'))
               AND revoked_at IS NULL
    );
END $$;


--
-- Name: bootstrap_admin(uuid, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.bootstrap_admin(p_key_id uuid, p_key text) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7412093003);
    IF EXISTS (SELECT 1 FROM crm.api_keys WHERE role = 'admin' AND revoked_at IS NULL) THEN
        RETURN false;
    END IF;
    -- A revoked bootstrap key stays revoked: its id cannot be installed again.
    INSERT INTO crm.api_keys (key_id, name, role, key_hash)
    VALUES (p_key_id, 'bootstrap admin', 'admin', sha256(convert_to(p_key, 'UTF8')))
    ON CONFLICT (key_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO crm.audit_log (key_id, role, action, detail)
    VALUES (p_key_id, 'admin', 'key.bootstrap', '{}');
    RETURN true;
END $$;


--
-- Name: cached_profile(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.cached_profile(p_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: consent_current(uuid, timestamp with time zone); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.consent_current(p_customer uuid, p_at timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(crm.consent_event_doc(e) ORDER BY e.purpose, e.channel), '[]')
              FROM (SELECT DISTINCT ON (purpose, channel) *
                      FROM crm.consent_events
                     WHERE customer_id = p_customer AND occurred_at <= p_at
                     ORDER BY purpose, channel, occurred_at DESC, event_id DESC) AS e
    );
END $$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: consent_events; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.consent_events (
    event_id bigint NOT NULL,
    customer_id uuid NOT NULL,
    purpose text NOT NULL,
    channel text NOT NULL,
    status text NOT NULL,
    source text NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    recorded_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    origin_customer_id uuid NOT NULL,
    CONSTRAINT consent_events_purpose_check CHECK ((purpose = ANY (ARRAY['marketing'::text, 'service'::text, 'profiling'::text, 'partner_sharing'::text]))),
    CONSTRAINT consent_events_status_check CHECK ((status = ANY (ARRAY['granted'::text, 'withdrawn'::text])))
);


--
-- Name: consent_event_doc(crm.consent_events); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.consent_event_doc(e crm.consent_events) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object('event_id', e.event_id, 'purpose', e.purpose, 'channel', e.channel,
                                      'status', e.status, 'source', e.source,
                                      'occurred_at', crm.ts(e.occurred_at),
                                      'recorded_at', crm.ts(e.recorded_at))
    );
END $$;


--
-- Name: consent_events_append_only(); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.consent_events_append_only() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'DELETE'
       OR (NEW.purpose, NEW.channel, NEW.status, NEW.source, NEW.occurred_at, NEW.recorded_at)
          IS DISTINCT FROM
          (OLD.purpose, OLD.channel, OLD.status, OLD.source, OLD.occurred_at, OLD.recorded_at) THEN
        RAISE EXCEPTION 'the consent history is append-only';
    END IF;
    RETURN NEW;
END $$;


--
-- Name: consent_reason(uuid, text, text, timestamp with time zone); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.consent_reason(p_customer uuid, p_purpose text, p_channel text, p_at timestamp with time zone) RETURNS text
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        WITH s AS (SELECT status, occurred_at FROM crm.consent_events
                        WHERE customer_id = p_customer AND purpose = p_purpose AND channel = p_channel
                          AND occurred_at <= p_at
                        ORDER BY occurred_at DESC, event_id DESC LIMIT 1),
                 g AS (SELECT status, occurred_at FROM crm.consent_events
                        WHERE customer_id = p_customer AND purpose = p_purpose AND channel = 'any'
                          AND occurred_at <= p_at
                        ORDER BY occurred_at DESC, event_id DESC LIMIT 1)
            SELECT CASE
                WHEN (SELECT status FROM s) = 'withdrawn' THEN 'channel_opted_out'
                WHEN (SELECT status FROM g) = 'withdrawn'
                     AND NOT coalesce((SELECT s.status = 'granted' AND s.occurred_at > g.occurred_at
                                         FROM s, g), false) THEN 'consent_withdrawn'
                WHEN (SELECT status FROM s) = 'granted' OR (SELECT status FROM g) = 'granted' THEN 'ok'
                ELSE 'no_consent'
            END
    );
END $$;


--
-- Name: consents_doc(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.consents_doc(p_customer uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
                'current', crm.consent_current(p_customer, now()),
                'history', coalesce((SELECT jsonb_agg(crm.consent_event_doc(e)
                                                      ORDER BY e.occurred_at, e.event_id)
                                       FROM crm.consent_events e WHERE e.customer_id = p_customer), '[]'))
    );
END $$;


--
-- Name: contact_decision(uuid, text, text, timestamp with time zone); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.contact_decision(p_id uuid, p_purpose text, p_channel text, p_at timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
DECLARE
    sid uuid := crm.survivor_of(p_id);
    at timestamptz := coalesce(p_at, now());
    qh jsonb;
    fc jsonb;
    pref jsonb;
    local_t time;
    quiet boolean := false;
    sent bigint := 0;
    capped boolean := false;
    reason text;
    detail text;
    best text;
BEGIN
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    IF crm.is_erased(sid) THEN
        RETURN crm.gone_doc(sid);
    END IF;
    SELECT value INTO qh FROM crm.preferences WHERE customer_id = sid AND name = 'quiet_hours';
    SELECT value INTO fc FROM crm.preferences WHERE customer_id = sid AND name = 'frequency_cap';
    SELECT value INTO pref FROM crm.preferences
     WHERE customer_id = sid AND name = 'preferred_channels';
    IF qh IS NOT NULL THEN
        local_t := (at AT TIME ZONE (qh->>'time_zone'))::time;
        quiet := CASE WHEN (qh->>'start')::time < (qh->>'end')::time
                      THEN local_t >= (qh->>'start')::time AND local_t < (qh->>'end')::time
                      ELSE local_t >= (qh->>'start')::time OR local_t < (qh->>'end')::time END;
    END IF;
    IF fc IS NOT NULL THEN
        SELECT count(*) INTO sent FROM crm.interactions
         WHERE customer_id = sid AND type = 'outbound_message'
           AND occurred_at > at - make_interval(days => (fc->>'period_days')::int)
           AND occurred_at <= at;
        capped := sent >= (fc->>'max_messages')::int;
    END IF;

    reason := crm.consent_reason(sid, p_purpose, p_channel, at);
    detail := CASE reason
        WHEN 'no_consent' THEN format('no %s consent has been granted for %s or any channel',
                                      p_purpose, p_channel)
        WHEN 'consent_withdrawn' THEN format('%s consent has been withdrawn for every channel',
                                             p_purpose)
        WHEN 'channel_opted_out' THEN format('the customer opted out of %s by %s',
                                             p_purpose, p_channel)
        ELSE NULL END;
    IF reason = 'ok' AND quiet THEN
        reason := 'quiet_hours';
        detail := format('quiet hours %s-%s in %s; local time is %s', qh->>'start', qh->>'end',
                         qh->>'time_zone', to_char(local_t, 'HH24:MI'));
    ELSIF reason = 'ok' AND capped THEN
        reason := 'frequency_cap';
        detail := format('%s outbound messages in the last %s days (cap %s)', sent,
                         fc->>'period_days', fc->>'max_messages');
    ELSIF reason = 'ok' THEN
        detail := 'consent granted; outside quiet hours and under the frequency cap';
    END IF;

    IF NOT quiet AND NOT capped AND jsonb_typeof(pref) = 'array' THEN
        SELECT x.c INTO best
          FROM jsonb_array_elements_text(pref) WITH ORDINALITY AS x(c, n)
         WHERE crm.consent_reason(sid, p_purpose, x.c, at) = 'ok'
         ORDER BY x.n LIMIT 1;
    END IF;
    RETURN jsonb_build_object('customer_id', sid, 'purpose', p_purpose, 'channel', p_channel,
                              'at', crm.ts(at), 'allowed', reason = 'ok', 'reason', reason,
                              'detail', detail, 'best_channel', best);
END $$;


--
-- Name: create_key(uuid, text, text, text, text, uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.create_key(p_key_id uuid, p_key text, p_name text, p_role text, p_namespace text, p_by uuid) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO crm.api_keys (key_id, name, role, namespace, key_hash, created_by)
    VALUES (p_key_id, p_name, p_role, p_namespace, sha256(convert_to(p_key, 'UTF8')), p_by);
    PERFORM crm.audit(p_by, 'admin', 'key.create', NULL,
                      jsonb_build_object('key_id', p_key_id, 'role', p_role));
    RETURN (SELECT crm.key_doc(k) FROM crm.api_keys k WHERE key_id = p_key_id);
END $$;


--
-- Name: customer_needs_doc(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.customer_needs_doc(p_customer uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: erase_customer(uuid, uuid, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.erase_customer(p_id uuid, p_key uuid, p_role text) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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
    FOR attempt IN 1..5 LOOP
        sid := crm.survivor_of(p_id);
        IF sid IS NULL THEN
            RETURN NULL;
        END IF;
        PERFORM 1 FROM crm.customers WHERE customer_id = sid AND merged_into IS NULL FOR UPDATE;
        EXIT WHEN FOUND;
        IF attempt = 5 THEN
            RAISE EXCEPTION 'customer % kept being merged', p_id USING ERRCODE = '40001';
        END IF;
    END LOOP;
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


--
-- Name: export_customer(uuid, uuid, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.export_customer(p_id uuid, p_key uuid, p_role text) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    sid uuid := crm.survivor_of(p_id);
    ids uuid[];
BEGIN
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    IF crm.is_erased(sid) THEN
        RETURN crm.gone_doc(sid);
    END IF;
    ids := ARRAY[sid] || ARRAY(SELECT customer_id FROM crm.customers WHERE merged_into = sid
                               ORDER BY customer_id);
    PERFORM crm.audit(p_key, p_role, 'customer.export', sid, NULL);
    RETURN jsonb_build_object(
        'customer_id', sid,
        'exported_at', crm.ts(clock_timestamp()),
        'customer_ids', to_jsonb(ids),
        'profile', crm.profile(sid),
        'identifiers', coalesce((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                     'kind', d.kind, 'namespace', nullif(d.namespace, ''),
                                     'value', d.value, 'source', d.source,
                                     'created_at', crm.ts(d.created_at)))
                                     ORDER BY d.kind, d.namespace, d.value)
                                   FROM crm.identifiers d WHERE d.customer_id = ANY (ids)), '[]'),
        'traits', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                'name', t.name, 'value', t.value, 'source', t.source,
                                'updated_at', crm.ts(t.updated_at)) ORDER BY t.name)
                              FROM crm.traits t WHERE t.customer_id = ANY (ids)), '[]'),
        'preferences', crm.preferences_doc(sid),
        'consents', crm.consents_doc(sid),
        'interactions', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                      'interaction_id', i.interaction_id,
                                      'source', i.source, 'external_id', i.external_id,
                                      'channel', i.channel, 'type', i.type,
                                      'occurred_at', crm.ts(i.occurred_at),
                                      'received_at', crm.ts(i.received_at),
                                      'amount', trim_scale(i.amount), 'currency', i.currency,
                                      'cost', trim_scale(i.cost), 'tags', to_jsonb(i.tags),
                                      'payload', i.payload, 'resolved_by', i.resolved_by)
                                      ORDER BY i.occurred_at, i.interaction_id)
                                    FROM crm.interactions i
                                   WHERE i.customer_id = ANY (ids)), '[]'),
        'merges', coalesce((SELECT jsonb_agg(to_jsonb(m) || jsonb_build_object(
                                'preferences', to_jsonb(mp) - 'merge_id') ORDER BY m.merge_id)
                              FROM crm.merges m
                              LEFT JOIN crm.merge_preferences mp ON mp.merge_id = m.merge_id
                             WHERE m.survivor_id = ANY (ids) OR m.absorbed_id = ANY (ids)), '[]'),
        'identity_conflicts', coalesce((SELECT jsonb_agg(to_jsonb(x) ORDER BY x.conflict_id)
                                          FROM crm.identity_conflicts x
                                         WHERE x.customer_ids && ids), '[]'),
        'value', crm.value_section(sid),
        'audit', coalesce((SELECT jsonb_agg(jsonb_build_object(
                               'at', crm.ts(a.at), 'action', a.action, 'role', a.role,
                               'key_id', a.key_id, 'detail', a.detail) ORDER BY a.audit_id)
                             FROM crm.audit_log a WHERE a.customer_id = ANY (ids)), '[]'));
END $$;


--
-- Name: merges; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.merges (
    merge_id bigint NOT NULL,
    survivor_id uuid NOT NULL,
    absorbed_id uuid NOT NULL,
    actor text NOT NULL,
    reason text NOT NULL,
    trigger_identifiers jsonb NOT NULL,
    merged_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    absorbed_members uuid[] NOT NULL,
    absorbed_identifiers jsonb NOT NULL,
    absorbed_traits jsonb NOT NULL,
    survivor_traits jsonb NOT NULL,
    absorbed_updated_at timestamp with time zone NOT NULL,
    survivor_updated_at timestamp with time zone NOT NULL,
    unmerged_at timestamp with time zone,
    unmerged_by text,
    unmerge_reason text
);


--
-- Name: forget_in_later_snapshots(crm.merges); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.forget_in_later_snapshots(m crm.merges) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: gone_doc(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.gone_doc(p_id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object('gone', true, 'customer_id', customer_id,
                                      'erased_at', crm.ts(erased_at))
              FROM crm.customers WHERE customer_id = crm.survivor_of(p_id) AND erased_at IS NOT NULL
    );
END $$;


--
-- Name: identifiers_not_erased(); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.identifiers_not_erased() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM crm.customers
                WHERE customer_id = NEW.customer_id AND erased_at IS NOT NULL) THEN
        RAISE EXCEPTION 'customer % has been erased', NEW.customer_id USING ERRCODE = '40001';
    END IF;
    RETURN NEW;
END $$;


--
-- Name: ingest(uuid, jsonb, uuid, uuid, text, text, text, text, timestamp with time zone, numeric, text, numeric, text[], jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.ingest(p_customer uuid, p_identifiers jsonb, p_new_customer uuid, p_interaction_id uuid, p_source text, p_external_id text, p_channel text, p_type text, p_occurred_at timestamp with time zone, p_amount numeric, p_currency text, p_cost numeric, p_tags text[], p_payload jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: ingest_batch(jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.ingest_batch(p_items jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: is_blocked(text, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.is_blocked(p_kind text, p_value text) RETURNS boolean
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT EXISTS (SELECT 1 FROM crm.blocked_identifiers
                            WHERE kind IN (p_kind, '*') AND value = lower(p_value))
    );
END $$;


--
-- Name: is_erased(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.is_erased(p_id uuid) RETURNS boolean
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT coalesce((SELECT erased_at IS NOT NULL FROM crm.customers
                              WHERE customer_id = crm.survivor_of(p_id)), false)
    );
END $$;


--
-- Name: api_keys; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.api_keys (
    key_id uuid NOT NULL,
    name text NOT NULL,
    role text NOT NULL,
    namespace text,
    key_hash bytea NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    created_by uuid,
    revoked_at timestamp with time zone,
    CONSTRAINT api_keys_check CHECK (((role = 'partner'::text) = (namespace IS NOT NULL))),
    CONSTRAINT api_keys_role_check CHECK ((role = ANY (ARRAY['front_office'::text, 'call_center'::text, 'marketing'::text, 'partner'::text, 'admin'::text])))
);


--
-- Name: key_doc(crm.api_keys); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.key_doc(k crm.api_keys) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT jsonb_strip_nulls(jsonb_build_object(
                'key_id', k.key_id, 'name', k.name, 'role', k.role, 'namespace', k.namespace,
                'created_at', crm.ts(k.created_at), 'created_by', k.created_by,
                'revoked_at', crm.ts(k.revoked_at)))
    );
END $$;


--
-- Name: known_customer(jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.known_customer(p_identifiers jsonb) RETURNS uuid
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: known_owner(jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.known_owner(p_identifiers jsonb) RETURNS uuid
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: kpis(timestamp with time zone, timestamp with time zone, uuid[]); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.kpis(p_from timestamp with time zone, p_to timestamp with time zone, p_customers uuid[]) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        WITH cur AS (SELECT crm.setting('base_currency') #>> '{}' AS c),
            -- Customers known before the end of the period: first interaction
            -- before p_to (the record's created_at may be a later import).
            base AS (
                SELECT c.customer_id FROM crm.customers c
                 WHERE c.merged_into IS NULL
                   AND (p_customers IS NULL OR c.customer_id = ANY (p_customers))
                   AND EXISTS (SELECT 1 FROM crm.interaction_stats s
                                WHERE s.customer_id = c.customer_id AND s.first_at < p_to)),
            ev AS (
                SELECT i.customer_id, i.type, i.occurred_at >= p_from AS in_period,
                       CASE WHEN i.currency = cur.c THEN coalesce(i.amount, 0) ELSE 0 END AS amount,
                       CASE WHEN i.currency = cur.c THEN coalesce(i.cost, 0) ELSE 0 END AS cost
                  FROM crm.interactions i JOIN base b ON b.customer_id = i.customer_id, cur
                 WHERE i.occurred_at >= p_from - (p_to - p_from) AND i.occurred_at < p_to),
            firsts AS (
                SELECT i.customer_id, min(i.occurred_at) AS first_purchase
                  FROM crm.interactions i JOIN base b ON b.customer_id = i.customer_id
                 WHERE i.type = 'purchase' AND i.occurred_at < p_to GROUP BY 1),
            agg AS (
                SELECT count(DISTINCT customer_id) FILTER (WHERE type = 'purchase' AND in_period) AS active_now,
                       count(DISTINCT customer_id) FILTER (WHERE type = 'purchase' AND NOT in_period) AS active_prior,
                       coalesce(sum(amount) FILTER (WHERE type = 'purchase' AND in_period), 0) AS revenue_now,
                       coalesce(sum(amount) FILTER (WHERE type = 'purchase' AND NOT in_period), 0) AS revenue_prior,
                       coalesce(sum(amount) FILTER (WHERE type = 'return' AND in_period), 0) AS refunds_now,
                       coalesce(sum(cost) FILTER (WHERE in_period), 0) AS cost_now,
                       count(*) FILTER (WHERE type = 'complaint' AND in_period) AS complaints,
                       count(*) FILTER (WHERE type = 'return' AND in_period) AS returns
                  FROM ev),
            retained AS (
                SELECT count(*) AS n FROM (
                    SELECT customer_id FROM ev WHERE type = 'purchase' AND NOT in_period
                    INTERSECT
                    SELECT customer_id FROM ev WHERE type = 'purchase' AND in_period) AS r),
            equity AS (
                SELECT (SELECT sum(s.clv) FROM crm.value_snapshots s JOIN base b ON b.customer_id = s.customer_id
                         WHERE s.run_id = (SELECT max(run_id) FROM crm.model_runs
                                            WHERE finished_at IS NOT NULL AND as_of <= p_from)) AS at_start,
                       (SELECT sum(s.clv) FROM crm.value_snapshots s JOIN base b ON b.customer_id = s.customer_id
                         WHERE s.run_id = (SELECT max(run_id) FROM crm.model_runs
                                            WHERE finished_at IS NOT NULL AND as_of <= p_to)) AS at_end,
                       EXISTS (SELECT 1 FROM crm.model_runs WHERE finished_at IS NOT NULL AND as_of <= p_to) AS has_end,
                       EXISTS (SELECT 1 FROM crm.model_runs WHERE finished_at IS NOT NULL AND as_of <= p_from) AS has_start)
            SELECT jsonb_build_object(
                'period', jsonb_build_object('from', crm.ts(p_from), 'to', crm.ts(p_to)),
                'prior_period', jsonb_build_object('from', crm.ts(p_from - (p_to - p_from)), 'to', crm.ts(p_from)),
                'currency', (SELECT c FROM cur),
                'customers', (SELECT count(*) FROM base),
                'active_customers', a.active_now,
                'active_customers_prior', a.active_prior,
                'retained_customers', r.n,
                'retention_rate', CASE WHEN a.active_prior > 0 THEN round(r.n::numeric / a.active_prior, 6) END,
                'churn_rate', CASE WHEN a.active_prior > 0 THEN round(1 - r.n::numeric / a.active_prior, 6) END,
                'new_customers', (SELECT count(*) FROM firsts WHERE first_purchase >= p_from),
                'revenue', trim_scale(a.revenue_now),
                'revenue_per_active_customer', CASE WHEN a.active_now > 0 THEN round(a.revenue_now / a.active_now, 4) END,
                'growth_rate', CASE WHEN a.active_now > 0 AND a.active_prior > 0 AND a.revenue_prior > 0 THEN
                    round((a.revenue_now / a.active_now) / (a.revenue_prior / a.active_prior) - 1, 6) END,
                'complaints', a.complaints,
                'complaints_per_1000', CASE WHEN (SELECT count(*) FROM base) > 0 THEN
                    round(1000.0 * a.complaints / (SELECT count(*) FROM base), 4) END,
                'returns', a.returns,
                'returns_per_1000', CASE WHEN (SELECT count(*) FROM base) > 0 THEN
                    round(1000.0 * a.returns / (SELECT count(*) FROM base), 4) END,
                'cash_flow', trim_scale(a.revenue_now - a.refunds_now - a.cost_now),
                'customer_equity_start', CASE WHEN e.has_start THEN trim_scale(coalesce(e.at_start, 0)) END,
                'customer_equity_end', CASE WHEN e.has_end THEN trim_scale(coalesce(e.at_end, 0)) END,
                'roc', CASE WHEN e.has_start AND coalesce(e.at_start, 0) > 0 AND e.has_end THEN
                    round((a.revenue_now - a.refunds_now - a.cost_now + coalesce(e.at_end, 0) - e.at_start)
                          / e.at_start, 6) END)
              FROM agg a, retained r, equity e
             WHERE p_to > p_from
    );
END $$;


--
-- Name: limit_violations(uuid[], jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.limit_violations(p_customers uuid[], p_extra jsonb) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: lock_survivor(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.lock_survivor(p_id uuid) RETURNS uuid
    LANGUAGE plpgsql
    AS $$
DECLARE
    sid uuid;
    gone boolean;
BEGIN
    FOR attempt IN 1..5 LOOP
        sid := crm.survivor_of(p_id);
        IF sid IS NULL THEN
            RETURN NULL;
        END IF;
        SELECT erased_at IS NOT NULL INTO gone FROM crm.customers
         WHERE customer_id = sid AND merged_into IS NULL FOR SHARE;
        IF FOUND THEN
            RETURN CASE WHEN gone THEN NULL ELSE sid END;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'customer % kept being merged', p_id USING ERRCODE = '40001';
END $$;


--
-- Name: manual_merge(uuid, uuid, text, text, boolean, boolean); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.manual_merge(p_survivor uuid, p_absorbed uuid, p_actor text, p_reason text, p_dry_run boolean, p_force boolean) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: merge_customize(); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.merge_customize() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM crm.customers
                WHERE customer_id IN (NEW.survivor_id, NEW.absorbed_id)
                  AND erased_at IS NOT NULL) THEN
        RAISE EXCEPTION 'cannot merge an erased customer' USING ERRCODE = '40001';
    END IF;
    INSERT INTO crm.merge_preferences (merge_id, absorbed_preferences, survivor_preferences)
    VALUES (NEW.merge_id, crm.preference_rows(NEW.absorbed_id),
            crm.preference_rows(NEW.survivor_id));
    INSERT INTO crm.preferences (customer_id, name, value, source, updated_at)
    SELECT NEW.survivor_id, name, value, source, updated_at
      FROM crm.preferences WHERE customer_id = NEW.absorbed_id
    ON CONFLICT (customer_id, name) DO UPDATE
        SET value = excluded.value, source = excluded.source, updated_at = excluded.updated_at
        WHERE excluded.updated_at > crm.preferences.updated_at;
    DELETE FROM crm.preferences WHERE customer_id = NEW.absorbed_id;
    UPDATE crm.consent_events SET customer_id = NEW.survivor_id
     WHERE customer_id = NEW.absorbed_id;
    RETURN NULL;
END $$;


--
-- Name: merge_history(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.merge_history(p_id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: merge_into(uuid, uuid, text, text, jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.merge_into(p_survivor uuid, p_absorbed uuid, p_actor text, p_reason text, p_trigger jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: merge_patch(jsonb, jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.merge_patch(p_target jsonb, p_patch jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
    result jsonb;
    k text;
    v jsonb;
BEGIN
    IF p_patch IS NULL OR jsonb_typeof(p_patch) <> 'object' THEN
        RETURN p_patch;
    END IF;
    result := CASE WHEN jsonb_typeof(p_target) = 'object' THEN p_target ELSE '{}' END;
    FOR k, v IN SELECT key, value FROM jsonb_each(p_patch) LOOP
        IF jsonb_typeof(v) = 'null' THEN
            result := result - k;
        ELSE
            result := jsonb_set(result, ARRAY[k], crm.merge_patch(result->k, v));
        END IF;
    END LOOP;
    RETURN result;
END $$;


--
-- Name: moment_candidates(text, date, integer); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.moment_candidates(p_kind text, p_from date, p_days integer) RETURNS TABLE(customer_id uuid, moment_date date, years integer, interaction_id uuid)
    LANGUAGE sql STABLE
    AS $$
    SELECT t.customer_id, n.d, (extract(year FROM n.d) - extract(year FROM b.b))::int, NULL::uuid
      FROM crm.traits t
      CROSS JOIN LATERAL (SELECT crm.try_date(t.value #>> '{}') AS b) AS b
      CROSS JOIN LATERAL (SELECT crm.next_anniversary(b.b, p_from) AS d) AS n
     WHERE p_kind = 'birthday' AND t.name = 'birthday' AND b.b IS NOT NULL
       AND n.d <= p_from + p_days AND n.d > b.b
    UNION ALL
    SELECT s.customer_id, n.d, (extract(year FROM n.d) - extract(year FROM s.f))::int, NULL::uuid
      FROM (SELECT st.customer_id, (min(st.first_at) AT TIME ZONE 'UTC')::date AS f
              FROM crm.interaction_stats st WHERE st.type = 'purchase'
             GROUP BY st.customer_id) AS s
      CROSS JOIN LATERAL (SELECT crm.next_anniversary(s.f, p_from) AS d) AS n
     WHERE p_kind = 'anniversary' AND n.d <= p_from + p_days AND n.d > s.f
    UNION ALL
    SELECT * FROM (
        SELECT DISTINCT ON (i.customer_id) i.customer_id, w.d, NULL::int, i.interaction_id
          FROM crm.interactions i
          CROSS JOIN LATERAL (SELECT crm.try_date(i.payload->>'warranty_until') AS d) AS w
         WHERE p_kind = 'warranty' AND i.type = 'purchase' AND i.payload ? 'warranty_until'
           AND i.payload->>'warranty_until' BETWEEN to_char(p_from, 'YYYY-MM-DD')
                                                AND to_char(p_from + p_days, 'YYYY-MM-DD')
           AND w.d BETWEEN p_from AND p_from + p_days
         ORDER BY i.customer_id, w.d, i.interaction_id) AS w
$$;


--
-- Name: moments(text, timestamp with time zone, integer, integer, date, uuid, text, text, uuid[]); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.moments(p_kind text, p_at timestamp with time zone, p_days integer, p_limit integer, p_cursor_date date, p_cursor_id uuid, p_purpose text, p_channel text, p_members uuid[]) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        WITH p AS (SELECT coalesce(p_at, now()) AS at,
                              (coalesce(p_at, now()) AT TIME ZONE 'UTC')::date AS d),
            page AS (
                SELECT m.customer_id, m.moment_date,
                       jsonb_strip_nulls(jsonb_build_object(
                           'customer_id', m.customer_id, 'kind', p_kind,
                           'date', to_char(m.moment_date, 'YYYY-MM-DD'),
                           'days_until', m.moment_date - p.d, 'years', m.years,
                           'interaction_id', m.interaction_id)) AS item
                  FROM p, crm.moment_candidates(p_kind, p.d, p_days) AS m
                  JOIN crm.customers c ON c.customer_id = m.customer_id
                 WHERE c.merged_into IS NULL AND c.erased_at IS NULL
                   AND (p_members IS NULL OR c.customer_id = ANY (p_members))
                   AND (p_cursor_date IS NULL
                        OR (m.moment_date, m.customer_id) > (p_cursor_date, p_cursor_id))
                   AND (p_purpose IS NULL
                        OR crm.consent_reason(c.customer_id, p_purpose, p_channel, p.at) = 'ok')
                 ORDER BY m.moment_date, m.customer_id
                 LIMIT p_limit + 1),
            numbered AS (SELECT *, row_number() OVER (ORDER BY moment_date, customer_id) AS rn
                           FROM page)
            SELECT jsonb_build_object(
                'kind', p_kind,
                'from', to_char(p.d, 'YYYY-MM-DD'),
                'to', to_char(p.d + p_days, 'YYYY-MM-DD'),
                'items', coalesce((SELECT jsonb_agg(item ORDER BY rn) FROM numbered
                                    WHERE rn <= p_limit), '[]'),
                'next_cursor_date', (SELECT to_char(moment_date, 'YYYY-MM-DD') FROM numbered
                                      WHERE rn = p_limit AND (SELECT count(*) FROM numbered) > p_limit),
                'next_cursor_id', (SELECT customer_id FROM numbered
                                    WHERE rn = p_limit AND (SELECT count(*) FROM numbered) > p_limit))
              FROM p
    );
END $$;


--
-- Name: next_anniversary(date, date); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.next_anniversary(p_date date, p_from date) RETURNS date
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT min(d) FROM (
        SELECT (m + (least(extract(day FROM p_date)::int,
                           extract(day FROM (m + interval '1 month' - interval '1 day'))::int)
                     - 1))::date AS d
          FROM (SELECT make_date(y, extract(month FROM p_date)::int, 1) AS m
                  FROM generate_series(extract(year FROM p_from)::int,
                                       extract(year FROM p_from)::int + 1) AS y) AS months) AS x
     WHERE d >= p_from
$$;


--
-- Name: patch_preferences(uuid, jsonb, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.patch_preferences(p_id uuid, p_patch jsonb, p_source text) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    sid uuid;
    tz text := p_patch #>> '{quiet_hours,time_zone}';
    k text;
    v jsonb;
    ck text;
    cv jsonb;
BEGIN
    IF crm.is_erased(p_id) THEN
        RETURN crm.gone_doc(p_id);
    END IF;
    IF tz IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz) THEN
        RETURN jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
            'pointer', '/preferences/quiet_hours/time_zone',
            'detail', format('unknown time zone ''%s'' (use an IANA name such as Europe/Paris)',
                             left(tz, 64)))));
    END IF;
    sid := crm.lock_survivor(p_id);
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    FOR k, v IN SELECT key, value FROM jsonb_each(p_patch) LOOP
        IF k = 'custom' AND jsonb_typeof(v) = 'null' THEN
            DELETE FROM crm.preferences WHERE customer_id = sid AND name LIKE 'custom.%';
        ELSIF k = 'custom' THEN
            FOR ck, cv IN SELECT key, value FROM jsonb_each(v) LOOP
                PERFORM crm.set_preference(sid, 'custom.' || ck, cv, p_source);
            END LOOP;
        ELSE
            PERFORM crm.set_preference(sid, k, v, p_source);
        END IF;
    END LOOP;
    UPDATE crm.customers SET updated_at = clock_timestamp() WHERE customer_id = sid;
    RETURN jsonb_build_object('customer_id', sid) || crm.preferences_doc(sid);
END $$;


--
-- Name: patch_traits(uuid, jsonb, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.patch_traits(p_id uuid, p_traits jsonb, p_source text) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: preference_rows(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.preference_rows(p_customer uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'value', value, 'source', source,
                                                         'updated_at', updated_at)), '[]')
              FROM crm.preferences WHERE customer_id = p_customer
    );
END $$;


--
-- Name: preferences_doc(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.preferences_doc(p_customer uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
                'preferences', coalesce(jsonb_object_agg(p.name, p.value)
                                            FILTER (WHERE p.name NOT LIKE 'custom.%'), '{}')
                               || jsonb_build_object('custom', coalesce(
                                      jsonb_object_agg(substr(p.name, 8), p.value)
                                          FILTER (WHERE p.name LIKE 'custom.%'), '{}')),
                'sources', coalesce(jsonb_object_agg(p.name, jsonb_build_object(
                                        'source', p.source, 'updated_at', crm.ts(p.updated_at))), '{}'),
                'updated_at', crm.ts(max(p.updated_at)))
              FROM crm.preferences p WHERE p.customer_id = p_customer
    );
END $$;


--
-- Name: profile(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.profile(p_id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: profile_cache_store(uuid, bigint, bigint, jsonb); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.profile_cache_store(p_customer uuid, p_version bigint, p_epoch bigint, p_doc jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: profile_sections(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.profile_sections(p_customer uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
                'value', crm.value_section(p_customer),
                'preferences', crm.preferences_doc(p_customer)->'preferences',
                'consents', crm.consent_current(p_customer, now()))
    );
END $$;


--
-- Name: profile_stale(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.profile_stale(p_customer uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF p_customer IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO crm.profile_cache AS c (customer_id, version) VALUES (p_customer, 1)
    ON CONFLICT (customer_id) DO UPDATE SET version = c.version + 1, doc = NULL
        WHERE c.doc IS NOT NULL OR c.xmin <> xid(pg_current_xact_id());
END $$;


--
-- Name: profile_stale_all(); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.profile_stale_all() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE crm.profile_cache_epoch SET epoch = epoch + 1;
    RETURN NULL;
END $$;


--
-- Name: profile_stale_customer(); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.profile_stale_customer() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM crm.profile_stale(NEW.customer_id);
    IF NEW.merged_into IS DISTINCT FROM OLD.merged_into THEN
        PERFORM crm.profile_stale(OLD.merged_into);
        PERFORM crm.profile_stale(NEW.merged_into);
    END IF;
    RETURN NULL;
END $$;


--
-- Name: profile_stale_row(); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.profile_stale_row() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM crm.profile_stale(OLD.customer_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND (TG_OP = 'INSERT' OR NEW.customer_id <> OLD.customer_id) THEN
        PERFORM crm.profile_stale(NEW.customer_id);
    END IF;
    RETURN NULL;
END $$;


--
-- Name: read_customize(uuid, uuid, text, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.read_customize(p_id uuid, p_key uuid, p_role text, p_what text) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    sid uuid := crm.survivor_of(p_id);
BEGIN
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    IF crm.is_erased(sid) THEN
        RETURN crm.gone_doc(sid);
    END IF;
    PERFORM crm.audit_read(p_key, p_role, 'customer.' || p_what || '.read', sid);
    RETURN jsonb_build_object('customer_id', sid)
           || CASE p_what WHEN 'preferences' THEN crm.preferences_doc(sid)
                          ELSE crm.consents_doc(sid) END;
END $$;


--
-- Name: rebuild_aggregates(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.rebuild_aggregates(p_customer uuid) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: record_consent(uuid, text, text, text, text, timestamp with time zone); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.record_consent(p_id uuid, p_purpose text, p_channel text, p_status text, p_source text, p_occurred_at timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    sid uuid;
    doc jsonb;
    now_ts timestamptz := clock_timestamp();
BEGIN
    IF crm.is_erased(p_id) THEN
        RETURN crm.gone_doc(p_id);
    END IF;
    sid := crm.lock_survivor(p_id);
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO crm.consent_events (customer_id, purpose, channel, status, source, occurred_at,
                                    recorded_at, origin_customer_id)
    VALUES (sid, p_purpose, p_channel, p_status, p_source, coalesce(p_occurred_at, now_ts),
            now_ts, sid)
    RETURNING crm.consent_event_doc(consent_events) INTO doc;
    UPDATE crm.customers SET updated_at = clock_timestamp() WHERE customer_id = sid;
    RETURN jsonb_build_object('customer_id', sid) || doc;
END $$;


--
-- Name: resolve(jsonb, text, uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.resolve(p_identifiers jsonb, p_source text, p_new_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: resolve_customer(jsonb, jsonb, text, uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.resolve_customer(p_identifiers jsonb, p_traits jsonb, p_source text, p_new_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: resolve_general(jsonb, text, uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.resolve_general(p_identifiers jsonb, p_source text, p_new_id uuid) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: revoke_key(uuid, uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.revoke_key(p_key_id uuid, p_by uuid) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    doc jsonb;
BEGIN
    UPDATE crm.api_keys SET revoked_at = coalesce(revoked_at, clock_timestamp())
     WHERE key_id = p_key_id
    RETURNING crm.key_doc(api_keys) INTO doc;
    IF doc IS NOT NULL THEN
        PERFORM crm.audit(p_by, 'admin', 'key.revoke', NULL, jsonb_build_object('key_id', p_key_id));
    END IF;
    RETURN doc;
END $$;


--
-- Name: segments; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.segments (
    segment_id uuid NOT NULL,
    name text NOT NULL,
    description text,
    rule jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: segment_doc(crm.segments); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.segment_doc(s crm.segments) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object('segment_id', s.segment_id, 'name', s.name, 'rule', s.rule,
                                      'created_at', crm.ts(s.created_at))
                   || CASE WHEN s.description IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('description', s.description) END
    );
END $$;


--
-- Name: set_preference(uuid, text, jsonb, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.set_preference(p_customer uuid, p_name text, p_patch jsonb, p_source text) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF jsonb_typeof(p_patch) = 'null' THEN
        DELETE FROM crm.preferences WHERE customer_id = p_customer AND name = p_name;
        RETURN;
    END IF;
    INSERT INTO crm.preferences AS p (customer_id, name, value, source, updated_at)
    VALUES (p_customer, p_name, crm.merge_patch(NULL, p_patch), p_source, clock_timestamp())
    ON CONFLICT (customer_id, name) DO UPDATE
        SET value = crm.merge_patch(p.value, p_patch), source = excluded.source,
            updated_at = excluded.updated_at;
END $$;


--
-- Name: set_trait(uuid, text, jsonb, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.set_trait(p_customer uuid, p_name text, p_value jsonb, p_source text) RETURNS void
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: setting(text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.setting(p_key text) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT value FROM crm.settings WHERE key = p_key
    );
END $$;


--
-- Name: snapshot_rows(text, uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.snapshot_rows(p_what text, p_customer uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: survivor_of(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.survivor_of(p_id uuid) RETURNS uuid
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: timeline(uuid, integer, timestamp with time zone, uuid, text, text, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.timeline(p_id uuid, p_limit integer, p_cursor_at timestamp with time zone, p_cursor_id uuid, p_channel text, p_type text, p_since timestamp with time zone, p_until timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: trait_conflicts(uuid, uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.trait_conflicts(p_survivor uuid, p_absorbed uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
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


--
-- Name: try_date(text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.try_date(p_text text) RETURNS date
    LANGUAGE plpgsql IMMUTABLE
    AS $_$
BEGIN
    IF p_text IS NULL OR p_text !~ '^\d{4}-\d{2}-\d{2}$' THEN
        RETURN NULL;
    END IF;
    RETURN to_date(p_text, 'YYYY-MM-DD');
EXCEPTION WHEN others THEN
    RETURN NULL;
END $_$;


--
-- Name: ts(timestamp with time zone); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.ts(t timestamp with time zone) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;


--
-- Name: unmerge(uuid, text, text); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.unmerge(p_absorbed uuid, p_actor text, p_reason text) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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


--
-- Name: unmerge_customize(); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.unmerge_customize() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    snap crm.merge_preferences%ROWTYPE;
    sid uuid := crm.survivor_of(NEW.survivor_id);
    p jsonb;
BEGIN
    SELECT * INTO snap FROM crm.merge_preferences WHERE merge_id = NEW.merge_id;
    IF FOUND THEN
        FOR p IN SELECT * FROM jsonb_array_elements(snap.absorbed_preferences) LOOP
            DELETE FROM crm.preferences
             WHERE customer_id = sid AND name = p->>'name' AND value = p->'value'
               AND source = p->>'source' AND updated_at = (p->>'updated_at')::timestamptz;
            IF FOUND THEN
                INSERT INTO crm.preferences (customer_id, name, value, source, updated_at)
                SELECT sid, s->>'name', s->'value', s->>'source', (s->>'updated_at')::timestamptz
                  FROM jsonb_array_elements(snap.survivor_preferences) AS s
                 WHERE s->>'name' = p->>'name';
            END IF;
            INSERT INTO crm.preferences (customer_id, name, value, source, updated_at)
            VALUES (NEW.absorbed_id, p->>'name', p->'value', p->>'source',
                    (p->>'updated_at')::timestamptz)
            ON CONFLICT (customer_id, name) DO NOTHING;
        END LOOP;
    END IF;
    UPDATE crm.consent_events SET customer_id = NEW.absorbed_id
     WHERE origin_customer_id = ANY (NEW.absorbed_members) AND customer_id <> NEW.absorbed_id;
    RETURN NULL;
END $$;


--
-- Name: value_finish(bigint); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.value_finish(p_run bigint) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
    mvc double precision := (crm.setting('tier_mvc_fraction') #>> '{}')::double precision;
    mgc double precision := (crm.setting('tier_mgc_fraction') #>> '{}')::double precision;
    mgc_p double precision := (crm.setting('tier_mgc_min_p_alive') #>> '{}')::double precision;
    bz_ratio numeric := (crm.setting('tier_bz_return_ratio') #>> '{}')::numeric;
    v_equity numeric;
    v_customers bigint;
    v_buyers bigint;
BEGIN
    DELETE FROM crm.customer_value v
     WHERE NOT EXISTS (SELECT 1 FROM value_stage s WHERE s.customer_id = v.customer_id);

    INSERT INTO crm.customer_value AS v (
        customer_id, run_id, revenue, returns, cost, margin, purchase_days, first_purchase_at,
        last_purchase_at, frequency, recency_weeks, age_weeks, avg_repeat_spend, p_alive,
        expected_purchases, expected_spend, clv, rfm_r, rfm_f, rfm_m, tier, computed_at)
    SELECT s.customer_id, p_run, s.revenue, s.returns, s.cost,
           s.revenue - s.returns - s.cost, s.purchase_days, s.first_purchase_at,
           s.last_purchase_at, s.x, s.t_x, s.t_cal, s.zbar, s.p_alive, s.expected_purchases,
           s.expected_spend, round(s.clv::numeric, 4),
           r.r, r.f, r.m,
           CASE
               WHEN s.revenue - s.returns - s.cost < 0
                    OR (s.revenue > 0 AND s.returns / s.revenue >= bz_ratio) THEN 'bz'
               WHEN s.purchase_days = 0 THEN 'prospect'
               WHEN r.clv_rank < mvc AND s.clv > 0 THEN 'mvc'
               WHEN r.clv_rank < mvc + mgc AND s.p_alive >= mgc_p THEN 'mgc'
               ELSE 'standard'
           END,
           clock_timestamp()
      FROM value_stage s
      LEFT JOIN (
          SELECT customer_id,
                 ntile(5) OVER (ORDER BY last_purchase_at, customer_id)::smallint AS r,
                 ntile(5) OVER (ORDER BY purchase_days, customer_id)::smallint AS f,
                 ntile(5) OVER (ORDER BY revenue, customer_id)::smallint AS m,
                 percent_rank() OVER (ORDER BY clv DESC) AS clv_rank
            FROM value_stage WHERE purchase_days > 0) AS r
        ON r.customer_id = s.customer_id
    ON CONFLICT (customer_id) DO UPDATE SET
        run_id = excluded.run_id, revenue = excluded.revenue, returns = excluded.returns,
        cost = excluded.cost, margin = excluded.margin, purchase_days = excluded.purchase_days,
        first_purchase_at = excluded.first_purchase_at,
        last_purchase_at = excluded.last_purchase_at, frequency = excluded.frequency,
        recency_weeks = excluded.recency_weeks, age_weeks = excluded.age_weeks,
        avg_repeat_spend = excluded.avg_repeat_spend, p_alive = excluded.p_alive,
        expected_purchases = excluded.expected_purchases,
        expected_spend = excluded.expected_spend, clv = excluded.clv, rfm_r = excluded.rfm_r,
        rfm_f = excluded.rfm_f, rfm_m = excluded.rfm_m, tier = excluded.tier,
        computed_at = excluded.computed_at;

    INSERT INTO crm.value_snapshots (run_id, customer_id, clv)
    SELECT p_run, customer_id, clv FROM crm.customer_value WHERE run_id = p_run AND clv <> 0;

    SELECT sum(clv), count(*), count(*) FILTER (WHERE purchase_days > 0)
      INTO v_equity, v_customers, v_buyers FROM crm.customer_value;
    UPDATE crm.model_runs SET finished_at = clock_timestamp(), customers = v_customers,
                              buyers = v_buyers, customer_equity = coalesce(v_equity, 0)
     WHERE run_id = p_run;
    RETURN (SELECT jsonb_build_object('run_id', run_id, 'customers', customers, 'buyers', buyers,
                                      'customer_equity', customer_equity,
                                      'tiers', (SELECT coalesce(jsonb_object_agg(tier, k), '{}') FROM (
                                          SELECT tier, count(*) AS k FROM crm.customer_value
                                           GROUP BY tier) t))
              FROM crm.model_runs WHERE run_id = p_run);
END $$;


--
-- Name: value_inputs(timestamp with time zone); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.value_inputs(p_as_of timestamp with time zone) RETURNS TABLE(customer_id uuid, purchase_days integer, x integer, t_x double precision, t_cal double precision, zbar double precision, revenue numeric, returns numeric, cost numeric, first_purchase_at timestamp with time zone, last_purchase_at timestamp with time zone)
    LANGUAGE sql STABLE
    AS $$
    WITH cur AS (SELECT crm.setting('base_currency') #>> '{}' AS c),
    days AS (
        SELECT i.customer_id, date_trunc('day', i.occurred_at) AS d, sum(i.amount) AS v
          FROM crm.interactions i, cur
         WHERE i.type = 'purchase' AND i.occurred_at <= p_as_of
           AND i.currency = cur.c AND i.amount IS NOT NULL
         GROUP BY 1, 2),
    per AS (
        SELECT d.customer_id, count(*)::int AS n, min(d.d) AS first_d, max(d.d) AS last_d,
               sum(d.v) AS total, (array_agg(d.v ORDER BY d.d))[1] AS first_v
          FROM days d GROUP BY 1),
    money AS (
        SELECT i.customer_id,
               sum(i.amount) FILTER (WHERE i.type = 'purchase') AS revenue,
               sum(i.amount) FILTER (WHERE i.type = 'return') AS returns,
               sum(i.cost) AS cost
          FROM crm.interactions i, cur
         WHERE i.currency = cur.c AND i.occurred_at <= p_as_of GROUP BY 1)
    SELECT c.customer_id, coalesce(p.n, 0),
           CASE WHEN p.n IS NULL THEN NULL ELSE p.n - 1 END,
           extract(epoch FROM p.last_d - p.first_d) / 604800.0,
           extract(epoch FROM p_as_of - p.first_d) / 604800.0,
           CASE WHEN p.n > 1 THEN ((p.total - p.first_v) / (p.n - 1))::double precision
                WHEN p.n = 1 THEN 0 END,
           coalesce(m.revenue, 0), coalesce(m.returns, 0), coalesce(m.cost, 0),
           p.first_d, p.last_d
      FROM crm.customers c
      LEFT JOIN per p ON p.customer_id = c.customer_id
      LEFT JOIN money m ON m.customer_id = c.customer_id
     WHERE c.merged_into IS NULL
$$;


--
-- Name: value_section(uuid); Type: FUNCTION; Schema: crm; Owner: -
--

CREATE FUNCTION crm.value_section(p_customer uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    RETURN (
        SELECT (
                SELECT jsonb_build_object(
                           'tier', v.tier,
                           'revenue', trim_scale(v.revenue), 'returns', trim_scale(v.returns),
                           'cost', trim_scale(v.cost), 'margin', trim_scale(v.margin),
                           'currency', crm.setting('base_currency'),
                           'purchase_days', v.purchase_days,
                           'first_purchase_at', crm.ts(v.first_purchase_at),
                           'last_purchase_at', crm.ts(v.last_purchase_at),
                           'rfm', CASE WHEN v.rfm_r IS NULL THEN NULL ELSE jsonb_build_object(
                                      'r', v.rfm_r, 'f', v.rfm_f, 'm', v.rfm_m,
                                      'score', v.rfm_r::text || v.rfm_f::text || v.rfm_m::text) END,
                           'p_alive', v.p_alive,
                           'churn_risk', 1 - v.p_alive,
                           'expected_purchases', v.expected_purchases,
                           'expected_spend', v.expected_spend,
                           'clv', trim_scale(v.clv),
                           'horizon_weeks', crm.setting('clv_horizon_weeks'),
                           'model', jsonb_build_object('run_id', r.run_id, 'name', r.model,
                                                       'as_of', crm.ts(r.as_of)),
                           'computed_at', crm.ts(v.computed_at))
                  FROM crm.customer_value v JOIN crm.model_runs r ON r.run_id = v.run_id
                 WHERE v.customer_id = p_customer)
    );
END $$;


--
-- Name: audit_log; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.audit_log (
    audit_id bigint NOT NULL,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    key_id uuid,
    role text,
    action text NOT NULL,
    customer_id uuid,
    detail jsonb
);


--
-- Name: audit_log_audit_id_seq; Type: SEQUENCE; Schema: crm; Owner: -
--

ALTER TABLE crm.audit_log ALTER COLUMN audit_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME crm.audit_log_audit_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: blocked_identifiers; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.blocked_identifiers (
    kind text NOT NULL,
    value text NOT NULL,
    reason text NOT NULL,
    builtin boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: consent_events_event_id_seq; Type: SEQUENCE; Schema: crm; Owner: -
--

ALTER TABLE crm.consent_events ALTER COLUMN event_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME crm.consent_events_event_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: customer_needs; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.customer_needs (
    customer_id uuid NOT NULL,
    need text NOT NULL,
    n bigint NOT NULL,
    first_at timestamp with time zone NOT NULL,
    last_at timestamp with time zone NOT NULL
);


--
-- Name: customer_value; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.customer_value (
    customer_id uuid NOT NULL,
    run_id bigint NOT NULL,
    revenue numeric NOT NULL,
    returns numeric NOT NULL,
    cost numeric NOT NULL,
    margin numeric NOT NULL,
    purchase_days integer NOT NULL,
    first_purchase_at timestamp with time zone,
    last_purchase_at timestamp with time zone,
    frequency integer,
    recency_weeks double precision,
    age_weeks double precision,
    avg_repeat_spend double precision,
    p_alive double precision,
    expected_purchases double precision,
    expected_spend double precision,
    clv numeric NOT NULL,
    rfm_r smallint,
    rfm_f smallint,
    rfm_m smallint,
    tier text NOT NULL,
    computed_at timestamp with time zone NOT NULL
);


--
-- Name: customers; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.customers (
    customer_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    updated_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    merged_into uuid,
    merged_at timestamp with time zone,
    erased_at timestamp with time zone
);


--
-- Name: identifier_limits; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.identifier_limits (
    kind text NOT NULL,
    max_per_customer integer NOT NULL,
    priority integer NOT NULL,
    CONSTRAINT identifier_limits_max_per_customer_check CHECK ((max_per_customer >= 1))
);


--
-- Name: identifiers; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.identifiers (
    kind text NOT NULL,
    namespace text DEFAULT ''::text NOT NULL,
    value text NOT NULL,
    customer_id uuid NOT NULL,
    source text NOT NULL,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: identity_conflicts; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.identity_conflicts (
    conflict_id bigint NOT NULL,
    at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    source text NOT NULL,
    reason text NOT NULL,
    customer_ids uuid[] NOT NULL,
    identifiers jsonb NOT NULL,
    detail jsonb NOT NULL
);


--
-- Name: identity_conflicts_conflict_id_seq; Type: SEQUENCE; Schema: crm; Owner: -
--

ALTER TABLE crm.identity_conflicts ALTER COLUMN conflict_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME crm.identity_conflicts_conflict_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: interaction_stats; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.interaction_stats (
    customer_id uuid NOT NULL,
    channel text NOT NULL,
    type text NOT NULL,
    currency text NOT NULL,
    n bigint NOT NULL,
    amount numeric NOT NULL,
    cost numeric NOT NULL,
    first_at timestamp with time zone NOT NULL,
    last_at timestamp with time zone NOT NULL
);


--
-- Name: interactions; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.interactions (
    interaction_id uuid NOT NULL,
    customer_id uuid NOT NULL,
    source text NOT NULL,
    external_id text NOT NULL,
    channel text NOT NULL,
    type text NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    received_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    amount numeric(18,4),
    currency character(3),
    cost numeric(18,4),
    tags text[] DEFAULT '{}'::text[] NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    origin_customer_id uuid NOT NULL,
    resolved_by jsonb
);


--
-- Name: merge_preferences; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.merge_preferences (
    merge_id bigint NOT NULL,
    absorbed_preferences jsonb NOT NULL,
    survivor_preferences jsonb NOT NULL
);


--
-- Name: merges_merge_id_seq; Type: SEQUENCE; Schema: crm; Owner: -
--

ALTER TABLE crm.merges ALTER COLUMN merge_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME crm.merges_merge_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: model_runs; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.model_runs (
    run_id bigint NOT NULL,
    model text NOT NULL,
    as_of timestamp with time zone NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone,
    customers bigint,
    buyers bigint,
    params jsonb,
    log_likelihood double precision,
    fit_seconds double precision,
    customer_equity numeric
);


--
-- Name: model_runs_run_id_seq; Type: SEQUENCE; Schema: crm; Owner: -
--

ALTER TABLE crm.model_runs ALTER COLUMN run_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME crm.model_runs_run_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: preferences; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.preferences (
    customer_id uuid NOT NULL,
    name text NOT NULL,
    value jsonb NOT NULL,
    source text NOT NULL,
    updated_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: profile_cache; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.profile_cache (
    customer_id uuid NOT NULL,
    version bigint DEFAULT 0 NOT NULL,
    epoch bigint DEFAULT 0 NOT NULL,
    doc jsonb,
    valid_until timestamp with time zone
)
WITH (fillfactor='80');


--
-- Name: profile_cache_epoch; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.profile_cache_epoch (
    only_row boolean DEFAULT true NOT NULL,
    epoch bigint NOT NULL,
    CONSTRAINT profile_cache_epoch_only_row_check CHECK (only_row)
);


--
-- Name: profile_read; Type: VIEW; Schema: crm; Owner: -
--

CREATE VIEW crm.profile_read AS
 SELECT c.customer_id,
        CASE
            WHEN ((pc.doc IS NOT NULL) AND (pc.epoch = e.epoch) AND (c.merged_into IS NULL) AND ((pc.valid_until IS NULL) OR (pc.valid_until > now()))) THEN pc.doc
            ELSE crm.cached_profile(c.customer_id)
        END AS doc
   FROM ((crm.customers c
     CROSS JOIN crm.profile_cache_epoch e)
     LEFT JOIN crm.profile_cache pc ON ((pc.customer_id = c.customer_id)));


--
-- Name: settings; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.settings (
    key text NOT NULL,
    value jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: traits; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.traits (
    customer_id uuid NOT NULL,
    name text NOT NULL,
    value jsonb NOT NULL,
    source text NOT NULL,
    updated_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);


--
-- Name: value_snapshots; Type: TABLE; Schema: crm; Owner: -
--

CREATE TABLE crm.value_snapshots (
    run_id bigint NOT NULL,
    customer_id uuid NOT NULL,
    clv numeric NOT NULL
);


--
-- Name: crm_schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.crm_schema_migrations (
    version text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Data for Name: api_keys; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.api_keys (key_id, name, role, namespace, key_hash, created_at, created_by, revoked_at) FROM stdin;
\.


--
-- Data for Name: audit_log; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.audit_log (audit_id, at, key_id, role, action, customer_id, detail) FROM stdin;
\.


--
-- Data for Name: blocked_identifiers; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.blocked_identifiers (kind, value, reason, builtin, created_at) FROM stdin;
*	null	placeholder value	t	2026-12-07 19:28:48.126224+00
*	none	placeholder value	t	2026-12-07 19:28:48.126362+00
*	nil	placeholder value	t	2026-12-07 19:28:48.126367+00
*	undefined	placeholder value	t	2026-12-07 19:28:48.126369+00
*	unknown	placeholder value	t	2026-12-07 19:28:48.126371+00
*	anonymous	placeholder value	t	2026-12-07 19:28:48.126373+00
*	n/a	placeholder value	t	2026-12-07 19:28:48.126374+00
*	na	placeholder value	t	2026-12-07 19:28:48.126376+00
*	-1	placeholder value	t	2026-12-07 19:28:48.126378+00
*	0	placeholder value	t	2026-12-07 19:28:48.126379+00
*	test	placeholder value	t	2026-12-07 19:28:48.126381+00
*	guest	placeholder value	t	2026-12-07 19:28:48.126382+00
*	00000000-0000-0000-0000-000000000000	placeholder value	t	2026-12-07 19:28:48.126384+00
email	test@test.com	placeholder email	t	2026-12-07 19:28:48.126389+00
email	test@example.com	placeholder email	t	2026-12-07 19:28:48.126391+00
email	example@example.com	placeholder email	t	2026-12-07 19:28:48.126393+00
email	a@a.com	placeholder email	t	2026-12-07 19:28:48.126394+00
email	none@none.com	placeholder email	t	2026-12-07 19:28:48.126396+00
email	null@null.com	placeholder email	t	2026-12-07 19:28:48.126398+00
email	noemail@noemail.com	placeholder email	t	2026-12-07 19:28:48.126399+00
email	no@email.com	placeholder email	t	2026-12-07 19:28:48.126401+00
email	email@email.com	placeholder email	t	2026-12-07 19:28:48.126402+00
email	noreply@noreply.com	placeholder email	t	2026-12-07 19:28:48.126407+00
email	unknown@unknown.com	placeholder email	t	2026-12-07 19:28:48.126409+00
phone	+10000000000	placeholder phone	t	2026-12-07 19:28:48.126415+00
phone	+11111111111	placeholder phone	t	2026-12-07 19:28:48.126416+00
phone	+12345678900	placeholder phone	t	2026-12-07 19:28:48.126418+00
phone	+1234567890	placeholder phone	t	2026-12-07 19:28:48.126419+00
phone	+123456789	placeholder phone	t	2026-12-07 19:28:48.126421+00
phone	+99999999999	placeholder phone	t	2026-12-07 19:28:48.126423+00
\.


--
-- Data for Name: consent_events; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.consent_events (event_id, customer_id, purpose, channel, status, source, occurred_at, recorded_at, origin_customer_id) FROM stdin;
\.


--
-- Data for Name: customer_needs; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.customer_needs (customer_id, need, n, first_at, last_at) FROM stdin;
\.


--
-- Data for Name: customer_value; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.customer_value (customer_id, run_id, revenue, returns, cost, margin, purchase_days, first_purchase_at, last_purchase_at, frequency, recency_weeks, age_weeks, avg_repeat_spend, p_alive, expected_purchases, expected_spend, clv, rfm_r, rfm_f, rfm_m, tier, computed_at) FROM stdin;
\.


--
-- Data for Name: customers; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.customers (customer_id, created_at, updated_at, merged_into, merged_at, erased_at) FROM stdin;
\.


--
-- Data for Name: identifier_limits; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.identifier_limits (kind, max_per_customer, priority) FROM stdin;
external	1	1
loyalty_card	2	2
email	5	3
phone	3	4
device	20	5
\.


--
-- Data for Name: identifiers; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.identifiers (kind, namespace, value, customer_id, source, created_at) FROM stdin;
\.


--
-- Data for Name: identity_conflicts; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.identity_conflicts (conflict_id, at, source, reason, customer_ids, identifiers, detail) FROM stdin;
\.


--
-- Data for Name: interaction_stats; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.interaction_stats (customer_id, channel, type, currency, n, amount, cost, first_at, last_at) FROM stdin;
\.


--
-- Data for Name: interactions; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.interactions (interaction_id, customer_id, source, external_id, channel, type, occurred_at, received_at, amount, currency, cost, tags, payload, origin_customer_id, resolved_by) FROM stdin;
\.


--
-- Data for Name: merge_preferences; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.merge_preferences (merge_id, absorbed_preferences, survivor_preferences) FROM stdin;
\.


--
-- Data for Name: merges; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.merges (merge_id, survivor_id, absorbed_id, actor, reason, trigger_identifiers, merged_at, absorbed_members, absorbed_identifiers, absorbed_traits, survivor_traits, absorbed_updated_at, survivor_updated_at, unmerged_at, unmerged_by, unmerge_reason) FROM stdin;
\.


--
-- Data for Name: model_runs; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.model_runs (run_id, model, as_of, started_at, finished_at, customers, buyers, params, log_likelihood, fit_seconds, customer_equity) FROM stdin;
\.


--
-- Data for Name: preferences; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.preferences (customer_id, name, value, source, updated_at) FROM stdin;
\.


--
-- Data for Name: profile_cache; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.profile_cache (customer_id, version, epoch, doc, valid_until) FROM stdin;
\.


--
-- Data for Name: profile_cache_epoch; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.profile_cache_epoch (only_row, epoch) FROM stdin;
t	1
\.


--
-- Data for Name: segments; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.segments (segment_id, name, description, rule, created_at) FROM stdin;
\.


--
-- Data for Name: settings; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.settings (key, value, updated_at) FROM stdin;
base_currency	"EUR"	2026-12-07 19:28:48.247607+00
clv_horizon_weeks	52	2026-12-07 19:28:48.247607+00
clv_margin	1.0	2026-12-07 19:28:48.247607+00
tier_mvc_fraction	0.10	2026-12-07 19:28:48.247607+00
tier_mgc_fraction	0.30	2026-12-07 19:28:48.247607+00
tier_mgc_min_p_alive	0.5	2026-12-07 19:28:48.247607+00
tier_bz_return_ratio	0.5	2026-12-07 19:28:48.247607+00
\.


--
-- Data for Name: traits; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.traits (customer_id, name, value, source, updated_at) FROM stdin;
\.


--
-- Data for Name: value_snapshots; Type: TABLE DATA; Schema: crm; Owner: -
--

COPY crm.value_snapshots (run_id, customer_id, clv) FROM stdin;
\.


--
-- Data for Name: crm_schema_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.crm_schema_migrations (version, applied_at) FROM stdin;
001_foundation	2026-12-07 19:28:48.024495+00
002_value	2026-12-07 19:28:48.247607+00
003_access	2026-12-07 19:28:48.44176+00
004_customize	2026-12-07 19:28:48.608166+00
005_profile_cache	2026-12-07 19:28:48.771876+00
006_ingest_batch_probes	2026-12-07 19:28:48.935968+00
\.


--
-- Name: audit_log_audit_id_seq; Type: SEQUENCE SET; Schema: crm; Owner: -
--

SELECT pg_catalog.setval('crm.audit_log_audit_id_seq', 1, false);


--
-- Name: consent_events_event_id_seq; Type: SEQUENCE SET; Schema: crm; Owner: -
--

SELECT pg_catalog.setval('crm.consent_events_event_id_seq', 1, false);


--
-- Name: identity_conflicts_conflict_id_seq; Type: SEQUENCE SET; Schema: crm; Owner: -
--

SELECT pg_catalog.setval('crm.identity_conflicts_conflict_id_seq', 1, false);


--
-- Name: merges_merge_id_seq; Type: SEQUENCE SET; Schema: crm; Owner: -
--

SELECT pg_catalog.setval('crm.merges_merge_id_seq', 1, false);


--
-- Name: model_runs_run_id_seq; Type: SEQUENCE SET; Schema: crm; Owner: -
--

SELECT pg_catalog.setval('crm.model_runs_run_id_seq', 1, false);


--
-- Name: api_keys api_keys_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (key_id);


--
-- Name: audit_log audit_log_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (audit_id);


--
-- Name: blocked_identifiers blocked_identifiers_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.blocked_identifiers
    ADD CONSTRAINT blocked_identifiers_pkey PRIMARY KEY (kind, value);


--
-- Name: consent_events consent_events_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.consent_events
    ADD CONSTRAINT consent_events_pkey PRIMARY KEY (event_id);


--
-- Name: customer_needs customer_needs_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.customer_needs
    ADD CONSTRAINT customer_needs_pkey PRIMARY KEY (customer_id, need);


--
-- Name: customer_value customer_value_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.customer_value
    ADD CONSTRAINT customer_value_pkey PRIMARY KEY (customer_id);


--
-- Name: customers customers_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.customers
    ADD CONSTRAINT customers_pkey PRIMARY KEY (customer_id);


--
-- Name: identifier_limits identifier_limits_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.identifier_limits
    ADD CONSTRAINT identifier_limits_pkey PRIMARY KEY (kind);


--
-- Name: identifiers identifiers_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.identifiers
    ADD CONSTRAINT identifiers_pkey PRIMARY KEY (kind, namespace, value);


--
-- Name: identity_conflicts identity_conflicts_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.identity_conflicts
    ADD CONSTRAINT identity_conflicts_pkey PRIMARY KEY (conflict_id);


--
-- Name: interaction_stats interaction_stats_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.interaction_stats
    ADD CONSTRAINT interaction_stats_pkey PRIMARY KEY (customer_id, channel, type, currency);


--
-- Name: interactions interactions_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.interactions
    ADD CONSTRAINT interactions_pkey PRIMARY KEY (interaction_id);


--
-- Name: interactions interactions_source_external_id_key; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.interactions
    ADD CONSTRAINT interactions_source_external_id_key UNIQUE (source, external_id);


--
-- Name: merge_preferences merge_preferences_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.merge_preferences
    ADD CONSTRAINT merge_preferences_pkey PRIMARY KEY (merge_id);


--
-- Name: merges merges_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.merges
    ADD CONSTRAINT merges_pkey PRIMARY KEY (merge_id);


--
-- Name: model_runs model_runs_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.model_runs
    ADD CONSTRAINT model_runs_pkey PRIMARY KEY (run_id);


--
-- Name: preferences preferences_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.preferences
    ADD CONSTRAINT preferences_pkey PRIMARY KEY (customer_id, name);


--
-- Name: profile_cache_epoch profile_cache_epoch_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.profile_cache_epoch
    ADD CONSTRAINT profile_cache_epoch_pkey PRIMARY KEY (only_row);


--
-- Name: profile_cache profile_cache_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.profile_cache
    ADD CONSTRAINT profile_cache_pkey PRIMARY KEY (customer_id);


--
-- Name: segments segments_name_key; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.segments
    ADD CONSTRAINT segments_name_key UNIQUE (name);


--
-- Name: segments segments_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.segments
    ADD CONSTRAINT segments_pkey PRIMARY KEY (segment_id);


--
-- Name: settings settings_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);


--
-- Name: traits traits_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.traits
    ADD CONSTRAINT traits_pkey PRIMARY KEY (customer_id, name);


--
-- Name: value_snapshots value_snapshots_pkey; Type: CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.value_snapshots
    ADD CONSTRAINT value_snapshots_pkey PRIMARY KEY (run_id, customer_id);


--
-- Name: crm_schema_migrations crm_schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.crm_schema_migrations
    ADD CONSTRAINT crm_schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: audit_log_customer_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX audit_log_customer_idx ON crm.audit_log USING btree (customer_id, at);


--
-- Name: audit_log_key_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX audit_log_key_idx ON crm.audit_log USING btree (key_id, at);


--
-- Name: consent_events_state_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX consent_events_state_idx ON crm.consent_events USING btree (customer_id, purpose, channel, occurred_at DESC, event_id DESC);


--
-- Name: customer_needs_need_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX customer_needs_need_idx ON crm.customer_needs USING btree (need, last_at);


--
-- Name: customer_value_clv_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX customer_value_clv_idx ON crm.customer_value USING btree (clv DESC);


--
-- Name: customer_value_tier_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX customer_value_tier_idx ON crm.customer_value USING btree (tier, clv DESC);


--
-- Name: customers_merged_into_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX customers_merged_into_idx ON crm.customers USING btree (merged_into) WHERE (merged_into IS NOT NULL);


--
-- Name: identifiers_customer_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX identifiers_customer_idx ON crm.identifiers USING btree (customer_id);


--
-- Name: identity_conflicts_customers_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX identity_conflicts_customers_idx ON crm.identity_conflicts USING gin (customer_ids);


--
-- Name: interactions_timeline_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX interactions_timeline_idx ON crm.interactions USING btree (customer_id, occurred_at DESC, interaction_id DESC);


--
-- Name: interactions_warranty_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX interactions_warranty_idx ON crm.interactions USING btree (((payload ->> 'warranty_until'::text))) WHERE ((type = 'purchase'::text) AND (payload ? 'warranty_until'::text));


--
-- Name: merges_absorbed_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX merges_absorbed_idx ON crm.merges USING btree (absorbed_id);


--
-- Name: merges_survivor_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX merges_survivor_idx ON crm.merges USING btree (survivor_id);


--
-- Name: traits_birthday_idx; Type: INDEX; Schema: crm; Owner: -
--

CREATE INDEX traits_birthday_idx ON crm.traits USING btree (customer_id) WHERE (name = 'birthday'::text);


--
-- Name: consent_events consent_events_append_only; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER consent_events_append_only BEFORE DELETE OR UPDATE ON crm.consent_events FOR EACH ROW EXECUTE FUNCTION crm.consent_events_append_only();


--
-- Name: consent_events consent_events_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER consent_events_profile_stale AFTER INSERT OR DELETE OR UPDATE ON crm.consent_events FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();


--
-- Name: customer_needs customer_needs_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER customer_needs_profile_stale AFTER INSERT OR DELETE OR UPDATE ON crm.customer_needs FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();


--
-- Name: customer_value customer_value_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER customer_value_profile_stale AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON crm.customer_value FOR EACH STATEMENT EXECUTE FUNCTION crm.profile_stale_all();


--
-- Name: customers customers_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER customers_profile_stale AFTER UPDATE ON crm.customers FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_customer();


--
-- Name: identifiers identifiers_not_erased; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER identifiers_not_erased BEFORE INSERT OR UPDATE OF customer_id ON crm.identifiers FOR EACH ROW EXECUTE FUNCTION crm.identifiers_not_erased();


--
-- Name: identifiers identifiers_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER identifiers_profile_stale AFTER INSERT OR DELETE OR UPDATE ON crm.identifiers FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();


--
-- Name: interaction_stats interaction_stats_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER interaction_stats_profile_stale AFTER INSERT OR DELETE OR UPDATE ON crm.interaction_stats FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();


--
-- Name: merges merges_customize; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER merges_customize AFTER INSERT ON crm.merges FOR EACH ROW EXECUTE FUNCTION crm.merge_customize();


--
-- Name: merges merges_unmerge_customize; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER merges_unmerge_customize AFTER UPDATE OF unmerged_at ON crm.merges FOR EACH ROW WHEN (((old.unmerged_at IS NULL) AND (new.unmerged_at IS NOT NULL))) EXECUTE FUNCTION crm.unmerge_customize();


--
-- Name: preferences preferences_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER preferences_profile_stale AFTER INSERT OR DELETE OR UPDATE ON crm.preferences FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();


--
-- Name: settings settings_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER settings_profile_stale AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON crm.settings FOR EACH STATEMENT EXECUTE FUNCTION crm.profile_stale_all();


--
-- Name: traits traits_profile_stale; Type: TRIGGER; Schema: crm; Owner: -
--

CREATE TRIGGER traits_profile_stale AFTER INSERT OR DELETE OR UPDATE ON crm.traits FOR EACH ROW EXECUTE FUNCTION crm.profile_stale_row();


--
-- Name: consent_events consent_events_customer_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.consent_events
    ADD CONSTRAINT consent_events_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES crm.customers(customer_id);


--
-- Name: customer_needs customer_needs_customer_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.customer_needs
    ADD CONSTRAINT customer_needs_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES crm.customers(customer_id);


--
-- Name: customer_value customer_value_customer_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.customer_value
    ADD CONSTRAINT customer_value_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES crm.customers(customer_id);


--
-- Name: customer_value customer_value_run_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.customer_value
    ADD CONSTRAINT customer_value_run_id_fkey FOREIGN KEY (run_id) REFERENCES crm.model_runs(run_id);


--
-- Name: customers customers_merged_into_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.customers
    ADD CONSTRAINT customers_merged_into_fkey FOREIGN KEY (merged_into) REFERENCES crm.customers(customer_id);


--
-- Name: identifiers identifiers_customer_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.identifiers
    ADD CONSTRAINT identifiers_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES crm.customers(customer_id);


--
-- Name: interaction_stats interaction_stats_customer_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.interaction_stats
    ADD CONSTRAINT interaction_stats_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES crm.customers(customer_id);


--
-- Name: interactions interactions_customer_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.interactions
    ADD CONSTRAINT interactions_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES crm.customers(customer_id);


--
-- Name: merge_preferences merge_preferences_merge_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.merge_preferences
    ADD CONSTRAINT merge_preferences_merge_id_fkey FOREIGN KEY (merge_id) REFERENCES crm.merges(merge_id);


--
-- Name: merges merges_absorbed_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.merges
    ADD CONSTRAINT merges_absorbed_id_fkey FOREIGN KEY (absorbed_id) REFERENCES crm.customers(customer_id);


--
-- Name: merges merges_survivor_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.merges
    ADD CONSTRAINT merges_survivor_id_fkey FOREIGN KEY (survivor_id) REFERENCES crm.customers(customer_id);


--
-- Name: preferences preferences_customer_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.preferences
    ADD CONSTRAINT preferences_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES crm.customers(customer_id);


--
-- Name: traits traits_customer_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.traits
    ADD CONSTRAINT traits_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES crm.customers(customer_id);


--
-- Name: value_snapshots value_snapshots_run_id_fkey; Type: FK CONSTRAINT; Schema: crm; Owner: -
--

ALTER TABLE ONLY crm.value_snapshots
    ADD CONSTRAINT value_snapshots_run_id_fkey FOREIGN KEY (run_id) REFERENCES crm.model_runs(run_id);


--
-- PostgreSQL database dump complete
--

\unrestrict crmrelease9275496

