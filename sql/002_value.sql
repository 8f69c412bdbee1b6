-- 002_value: differentiate customers by value. Historic value, RFM scores,
-- predictive CLV (BG/NBD + Gamma-Gamma, fitted in C), value tiers, saved
-- segments and the settings that drive them. Set-based work lives here; the
-- model fit lives in src/clv.c and src/value.c.

CREATE TABLE crm.settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO crm.settings (key, value) VALUES
    ('base_currency', '"EUR"'),          -- only amounts in this currency count as value
    ('clv_horizon_weeks', '52'),         -- predictive CLV horizon
    ('clv_margin', '1.0'),               -- share of revenue that is margin, for CLV
    ('tier_mvc_fraction', '0.10'),       -- top share of buyers by CLV: most valuable
    ('tier_mgc_fraction', '0.30'),       -- next share by CLV with P(alive) >= tier_mgc_min_p_alive
    ('tier_mgc_min_p_alive', '0.5'),
    ('tier_bz_return_ratio', '0.5');     -- returns/revenue at or above this: below zero

CREATE FUNCTION crm.setting(p_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT value FROM crm.settings WHERE key = p_key
    );
END $$;

-- One row per value recompute.
CREATE TABLE crm.model_runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model           text NOT NULL,
    as_of           timestamptz NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    customers       bigint,
    buyers          bigint,
    params          jsonb,
    log_likelihood  double precision,
    fit_seconds     double precision,
    customer_equity numeric
);

CREATE TABLE crm.customer_value (
    customer_id        uuid PRIMARY KEY REFERENCES crm.customers (customer_id),
    run_id             bigint NOT NULL REFERENCES crm.model_runs (run_id),
    revenue            numeric NOT NULL,
    returns            numeric NOT NULL,
    cost               numeric NOT NULL,
    margin             numeric NOT NULL,
    purchase_days      integer NOT NULL,  -- distinct days with a purchase
    first_purchase_at  timestamptz,
    last_purchase_at   timestamptz,
    frequency          integer,           -- BG/NBD x: repeat purchase days
    recency_weeks      double precision,  -- t_x
    age_weeks          double precision,  -- T
    avg_repeat_spend   double precision,  -- zbar
    p_alive            double precision,
    expected_purchases double precision,  -- over clv_horizon_weeks
    expected_spend     double precision,  -- Gamma-Gamma E[Z]
    clv                numeric NOT NULL,  -- predictive, over the horizon
    rfm_r              smallint,
    rfm_f              smallint,
    rfm_m              smallint,
    tier               text NOT NULL,
    computed_at        timestamptz NOT NULL
);
CREATE INDEX customer_value_clv_idx ON crm.customer_value (clv DESC);
CREATE INDEX customer_value_tier_idx ON crm.customer_value (tier, clv DESC);

-- CLV per customer per run, for customer equity at a past date (ROC).
CREATE TABLE crm.value_snapshots (
    run_id       bigint NOT NULL REFERENCES crm.model_runs (run_id),
    customer_id  uuid NOT NULL,
    clv          numeric NOT NULL,
    PRIMARY KEY (run_id, customer_id)
);

-- Model inputs per active customer as of p_as_of, base currency only.
-- A purchase day is one transaction (as in the CDNOW data); x = purchase
-- days - 1; t_x and T in weeks since the first purchase; zbar = mean
-- spend of the repeat days.
CREATE FUNCTION crm.value_inputs(p_as_of timestamptz)
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
CREATE FUNCTION crm.value_finish(p_run bigint) RETURNS jsonb
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
CREATE FUNCTION crm.value_section(p_customer uuid) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION crm.profile_sections(p_customer uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object('value', crm.value_section(p_customer))
    );
END $$;

-- Saved segments: a name and a rule (see docs/segments.md), compiled to SQL
-- by the server on every use.
CREATE TABLE crm.segments (
    segment_id   uuid PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    description  text,
    rule         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- KPIs for [p_from, p_to) against the prior period of equal length, over
-- the customers in p_customers (NULL = all). Money in the base currency.
-- Definitions are in docs/value.md.
CREATE FUNCTION crm.kpis(p_from timestamptz, p_to timestamptz, p_customers uuid[])
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
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

-- A segment as the API shows it (the rule verbatim: nulls inside it matter).
CREATE FUNCTION crm.segment_doc(s crm.segments) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object('segment_id', s.segment_id, 'name', s.name, 'rule', s.rule,
                                      'created_at', crm.ts(s.created_at))
                   || CASE WHEN s.description IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('description', s.description) END
    );
END $$;
