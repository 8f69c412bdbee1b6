-- summary: the call-centre agent's summary of one customer
-- (GET /v1/customers/{id}/summary, docs/summary.md) and the next-best-action
-- rules it carries to the server (crm.nba_rules, sql/020_next_best_action.sql).
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes). One current
-- definition per object.

-- A customer's moments from p_from to p_from + p_days (inclusive), soonest
-- first: the next birthday (trait), the next anniversary of the first
-- purchase, and every warranty of a purchase (payload warranty_until) that
-- ends in the window; the same kinds and dates as /v1/moments
-- (crm.moment_candidates, customize.sql), for one customer. The functions
-- here are PL/pgSQL, not SQL: a SQL function that is not inlined is planned
-- at every call, a PL/pgSQL one keeps its plans.
CREATE OR REPLACE FUNCTION crm.customer_moments_doc(p_customer uuid, p_from date, p_days int)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    born date;
    first date;
    d date;
    items jsonb := '[]';
BEGIN
    -- each date is worked out once (a lateral subquery naming it in several
    -- places was pulled up and called crm.next_anniversary, a SQL function
    -- planned at every call, once per place)
    SELECT crm.try_date(t.value #>> '{}') INTO born FROM crm.traits t
     WHERE t.customer_id = p_customer AND t.name = 'birthday';
    IF born IS NOT NULL THEN
        d := crm.next_anniversary(born, p_from);
        IF d <= p_from + p_days AND d > born THEN
            items := items || jsonb_build_object('kind', 'birthday', 'date', to_char(d, 'YYYY-MM-DD'),
                                                 'days_until', d - p_from,
                                                 'years', extract(year FROM d)::int
                                                          - extract(year FROM born)::int);
        END IF;
    END IF;
    SELECT (min(st.first_at) AT TIME ZONE 'UTC')::date INTO first FROM crm.interaction_stats st
     WHERE st.customer_id = p_customer AND st.type = 'purchase';
    IF first IS NOT NULL THEN
        d := crm.next_anniversary(first, p_from);
        IF d <= p_from + p_days AND d > first THEN
            items := items || jsonb_build_object('kind', 'anniversary',
                                                 'date', to_char(d, 'YYYY-MM-DD'),
                                                 'days_until', d - p_from,
                                                 'years', extract(year FROM d)::int
                                                          - extract(year FROM first)::int);
        END IF;
    END IF;
    RETURN (SELECT coalesce(jsonb_agg(m ORDER BY m->>'date', m->>'kind', m->>'interaction_id'), '[]')
              FROM (SELECT jsonb_array_elements(items) AS m
                    UNION ALL
                    SELECT jsonb_build_object('kind', 'warranty', 'date', to_char(w.d, 'YYYY-MM-DD'),
                                              'days_until', w.d - p_from,
                                              'interaction_id', w.interaction_id)
                      FROM (SELECT i.interaction_id, crm.try_date(i.payload->>'warranty_until') AS d
                              FROM crm.interactions i
                             WHERE i.customer_id = p_customer AND i.type = 'purchase'
                               AND i.payload ? 'warranty_until' OFFSET 0) AS w
                     WHERE w.d BETWEEN p_from AND p_from + p_days) AS x);
END $$;

-- The rules and thresholds as GET /v1/settings/next-best-action shows them.
CREATE OR REPLACE FUNCTION crm.nba_settings_doc() RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object(
        'rules', coalesce((SELECT jsonb_agg(jsonb_build_object(
                               'priority', r.priority, 'name', r.name,
                               'conditions', to_jsonb(r.conditions), 'action', r.action,
                               'reason', r.reason) ORDER BY r.priority)
                             FROM crm.nba_rules r), '[]'),
        'thresholds', (SELECT jsonb_build_object(
                           'high_value_clv', trim_scale(t.high_value_clv),
                           'at_risk_churn_risk', t.at_risk_churn_risk,
                           'warranty_days', t.warranty_days)
                         FROM crm.nba_thresholds t),
        'updated_at', crm.ts(greatest((SELECT max(updated_at) FROM crm.nba_rules),
                                      (SELECT updated_at FROM crm.nba_thresholds))));
END $$;

-- Replace the whole rule list and the thresholds (checked by the server,
-- src/nba.c nba_settings_check): one change at a time, audited as
-- settings.next_best_action.changed with the documents before and after.
-- Returns the new settings.
CREATE OR REPLACE FUNCTION crm.nba_settings_replace(p_doc jsonb, p_key uuid, p_role text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    before jsonb;
    after jsonb;
BEGIN
    LOCK TABLE crm.nba_rules IN SHARE ROW EXCLUSIVE MODE;
    before := crm.nba_settings_doc();
    DELETE FROM crm.nba_rules;
    INSERT INTO crm.nba_rules (priority, name, conditions, action, reason)
    SELECT (r->>'priority')::int, r->>'name',
           ARRAY(SELECT jsonb_array_elements_text(r->'conditions')), r->>'action', r->>'reason'
      FROM jsonb_array_elements(p_doc->'rules') AS r;
    UPDATE crm.nba_thresholds
       SET high_value_clv = (p_doc#>>'{thresholds,high_value_clv}')::numeric,
           at_risk_churn_risk = (p_doc#>>'{thresholds,at_risk_churn_risk}')::double precision,
           warranty_days = (p_doc#>>'{thresholds,warranty_days}')::int,
           updated_at = clock_timestamp();
    after := crm.nba_settings_doc();
    PERFORM crm.audit(p_key, p_role, 'settings.next_best_action.changed', NULL,
                      jsonb_build_object('before', before - 'updated_at',
                                         'after', after - 'updated_at'));
    RETURN after;
END $$;

-- The summary of p_id's survivor at p_at, or NULL (no such customer), or the
-- gone document of an erased one. The profile part (identifiers, traits,
-- value, satisfaction, needs, preferences) is read through crm.profile_read,
-- the profile cache, which every write that changes it invalidates in its
-- own transaction: a read after a write sees it. The cases, the last contact
-- and the moments are read afresh (a few index probes each); contact
-- decisions are crm.contact_decision's, one per purpose of p_purposes, on
-- the customer's first preferred channel, else email. "nba" carries the rules and the thresholds: the server
-- evaluates them (src/nba.c) and answers next_best_action in their place.
-- Volatile: a profile read may store the document it built.
CREATE OR REPLACE FUNCTION crm.customer_summary(p_id uuid, p_purposes text[], p_at timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := coalesce(p_at, now());
    today date := (coalesce(p_at, now()) AT TIME ZONE 'UTC')::date;
    p jsonb;
    sid uuid;
    th crm.nba_thresholds;
    cases jsonb;
    last_contact jsonb;
    channel text;
    channel_source text;
    sat jsonb;
    last_score jsonb;
BEGIN
    SELECT r.doc INTO p FROM crm.profile_read r WHERE r.customer_id = p_id;
    IF p IS NULL OR p ? 'gone' THEN
        RETURN p;
    END IF;
    sid := (p->>'customer_id')::uuid;
    SELECT * INTO th FROM crm.nba_thresholds;

    SELECT jsonb_build_object(
               'open_count', count(*),
               'open_complaint_count', count(*) FILTER (WHERE x.complaint),
               'most_urgent', coalesce(jsonb_agg(x.doc ORDER BY x.rank, x.opened_at, x.case_id)
                                        FILTER (WHERE x.n <= 3), '[]'))
      INTO cases
      FROM (SELECT c.case_id, c.opened_at, i.type IS NOT DISTINCT FROM 'complaint' AS complaint,
                   array_position(ARRAY['urgent', 'high', 'normal', 'low'], c.priority) AS rank,
                   row_number() OVER (ORDER BY array_position(ARRAY['urgent', 'high', 'normal',
                                                                    'low'], c.priority),
                                               c.opened_at, c.case_id) AS n,
                   jsonb_build_object('case_id', c.case_id, 'status', c.status,
                                      'priority', c.priority, 'subject', c.subject,
                                      'channel', c.channel, 'assignee', c.assignee,
                                      'opened_at', crm.ts(c.opened_at),
                                      'complaint', i.type IS NOT DISTINCT FROM 'complaint') AS doc
              FROM crm.cases c
              LEFT JOIN crm.interactions i ON i.interaction_id = c.opened_by
             WHERE c.customer_id = sid AND c.status IN ('open', 'in_progress')) AS x;

    -- the newest interaction that has happened (one dated later by mistake is not a contact)
    SELECT jsonb_build_object('at', crm.ts(i.occurred_at), 'channel', i.channel, 'type', i.type,
                              'interaction_id', i.interaction_id)
      INTO last_contact
      FROM crm.interactions i WHERE i.customer_id = sid AND i.occurred_at <= at
     ORDER BY i.occurred_at DESC, i.interaction_id DESC LIMIT 1;

    channel := p#>>'{preferences,preferred_channels,0}';
    channel_source := CASE WHEN channel IS NULL THEN 'default' ELSE 'preferred_channels' END;
    channel := coalesce(channel, 'email');

    sat := p->'satisfaction';
    SELECT jsonb_build_object('kind', s.key) || s.value INTO last_score
      FROM jsonb_each(sat) AS s
     WHERE s.key IN ('nps', 'csat', 'ces') AND jsonb_typeof(s.value) = 'object'
     ORDER BY s.value->>'at' DESC, s.key LIMIT 1;

    RETURN jsonb_strip_nulls(jsonb_build_object(
               'customer_id', sid, 'requested_id', p->'requested_id',
               'merged_into', p->'merged_into'))
        || jsonb_build_object(
        'identity', jsonb_build_object(
            'name', coalesce(p#>>'{traits,name}',
                             nullif(concat_ws(' ', p#>>'{traits,first_name}',
                                              p#>>'{traits,last_name}'), '')),
            'identifiers', coalesce((SELECT jsonb_agg(d ORDER BY array_position(
                                                ARRAY['email', 'phone', 'loyalty_card', 'external'],
                                                d->>'kind'), d->>'value')
                                       FROM jsonb_array_elements(p->'identifiers') AS d
                                      WHERE d->>'kind' <> 'device'), '[]'),
            'created_at', p->'created_at'),
        'value', CASE WHEN jsonb_typeof(p->'value') = 'object' THEN jsonb_build_object(
                     'tier', p#>'{value,tier}', 'clv', p#>'{value,clv}',
                     'currency', p#>'{value,currency}', 'churn_risk', p#>'{value,churn_risk}',
                     'computed_at', p#>'{value,computed_at}') END,
        'stage', p->'stage',
        'cases', cases,
        'last_contact', last_contact,
        'satisfaction', jsonb_build_object('last', last_score, 'nps', sat#>'{nps,score}',
                                           'nps_category', sat->'nps_category'),
        'needs', coalesce((SELECT jsonb_agg(n->'need' ORDER BY o) FROM jsonb_array_elements(p->'needs')
                              WITH ORDINALITY AS x(n, o) WHERE o <= 3), '[]'),
        'moments', crm.customer_moments_doc(sid, today, greatest(30, th.warranty_days)),
        'contact', jsonb_build_object(
            'channel', channel, 'channel_source', channel_source,
            -- one call per purpose: the decision is not named twice (a lateral
            -- subquery naming it in each member was pulled up and called it
            -- once per member, five times per purpose)
            'decisions', (SELECT jsonb_agg(crm.contact_decision(sid, u.purpose, channel, at)
                                               - 'customer_id' - 'channel' - 'at' ORDER BY o)
                            FROM unnest(p_purposes) WITH ORDINALITY AS u(purpose, o))),
        'at', crm.ts(at),
        'nba', crm.nba_settings_doc() - 'updated_at');
END $$;
