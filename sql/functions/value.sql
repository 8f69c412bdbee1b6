-- value: the inputs of the CLV models, the finishing of a value run (RFM,
-- tiers, snapshots) and the profile's value section.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- The rate of p_currency (not the base one) to p_base valid at p_at (the
-- latest valid_from on or before its UTC date); NULL when there is none
-- (the amount is not converted: reported, counted once a rate covers it).
-- Callers write CASE WHEN currency = base THEN 1 ELSE crm.fx_rate(...) END:
-- a function with a subquery is never inlined, and calling it for every
-- base-currency row made the value inputs of 20,000 customers 20 times
-- slower (0.8 s -> 18 to 31 s, bench/fx_read.sh).
CREATE OR REPLACE FUNCTION crm.fx_rate(p_base text, p_currency text, p_at timestamptz)
RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT r.rate FROM crm.fx_rates r
     WHERE r.base = p_base AND r.currency = p_currency
       AND r.valid_from <= (p_at AT TIME ZONE 'UTC')::date
     ORDER BY r.valid_from DESC LIMIT 1
$$;

-- Model inputs per active customer as of p_as_of, in the base currency:
-- amounts in others converted by the rate valid at their time
-- (crm.fx_rate); those without a rate do not count (yet).
-- A purchase day is one transaction (as in the CDNOW data); x = purchase
-- days - 1; t_x and T in weeks since the first purchase; zbar = mean
-- spend of the repeat days.
CREATE OR REPLACE FUNCTION crm.value_inputs(p_as_of timestamptz)
RETURNS TABLE (customer_id uuid, purchase_days int, x int, t_x double precision,
               t_cal double precision, zbar double precision, revenue numeric,
               returns numeric, cost numeric, first_purchase_at timestamptz,
               last_purchase_at timestamptz)
LANGUAGE sql STABLE AS $$
    -- MATERIALIZED: inlined, crm.setting ran once per interaction (12 times slower)
    WITH cur AS MATERIALIZED (SELECT crm.setting('base_currency') #>> '{}' AS c),
    -- NOT MATERIALIZED: scanned in each of its two uses, as the interactions
    -- were before; materialized once it cost 20 to 150 % more (bench/fx_read.sh)
    conv AS NOT MATERIALIZED (
        SELECT i.customer_id, i.type, i.occurred_at, i.amount * x.r AS amount,
               i.cost * x.r AS cost
          FROM crm.interactions i, cur
         CROSS JOIN LATERAL (SELECT CASE WHEN i.currency = cur.c THEN 1
                                         ELSE crm.fx_rate(cur.c, i.currency, i.occurred_at)
                                     END AS r) AS x
         WHERE i.currency IS NOT NULL AND i.occurred_at <= p_as_of AND x.r IS NOT NULL),
    days AS (
        SELECT i.customer_id, date_trunc('day', i.occurred_at) AS d, sum(i.amount) AS v
          FROM conv i
         WHERE i.type = 'purchase' AND i.amount IS NOT NULL
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
          FROM conv i GROUP BY 1)
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

-- A customer's purchases, returns and costs in other currencies than
-- p_base, converted at the rate of their time, and how many have no rate:
-- {revenue, returns, cost, unconverted} (crm.value_section, docs/value.md
-- "Currencies").
CREATE OR REPLACE FUNCTION crm.fx_history(p_customer uuid, p_base text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
                   'revenue', coalesce(sum(i.amount * x.r) FILTER (WHERE i.type = 'purchase'), 0),
                   'returns', coalesce(sum(i.amount * x.r) FILTER (WHERE i.type = 'return'), 0),
                   'cost', coalesce(sum(i.cost * x.r), 0),
                   'unconverted', count(*) FILTER (WHERE x.r IS NULL))
          FROM crm.interactions i
         CROSS JOIN LATERAL (SELECT crm.fx_rate(p_base, i.currency, i.occurred_at) AS r) AS x
         WHERE i.customer_id = p_customer AND i.currency <> p_base
           AND (i.amount IS NOT NULL OR i.cost IS NOT NULL));
END $$;

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
                           'revenue', trim_scale(coalesce(h.revenue + f.revenue, v.revenue)),
                           'returns', trim_scale(coalesce(h.returns + f.returns, v.returns)),
                           'cost', trim_scale(coalesce(h.cost + f.cost, v.cost)),
                           'margin', trim_scale(coalesce(h.revenue + f.revenue - h.returns
                                                         - f.returns - h.cost - f.cost,
                                                         v.margin)),
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
                       || CASE WHEN f.unconverted > 0
                               THEN jsonb_build_object('unconverted_interactions', f.unconverted)
                               ELSE '{}' END
                  FROM crm.customer_value v JOIN crm.model_runs r ON r.run_id = v.run_id
                  LEFT JOIN LATERAL (
                      -- every aggregate row of the customer (one index range):
                      -- the base currency's summed, the others only noticed
                      SELECT coalesce(sum(s.amount) FILTER (WHERE s.type = 'purchase'
                                                              AND s.currency = b.base), 0)
                                 AS revenue,
                             coalesce(sum(s.amount) FILTER (WHERE s.type = 'return'
                                                              AND s.currency = b.base), 0)
                                 AS returns,
                             coalesce(sum(s.cost) FILTER (WHERE s.currency = b.base), 0) AS cost,
                             coalesce(bool_or(s.currency NOT IN ('', b.base)), false) AS other,
                             min(b.base) AS base
                        FROM (SELECT coalesce(r.settings->>'base_currency',
                                              crm.setting('base_currency') #>> '{}') AS base) AS b
                        LEFT JOIN crm.interaction_stats s ON s.customer_id = p_customer
                  ) AS h ON NOT r.dated
                  -- amounts in other currencies, converted one by one at their
                  -- time: only for a customer whose aggregates have some (a
                  -- function call, so that the others' plan stays as small)
                  LEFT JOIN LATERAL (SELECT CASE WHEN h.other
                                                 THEN crm.fx_history(p_customer, h.base) END
                                                AS doc) AS fx ON true
                  CROSS JOIN LATERAL (
                      SELECT coalesce((fx.doc->>'revenue')::numeric, 0) AS revenue,
                             coalesce((fx.doc->>'returns')::numeric, 0) AS returns,
                             coalesce((fx.doc->>'cost')::numeric, 0) AS cost,
                             coalesce((fx.doc->>'unconverted')::int, 0) AS unconverted) AS f
                 WHERE v.customer_id = p_customer)
    );
END $$;

-- ---- currencies ------------------------------------------------------------------
-- Amounts in another currency than the base one count after conversion by
-- the dated rates of crm.fx_rates (sql/023_moments_fx.sql), read where they
-- are summed: the value run's inputs, the profile's historic value, KPIs.
-- docs/value.md, "Currencies".

-- GET /v1/settings/fx-rates: the rates to the current base currency.
CREATE OR REPLACE FUNCTION crm.fx_rates_doc() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH cur AS (SELECT crm.setting('base_currency') #>> '{}' AS c)
    SELECT jsonb_build_object(
               'base_currency', cur.c,
               'rates', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                      'currency', r.currency,
                                      'valid_from', to_char(r.valid_from, 'YYYY-MM-DD'),
                                      'rate', trim_scale(r.rate),
                                      'updated_at', crm.ts(r.updated_at))
                                      ORDER BY r.currency, r.valid_from)
                                    FROM crm.fx_rates r WHERE r.base = cur.c), '[]'))
      FROM cur
$$;

-- PUT /v1/settings/fx-rates: p_rates [{currency, valid_from, rate}] (checked
-- by the server, src/validate.c validate_fx_rates) added or replaced, a
-- rate of null removing that one, for the current base currency. A rate
-- for the base currency itself answers {"invalid": reason}. What the rates
-- feed is computed when read, so nothing is refolded here but the cached
-- profiles (one global epoch: their historic value may change). Audited as
-- settings.fx_rates.changed with the rates given.
CREATE OR REPLACE FUNCTION crm.put_fx_rates(p_rates jsonb, p_key uuid, p_role text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cur text := crm.setting('base_currency') #>> '{}';
    n int;
    m int;
BEGIN
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_rates) x WHERE x->>'currency' = cur) THEN
        RETURN jsonb_build_object('invalid', format('%s is the base currency: its rate is 1', cur));
    END IF;
    LOCK TABLE crm.fx_rates IN SHARE ROW EXCLUSIVE MODE;  -- one change at a time
    DELETE FROM crm.fx_rates r
     USING jsonb_array_elements(p_rates) x
     WHERE jsonb_typeof(x->'rate') = 'null' AND r.base = cur
       AND r.currency = x->>'currency' AND r.valid_from = (x->>'valid_from')::date;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO crm.fx_rates AS r (base, currency, valid_from, rate)
    SELECT cur, x->>'currency', (x->>'valid_from')::date, (x->>'rate')::numeric
      FROM jsonb_array_elements(p_rates) x
     WHERE jsonb_typeof(x->'rate') = 'number'
    ON CONFLICT (base, currency, valid_from) DO UPDATE
        SET rate = excluded.rate, updated_at = now()
     WHERE r.rate <> excluded.rate;
    GET DIAGNOSTICS m = ROW_COUNT;
    IF n + m > 0 THEN
        UPDATE crm.profile_cache_epoch SET epoch = epoch + 1;
        PERFORM crm.audit(p_key, p_role, 'settings.fx_rates.changed', NULL,
                          jsonb_build_object('base_currency', cur, 'rates', p_rates));
    END IF;
    RETURN crm.fx_rates_doc();
END $$;
