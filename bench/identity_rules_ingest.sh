#!/usr/bin/env bash
# Never-merge rules on the ingest path (issue 18), before and after, A/B:
# two databases with the same generated data (bench/gen_data.sql, same
# seed), one migrated by the binary before the change, one by the binary
# after it (crm.never_merge filled with RULES rules on other customers, so
# the check has rows to look at).
#  1. the hot path, pgbench alternating: the ingest statement resolving a
#     known customer by email (never reads the rules);
#  2. CPU of merging ingests, where the rule is checked: 1,000 crm.ingest
#     calls in one rolled-back statement, each naming two customers by
#     their emails (distinct pairs: every call merges), alternating, 4
#     rounds; milliseconds of EXPLAIN ANALYZE. After: also with a rule on
#     every one of those pairs (nothing merges, a conflict is logged).
#   bench/identity_rules_ingest.sh BEFORE_BIN AFTER_BIN [customers] [rounds] [seconds] [clients] [rules]
# Expects a running PostgreSQL of this checkout (scripts/lib.sh; CRM_PG_PORT).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
BEFORE_BIN=$1 AFTER_BIN=$2
CUSTOMERS=${3:-20000} ROUNDS=${4:-3} SECONDS_EACH=${5:-10} CLIENTS=${6:-8} RULES=${7:-5000}
PGBENCH=$(pg_bindir)/pgbench
WORK=$RUN_DIR/bench-identity-rules
mkdir -p "$WORK"
q() { local db=$1; shift; psql -X -q -tA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"; }

setup() { # db bin
    create_database "$1" recreate >/dev/null
    "$2" migrate --db "$(conninfo "$1")" >/dev/null 2>&1
    q "$1" -v customers="$CUSTOMERS" -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
    q "$1" -c "VACUUM ANALYZE" >/dev/null
}
setup crm_rules_before "$BEFORE_BIN"
setup crm_rules_after "$AFTER_BIN"
# Rules on pairs the merging calls below never name (the upper half).
q crm_rules_after -c "INSERT INTO crm.never_merge (customer_id, other_id, reason, created_by)
    SELECT least(a, b), greatest(a, b), 'bench', 'bench'
      FROM (SELECT md5('gen-' || (n + $CUSTOMERS / 2))::uuid AS a,
                   md5('gen-' || (n + $CUSTOMERS / 2 + 1))::uuid AS b
              FROM generate_series(1, least($RULES, $CUSTOMERS / 2 - 1)) AS n) AS p
    ON CONFLICT DO NOTHING; ANALYZE crm.never_merge" >/dev/null

ARGS="'web', 'purchase', '2026-11-20T10:00:00Z'::timestamptz, 12.5::numeric, 'EUR', NULL::numeric, ARRAY[]::text[], '{}'::jsonb, NULL::smallint, NULL::smallint, NULL::smallint, NULL::uuid, NULL::text"
cat > "$WORK/known.sql" <<SQL
\set c random(1, $CUSTOMERS)
SELECT crm.ingest(NULL::uuid, ('[{"kind":"email","value":"gen-' || :c || '@gen.example"}]')::jsonb, gen_random_uuid(), gen_random_uuid(), 'pgbench-rules', gen_random_uuid()::text, $ARGS);
SQL
run() { # db
    "$PGBENCH" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -M prepared -c "$CLIENTS" -j 2 \
        -T "$SECONDS_EACH" -f "$WORK/known.sql" "$1" 2>&1 | awk '/^tps/ {printf "%.0f\n", $3; exit}'
}
echo "round before after (known-customer ingest tps, $CLIENTS clients, ${SECONDS_EACH}s each)"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then b=$(run crm_rules_before); a=$(run crm_rules_after)
    else a=$(run crm_rules_after); b=$(run crm_rules_before); fi
    echo "$r $b $a"
done | tee "$WORK/rounds.txt"
awk '{ n++; b += $2; a += $3 } END { printf "mean tps: before %.0f, after %.0f (%+.1f %%)\n",
     b / n, a / n, 100 * (a / b - 1) }' "$WORK/rounds.txt"

# Merging ingests: call g names customers 2g-1 and 2g (lower half).
cpu() { # db
    q "$1" <<SQL | awk '/Execution Time/ {print $3}'
BEGIN;
EXPLAIN ANALYZE SELECT crm.ingest(NULL::uuid,
    ('[{"kind":"email","value":"gen-' || (2 * g - 1) || '@gen.example"},'
     || '{"kind":"email","value":"gen-' || (2 * g) || '@gen.example"}]')::jsonb,
    gen_random_uuid(), gen_random_uuid(), 'cpu-rules', gen_random_uuid()::text, $ARGS)
  FROM generate_series(1, 1000) AS g;
ROLLBACK;
SQL
}
echo "cpu round before_ms after_ms (1,000 merging ingests)"
for r in 1 2 3 4; do
    if [ $((r % 2)) = 1 ]; then b=$(cpu crm_rules_before); a=$(cpu crm_rules_after)
    else a=$(cpu crm_rules_after); b=$(cpu crm_rules_before); fi
    echo "cpu $r $b $a"
done
# The same calls when a rule forbids every one of those merges.
q crm_rules_after -c "INSERT INTO crm.never_merge (customer_id, other_id, reason, created_by)
    SELECT least(a, b), greatest(a, b), 'bench', 'bench'
      FROM (SELECT md5('gen-' || (2 * g - 1))::uuid AS a, md5('gen-' || (2 * g))::uuid AS b
              FROM generate_series(1, 1000) AS g) AS p ON CONFLICT DO NOTHING" >/dev/null
for r in 1 2; do echo "cpu forbidden $r $(cpu crm_rules_after)"; done
