-- Deterministic synthetic customer base for benchmarks (psql script).
--   psql -v customers=1000000 -v seed=0.42 -f bench/gen_data.sql
-- Customers get ids md5('gen-<n>'), an email gen-<n>@gen.example, and a purchase
-- history with heterogeneous rates, dropout and log-normal spend, plus some
-- returns, complaints and support calls with need tags. Aggregates
-- (interaction_stats, customer_needs) are filled set-based afterwards, exactly as
-- ingestion would have left them. Same seed, same data (parallel query is off).
\set ON_ERROR_STOP on
SET max_parallel_workers_per_gather = 0;
SET synchronous_commit = off;
SELECT setseed(:seed);

BEGIN;
CREATE TEMP TABLE gen_customer ON COMMIT DROP AS
SELECT n,
       md5('gen-' || n)::uuid AS customer_id,
       timestamptz '2024-01-01 00:00:00+00' + (random() * 540) * interval '1 day' AS first_at,
       -- purchase rate per week (gamma-like: exp of a normal), dropout after a lifetime
       exp(-2.5 + 1.2 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS rate,
       CASE WHEN random() < 0.6 THEN random() ELSE 2 END AS life_share,
       exp(3.3 + 0.6 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS spend
  FROM generate_series(1, :customers) AS n;

INSERT INTO crm.customers (customer_id, created_at, updated_at)
SELECT customer_id, first_at, first_at FROM gen_customer;
INSERT INTO crm.identifiers (kind, namespace, value, customer_id, source, created_at)
SELECT 'email', '', 'gen-' || n || '@gen.example', customer_id, 'generator', first_at
  FROM gen_customer;

-- Purchases: the first one at first_at, then repeat ones while "alive".
CREATE TEMP TABLE gen_purchase ON COMMIT DROP AS
SELECT g.customer_id, g.n, k,
       CASE WHEN k = 0 THEN g.first_at
            ELSE g.first_at + random() * least(1.0, g.life_share)
                 * (timestamptz '2025-12-31 00:00:00+00' - g.first_at) END AS at,
       round((g.spend * (0.7 + 0.6 * random()))::numeric, 2) AS amount
  FROM gen_customer g,
       generate_series(0, least(60, floor(g.rate * 52 * least(1.0, g.life_share)))::int) AS k;

INSERT INTO crm.interactions (interaction_id, customer_id, origin_customer_id, source,
                              external_id, channel, type, occurred_at, received_at, amount,
                              currency, cost, tags)
SELECT md5('p-' || n || '-' || k)::uuid, customer_id, customer_id, 'generator', 'p-' || n || '-' || k,
       (ARRAY['web', 'app', 'store', 'phone'])[1 + floor(random() * 4)::int], 'purchase', at, at,
       amount, 'EUR', round((amount * 0.05)::numeric, 2),
       CASE WHEN random() < 0.1 THEN ARRAY['premium_support'] WHEN random() < 0.1
            THEN ARRAY['running'] ELSE '{}' END
  FROM gen_purchase;

-- Returns of about 6% of purchases (a few customers return nearly everything),
-- complaints and support calls.
INSERT INTO crm.interactions (interaction_id, customer_id, origin_customer_id, source,
                              external_id, channel, type, occurred_at, received_at, amount,
                              currency, cost, tags)
SELECT md5('r-' || n || '-' || k)::uuid, customer_id, customer_id, 'generator', 'r-' || n || '-' || k,
       'store', 'return', at + interval '7 days', at + interval '7 days', amount, 'EUR', 2,
       ARRAY['sizing']
  FROM gen_purchase WHERE random() < CASE WHEN n % 50 = 0 THEN 0.9 ELSE 0.05 END;
INSERT INTO crm.interactions (interaction_id, customer_id, origin_customer_id, source,
                              external_id, channel, type, occurred_at, received_at, cost,
                              currency, tags)
SELECT md5('c-' || n || '-' || k)::uuid, customer_id, customer_id, 'generator', 'c-' || n || '-' || k,
       (ARRAY['phone', 'chat', 'email'])[1 + floor(random() * 3)::int],
       CASE WHEN random() < 0.4 THEN 'complaint' ELSE 'support_call' END,
       at + interval '3 days', at + interval '3 days', 6, 'EUR',
       ARRAY[(ARRAY['premium_support', 'delivery', 'billing'])[1 + floor(random() * 3)::int]]
  FROM gen_purchase WHERE random() < 0.04;

INSERT INTO crm.interaction_stats (customer_id, channel, type, currency, n, amount, cost,
                                   first_at, last_at)
SELECT customer_id, channel, type, coalesce(currency, ''), count(*), coalesce(sum(amount), 0),
       coalesce(sum(cost), 0), min(occurred_at), max(occurred_at)
  FROM crm.interactions WHERE source = 'generator'
 GROUP BY customer_id, channel, type, coalesce(currency, '');

INSERT INTO crm.customer_needs (customer_id, need, n, first_at, last_at)
SELECT customer_id, t, count(*), min(occurred_at), max(occurred_at)
  FROM crm.interactions, unnest(tags) AS t WHERE source = 'generator'
 GROUP BY customer_id, t;
COMMIT;
ANALYZE;
SELECT (SELECT count(*) FROM crm.customers) AS customers,
       (SELECT count(*) FROM crm.interactions) AS interactions;
