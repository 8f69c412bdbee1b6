-- customize: preferences, consents, the contact decision, moments, and the
-- data-subject rights (export, erasure); the triggers that keep consents
-- append-only, erased customers without identifiers, and merges carrying
-- preferences and consents.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- Only a merge may touch a consent row, and only to move it to the survivor.
CREATE OR REPLACE FUNCTION crm.consent_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       OR (NEW.purpose, NEW.channel, NEW.status, NEW.source, NEW.occurred_at, NEW.recorded_at)
          IS DISTINCT FROM
          (OLD.purpose, OLD.channel, OLD.status, OLD.source, OLD.occurred_at, OLD.recorded_at) THEN
        RAISE EXCEPTION 'the consent history is append-only';
    END IF;
    RETURN NEW;
END $$;

SELECT crm.define_trigger('consent_events_append_only', 'crm.consent_events', $def$
CREATE OR REPLACE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON crm.consent_events
    FOR EACH ROW EXECUTE FUNCTION crm.consent_events_append_only()
$def$);

-- A resolve that looked an identifier up just before an erasure committed
-- must not attach identifiers to (or merge) the erased customer: fail with
-- a serialization failure so that the server retries with fresh data.
CREATE OR REPLACE FUNCTION crm.identifiers_not_erased() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM crm.customers
                WHERE customer_id = NEW.customer_id AND erased_at IS NOT NULL) THEN
        RAISE EXCEPTION 'customer % has been erased', NEW.customer_id USING ERRCODE = '40001';
    END IF;
    RETURN NEW;
END $$;

SELECT crm.define_trigger('identifiers_not_erased', 'crm.identifiers', $def$
CREATE OR REPLACE TRIGGER identifiers_not_erased BEFORE INSERT OR UPDATE OF customer_id ON crm.identifiers
    FOR EACH ROW EXECUTE FUNCTION crm.identifiers_not_erased()
$def$);

CREATE OR REPLACE FUNCTION crm.preference_rows(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object('name', name, 'value', value, 'source', source,
                                                         'updated_at', updated_at)), '[]')
              FROM crm.preferences WHERE customer_id = p_customer
    );
END $$;

CREATE OR REPLACE FUNCTION crm.merge_customize() RETURNS trigger
LANGUAGE plpgsql AS $$
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

SELECT crm.define_trigger('merges_customize', 'crm.merges', $def$
CREATE OR REPLACE TRIGGER merges_customize AFTER INSERT ON crm.merges
    FOR EACH ROW EXECUTE FUNCTION crm.merge_customize()
$def$);

-- Unmerge: every survivor field still holding what the merge brought over
-- goes back to the survivor's earlier value (or away); the absorbed side
-- gets its preferences and its consent events back.
CREATE OR REPLACE FUNCTION crm.unmerge_customize() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    snap crm.merge_preferences%ROWTYPE;
BEGIN
    SELECT * INTO snap FROM crm.merge_preferences WHERE merge_id = NEW.merge_id;
    IF FOUND THEN
        PERFORM crm.restore_snapshot('crm.preferences', crm.survivor_of(NEW.survivor_id),
                                     NEW.absorbed_id, snap.absorbed_preferences,
                                     snap.survivor_preferences, NULL);
    END IF;
    UPDATE crm.consent_events SET customer_id = NEW.absorbed_id
     WHERE origin_customer_id = ANY (NEW.absorbed_members) AND customer_id <> NEW.absorbed_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('merges_unmerge_customize', 'crm.merges', $def$
CREATE OR REPLACE TRIGGER merges_unmerge_customize AFTER UPDATE OF unmerged_at ON crm.merges
    FOR EACH ROW WHEN (OLD.unmerged_at IS NULL AND NEW.unmerged_at IS NOT NULL)
    EXECUTE FUNCTION crm.unmerge_customize()
$def$);

-- ---- preferences ------------------------------------------------------------

-- RFC 7396 JSON merge patch: objects merge recursively, null removes a
-- member, anything else replaces the target.
CREATE OR REPLACE FUNCTION crm.merge_patch(p_target jsonb, p_patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
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

CREATE OR REPLACE FUNCTION crm.set_preference(p_customer uuid, p_name text, p_patch jsonb, p_source text)
RETURNS void LANGUAGE plpgsql AS $$
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

-- {preferences: {..., custom: {...}}, sources: {field: {source, updated_at}}, updated_at}
CREATE OR REPLACE FUNCTION crm.preferences_doc(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
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

-- Preferences or consents of a customer, with the read's audit row: NULL
-- when unknown, the gone document when erased.
CREATE OR REPLACE FUNCTION crm.read_customize(p_id uuid, p_key uuid, p_role text, p_what text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    gone jsonb;
BEGIN
    SELECT o.sid, o.gone INTO sid, gone FROM crm.open_customer(p_id) AS o;
    IF sid IS NULL OR gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    PERFORM crm.audit_read(p_key, p_role, 'customer.' || p_what || '.read', sid);
    RETURN jsonb_build_object('customer_id', sid)
           || CASE p_what WHEN 'preferences' THEN crm.preferences_doc(sid)
                          ELSE crm.consents_doc(sid) END;
END $$;

-- Apply a validated merge patch. Returns the preferences document, NULL
-- when the customer does not exist, the gone document when erased, or
-- {errors: [{pointer, detail}]} (nothing written) for an unknown time zone.
CREATE OR REPLACE FUNCTION crm.patch_preferences(p_id uuid, p_patch jsonb, p_source text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    gone jsonb;
    tz text := p_patch #>> '{quiet_hours,time_zone}';
    k text;
    v jsonb;
    ck text;
    cv jsonb;
BEGIN
    gone := (SELECT o.gone FROM crm.open_customer(p_id) AS o);
    IF gone IS NOT NULL THEN
        RETURN gone;
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

-- ---- consents -----------------------------------------------------------------
CREATE OR REPLACE FUNCTION crm.consent_event_doc(e crm.consent_events) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object('event_id', e.event_id, 'purpose', e.purpose, 'channel', e.channel,
                                      'status', e.status, 'source', e.source,
                                      'occurred_at', crm.ts(e.occurred_at),
                                      'recorded_at', crm.ts(e.recorded_at))
    );
END $$;

-- Current state per (purpose, channel) at p_at: the latest event by
-- occurred_at (then by recording order) that has happened by then.
CREATE OR REPLACE FUNCTION crm.consent_current(p_customer uuid, p_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(crm.consent_event_doc(e) ORDER BY e.purpose, e.channel), '[]')
              FROM (SELECT DISTINCT ON (purpose, channel) *
                      FROM crm.consent_events
                     WHERE customer_id = p_customer AND occurred_at <= p_at
                     ORDER BY purpose, channel, occurred_at DESC, event_id DESC) AS e
    );
END $$;

CREATE OR REPLACE FUNCTION crm.consents_doc(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
                'current', crm.consent_current(p_customer, now()),
                'history', coalesce((SELECT jsonb_agg(crm.consent_event_doc(e)
                                                      ORDER BY e.occurred_at, e.event_id)
                                       FROM crm.consent_events e WHERE e.customer_id = p_customer), '[]'))
    );
END $$;

-- Why contact for (purpose, channel) is or is not covered by consent at p_at:
--   ok                 granted for the channel or for 'any'
--   channel_opted_out  the channel's own latest event is a withdrawal
--   consent_withdrawn  the purpose was withdrawn for 'any' and the channel
--                      was not granted again afterwards
--   no_consent         nothing granted
CREATE OR REPLACE FUNCTION crm.consent_reason(p_customer uuid, p_purpose text, p_channel text,
                                   p_at timestamptz) RETURNS text
LANGUAGE plpgsql STABLE AS $$
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

-- Append one consent event; returns the event with customer_id, NULL when
-- the customer does not exist, the gone document when erased.
CREATE OR REPLACE FUNCTION crm.record_consent(p_id uuid, p_purpose text, p_channel text, p_status text,
                                   p_source text, p_occurred_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    gone jsonb;
    doc jsonb;
    now_ts timestamptz := clock_timestamp();
BEGIN
    gone := (SELECT o.gone FROM crm.open_customer(p_id) AS o);
    IF gone IS NOT NULL THEN
        RETURN gone;
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

-- ---- contact decision -----------------------------------------------------------

-- Whether p_purpose is named in the setting p_key (a JSON array of purpose
-- names: contact_quiet_hours_purposes, contact_frequency_cap_purposes,
-- contact_opt_out_purposes; sql/015_satisfaction.sql); p_default when the
-- setting is missing or not an array.
-- (PL/pgSQL, not SQL: called from PL/pgSQL expressions it is never inlined,
-- and a SQL function is planned again at every call: 20 -> 11 us a call,
-- twelve calls per agent summary.)
CREATE OR REPLACE FUNCTION crm.purpose_listed(p_key text, p_purpose text, p_default boolean)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT value INTO v FROM crm.settings WHERE key = p_key;
    RETURN CASE WHEN jsonb_typeof(v) = 'array' THEN v ? p_purpose ELSE p_default END;
END $$;

-- Consent for contact: crm.consent_reason, except that for a purpose that
-- needs no grant (p_opt_out: the purpose is in contact_opt_out_purposes)
-- nothing granted is no obstacle; a withdrawal still is.
CREATE OR REPLACE FUNCTION crm.contact_consent(p_customer uuid, p_purpose text, p_channel text,
                                               p_at timestamptz, p_opt_out boolean)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN r = 'no_consent' AND p_opt_out THEN 'ok' ELSE r END
      FROM crm.consent_reason(p_customer, p_purpose, p_channel, p_at) AS r
$$;

-- May we contact the customer for p_purpose on p_channel at p_at (NULL =
-- now)? Consent first, then quiet hours (in the customer's time zone), then
-- the frequency cap (outbound_message interactions, any channel, in the
-- last period_days up to p_at). Quiet hours and the cap hold only for the
-- purposes their settings name (default every purpose but service: a
-- complaint call-back is not marketing); a purpose of
-- contact_opt_out_purposes needs no grant, only no opt-out.
-- best_channel is the highest-ranked preferred channel that would be
-- allowed.
CREATE OR REPLACE FUNCTION crm.contact_decision(p_id uuid, p_purpose text, p_channel text,
                                     p_at timestamptz) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    sid uuid;
    gone jsonb;
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
    qh_applies boolean := crm.purpose_listed('contact_quiet_hours_purposes', p_purpose,
                                             p_purpose <> 'service');
    fc_applies boolean := crm.purpose_listed('contact_frequency_cap_purposes', p_purpose,
                                             p_purpose <> 'service');
    opt_out boolean := crm.purpose_listed('contact_opt_out_purposes', p_purpose, false);
BEGIN
    SELECT o.sid, o.gone INTO sid, gone FROM crm.open_customer(p_id) AS o;
    IF sid IS NULL OR gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    IF qh_applies THEN
        SELECT value INTO qh FROM crm.preferences WHERE customer_id = sid AND name = 'quiet_hours';
    END IF;
    IF fc_applies THEN
        SELECT value INTO fc FROM crm.preferences WHERE customer_id = sid AND name = 'frequency_cap';
    END IF;
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
    IF reason = 'no_consent' AND opt_out THEN
        reason := 'ok';
        detail := format('no opt-out of %s by %s (%s needs no grant)', p_purpose, p_channel,
                         p_purpose);
    ELSIF reason = 'ok' THEN
        detail := 'consent granted';
    END IF;
    detail := CASE reason
        WHEN 'no_consent' THEN format('no %s consent has been granted for %s or any channel',
                                      p_purpose, p_channel)
        WHEN 'consent_withdrawn' THEN format('%s consent has been withdrawn for every channel',
                                             p_purpose)
        WHEN 'channel_opted_out' THEN format('the customer opted out of %s by %s',
                                             p_purpose, p_channel)
        ELSE detail END;
    IF reason = 'ok' AND quiet THEN
        reason := 'quiet_hours';
        detail := format('quiet hours %s-%s in %s; local time is %s', qh->>'start', qh->>'end',
                         qh->>'time_zone', to_char(local_t, 'HH24:MI'));
    ELSIF reason = 'ok' AND capped THEN
        reason := 'frequency_cap';
        detail := format('%s outbound messages in the last %s days (cap %s)', sent,
                         fc->>'period_days', fc->>'max_messages');
    ELSIF reason = 'ok' THEN
        detail := detail || '; ' || CASE
            WHEN qh_applies AND fc_applies THEN 'outside quiet hours and under the frequency cap'
            WHEN qh_applies THEN format('outside quiet hours; the frequency cap does not apply to %s',
                                        p_purpose)
            WHEN fc_applies THEN format('under the frequency cap; quiet hours do not apply to %s',
                                        p_purpose)
            ELSE format('quiet hours and the frequency cap do not apply to %s', p_purpose) END;
    END IF;

    IF NOT quiet AND NOT capped AND jsonb_typeof(pref) = 'array' THEN
        SELECT x.c INTO best
          FROM jsonb_array_elements_text(pref) WITH ORDINALITY AS x(c, n)
         WHERE crm.contact_consent(sid, p_purpose, x.c, at, opt_out) = 'ok'
         ORDER BY x.n LIMIT 1;
    END IF;
    RETURN jsonb_build_object('customer_id', sid, 'purpose', p_purpose, 'channel', p_channel,
                              'at', crm.ts(at), 'allowed', reason = 'ok', 'reason', reason,
                              'detail', detail, 'best_channel', best);
END $$;

-- ---- moments --------------------------------------------------------------------
CREATE OR REPLACE FUNCTION crm.try_date(p_text text) RETURNS date
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_text IS NULL OR p_text !~ '^\d{4}-\d{2}-\d{2}$' THEN
        RETURN NULL;
    END IF;
    RETURN to_date(p_text, 'YYYY-MM-DD');
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- The first anniversary of p_date on or after p_from (29 February falls on
-- 28 February in other years).
CREATE OR REPLACE FUNCTION crm.next_anniversary(p_date date, p_from date) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT min(d) FROM (
        SELECT (m + (least(extract(day FROM p_date)::int,
                           extract(day FROM (m + interval '1 month' - interval '1 day'))::int)
                     - 1))::date AS d
          FROM (SELECT make_date(y, extract(month FROM p_date)::int, 1) AS m
                  FROM generate_series(extract(year FROM p_from)::int,
                                       extract(year FROM p_from)::int + 1) AS y) AS months) AS x
     WHERE d >= p_from
$$;

-- The moments of p_kind between p_from and p_from + p_days (inclusive):
-- one row per customer for a kind of a date trait (crm.moment_kinds.trait:
-- the birthday, or a personal date declared in settings) and for the
-- first-purchase anniversary, one row per purchase for warranties (every
-- warranty of a customer, interaction_id saying which). years: the years
-- since the trait's date (the age reached, for a birthday) or since the
-- first purchase. An unknown kind has no rows.
CREATE OR REPLACE FUNCTION crm.moment_candidates(p_kind text, p_from date, p_days int)
RETURNS TABLE (customer_id uuid, moment_date date, years int, interaction_id uuid)
LANGUAGE sql STABLE AS $$
    SELECT t.customer_id, n.d, (extract(year FROM n.d) - extract(year FROM b.b))::int, NULL::uuid
      FROM crm.moment_kinds mk
      JOIN crm.traits t ON t.name = mk.trait
      CROSS JOIN LATERAL (SELECT crm.try_date(t.value #>> '{}') AS b) AS b
      CROSS JOIN LATERAL (SELECT crm.next_anniversary(b.b, p_from) AS d) AS n
     WHERE mk.kind = p_kind AND b.b IS NOT NULL
       AND n.d <= p_from + p_days AND n.d > b.b
    UNION ALL
    SELECT s.customer_id, n.d, (extract(year FROM n.d) - extract(year FROM s.f))::int, NULL::uuid
      FROM (SELECT st.customer_id, (min(st.first_at) AT TIME ZONE 'UTC')::date AS f
              FROM crm.interaction_stats st WHERE st.type = 'purchase'
             GROUP BY st.customer_id) AS s
      CROSS JOIN LATERAL (SELECT crm.next_anniversary(s.f, p_from) AS d) AS n
     WHERE p_kind = 'anniversary' AND n.d <= p_from + p_days AND n.d > s.f
    UNION ALL
    SELECT i.customer_id, w.d, NULL::int, i.interaction_id
      FROM crm.interactions i
      CROSS JOIN LATERAL (SELECT crm.try_date(i.payload->>'warranty_until') AS d) AS w
     WHERE p_kind = 'warranty' AND i.type = 'purchase' AND i.payload ? 'warranty_until'
       AND i.payload->>'warranty_until' BETWEEN to_char(p_from, 'YYYY-MM-DD')
                                            AND to_char(p_from + p_days, 'YYYY-MM-DD')
       AND w.d BETWEEN p_from AND p_from + p_days
$$;

-- What a purchase says it is: its payload's product, else its sku (a
-- string, cut at 200 characters; NULL when it has neither).
CREATE OR REPLACE FUNCTION crm.purchase_product(p_payload jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT left(coalesce(CASE WHEN jsonb_typeof(p_payload->'product') = 'string'
                              THEN p_payload->>'product' END,
                         CASE WHEN jsonb_typeof(p_payload->'sku') = 'string'
                              THEN p_payload->>'sku' END), 200)
$$;

DROP FUNCTION IF EXISTS crm.moments(text, timestamptz, int, int, date, uuid, text, text, uuid[]);

-- One page of moments ordered by (date, customer_id, subject) after the
-- cursor; the subject is the purchase for a warranty (a customer may have
-- several on one day), the customer otherwise. p_members (NULL = everyone)
-- restricts to a segment; p_purpose/p_channel (NULL = no filter) keep only
-- customers whose consent covers them at p_at. {"unknown_kind": [known
-- kinds]} for a kind that is neither built in nor declared.
CREATE OR REPLACE FUNCTION crm.moments(p_kind text, p_at timestamptz, p_days int, p_limit int,
                            p_cursor_date date, p_cursor_id uuid, p_cursor_subject uuid,
                            p_purpose text, p_channel text, p_members uuid[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM crm.moment_kinds WHERE kind = p_kind) THEN
        RETURN jsonb_build_object('unknown_kind', (SELECT jsonb_agg(kind ORDER BY kind)
                                                     FROM crm.moment_kinds));
    END IF;
    RETURN (
        WITH p AS (SELECT coalesce(p_at, now()) AS at,
                              (coalesce(p_at, now()) AT TIME ZONE 'UTC')::date AS d,
                              crm.purpose_listed('contact_opt_out_purposes', p_purpose, false)
                                  AS opt_out),
            page AS (
                SELECT m.customer_id, m.moment_date,
                       coalesce(m.interaction_id, m.customer_id) AS subject,
                       jsonb_strip_nulls(jsonb_build_object(
                           'customer_id', m.customer_id, 'kind', p_kind,
                           'date', to_char(m.moment_date, 'YYYY-MM-DD'),
                           'days_until', m.moment_date - p.d, 'years', m.years,
                           'interaction_id', m.interaction_id,
                           'product', (SELECT crm.purchase_product(i.payload)
                                         FROM crm.interactions i
                                        WHERE i.interaction_id = m.interaction_id))) AS item
                  FROM p, crm.moment_candidates(p_kind, p.d, p_days) AS m
                  JOIN crm.customers c ON c.customer_id = m.customer_id
                 WHERE c.merged_into IS NULL AND c.erased_at IS NULL
                   AND (p_members IS NULL OR c.customer_id = ANY (p_members))
                   AND (p_cursor_date IS NULL
                        OR (m.moment_date, m.customer_id, coalesce(m.interaction_id, m.customer_id))
                           > (p_cursor_date, p_cursor_id, p_cursor_subject))
                   AND (p_purpose IS NULL
                        OR crm.contact_consent(c.customer_id, p_purpose, p_channel, p.at,
                                               p.opt_out) = 'ok')
                 ORDER BY m.moment_date, m.customer_id, coalesce(m.interaction_id, m.customer_id)
                 LIMIT p_limit + 1),
            numbered AS (SELECT *, row_number() OVER (ORDER BY moment_date, customer_id, subject)
                                   AS rn
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
                                    WHERE rn = p_limit AND (SELECT count(*) FROM numbered) > p_limit),
                'next_cursor_subject', (SELECT subject FROM numbered
                                         WHERE rn = p_limit
                                           AND (SELECT count(*) FROM numbered) > p_limit))
              FROM p
    );
END $$;

-- ---- moment settings --------------------------------------------------------------
-- GET/PUT /v1/settings/moments: the kinds (crm.moment_kinds) with their
-- trait, purpose and lead. docs/customize.md, "Personal dates".
CREATE OR REPLACE FUNCTION crm.moment_settings_doc() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('kinds', coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'kind', kind, 'trait', trait, 'purpose', purpose, 'lead_days', lead_days,
               'builtin', kind IN ('birthday', 'anniversary', 'warranty')))
               ORDER BY kind IN ('birthday', 'anniversary', 'warranty') DESC, kind), '[]'))
      FROM crm.moment_kinds
$$;

-- Replace the declared kinds by those of p_kinds (checked by the server:
-- src/customize.c validate_moment_settings); a built-in kind listed takes
-- the purpose and lead given, one not listed keeps its own. Audited as
-- settings.moments.changed with the kinds before and after. A trait already
-- read by another kind answers {"invalid": reason}, nothing changed.
CREATE OR REPLACE FUNCTION crm.put_moment_settings(p_kinds jsonb, p_key uuid, p_role text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    before jsonb;
    after jsonb;
BEGIN
    LOCK TABLE crm.moment_kinds IN SHARE ROW EXCLUSIVE MODE;  -- one change at a time
    before := crm.moment_settings_doc();
    -- all declared kinds go, then come back as listed: two kinds may swap traits
    DELETE FROM crm.moment_kinds WHERE kind NOT IN ('birthday', 'anniversary', 'warranty');
    INSERT INTO crm.moment_kinds AS k (kind, trait, purpose, lead_days)
    SELECT x->>'kind',
           CASE WHEN x->>'kind' = 'birthday' THEN 'birthday'
                WHEN x->>'kind' IN ('anniversary', 'warranty') THEN NULL
                ELSE x->>'trait' END,
           x->>'purpose', (x->>'lead_days')::int
      FROM jsonb_array_elements(p_kinds) AS x
    ON CONFLICT (kind) DO UPDATE
        SET trait = excluded.trait, purpose = excluded.purpose, lead_days = excluded.lead_days
     WHERE (k.trait, k.purpose, k.lead_days)
           IS DISTINCT FROM (excluded.trait, excluded.purpose, excluded.lead_days);
    after := crm.moment_settings_doc();
    IF after IS DISTINCT FROM before THEN
        PERFORM crm.audit(p_key, p_role, 'settings.moments.changed', NULL,
                          jsonb_build_object('before', before->'kinds', 'after', after->'kinds'));
    END IF;
    RETURN after;
EXCEPTION WHEN unique_violation THEN
    RETURN jsonb_build_object('invalid', 'a trait may feed one moment kind only');
END $$;

-- The traits of a traits object (resolve or PATCH traits) that a declared
-- moment kind reads and that are not a real date YYYY-MM-DD (null removes
-- the trait and is fine): validation errors [{pointer, detail}], or NULL.
-- plpgsql for its cached plan: as a LANGUAGE sql function it was planned at
-- every call (1.5 to 2.8 ms a call under load, against 0.12 for SELECT 1).
CREATE OR REPLACE FUNCTION crm.moment_trait_errors(p_traits jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF jsonb_typeof(p_traits->'attributes') IS DISTINCT FROM 'object' THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT jsonb_agg(jsonb_build_object(
               'pointer', '/traits/attributes/' || replace(replace(a.key, '~', '~0'), '/', '~1'),
               'detail', format('''%s'' feeds the moment kind ''%s'': it must be a real date '
                                'YYYY-MM-DD or null', a.key, mk.kind)) ORDER BY a.key)
      FROM jsonb_each(p_traits->'attributes') AS a
      JOIN crm.moment_kinds mk ON mk.trait = 'attributes.' || a.key
     WHERE jsonb_typeof(a.value) <> 'null'
       AND (jsonb_typeof(a.value) <> 'string'
            OR crm.try_date(a.value #>> '{}') IS NULL
            OR NOT (a.value #>> '{}') BETWEEN '1900-01-01' AND '2999-12-31'));
END $$;

-- ---- moments as events ----------------------------------------------------------
-- A daily run (the server's moments ticker, or POST /v1/moments:run) writes
-- one moment.due event per moment due that day, once (crm.moment_ledger,
-- sql/013_moment_events.sql). docs/customize.md, "Moments as events".

-- Whether p_date (a birth or first-purchase date) has an anniversary on
-- p_day, counting from the first one; 29 February falls on 28 February in
-- other years (as crm.next_anniversary). Immutable operators only, so that
-- the planner inlines it (with to_char, only stable, it was called as a
-- function per customer: 0.4 s per 100,000).
CREATE OR REPLACE FUNCTION crm.anniversary_on(p_date date, p_day date) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_date < p_day
       AND ((extract(month FROM p_date) = extract(month FROM p_day)
             AND extract(day FROM p_date) = extract(day FROM p_day))
            OR (extract(month FROM p_date) = 2 AND extract(day FROM p_date) = 29
                AND extract(month FROM p_day) = 2 AND extract(day FROM p_day) = 28
                AND extract(month FROM p_day + 1) = 3))
$$;

-- Whether consent for p_purpose covers the customer at p_at on at least
-- one channel (a channel the customer has consent events for, or 'any'),
-- by the rules of crm.consent_reason.
CREATE OR REPLACE FUNCTION crm.consent_covers_some_channel(p_customer uuid, p_purpose text,
                                                p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1
                     FROM (SELECT DISTINCT e.channel FROM crm.consent_events e
                            WHERE e.customer_id = p_customer AND e.purpose = p_purpose
                              AND e.occurred_at <= p_at) AS ch
                    WHERE crm.consent_reason(p_customer, p_purpose, ch.channel, p_at) = 'ok')
$$;

-- Write the moment.due events of run day p_day: for every kind (built in,
-- or a personal date declared in settings: a kind with a trait), the
-- moments on p_day + its lead_days (crm.moment_kinds) of customers that are
-- neither merged away nor erased and whose consent covers the kind's
-- purpose now, that have no ledger row yet (nor one of a customer merged
-- into theirs, for the same kind and date: a merge does not make a moment
-- fire twice). One ledger row and one event per moment (a warranty: per
-- purchase). Returns the number of events written. Callers serialize on
-- crm.moments_state; the ledger's key alone keeps a moment from firing
-- twice.
-- jit off: on 100,000 customers the plan's cost passed the JIT threshold
-- and compiling took 3.1 s of a 6.1 s run (0.8 s without).
CREATE OR REPLACE FUNCTION crm.moments_due(p_day date) RETURNS int
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    n int;
    at timestamptz := now();
BEGIN
    -- per kind its date, and the date's parts the scans compare (computed
    -- once here, not once per row)
    WITH k AS MATERIALIZED (
        SELECT x.kind, x.purpose, x.d, to_char(x.d, 'MM-DD') AS mmdd,
               to_char(x.d, 'YYYY-MM-DD') AS ymd, date_part('month', x.d) AS m,
               date_part('day', x.d) AS dd, x.trait
          FROM (SELECT mk.kind, mk.purpose, mk.trait, p_day + mk.lead_days AS d
                  FROM crm.moment_kinds mk) AS x),
    cand AS MATERIALIZED (
        SELECT k.kind, t.customer_id AS subject_id, t.customer_id, k.d,
               (extract(year FROM k.d) - extract(year FROM b.b))::int AS years,
               NULL::uuid AS interaction_id, NULL::text AS product, k.purpose
          FROM k
          JOIN crm.traits t ON t.name = k.trait
                           -- the text's month and day first: try_date only where they match
                           AND right(t.value #>> '{}', 5) IN (k.mmdd, '02-29')
          CROSS JOIN LATERAL (SELECT crm.try_date(t.value #>> '{}') AS b) AS b
         WHERE crm.anniversary_on(b.b, k.d)
        UNION ALL
        SELECT 'anniversary', s.customer_id, s.customer_id, k.d,
               (extract(year FROM k.d) - extract(year FROM s.f))::int, NULL::uuid, NULL::text,
               k.purpose
          FROM k
          CROSS JOIN LATERAL (
              -- the first purchase of the customers with a purchase row whose
              -- first_at falls on the day's month and day (the first purchase
              -- is one of them): 10 times less work than every customer's
              SELECT st.customer_id, (min(st.first_at) AT TIME ZONE 'UTC')::date AS f
                FROM crm.interaction_stats st
               WHERE st.type = 'purchase'
                 AND st.customer_id IN (
                     SELECT c.customer_id FROM crm.interaction_stats c
                      WHERE c.type = 'purchase'
                        AND (date_part('month', c.first_at AT TIME ZONE 'UTC'),
                             date_part('day', c.first_at AT TIME ZONE 'UTC'))
                            IN ((k.m, k.dd), (2, 29)))
               GROUP BY st.customer_id) AS s
         WHERE k.kind = 'anniversary' AND crm.anniversary_on(s.f, k.d)
        UNION ALL
        SELECT 'warranty', i.interaction_id, i.customer_id, k.d, NULL::int, i.interaction_id,
               crm.purchase_product(i.payload), k.purpose
          FROM k
          JOIN crm.interactions i
            ON k.kind = 'warranty' AND i.type = 'purchase' AND i.payload ? 'warranty_until'
           AND i.payload->>'warranty_until' = k.ymd),
    due AS MATERIALIZED (
        SELECT c.* FROM cand c
          JOIN crm.customers cu ON cu.customer_id = c.customer_id
         WHERE cu.merged_into IS NULL AND cu.erased_at IS NULL
           AND (c.kind = 'warranty'  -- its subject, the purchase, moves with a merge
                OR NOT EXISTS (SELECT 1 FROM crm.moment_ledger l
                                WHERE l.kind = c.kind AND l.moment_date = c.d
                                  AND l.customer_id IN (SELECT a.customer_id FROM crm.customers a
                                                         WHERE a.merged_into = c.customer_id)))
           AND crm.consent_covers_some_channel(c.customer_id, c.purpose, at)),
    fired AS (
        INSERT INTO crm.moment_ledger (kind, subject_id, moment_date, customer_id, run_day)
        SELECT due.kind, due.subject_id, due.d, due.customer_id, p_day FROM due
         ORDER BY due.kind, due.subject_id
        ON CONFLICT (kind, subject_id, moment_date) DO NOTHING
        RETURNING kind, subject_id, moment_date)
    INSERT INTO crm.events (type, customer_id, data)
    SELECT 'moment.due', due.customer_id,
           jsonb_strip_nulls(jsonb_build_object(
               'kind', due.kind, 'date', to_char(due.d, 'YYYY-MM-DD'), 'years', due.years,
               'interaction_id', due.interaction_id, 'product', due.product,
               'purpose', due.purpose))
      FROM fired
      JOIN due ON due.kind = fired.kind AND due.subject_id = fired.subject_id
              AND due.d = fired.moment_date
     ORDER BY due.kind, due.d, due.customer_id, due.subject_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- POST /v1/moments:run: the events of one run day, waiting for a run under
-- way to finish. {date, events}, or {errors} for a day more than 366 days
-- from p_today (the ledger keeps 400 days).
CREATE OR REPLACE FUNCTION crm.moments_run(p_day date, p_today date) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF abs(p_day - p_today) > 366 THEN
        RETURN jsonb_build_object('errors', jsonb_build_array(jsonb_build_object(
            'pointer', '/date',
            'detail', format('''date'' must be within 366 days of today (%s)',
                             to_char(p_today, 'YYYY-MM-DD')))));
    END IF;
    PERFORM 1 FROM crm.moments_state FOR UPDATE;
    RETURN jsonb_build_object('date', to_char(p_day, 'YYYY-MM-DD'),
                              'events', crm.moments_due(p_day));
END $$;

-- The scheduled run: the days from the last one run (again: consent given
-- since the last run of that day counts) to p_today, at most p_catch_up
-- days back; the first run ever runs p_today only. NULL when another
-- instance is running; else {from, to, events}. Once a day, the ledger
-- rows of moments more than 400 days old go.
CREATE OR REPLACE FUNCTION crm.moments_tick(p_today date, p_catch_up int) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    st crm.moments_state%ROWTYPE;
    first_day date;
    d date;
    n int := 0;
BEGIN
    SELECT * INTO st FROM crm.moments_state FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- a last day after today (the time zone setting changed): today only
    first_day := least(greatest(coalesce(st.last_day, p_today), p_today - p_catch_up), p_today);
    FOR d IN SELECT g::date FROM generate_series(first_day, p_today, interval '1 day') AS g LOOP
        n := n + crm.moments_due(d);
    END LOOP;
    IF st.last_day IS DISTINCT FROM p_today THEN
        DELETE FROM crm.moment_ledger WHERE moment_date < p_today - 400;
        UPDATE crm.moments_state SET last_day = greatest(p_today, coalesce(last_day, p_today));
    END IF;
    RETURN jsonb_build_object('from', to_char(first_day, 'YYYY-MM-DD'),
                              'to', to_char(p_today, 'YYYY-MM-DD'), 'events', n);
END $$;

-- ---- data-subject rights ------------------------------------------------------------

-- Everything held about the customer (and the ids it absorbed), audited.
CREATE OR REPLACE FUNCTION crm.export_customer(p_id uuid, p_key uuid, p_role text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    gone jsonb;
    ids uuid[];
BEGIN
    SELECT o.sid, o.gone INTO sid, gone FROM crm.open_customer(p_id) AS o;
    IF sid IS NULL OR gone IS NOT NULL THEN
        RETURN gone;
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
        'trait_values', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                      'name', v.name, 'source', v.source, 'value', v.value,
                                      'first_seen', crm.ts(v.first_seen),
                                      'last_seen', crm.ts(v.last_seen), 'times_seen', v.times_seen)
                                      ORDER BY v.name, v.source)
                                    FROM crm.trait_values v WHERE v.customer_id = ANY (ids)), '[]'),
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
                                      'payload', i.payload, 'resolved_by', i.resolved_by,
                                      'scores', crm.scores_doc(i.nps, i.csat, i.ces),
                                      'case_id', i.case_id)
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
        -- identity rules (docs/identity.md): detaches from or to these ids,
        -- never-merge rules naming them
        'identity_rules', jsonb_build_object(
            'detachments', coalesce((SELECT jsonb_agg(to_jsonb(d) ORDER BY d.detach_id)
                                       FROM crm.identifier_detachments d
                                      WHERE d.customer_id = ANY (ids)
                                         OR d.new_customer_id = ANY (ids)), '[]'),
            'never_merge', coalesce((SELECT jsonb_agg(crm.never_merge_doc(n)
                                                      ORDER BY n.created_at, n.customer_id,
                                                               n.other_id)
                                       FROM crm.never_merge n
                                      WHERE n.customer_id = ANY (ids)
                                         OR n.other_id = ANY (ids)), '[]')),
        'value', crm.value_section(sid),
        'cases', crm.cases_export(ids),
        'stage_history', crm.stage_history_doc(ids),
        'moments', coalesce((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                                 'kind', l.kind, 'date', to_char(l.moment_date, 'YYYY-MM-DD'),
                                 'interaction_id', CASE WHEN l.kind = 'warranty'
                                                        THEN l.subject_id END,
                                 'fired_at', crm.ts(l.fired_at)))
                                 ORDER BY l.fired_at, l.kind, l.subject_id)
                               FROM crm.moment_ledger l WHERE l.customer_id = ANY (ids)), '[]'),
        'audit', coalesce((SELECT jsonb_agg(jsonb_build_object(
                               'at', crm.ts(a.at), 'action', a.action, 'role', a.role,
                               'key_id', a.key_id, 'detail', a.detail) ORDER BY a.audit_id)
                             FROM crm.audit_log a WHERE a.customer_id = ANY (ids)), '[]'));
END $$;

-- Right to erasure. Personal data goes: identifiers (free to be used
-- again), traits, preferences, interaction payloads, satisfaction scores
-- (the customer's opinions) and the identifiers
-- they were resolved by, the identifier/trait/preference snapshots of
-- merge records, the identifiers of identity conflicts and of detachments,
-- the never-merge rules naming it (sql/022_identity_rules.sql), the moments
-- that fired (crm.moment_ledger) and the texts of cases (subject, assignee:
-- crm.erase_cases). Kept: the customer row (marked erased_at),
-- interactions without payload (channel, type, time, amounts, tags) and
-- the aggregates, needs and value derived from them, so totals and KPIs
-- still add up; the consent history (no personal data, proof of consent
-- and of withdrawal); the audit log. Absorbed ids are erased with it.
-- The survivor is locked in the writers' lock mode.
CREATE OR REPLACE FUNCTION crm.erase_customer(p_id uuid, p_key uuid, p_role text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sid uuid;
    gone jsonb;
    ids uuid[];
    n_identifiers bigint;
    n_traits bigint;
    n_preferences bigint;
    n_interactions bigint;
    n_cases bigint;
    at timestamptz := clock_timestamp();
    result jsonb;
BEGIN
    gone := (SELECT o.gone FROM crm.open_customer(p_id) AS o);
    IF gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    -- Locks the survivor (erased or not; NULL for an erased one).
    PERFORM crm.lock_survivors(ARRAY[p_id]);
    sid := crm.survivor_of(p_id);
    IF sid IS NULL THEN
        RETURN NULL;
    END IF;
    gone := (SELECT o.gone FROM crm.open_customer(sid) AS o);
    IF gone IS NOT NULL THEN
        RETURN gone;
    END IF;
    ids := ARRAY[sid] || ARRAY(SELECT customer_id FROM crm.customers WHERE merged_into = sid
                               ORDER BY customer_id);

    DELETE FROM crm.identifiers WHERE customer_id = ANY (ids);
    GET DIAGNOSTICS n_identifiers = ROW_COUNT;
    DELETE FROM crm.traits WHERE customer_id = ANY (ids);
    GET DIAGNOSTICS n_traits = ROW_COUNT;
    DELETE FROM crm.trait_values WHERE customer_id = ANY (ids);  -- every source's value
    DELETE FROM crm.preferences WHERE customer_id = ANY (ids);
    GET DIAGNOSTICS n_preferences = ROW_COUNT;
    UPDATE crm.interactions SET payload = '{}', resolved_by = NULL, nps = NULL, csat = NULL,
                                ces = NULL
     WHERE customer_id = ANY (ids);
    GET DIAGNOSTICS n_interactions = ROW_COUNT;
    -- Merge records keep who merged with whom and when, not the data.
    UPDATE crm.merges SET trigger_identifiers = '[]', absorbed_identifiers = '[]',
                          absorbed_traits = '[]', survivor_traits = '[]'
     WHERE survivor_id = ANY (ids) OR absorbed_id = ANY (ids);
    UPDATE crm.merge_preferences SET absorbed_preferences = '[]', survivor_preferences = '[]'
     WHERE merge_id IN (SELECT merge_id FROM crm.merges
                         WHERE survivor_id = ANY (ids) OR absorbed_id = ANY (ids));
    UPDATE crm.merge_trait_values SET absorbed_values = '[]', survivor_values = '[]'
     WHERE merge_id IN (SELECT merge_id FROM crm.merges
                         WHERE survivor_id = ANY (ids) OR absorbed_id = ANY (ids));
    UPDATE crm.identity_conflicts SET identifiers = '[]' WHERE customer_ids && ids;
    -- identity rules (sql/022_identity_rules.sql): the identifier of a
    -- detach from or to the customer (the record and, for a detach to it,
    -- the event on the other customer; the customer's own events are
    -- scrubbed by crm.customer_erased_event), and the never-merge rules
    -- naming the customer (its identifiers are gone: nothing can match it)
    UPDATE crm.events e SET data = jsonb_build_object('erased', true)
      FROM crm.identifier_detachments d
     WHERE d.new_customer_id = ANY (ids) AND e.customer_id = d.customer_id
       AND e.type = 'identifier.detached' AND e.data->>'detach_id' = d.detach_id::text;
    UPDATE crm.identifier_detachments SET identifier = '{}'
     WHERE customer_id = ANY (ids) OR new_customer_id = ANY (ids);
    DELETE FROM crm.never_merge WHERE customer_id = ANY (ids) OR other_id = ANY (ids);
    -- the moments that fired (a birthday's date is part of the birth date)
    DELETE FROM crm.moment_ledger WHERE customer_id = ANY (ids);
    n_cases := crm.erase_cases(ids, at);
    UPDATE crm.customers SET erased_at = at, updated_at = at WHERE customer_id = ANY (ids);

    result := jsonb_build_object(
        'customer_id', sid, 'erased_at', crm.ts(at), 'erased_ids', to_jsonb(ids[2:]),
        'identifiers_deleted', n_identifiers, 'traits_deleted', n_traits,
        'preferences_deleted', n_preferences, 'interactions_anonymised', n_interactions,
        'cases_anonymised', n_cases);
    PERFORM crm.audit(p_key, p_role, 'customer.erase', sid, result - 'customer_id');
    RETURN result;
END $$;
