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

-- Turn the staged predictions (temp table value_stage, filled by the C
-- recompute) into customer_value rows, RFM quintiles and tiers, in the
-- caller's transaction.
CREATE OR REPLACE FUNCTION crm.value_finish(p_run bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
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

-- The value section of the profile (null before the customer's first run).
CREATE OR REPLACE FUNCTION crm.value_section(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
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
