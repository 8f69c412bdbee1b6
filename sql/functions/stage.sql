-- stage: the journey stage of each customer (docs/stage.md): the rule
-- (crm.stage_of), the one set-based update every writer goes through
-- (crm.stage_update: a purchase, a live value run, the sweep, a merge or
-- an unmerge), the sweep of time-based changes, the stage on the profile,
-- the stage KPIs and the phase of an interaction relative to a purchase.
-- Tables: sql/019_stage.sql.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- The stage thresholds (value settings), one document.
CREATE OR REPLACE FUNCTION crm.stage_thresholds() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM crm.settings
     WHERE key IN ('stage_onboarding_days', 'stage_at_risk_days', 'stage_at_risk_churn',
                   'stage_lapsed_days', 'stage_won_back_days')
$$;

-- The rule, first match wins (docs/stage.md). p_prev and p_since: the
-- stage the customer is in and since when; p_first, p_last: first and last
-- purchase (NULL: none); p_churn: 1 - p_alive of the live value run, NULL
-- when no run has seen the last purchase; p_onb, p_risk, p_lapsed, p_won:
-- the day thresholds; p_risk_churn: the churn threshold.
--   no purchase                                   prospect
--   no purchase for p_lapsed days                 lapsed
--   lapsed, and a purchase after it lapsed        won_back
--     (p_since: when it lapsed) less than p_won days ago
--   won_back for less than p_won days             won_back
--     (p_since: the purchase that won it back)
--   first purchase less than p_onb days ago       onboarding
--   no purchase for p_risk days, or churn above   at_risk
--   otherwise                                     active
CREATE OR REPLACE FUNCTION crm.stage_of(p_prev text, p_since timestamptz, p_first timestamptz,
                                        p_last timestamptz, p_churn double precision,
                                        p_now timestamptz, p_onb interval, p_risk interval,
                                        p_risk_churn double precision, p_lapsed interval,
                                        p_won interval)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_last IS NULL THEN 'prospect'
        WHEN p_now - p_last >= p_lapsed THEN 'lapsed'
        WHEN p_prev = 'lapsed' AND p_last > p_since AND p_now - p_last < p_won THEN 'won_back'
        WHEN p_prev = 'won_back' AND p_now - p_since < p_won THEN 'won_back'
        WHEN p_now - p_first < p_onb THEN 'onboarding'
        WHEN p_now - p_last >= p_risk OR p_churn > p_risk_churn THEN 'at_risk'
        ELSE 'active' END
$$;

-- The earliest time a stage decided now may change by time alone (the
-- sweep's due_at): the end of onboarding, the at-risk and lapsed days, the
-- end of a win-back; NULL for a prospect or a lapsed customer (only a
-- purchase changes them).
CREATE OR REPLACE FUNCTION crm.stage_due(p_stage text, p_since timestamptz, p_first timestamptz,
                                         p_last timestamptz, p_now timestamptz, p_onb interval,
                                         p_risk interval, p_lapsed interval, p_won interval)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_stage IN ('prospect', 'lapsed') THEN NULL
                ELSE least(CASE WHEN p_first + p_onb > p_now THEN p_first + p_onb END,
                           CASE WHEN p_last + p_risk > p_now THEN p_last + p_risk END,
                           p_last + p_lapsed,
                           CASE WHEN p_stage = 'won_back' THEN p_since + p_won END) END
$$;

-- One customer's stage, decided as crm.stage_update decides many, in plain
-- statements: a purchase, a merge or an unmerge decides one customer, and
-- the set-based statement, planned again at each call, cost about 8 ms of
-- planning per call (bench/stage_ingest.sh). Locks the row.
CREATE OR REPLACE FUNCTION crm.stage_update_one(p_customer uuid, p_reason text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    t jsonb := crm.stage_thresholds();
    onb interval := make_interval(days => coalesce((t->>'stage_onboarding_days')::int, 30));
    risk interval := make_interval(days => coalesce((t->>'stage_at_risk_days')::int, 90));
    risk_churn double precision := coalesce((t->>'stage_at_risk_churn')::double precision, 0.5);
    lapsed interval := make_interval(days => coalesce((t->>'stage_lapsed_days')::int, 180));
    won interval := make_interval(days => coalesce((t->>'stage_won_back_days')::int, 60));
    at timestamptz := now();
    r crm.customer_stage%ROWTYPE;
    old_stage text;
    first_at timestamptz;
    last_at timestamptz;
    churn double precision;
    eff text;
    eff_since timestamptz;
    new_stage text;
    new_since timestamptz;
BEGIN
    SELECT * INTO r FROM crm.customer_stage WHERE customer_id = p_customer FOR UPDATE;
    old_stage := coalesce(r.stage, 'prospect');
    PERFORM 1 FROM crm.customers c
     WHERE c.customer_id = p_customer AND c.merged_into IS NULL AND c.erased_at IS NULL;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT min(s.first_at), max(s.last_at) INTO first_at, last_at
      FROM crm.interaction_stats s WHERE s.customer_id = p_customer AND s.type = 'purchase';
    SELECT 1 - v.p_alive INTO churn FROM crm.customer_value v
     WHERE v.customer_id = p_customer AND v.last_purchase_at >= date_trunc('day', last_at);
    -- the stage the row should hold by now, from what it was decided on
    eff := coalesce(crm.stage_of(r.stage, r.since, r.first_purchase_at, r.last_purchase_at, NULL,
                                 at, onb, risk, risk_churn, lapsed, won), 'prospect');
    eff_since := CASE WHEN eff = 'lapsed' THEN r.last_purchase_at + lapsed
                      WHEN eff = r.stage THEN r.since ELSE at END;
    new_stage := crm.stage_of(eff, eff_since, first_at, last_at, churn, at, onb, risk, risk_churn,
                              lapsed, won);
    new_since := CASE WHEN new_stage = r.stage THEN r.since
                      WHEN new_stage = 'won_back' THEN last_at ELSE at END;
    IF new_stage = 'prospect' THEN
        DELETE FROM crm.customer_stage WHERE customer_id = p_customer;
    ELSE
        INSERT INTO crm.customer_stage AS cs (customer_id, stage, since, first_purchase_at,
                                              last_purchase_at, due_at)
        VALUES (p_customer, new_stage, new_since, first_at, last_at,
                crm.stage_due(new_stage, new_since, first_at, last_at, at, onb, risk, lapsed, won))
        ON CONFLICT (customer_id) DO UPDATE
            SET stage = excluded.stage, since = excluded.since,
                first_purchase_at = excluded.first_purchase_at,
                last_purchase_at = excluded.last_purchase_at, due_at = excluded.due_at;
    END IF;
    IF new_stage = old_stage THEN
        RETURN 0;
    END IF;
    INSERT INTO crm.stage_history (customer_id, from_stage, to_stage, at, reason)
    VALUES (p_customer, old_stage, new_stage, at, p_reason);
    INSERT INTO crm.events (type, customer_id, data)
    VALUES ('customer.stage_changed', p_customer,
            jsonb_build_object('from', old_stage, 'to', new_stage, 'reason', p_reason,
                               'at', crm.ts(at)));
    PERFORM crm.profile_stale(p_customer);
    RETURN 1;
END $$;

-- Decide the stage of the customers p_ids (NULL: every customer with a
-- purchase or a stage row) now, from their purchases (crm.interaction_stats)
-- and the live value run (crm.customer_value, its churn only when the run
-- saw the last purchase: a purchase since proves the customer alive),
-- store it, and record each change (crm.stage_history, a
-- customer.stage_changed event, the profile document invalidated). The
-- stage a row holds may be late (the sweep runs every moments period): the
-- rule is first applied to it with the purchases it was decided on, so a
-- purchase after a lapse the sweep had not yet recorded is a win-back. A
-- customer with no purchase has no row (a prospect since its creation; a
-- row goes when an unmerge takes every purchase away).
-- p_reason: purchase, sweep, value_run, merge, unmerge. Returns the number
-- of changes. In the caller's transaction; locks the rows it decides. A
-- few customers (a purchase, a merge, an unmerge) go one by one, in id
-- order, to crm.stage_update_one (the same decision, without planning this
-- statement at each call).
CREATE OR REPLACE FUNCTION crm.stage_update(p_ids uuid[], p_reason text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    t jsonb := crm.stage_thresholds();
    onb interval := make_interval(days => coalesce((t->>'stage_onboarding_days')::int, 30));
    risk interval := make_interval(days => coalesce((t->>'stage_at_risk_days')::int, 90));
    risk_churn double precision := coalesce((t->>'stage_at_risk_churn')::double precision, 0.5);
    lapsed interval := make_interval(days => coalesce((t->>'stage_lapsed_days')::int, 180));
    won interval := make_interval(days => coalesce((t->>'stage_won_back_days')::int, 60));
    at timestamptz := now();
    n int;
    one uuid;
BEGIN
    IF cardinality(p_ids) <= 16 THEN
        n := 0;
        FOR one IN SELECT DISTINCT u FROM unnest(p_ids) AS u ORDER BY u LOOP
            n := n + crm.stage_update_one(one, p_reason);
        END LOOP;
        RETURN n;
    END IF;
    IF p_ids IS NOT NULL THEN
        PERFORM 1 FROM crm.customer_stage WHERE customer_id = ANY (p_ids)
         ORDER BY customer_id FOR UPDATE;
    END IF;
    -- the customers: p_ids, or (NULL) those with a row or a purchase; each
    -- branch is gated by a one-time test of p_ids, so a call for a few ids
    -- is a few index probes whatever the plan
    WITH ids AS (
        SELECT u.id AS customer_id FROM unnest(p_ids) AS u(id) WHERE p_ids IS NOT NULL
        UNION
        SELECT s.customer_id FROM crm.customer_stage s WHERE p_ids IS NULL
        UNION
        SELECT s.customer_id FROM crm.interaction_stats s
         WHERE p_ids IS NULL AND s.type = 'purchase'),
    src AS (
        SELECT c.customer_id, p.first_at, p.last_at, cs.stage AS old_stage,
               cs.since AS old_since, cs.first_purchase_at AS old_first,
               cs.last_purchase_at AS old_last,
               (SELECT 1 - v.p_alive FROM crm.customer_value v
                 WHERE v.customer_id = c.customer_id
                   AND v.last_purchase_at >= date_trunc('day', p.last_at)) AS churn
          FROM ids
          JOIN crm.customers c ON c.customer_id = ids.customer_id
          LEFT JOIN crm.customer_stage cs ON cs.customer_id = c.customer_id
          CROSS JOIN LATERAL (
              SELECT min(s.first_at) AS first_at, max(s.last_at) AS last_at
                FROM crm.interaction_stats s
               WHERE s.customer_id = c.customer_id AND s.type = 'purchase') AS p
         WHERE c.merged_into IS NULL AND c.erased_at IS NULL),
    -- the stage the row should hold by now, from what it was decided on;
    -- a lapsed customer lapsed p_lapsed days after the last purchase then
    eff AS (
        SELECT s.*, e.stage AS eff_stage,
               CASE WHEN e.stage = 'lapsed' THEN s.old_last + lapsed
                    WHEN e.stage = s.old_stage THEN s.old_since
                    ELSE at END AS eff_since
          FROM src s
          CROSS JOIN LATERAL (
              SELECT coalesce(crm.stage_of(s.old_stage, s.old_since, s.old_first, s.old_last,
                                           NULL, at, onb, risk, risk_churn, lapsed, won),
                              'prospect') AS stage) AS e),
    calc AS (
        SELECT e.customer_id, e.first_at, e.last_at, coalesce(e.old_stage, 'prospect') AS old_stage,
               x.stage AS new_stage,
               CASE WHEN x.stage = e.old_stage THEN e.old_since
                    WHEN x.stage = 'won_back' THEN e.last_at  -- the purchase that won it back
                    ELSE at END AS new_since
          FROM eff e
          CROSS JOIN LATERAL (
              SELECT crm.stage_of(e.eff_stage, e.eff_since, e.first_at, e.last_at, e.churn, at,
                                  onb, risk, risk_churn, lapsed, won) AS stage) AS x
         WHERE e.old_stage IS NOT NULL OR e.first_at IS NOT NULL),
    decided AS (
        SELECT c.*, crm.stage_due(c.new_stage, c.new_since, c.first_at, c.last_at, at, onb, risk,
                                  lapsed, won) AS due
          FROM calc c),
    -- a prospect has no row (since: the customer's creation)
    gone AS (
        DELETE FROM crm.customer_stage cs
         WHERE cs.customer_id IN (SELECT r.customer_id FROM decided r
                                   WHERE r.new_stage = 'prospect')),
    up AS (
        INSERT INTO crm.customer_stage AS cs (customer_id, stage, since, first_purchase_at,
                                              last_purchase_at, due_at)
        SELECT r.customer_id, r.new_stage, r.new_since, r.first_at, r.last_at, r.due
          FROM decided r WHERE r.new_stage <> 'prospect'
        ON CONFLICT (customer_id) DO UPDATE
            SET stage = excluded.stage, since = excluded.since,
                first_purchase_at = excluded.first_purchase_at,
                last_purchase_at = excluded.last_purchase_at, due_at = excluded.due_at
            WHERE (cs.stage, cs.since, cs.first_purchase_at, cs.last_purchase_at, cs.due_at)
                  IS DISTINCT FROM (excluded.stage, excluded.since, excluded.first_purchase_at,
                                    excluded.last_purchase_at, excluded.due_at)),
    changed AS (SELECT r.* FROM decided r WHERE r.new_stage <> r.old_stage),
    hist AS (
        INSERT INTO crm.stage_history (customer_id, from_stage, to_stage, at, reason)
        SELECT ch.customer_id, ch.old_stage, ch.new_stage, at, p_reason FROM changed ch),
    ev AS (
        INSERT INTO crm.events (type, customer_id, data)
        SELECT 'customer.stage_changed', ch.customer_id,
               jsonb_build_object('from', ch.old_stage, 'to', ch.new_stage, 'reason', p_reason,
                                  'at', crm.ts(at))
          FROM changed ch ORDER BY ch.customer_id),
    stale AS (
        INSERT INTO crm.profile_cache AS pc (customer_id, version)
        SELECT ch.customer_id, 1 FROM changed ch
        ON CONFLICT (customer_id) DO UPDATE SET version = pc.version + 1, doc = NULL)
    SELECT count(*) INTO n FROM changed;
    RETURN n;
END $$;

-- After a purchase stored for p_customer (crm.ingest, crm.ingest_batch):
-- its stage. The common case costs one statement: an onboarding, active or
-- won_back customer not yet due (due_at: the earliest time the stage may
-- change by time alone) who buys again keeps the stage whatever the
-- thresholds (the rule, docs/stage.md), so only last_purchase_at moves (a
-- HOT update: no indexed column changes). due_at is left as it was, early:
-- the sweep then decides the customer again and moves it on. Anything else
-- (a first purchase, at_risk, lapsed, due, a purchase dated before the
-- last) goes through crm.stage_update.
CREATE OR REPLACE FUNCTION crm.stage_purchase(p_customer uuid, p_occurred_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.customer_stage s SET last_purchase_at = p_occurred_at
     WHERE s.customer_id = p_customer AND s.stage IN ('onboarding', 'active', 'won_back')
       AND s.due_at > now() AND p_occurred_at >= s.last_purchase_at;
    IF NOT FOUND THEN
        PERFORM crm.stage_update(ARRAY[p_customer], 'purchase');
    END IF;
END $$;

-- The sweep (moments.c, after each moments run; one instance at a time by
-- the row lock, SKIP LOCKED): the customers whose stage may have changed by
-- time (due_at passed), or everyone with a row when the thresholds changed
-- since the last sweep. NULL when another instance is sweeping; else
-- {customers, changes}.
CREATE OR REPLACE FUNCTION crm.stage_sweep() RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    st crm.stage_sweep_state%ROWTYPE;
    t jsonb := crm.stage_thresholds();
    ids uuid[];
    n int := 0;
BEGIN
    SELECT * INTO st FROM crm.stage_sweep_state FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF st.thresholds IS DISTINCT FROM t THEN
        ids := NULL;
        n := crm.stage_update(NULL, 'sweep');
        UPDATE crm.stage_sweep_state SET last_at = now(), thresholds = t;
        RETURN jsonb_build_object('customers', NULL, 'changes', n, 'thresholds_changed', true);
    END IF;
    ids := ARRAY(SELECT customer_id FROM crm.customer_stage
                  WHERE due_at <= now() ORDER BY customer_id);
    IF cardinality(ids) > 0 THEN
        n := crm.stage_update(ids, 'sweep');
    END IF;
    UPDATE crm.stage_sweep_state SET last_at = now();
    RETURN jsonb_build_object('customers', cardinality(ids), 'changes', n);
END $$;

-- A merge (crm.merge_into): the absorbed customer's row stays as it was,
-- out of the sweep (no due_at; an absorbed customer is in no count, segment
-- or decision), so that an unmerge finds its stage and since again when
-- its purchases decide the same; the survivor's stage is decided again
-- from the purchases of both.
CREATE OR REPLACE FUNCTION crm.stage_merged(p_survivor uuid, p_absorbed uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.customer_stage SET due_at = NULL
     WHERE customer_id = p_absorbed AND due_at IS NOT NULL;
    PERFORM crm.stage_update(ARRAY[p_survivor], 'merge');
END $$;

-- Erasure: the stage and its history go with the customer (and the ids it
-- absorbed); the customer.stage_changed events hold no personal data and
-- stay, as the other events do.
CREATE OR REPLACE FUNCTION crm.stage_erased() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crm.customer_stage WHERE customer_id = NEW.customer_id;
    DELETE FROM crm.stage_history WHERE customer_id = NEW.customer_id;
    RETURN NULL;
END $$;

SELECT crm.define_trigger('customers_stage_erased', 'crm.customers', $def$
CREATE OR REPLACE TRIGGER customers_stage_erased AFTER UPDATE OF erased_at ON crm.customers
    FOR EACH ROW WHEN (OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL)
    EXECUTE FUNCTION crm.stage_erased()
$def$);

-- The profile's stage section: {stage, since}; a customer without a row is
-- a prospect since it was created.
CREATE OR REPLACE FUNCTION crm.stage_doc(p_customer uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('stage', coalesce(s.stage, 'prospect'),
                              'since', crm.ts(coalesce(s.since, c.created_at)))
      FROM crm.customers c LEFT JOIN crm.customer_stage s ON s.customer_id = c.customer_id
     WHERE c.customer_id = p_customer
$$;

-- A customer's stage changes, oldest first, for the data export.
CREATE OR REPLACE FUNCTION crm.stage_history_doc(p_ids uuid[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('from', h.from_stage, 'to', h.to_stage,
                                                 'at', crm.ts(h.at), 'reason', h.reason)
                              ORDER BY h.at, h.customer_id), '[]')
      FROM crm.stage_history h WHERE h.customer_id = ANY (p_ids)
$$;

-- The phase of an interaction relative to the customer's purchases
-- (docs/stage.md), at read time: during when a purchase of the customer
-- lies within p_window either side of it (a purchase is during itself),
-- after when one lies before it, else before. Two probes of
-- interactions_timeline_idx.
CREATE OR REPLACE FUNCTION crm.interaction_phase(p_customer uuid, p_at timestamptz,
                                                 p_window interval)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM crm.interactions p
                      WHERE p.customer_id = p_customer AND p.type = 'purchase'
                        AND p.occurred_at BETWEEN p_at - p_window AND p_at + p_window)
            THEN 'during'
        WHEN EXISTS (SELECT 1 FROM crm.interactions p
                      WHERE p.customer_id = p_customer AND p.type = 'purchase'
                        AND p.occurred_at < p_at)
            THEN 'after'
        ELSE 'before' END
$$;

-- Stage KPIs for [p_from, p_to) over the customers in p_customers (NULL:
-- all): customers by stage now (a customer without a row is a prospect),
-- stage changes in the period by from and to, and the experience
-- interactions of the period (complaint, return, exchange, feedback,
-- review, support_call, inquiry) by phase relative to a purchase, in
-- total, by type, and for complaints by channel.
CREATE OR REPLACE FUNCTION crm.stage_kpis(p_from timestamptz, p_to timestamptz,
                                          p_customers uuid[])
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    win interval := make_interval(hours => coalesce(
        (crm.setting('stage_during_hours') #>> '{}')::int, 24));
BEGIN
    RETURN (
        WITH pop AS (
            SELECT c.customer_id, coalesce(s.stage, 'prospect') AS stage
              FROM crm.customers c LEFT JOIN crm.customer_stage s ON s.customer_id = c.customer_id
             WHERE c.merged_into IS NULL AND c.erased_at IS NULL AND c.created_at < p_to
               AND (p_customers IS NULL OR c.customer_id = ANY (p_customers))),
        by_stage AS (
            SELECT jsonb_object_agg(st, coalesce(k.n, 0)) AS doc
              FROM unnest(ARRAY['prospect', 'onboarding', 'active', 'at_risk', 'lapsed',
                                'won_back']) AS st
              LEFT JOIN (SELECT stage, count(*) AS n FROM pop GROUP BY stage) k ON k.stage = st),
        moves AS (
            SELECT h.from_stage, h.to_stage, count(*) AS n
              FROM crm.stage_history h
             WHERE h.at >= p_from AND h.at < p_to
               AND (p_customers IS NULL OR h.customer_id = ANY (p_customers))
               AND EXISTS (SELECT 1 FROM crm.customers c WHERE c.customer_id = h.customer_id
                              AND c.merged_into IS NULL AND c.erased_at IS NULL)
             GROUP BY 1, 2),
        -- the phases count every kept interaction, an erased customer's too,
        -- like every other interaction KPI (erasure keeps them, scrubbed)
        phased AS (
            SELECT i.type, i.channel, crm.interaction_phase(i.customer_id, i.occurred_at, win) AS phase
              FROM crm.interactions i
             WHERE i.occurred_at >= p_from AND i.occurred_at < p_to
               AND (p_customers IS NULL OR i.customer_id = ANY (p_customers))
               AND i.type IN ('complaint', 'return', 'exchange', 'feedback', 'review',
                              'support_call', 'inquiry')),
        phase_counts AS (
            SELECT jsonb_build_object('before', count(*) FILTER (WHERE phase = 'before'),
                                      'during', count(*) FILTER (WHERE phase = 'during'),
                                      'after', count(*) FILTER (WHERE phase = 'after')) AS doc,
                   type, channel, grouping(type, channel) AS g
              FROM phased GROUP BY GROUPING SETS ((), (type), (type, channel)))
        SELECT jsonb_build_object(
            'customers_by_stage', (SELECT doc FROM by_stage),
            'transitions', jsonb_build_object(
                'total', coalesce((SELECT sum(n) FROM moves), 0),
                'items', coalesce((SELECT jsonb_agg(jsonb_build_object('from', from_stage,
                                                                       'to', to_stage, 'count', n)
                                                    ORDER BY from_stage, to_stage) FROM moves), '[]')),
            'phases', jsonb_build_object(
                'window_hours', extract(epoch FROM win)::int / 3600,
                'total', coalesce((SELECT doc FROM phase_counts WHERE g = 3),
                                  '{"before": 0, "during": 0, "after": 0}'),
                'by_type', coalesce((SELECT jsonb_object_agg(type, doc) FROM phase_counts
                                      WHERE g = 1), '{}'),
                'complaints_by_channel', coalesce((SELECT jsonb_object_agg(channel, doc)
                                                     FROM phase_counts
                                                    WHERE g = 0 AND type = 'complaint'), '{}')))
    );
END $$;
