-- 10,000 customers bench-<k>@bench.example with one purchase each, through
-- each database's own crm.ingest_batch (as bench/seed.py does over HTTP).
DO $$
BEGIN
  FOR s IN 0..9500 BY 500 LOOP
    PERFORM crm.ingest_batch((
      SELECT jsonb_agg(jsonb_build_object(
               'new_customer_id', md5('c-' || k)::uuid, 'interaction_id', md5('i-' || k)::uuid,
               'source', 'seed', 'external_id', 'seed-' || k, 'channel', 'store',
               'type', 'purchase', 'occurred_at', '2026-01-01T10:00:00Z', 'tags', '[]'::jsonb,
               'identifiers', jsonb_build_array(jsonb_build_object('kind', 'email',
                                                 'value', 'bench-' || k || '@bench.example')),
               'amount', (10 + k % 7)::text, 'currency', 'EUR') ORDER BY k)
        FROM generate_series(s, s + 499) AS k));
  END LOOP;
END $$;
VACUUM ANALYZE;
SELECT (SELECT count(*) FROM crm.customers) AS customers, (SELECT count(*) FROM crm.interactions) AS interactions;
