#!/usr/bin/env bash
# The ingest statement before and after the journey stage (issue 16, part
# 3; docs/stage.md), as bench/cases_ingest.sh measures cases: two databases
# with the same generated data (bench/gen_data.sql, same seed), one migrated
# by the binary before the change, one by the binary after it (its stage
# rows decided by one sweep, as a running server's first sweep does). The
# statement is the server's own crm.ingest resolving a known customer by
# email, dated now (the generated history moved to end 10 days ago): a purchase (the stage's one-statement path for an
# onboarding, active or won_back customer, crm.stage_update for the others)
# and a page view (no stage work). First the CPU cost alone (N calls in one
# rolled-back statement, alternating before/after), then pgbench tps,
# alternating.
#   bench/stage_ingest.sh BEFORE_BIN AFTER_BIN [customers] [rounds] [seconds] [clients]
# Expects a running PostgreSQL of this checkout (scripts/lib.sh; CRM_PG_PORT).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
BEFORE_BIN=$1 AFTER_BIN=$2
CUSTOMERS=${3:-20000} ROUNDS=${4:-3} SECONDS_EACH=${5:-10} CLIENTS=${6:-8}
PGBENCH=$(pg_bindir)/pgbench
WORK=$RUN_DIR/bench-stage
mkdir -p "$WORK"
q() { local db=$1; shift; psql -X -q -tA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"; }

setup() { # db bin
    create_database "$1" recreate >/dev/null
    "$2" migrate --db "$(conninfo "$1")" >/dev/null 2>&1
    q "$1" -v customers="$CUSTOMERS" -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
    # the generated history ends on a fixed date: move it to end 10 days
    # ago, so that the stages are a living base's mix (active, at risk,
    # lapsed, ...) rather than everyone lapsed
    q "$1" >/dev/null <<SQL
CREATE TEMP TABLE shift AS SELECT now() - interval '10 days' - max(occurred_at) AS d FROM crm.interactions;
UPDATE crm.interactions SET occurred_at = occurred_at + (SELECT d FROM shift);
UPDATE crm.interaction_stats SET first_at = first_at + (SELECT d FROM shift),
                                 last_at = last_at + (SELECT d FROM shift);
SQL
    q "$1" -c "VACUUM ANALYZE" >/dev/null
}
setup crm_stage_before "$BEFORE_BIN"
setup crm_stage_after "$AFTER_BIN"
q crm_stage_after -c "SELECT crm.stage_sweep()" >/dev/null
q crm_stage_after -c "VACUUM ANALYZE crm.customer_stage" >/dev/null
echo "stages after the sweep: $(q crm_stage_after -c "SELECT string_agg(stage || ' ' || n, ', ' ORDER BY stage)
      FROM (SELECT stage, count(*) AS n FROM crm.customer_stage GROUP BY stage) s")"

call() { # type customer-expression
    echo "crm.ingest(NULL::uuid, ('[{\"kind\":\"email\",\"value\":\"gen-' || $2 || '@gen.example\"}]')::jsonb,
    gen_random_uuid(), gen_random_uuid(), 'bench-stage', gen_random_uuid()::text, 'web', '$1',
    now(), 12.5::numeric, 'EUR', NULL::numeric, ARRAY[]::text[], '{}'::jsonb)"
}

# CPU alone: 3,000 calls in one statement, rolled back (no commit, no WAL
# flush), alternating; milliseconds of EXPLAIN ANALYZE. Customers: any
# (g * 7919 mod N: in a rolled-back statement every at_risk or lapsed one
# is decided in full, every time: the worst case), or only the customers
# active in the after database (the steady state: the one-statement path).
q crm_stage_after -c "CREATE TABLE IF NOT EXISTS bench_active AS
    SELECT row_number() OVER () AS i, n FROM generate_series(1, $CUSTOMERS) AS n
      JOIN crm.customer_stage s ON s.customer_id = md5('gen-' || n)::uuid AND s.stage = 'active'" >/dev/null
ACTIVE=$(q crm_stage_after -c "SELECT string_agg(n::text, ',' ORDER BY i) FROM bench_active")
cpu() { # db type
    local who="(1 + (g * 7919) % $CUSTOMERS)" from="generate_series(1, 3000) AS g"
    if [ "$2" = purchase_active ]; then
        who="a[1 + (g % cardinality(a))]"
        from="generate_series(1, 3000) AS g, (SELECT '{$ACTIVE}'::int[] AS a) AS x"
    fi
    q "$1" <<SQL | awk '/Execution Time/ {print $3}'
BEGIN;
EXPLAIN ANALYZE SELECT $(call "${2%_active}" "$who") FROM $from;
ROLLBACK;
SQL
}
echo "cpu round type before_ms after_ms"
for t in purchase purchase_active page_view; do
    for r in 1 2 3 4 5; do
        if [ $((r % 2)) = 1 ]; then b=$(cpu crm_stage_before $t); a=$(cpu crm_stage_after $t)
        else a=$(cpu crm_stage_after $t); b=$(cpu crm_stage_before $t); fi
        echo "cpu $r $t $b $a"
    done
done | tee "$WORK/cpu.txt"
awk '$2 > 1 { b[$3] += $4; a[$3] += $5 }  # round 1 pays for a cold cache
     END { for (t in b) printf "cpu %s (rounds 2-5): before %.0f ms, after %.0f ms (%+.1f %%)\n",
                                t, b[t], a[t], 100 * (a[t] / b[t] - 1) }' "$WORK/cpu.txt"

cat > "$WORK/purchase.sql" <<SQL
\set c random(1, $CUSTOMERS)
SELECT $(call purchase ":c");
SQL
run() { # db script
    "$PGBENCH" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -M prepared -c "$CLIENTS" -j 2 \
        -T "$SECONDS_EACH" -f "$WORK/$2" "$1" 2>&1 | awk '/^tps/ {printf "%.0f\n", $3; exit}'
}
echo "round before after (purchase tps, $CLIENTS clients, ${SECONDS_EACH}s each)"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        b=$(run crm_stage_before purchase.sql); a=$(run crm_stage_after purchase.sql)
    else
        a=$(run crm_stage_after purchase.sql); b=$(run crm_stage_before purchase.sql)
    fi
    echo "$r $b $a"
done | tee "$WORK/rounds.txt"
awk '$2 > 0 { n++; b += $2; a += $3; r[n] = $3 / $2 }
     END { m = 0; for (i = 1; i <= n; i++) m += r[i]
           printf "mean tps: before %.0f, after %.0f (%+.1f %%); mean of pair ratios %.3f (%d rounds)\n",
                  b / n, a / n, 100 * (a / b - 1), m / n, n }' "$WORK/rounds.txt"
echo "stages after the run: $(q crm_stage_after -c "SELECT string_agg(stage || ' ' || n, ', ' ORDER BY stage)
      FROM (SELECT stage, count(*) AS n FROM crm.customer_stage GROUP BY stage) s")"
