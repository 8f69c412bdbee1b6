-- pgbench: crm.ingest (the server's POST statement) for a random one of the 10,000 seeded customers.
\set c random(0, 9999)
SELECT crm.ingest(NULL, ('[{"kind":"email","value":"bench-' || :c || '@bench.example"}]')::jsonb, gen_random_uuid(), gen_random_uuid(), 'pgbench-own', gen_random_uuid()::text, 'web', 'purchase', '2026-11-20T10:00:00Z'::timestamptz, 12.5, 'EUR', NULL, ARRAY[]::text[], '{}'::jsonb);
