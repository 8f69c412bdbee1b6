-- segments: KPIs over a set of customers and the saved-segment document.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION; DROP ... IF
-- EXISTS first when a signature or return type changes; triggers and views
-- through crm.define_trigger and crm.define_view, core.sql). One current
-- definition per object.

-- Satisfaction KPIs of [p_from, p_to) over the customers in p_customers
-- (NULL = all): NPS over each customer's latest NPS answer in the period
-- (one voice per customer; per channel, the latest answer on that channel),
-- average CSAT and CES over every answer in the period; in total and by
-- channel. Scored interactions are read from interactions_scored_idx.
CREATE OR REPLACE FUNCTION crm.satisfaction_kpis(p_from timestamptz, p_to timestamptz,
                                                 p_customers uuid[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        WITH sat AS (
                SELECT i.customer_id, i.channel, i.occurred_at, i.interaction_id, i.nps, i.csat,
                       i.ces
                  FROM crm.interactions i JOIN crm.customers c ON c.customer_id = i.customer_id
                 WHERE (i.nps IS NOT NULL OR i.csat IS NOT NULL OR i.ces IS NOT NULL)
                   AND i.occurred_at >= p_from AND i.occurred_at < p_to
                   AND c.merged_into IS NULL
                   AND (p_customers IS NULL OR c.customer_id = ANY (p_customers))),
            -- one row per customer (channel NULL) and per customer and channel
            latest AS (
                (SELECT DISTINCT ON (customer_id) NULL::text AS channel, nps FROM sat
                  WHERE nps IS NOT NULL ORDER BY customer_id, occurred_at DESC, interaction_id DESC)
                UNION ALL
                (SELECT DISTINCT ON (customer_id, channel) channel, nps FROM sat
                  WHERE nps IS NOT NULL
                  ORDER BY customer_id, channel, occurred_at DESC, interaction_id DESC)),
            nps AS (
                SELECT coalesce(channel, '') AS k, count(*) AS n, count(*) FILTER (WHERE nps >= 9) AS promoters,
                       count(*) FILTER (WHERE nps BETWEEN 7 AND 8) AS passives,
                       count(*) FILTER (WHERE nps <= 6) AS detractors
                  FROM latest GROUP BY 1),
            avgs AS (
                SELECT coalesce(channel, '') AS k, avg(csat) AS csat, count(csat) AS csat_n,
                       avg(ces) AS ces, count(ces) AS ces_n
                  FROM sat GROUP BY GROUPING SETS ((channel), ())),
            -- '' is the total: every channel of nps is one of avgs too
            rows AS (
                SELECT a.k AS channel, a.k = '' AS total,
                       jsonb_build_object(
                           'nps', jsonb_build_object(
                               'score', CASE WHEN n.n > 0 THEN
                                   round(100.0 * (n.promoters - n.detractors) / n.n, 2) END,
                               'respondents', coalesce(n.n, 0),
                               'promoters', coalesce(n.promoters, 0),
                               'passives', coalesce(n.passives, 0),
                               'detractors', coalesce(n.detractors, 0)),
                           'csat', jsonb_build_object('average', round(a.csat, 4),
                                                      'responses', coalesce(a.csat_n, 0)),
                           'ces', jsonb_build_object('average', round(a.ces, 4),
                                                     'responses', coalesce(a.ces_n, 0))) AS doc
                  FROM avgs a LEFT JOIN nps n ON n.k = a.k)
        SELECT coalesce((SELECT doc FROM rows WHERE total), '{}')
               || jsonb_build_object('by_channel', coalesce(
                      (SELECT jsonb_object_agg(channel, doc) FROM rows WHERE NOT total), '{}'))
    );
END $$;

-- KPIs for [p_from, p_to) against the prior period of equal length, over
-- the customers in p_customers (NULL = all). Money in the base currency,
-- other currencies converted (crm.fx_rate, value.sql; segments.sql is
-- applied after it).
-- Definitions are in docs/value.md.
CREATE OR REPLACE FUNCTION crm.kpis(p_from timestamptz, p_to timestamptz, p_customers uuid[])
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
                -- other currencies converted at the interaction's time
                -- (docs/value.md, "Currencies"); without a rate: 0, counted
                SELECT i.customer_id, i.type, i.occurred_at >= p_from AS in_period,
                       coalesce(i.amount * x.r, 0) AS amount, coalesce(i.cost * x.r, 0) AS cost,
                       x.r IS NULL AND i.currency IS NOT NULL
                           AND (i.amount IS NOT NULL OR i.cost IS NOT NULL) AS unconverted
                  FROM crm.interactions i JOIN base b ON b.customer_id = i.customer_id, cur
                 CROSS JOIN LATERAL (SELECT CASE WHEN i.currency = cur.c THEN 1
                                                 WHEN i.currency IS NOT NULL
                                                 THEN crm.fx_rate(cur.c, i.currency,
                                                                  i.occurred_at) END AS r) AS x
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
                       count(*) FILTER (WHERE type = 'return' AND in_period) AS returns,
                       count(*) FILTER (WHERE unconverted AND in_period) AS unconverted
                  FROM ev),
            retained AS (
                SELECT count(*) AS n FROM (
                    SELECT customer_id FROM ev WHERE type = 'purchase' AND NOT in_period
                    INTERSECT
                    SELECT customer_id FROM ev WHERE type = 'purchase' AND in_period) AS r),
            -- the value runs ROC reads: for each end of the period the
            -- succeeded run dated closest before it whose snapshot is kept
            runs AS (
                SELECT (SELECT m.run_id FROM crm.model_runs m
                         WHERE m.status = 'succeeded' AND m.as_of <= p_from
                           AND EXISTS (SELECT 1 FROM crm.value_snapshots v WHERE v.run_id = m.run_id)
                         ORDER BY m.as_of DESC, m.run_id DESC LIMIT 1) AS start_run,
                       (SELECT m.run_id FROM crm.model_runs m
                         WHERE m.status = 'succeeded' AND m.as_of <= p_to
                           AND EXISTS (SELECT 1 FROM crm.value_snapshots v WHERE v.run_id = m.run_id)
                         ORDER BY m.as_of DESC, m.run_id DESC LIMIT 1) AS end_run),
            equity AS (
                SELECT (SELECT sum(s.clv) FROM crm.value_snapshots s JOIN base b ON b.customer_id = s.customer_id
                         WHERE s.run_id = runs.start_run) AS at_start,
                       (SELECT sum(s.clv) FROM crm.value_snapshots s JOIN base b ON b.customer_id = s.customer_id
                         WHERE s.run_id = runs.end_run) AS at_end,
                       runs.end_run IS NOT NULL AS has_end,
                       runs.start_run IS NOT NULL AS has_start,
                       runs.start_run, runs.end_run
                  FROM runs)
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
                'unconverted_interactions', a.unconverted,
                'value_runs', jsonb_build_object('start', e.start_run, 'end', e.end_run),
                'customer_equity_start', CASE WHEN e.has_start THEN trim_scale(coalesce(e.at_start, 0)) END,
                'customer_equity_end', CASE WHEN e.has_end THEN trim_scale(coalesce(e.at_end, 0)) END,
                'roc', CASE WHEN e.has_start AND coalesce(e.at_start, 0) > 0 AND e.has_end THEN
                    round((a.revenue_now - a.refunds_now - a.cost_now + coalesce(e.at_end, 0) - e.at_start)
                          / e.at_start, 6) END,
                'satisfaction', crm.satisfaction_kpis(p_from, p_to, p_customers),
                'cases', crm.case_kpis(p_from, p_to, p_customers),
                'stage', crm.stage_kpis(p_from, p_to, p_customers))
              FROM agg a, retained r, equity e
             WHERE p_to > p_from
    );
END $$;

-- A segment as the API shows it (the rule verbatim: nulls inside it matter).
CREATE OR REPLACE FUNCTION crm.segment_doc(s crm.segments) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object('segment_id', s.segment_id, 'name', s.name, 'rule', s.rule,
                                      'depends', to_jsonb(coalesce(s.depends, '{}')),
                                      'created_at', crm.ts(s.created_at),
                                      'updated_at', crm.ts(coalesce(s.updated_at, s.created_at)))
                   || CASE WHEN s.description IS NULL THEN '{}'::jsonb
                           ELSE jsonb_build_object('description', s.description) END
    );
END $$;
