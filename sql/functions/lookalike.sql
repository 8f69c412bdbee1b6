-- lookalike: what the look-alikes of a segment read and keep
-- (docs/lookalikes.md, sql/024_lookalike.sql): the most common needs (the
-- indicator features), the feature rows of every live customer in one
-- set-based statement, and the cached fit. The feature list and its order
-- are the server's (enum lookalike_feature, include/lookalike.h): f below
-- answers them in that order, and the server checks the length.
--
-- Applied after the migrations at every start, inside the migration
-- transaction, in the order of meson.build's `functions` list: every
-- statement must be idempotent (CREATE OR REPLACE FUNCTION). One current
-- definition per object.

-- The p_k needs held by the most members of p_segment (ties by name): the
-- needs that describe the segment, whatever the rest of the base asks for.
CREATE OR REPLACE FUNCTION crm.lookalike_top_needs(p_segment uuid, p_k integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(t.need ORDER BY t.holders DESC, t.need), '[]'::jsonb)
    FROM (SELECT n.need, count(*) AS holders
          FROM crm.segment_members m
          JOIN crm.customer_needs n ON n.customer_id = m.customer_id
          WHERE m.segment_id = p_segment
          GROUP BY n.need
          ORDER BY count(*) DESC, n.need
          LIMIT p_k) t
$$;

-- One row per live customer (not merged, not erased): member of p_segment
-- (crm.segment_members) or not, the fixed features f (days since the last
-- purchase capped at 3650, purchase days, ln(1 + revenue), ln(1 + CLV),
-- P(alive) from the live value run; distinct channels, ln(1 +
-- interactions), complaints and returns from crm.interaction_stats; the
-- latest NPS answer and whether there is none), and needs, a bit mask:
-- bit k set when the customer has the need p_needs[k + 1].
CREATE OR REPLACE FUNCTION crm.lookalike_features(p_segment uuid, p_needs text[])
RETURNS TABLE (customer_id uuid, member boolean, f double precision[], needs integer)
LANGUAGE sql STABLE AS $$
    WITH stats AS (
        SELECT s.customer_id, count(DISTINCT s.channel) AS channels, sum(s.n) AS n,
               coalesce(sum(s.n) FILTER (WHERE s.type = 'complaint'), 0) AS complaints,
               coalesce(sum(s.n) FILTER (WHERE s.type = 'return'), 0) AS returns
        FROM crm.interaction_stats s
        GROUP BY s.customer_id
    ), nps AS (
        SELECT DISTINCT ON (i.customer_id) i.customer_id, i.nps
        FROM crm.interactions i
        WHERE i.nps IS NOT NULL
        ORDER BY i.customer_id, i.occurred_at DESC, i.interaction_id DESC
    ), needs AS (
        SELECT n.customer_id, bit_or(1 << (array_position(p_needs, n.need) - 1)) AS mask
        FROM crm.customer_needs n
        WHERE n.need = ANY (p_needs)
        GROUP BY n.customer_id
    )
    SELECT c.customer_id, m.customer_id IS NOT NULL,
           ARRAY[least(coalesce(extract(epoch FROM now() - v.last_purchase_at)::float8 / 86400,
                                3650), 3650),
                 coalesce(v.purchase_days, 0),
                 ln(1 + greatest(coalesce(v.revenue, 0), 0)::float8),
                 ln(1 + greatest(coalesce(v.clv, 0), 0)::float8),
                 coalesce(v.p_alive, 0),
                 coalesce(st.channels, 0),
                 ln(1 + coalesce(st.n, 0)::float8),
                 coalesce(st.complaints, 0),
                 coalesce(st.returns, 0),
                 coalesce(np.nps, 0),
                 (np.customer_id IS NULL)::integer]::float8[],
           coalesce(nd.mask, 0)
    FROM crm.customers c
    LEFT JOIN crm.segment_members m ON m.segment_id = p_segment AND m.customer_id = c.customer_id
    LEFT JOIN crm.customer_value v ON v.customer_id = c.customer_id
    LEFT JOIN stats st ON st.customer_id = c.customer_id
    LEFT JOIN nps np ON np.customer_id = c.customer_id
    LEFT JOIN needs nd ON nd.customer_id = c.customer_id
    WHERE c.merged_into IS NULL AND c.erased_at IS NULL
$$;

CREATE OR REPLACE FUNCTION crm.lookalike_fit_doc(f crm.lookalike_fits) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('fitted_at', crm.ts(f.fitted_at), 'n', f.n,
                              'positives', f.positives, 'held_out_n', f.held_out_n,
                              'held_out_auc', f.held_out_auc, 'fit_ms', f.fit_ms,
                              'needs', to_jsonb(f.needs), 'model', f.model)
$$;

-- The segment's fit if it is newer than p_max_age_s seconds and than the
-- segment's last change; NULL otherwise (then the server fits again).
CREATE OR REPLACE FUNCTION crm.lookalike_fit_get(p_segment uuid, p_max_age_s integer)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT crm.lookalike_fit_doc(f)
    FROM crm.lookalike_fits f
    JOIN crm.segments s ON s.segment_id = f.segment_id
    WHERE f.segment_id = p_segment
      AND f.fitted_at > now() - make_interval(secs => p_max_age_s)
      AND f.fitted_at >= coalesce(s.updated_at, s.created_at)
$$;

-- Keep a new fit (p_fit: n, positives, held_out_n, held_out_auc, fit_ms,
-- needs, model) as the segment's; its document, or NULL when the segment
-- is gone.
CREATE OR REPLACE FUNCTION crm.lookalike_fit_save(p_segment uuid, p_fit jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO crm.lookalike_fits AS f (segment_id, fitted_at, n, positives, held_out_n,
                                         held_out_auc, fit_ms, needs, model)
    SELECT s.segment_id, now(), (p_fit->>'n')::integer, (p_fit->>'positives')::integer,
           (p_fit->>'held_out_n')::integer, (p_fit->>'held_out_auc')::float8,
           (p_fit->>'fit_ms')::integer,
           ARRAY(SELECT jsonb_array_elements_text(p_fit->'needs')), p_fit->'model'
    FROM crm.segments s
    WHERE s.segment_id = p_segment
    ON CONFLICT (segment_id) DO UPDATE
        SET fitted_at = excluded.fitted_at, n = excluded.n, positives = excluded.positives,
            held_out_n = excluded.held_out_n, held_out_auc = excluded.held_out_auc,
            fit_ms = excluded.fit_ms, needs = excluded.needs, model = excluded.model
    RETURNING crm.lookalike_fit_doc(f)
$$;
