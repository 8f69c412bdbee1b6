-- value: the inputs of the CLV models, the finishing of a value run (RFM,
-- tiers, snapshots) and the profile's value section.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- Model inputs per active customer as of p_as_of, base currency only.
-- A purchase day is one transaction (as in the CDNOW data); x = purchase
-- days - 1; t_x and T in weeks since the first purchase; zbar = mean
-- spend of the repeat days.
CREATE OR REPLACE FUNCTION crm.value_inputs(p_as_of timestamptz)
RETURNS TABLE (customer_id uuid, purchase_days int, x int, t_x double precision,
               t_cal double precision, zbar double precision, revenue numeric,
               returns numeric, cost numeric, first_purchase_at timestamptz,
               last_purchase_at timestamptz)
LANGUAGE sql STABLE AS $$
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

-- The value settings a run reads, as one document stored with the run
-- (crm.model_runs.settings): what the run's values mean stays with them.
CREATE OR REPLACE FUNCTION crm.value_settings() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM crm.settings
     WHERE key IN ('base_currency', 'clv_horizon_weeks', 'clv_margin', 'tier_mvc_fraction',
                   'tier_mgc_fraction', 'tier_mgc_min_p_alive', 'tier_bz_return_ratio')
$$;

-- The value settings as GET /v1/settings/value shows them: what a run
-- records, the snapshot retention, and the journey stage's thresholds
-- (docs/stage.md).
CREATE OR REPLACE FUNCTION crm.value_settings_doc() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT crm.value_settings() || coalesce(
        (SELECT jsonb_object_agg(key, value) FROM crm.settings
          WHERE key IN ('value_snapshot_retention_days', 'stage_onboarding_days',
                        'stage_at_risk_days', 'stage_at_risk_churn', 'stage_lapsed_days',
                        'stage_won_back_days', 'stage_during_hours')), '{}')
$$;

-- Change value settings (names, kinds and ranges checked by the server,
-- src/validate.c VALUE_SETTINGS); effective from the next run (a stage
-- threshold: from the next sweep, docs/stage.md). The shares of the two top
-- tiers must not add up past 1, and stage_at_risk_days must stay below
-- stage_lapsed_days: {"invalid": reason, "field"?: the setting to blame}
-- and nothing changed. Audited as settings.value.changed with the values before and
-- after of the keys that changed. Returns the settings.
CREATE OR REPLACE FUNCTION crm.patch_value_settings(p_patch jsonb, p_key uuid, p_role text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    before jsonb;
    after jsonb;
BEGIN
    LOCK TABLE crm.settings IN SHARE ROW EXCLUSIVE MODE;  -- one change at a time
    before := crm.value_settings_doc();
    after := before || p_patch;
    IF (after->>'tier_mvc_fraction')::numeric + (after->>'tier_mgc_fraction')::numeric > 1 THEN
        RETURN jsonb_build_object('invalid',
            'tier_mvc_fraction + tier_mgc_fraction must not exceed 1 (they would be '
            || ((after->>'tier_mvc_fraction')::numeric + (after->>'tier_mgc_fraction')::numeric)
            || ')');
    END IF;
    IF (after->>'stage_at_risk_days')::int >= (after->>'stage_lapsed_days')::int THEN
        RETURN jsonb_build_object('field', CASE WHEN p_patch ? 'stage_lapsed_days'
                                                THEN 'stage_lapsed_days' ELSE 'stage_at_risk_days' END,
            'invalid', 'stage_at_risk_days must be less than stage_lapsed_days (they would be '
            || (after->>'stage_at_risk_days') || ' and ' || (after->>'stage_lapsed_days') || ')');
    END IF;
    INSERT INTO crm.settings AS s (key, value, updated_at)
    SELECT p.key, p.value, now() FROM jsonb_each(p_patch) AS p
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
     WHERE s.value IS DISTINCT FROM excluded.value;
    IF after IS DISTINCT FROM before THEN
        PERFORM crm.audit(p_key, p_role, 'settings.value.changed', NULL, jsonb_build_object(
            'before', (SELECT jsonb_object_agg(k, before->k) FROM jsonb_object_keys(p_patch) k
                        WHERE before->k IS DISTINCT FROM after->k),
            'after', (SELECT jsonb_object_agg(k, after->k) FROM jsonb_object_keys(p_patch) k
                       WHERE before->k IS DISTINCT FROM after->k)));
    END IF;
    RETURN crm.value_settings_doc();
END $$;

-- Turn the staged predictions (temp table value_stage, filled by the C
-- recompute) into the run's snapshot (every customer's value fields, RFM
-- quintiles and tier, with the tier thresholds the run recorded) and, for a
-- live run only, into the live values (crm.customer_value); a dated run
-- leaves them as they are. Prunes the snapshots of runs finished longer ago
-- than value_snapshot_retention_days. In the caller's transaction.
CREATE OR REPLACE FUNCTION crm.value_finish(p_run bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    run crm.model_runs%ROWTYPE;
    st jsonb;
    mvc double precision;
    mgc double precision;
    mgc_p double precision;
    bz_ratio numeric;
    v_equity numeric;
    v_customers bigint;
    v_buyers bigint;
BEGIN
    SELECT * INTO run FROM crm.model_runs WHERE run_id = p_run;
    st := coalesce(run.settings, crm.value_settings());
    mvc := (st->>'tier_mvc_fraction')::double precision;
    mgc := (st->>'tier_mgc_fraction')::double precision;
    mgc_p := (st->>'tier_mgc_min_p_alive')::double precision;
    bz_ratio := (st->>'tier_bz_return_ratio')::numeric;

    INSERT INTO crm.value_snapshots (run_id, customer_id, clv, tier, revenue, returns, cost,
                                     margin, purchase_days, p_alive, expected_purchases,
                                     expected_spend, rfm_r, rfm_f, rfm_m)
    SELECT p_run, s.customer_id, round(s.clv::numeric, 4),
           CASE
               WHEN s.revenue - s.returns - s.cost < 0
                    OR (s.revenue > 0 AND s.returns / s.revenue >= bz_ratio) THEN 'bz'
               WHEN s.purchase_days = 0 THEN 'prospect'
               WHEN r.clv_rank < mvc AND s.clv > 0 THEN 'mvc'
               WHEN r.clv_rank < mvc + mgc AND s.p_alive >= mgc_p THEN 'mgc'
               ELSE 'standard'
           END,
           s.revenue, s.returns, s.cost, s.revenue - s.returns - s.cost, s.purchase_days,
           s.p_alive, s.expected_purchases, s.expected_spend, r.r, r.f, r.m
      FROM value_stage s
      LEFT JOIN (
          SELECT customer_id,
                 ntile(5) OVER (ORDER BY last_purchase_at, customer_id)::smallint AS r,
                 ntile(5) OVER (ORDER BY purchase_days, customer_id)::smallint AS f,
                 ntile(5) OVER (ORDER BY revenue, customer_id)::smallint AS m,
                 percent_rank() OVER (ORDER BY clv DESC) AS clv_rank
            FROM value_stage WHERE purchase_days > 0) AS r
        ON r.customer_id = s.customer_id;

    IF run.live THEN
        DELETE FROM crm.customer_value v
         WHERE NOT EXISTS (SELECT 1 FROM value_stage s WHERE s.customer_id = v.customer_id);
        INSERT INTO crm.customer_value AS v (
            customer_id, run_id, revenue, returns, cost, margin, purchase_days, first_purchase_at,
            last_purchase_at, frequency, recency_weeks, age_weeks, avg_repeat_spend, p_alive,
            expected_purchases, expected_spend, clv, rfm_r, rfm_f, rfm_m, tier, computed_at)
        SELECT s.customer_id, p_run, n.revenue, n.returns, n.cost, n.margin, n.purchase_days,
               s.first_purchase_at, s.last_purchase_at, s.x, s.t_x, s.t_cal, s.zbar, n.p_alive,
               n.expected_purchases, n.expected_spend, n.clv, n.rfm_r, n.rfm_f, n.rfm_m, n.tier,
               clock_timestamp()
          FROM value_stage s
          JOIN crm.value_snapshots n ON n.run_id = p_run AND n.customer_id = s.customer_id
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
        -- the journey stage follows the run's churn risk (stage.sql)
        PERFORM crm.stage_update(NULL, 'value_run');
    END IF;

    SELECT sum(clv), count(*), count(*) FILTER (WHERE purchase_days > 0)
      INTO v_equity, v_customers, v_buyers FROM crm.value_snapshots WHERE run_id = p_run;
    UPDATE crm.model_runs SET finished_at = clock_timestamp(), customers = v_customers,
                              buyers = v_buyers, customer_equity = coalesce(v_equity, 0),
                              status = 'succeeded'
     WHERE run_id = p_run;

    DELETE FROM crm.value_snapshots s USING crm.model_runs r
     WHERE s.run_id = r.run_id AND r.run_id <> p_run
       AND r.finished_at < clock_timestamp() - make_interval(
               days => coalesce((crm.setting('value_snapshot_retention_days') #>> '{}')::int, 400));

    RETURN (SELECT jsonb_build_object('run_id', run_id, 'live', live, 'customers', customers,
                                      'buyers', buyers, 'customer_equity', customer_equity,
                                      'settings', settings,
                                      'tiers', (SELECT coalesce(jsonb_object_agg(tier, k), '{}') FROM (
                                          SELECT tier, count(*) AS k FROM crm.value_snapshots
                                           WHERE run_id = p_run GROUP BY tier) t))
              FROM crm.model_runs WHERE run_id = p_run);
END $$;

-- Claim the scheduled run if it is due: true when the caller should run it
-- now (next_at moved one period on under the row lock, so one instance gets
-- it). A new or changed period counts from the last live run that
-- succeeded (at once when there is none).
CREATE OR REPLACE FUNCTION crm.value_schedule_claim(p_period_s int, p_owner text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    s crm.value_schedule%ROWTYPE;
BEGIN
    SELECT * INTO s FROM crm.value_schedule FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO crm.value_schedule DEFAULT VALUES RETURNING * INTO s;
    END IF;
    IF s.period_s IS DISTINCT FROM p_period_s OR s.next_at IS NULL THEN
        UPDATE crm.value_schedule SET period_s = p_period_s,
               next_at = coalesce((SELECT max(finished_at) FROM crm.model_runs
                                    WHERE live AND status = 'succeeded'), '-infinity')
                         + make_interval(secs => p_period_s)
        RETURNING * INTO s;
    END IF;
    IF s.next_at > now() THEN
        RETURN false;
    END IF;
    UPDATE crm.value_schedule SET next_at = now() + make_interval(secs => p_period_s),
                                  claimed_by = p_owner, claimed_at = now();
    RETURN true;
END $$;

-- A run as the API shows it (GET /v1/value/runs, the recompute answer of a
-- failed run).
CREATE OR REPLACE FUNCTION crm.value_run_doc(r crm.model_runs) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
               'run_id', r.run_id, 'status', r.status, 'live', r.live, 'model', r.model,
               'as_of', crm.ts(r.as_of), 'started_at', crm.ts(r.started_at),
               'finished_at', crm.ts(r.finished_at),
               'seconds', extract(epoch FROM r.finished_at - r.started_at),
               'fit_seconds', r.fit_seconds, 'customers', r.customers, 'buyers', r.buyers,
               'customer_equity', trim_scale(r.customer_equity), 'params', r.params,
               'log_likelihood', r.log_likelihood, 'settings', r.settings, 'error', r.error,
               'diagnostics', r.diagnostics,
               'snapshot_rows', CASE WHEN r.status = 'succeeded' THEN
                   (SELECT count(*) FROM crm.value_snapshots s WHERE s.run_id = r.run_id) END))
$$;

-- One page of runs, newest first, before run p_before (NULL: from the newest).
CREATE OR REPLACE FUNCTION crm.value_runs(p_before bigint, p_limit int) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH page AS (
        SELECT r FROM crm.model_runs r
         WHERE p_before IS NULL OR r.run_id < p_before
         ORDER BY r.run_id DESC LIMIT p_limit + 1)
    SELECT jsonb_build_object(
               'items', coalesce((SELECT jsonb_agg(crm.value_run_doc(x.r) ORDER BY (x.r).run_id DESC)
                                    FROM (SELECT r FROM page ORDER BY (r).run_id DESC
                                          LIMIT p_limit) x), '[]'),
               'schedule', (SELECT jsonb_build_object('every_seconds', period_s,
                                                      'next_at', crm.ts(next_at),
                                                      'last_claimed_by', claimed_by,
                                                      'last_claimed_at', crm.ts(claimed_at))
                              FROM crm.value_schedule WHERE period_s IS NOT NULL),
               'next_cursor', CASE WHEN (SELECT count(*) FROM page) > p_limit THEN
                   (SELECT min((r).run_id) FROM (SELECT r FROM page ORDER BY (r).run_id DESC
                                                 LIMIT p_limit) y)::text END)
$$;

-- The value section of the profile (null before the customer's first run).
-- Historic value (revenue, returns, cost, margin) moves with the data: it
-- is summed from crm.interaction_stats (kept in the ingest transaction; a
-- change of it makes the cached profile stale) in the run's currency, so a
-- purchase counts at once; the rest is the last live run's. After a dated
-- live run (a back-test) the section is that run's throughout.
CREATE OR REPLACE FUNCTION crm.value_section(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT (
                SELECT jsonb_build_object(
                           'tier', v.tier,
                           'revenue', trim_scale(coalesce(h.revenue, v.revenue)),
                           'returns', trim_scale(coalesce(h.returns, v.returns)),
                           'cost', trim_scale(coalesce(h.cost, v.cost)),
                           'margin', trim_scale(coalesce(h.revenue - h.returns - h.cost, v.margin)),
                           'currency', coalesce(r.settings->'base_currency',
                                                crm.setting('base_currency')),
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
                           'horizon_weeks', coalesce(r.settings->'clv_horizon_weeks',
                                                     crm.setting('clv_horizon_weeks')),
                           'model', jsonb_build_object('run_id', r.run_id, 'name', r.model,
                                                       'as_of', crm.ts(r.as_of)),
                           'computed_at', crm.ts(v.computed_at))
                  FROM crm.customer_value v JOIN crm.model_runs r ON r.run_id = v.run_id
                  LEFT JOIN LATERAL (
                      SELECT coalesce(sum(s.amount) FILTER (WHERE s.type = 'purchase'), 0) AS revenue,
                             coalesce(sum(s.amount) FILTER (WHERE s.type = 'return'), 0) AS returns,
                             coalesce(sum(s.cost), 0) AS cost
                        FROM crm.interaction_stats s
                       WHERE s.customer_id = p_customer
                         AND s.currency = coalesce(r.settings->>'base_currency',
                                                   crm.setting('base_currency') #>> '{}')
                  ) AS h ON NOT r.dated
                 WHERE v.customer_id = p_customer)
    );
END $$;
