#!/usr/bin/env bash
# The trait write path before and after survivorship (issue 18), measured by
# pgbench in the same run, alternating: the server's own resolve statement
# (src/store.c STMT_RESOLVE, crm.resolve_customer: resolve, set traits,
# return the profile) resolving a known customer by email with two traits
# (first_name and one attribute), on two databases with the same generated
# data (bench/gen_data.sql, same seed): one migrated by the binary before
# the change, one by the binary after it (crm.trait_values backfilled).
# Two workloads: "same" (a source sending the values it sent before: the
# common case), "new" (a new value each time: every write changes the
# trait). Then the CPU cost alone (N calls in one rolled-back statement).
#   bench/survivorship_ingest.sh BEFORE_BIN AFTER_BIN [customers] [rounds] [seconds] [clients]
# Expects a running PostgreSQL of this checkout (scripts/lib.sh; CRM_PG_PORT).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
BEFORE_BIN=$1 AFTER_BIN=$2
CUSTOMERS=${3:-20000} ROUNDS=${4:-3} SECONDS_EACH=${5:-10} CLIENTS=${6:-8}
PGBENCH=$(pg_bindir)/pgbench
WORK=$RUN_DIR/bench-surv
mkdir -p "$WORK"
q() { local db=$1; shift; psql -X -q -tA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"; }

setup() { # db bin
    create_database "$1" recreate >/dev/null
    "$2" migrate --db "$(conninfo "$1")" >/dev/null 2>&1
    q "$1" -v customers="$CUSTOMERS" -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
    # every customer has the two traits from the bench source once
    q "$1" -c "SELECT crm.resolve_customer(jsonb_build_array(jsonb_build_object('kind', 'email',
                 'value', 'gen-' || g || '@gen.example')),
                 '{\"first_name\": \"Gen\", \"attributes\": {\"tier\": \"gold\"}}', 'pgbench-surv', NULL)
               FROM generate_series(1, $CUSTOMERS) AS g" >/dev/null
    q "$1" -c "VACUUM ANALYZE" >/dev/null
}
setup crm_surv_before "$BEFORE_BIN"
setup crm_surv_after "$AFTER_BIN"

ID="('[{\"kind\":\"email\",\"value\":\"gen-' || :c || '@gen.example\"}]')::jsonb"
cat > "$WORK/same.sql" <<SQL
\set c random(1, $CUSTOMERS)
SELECT crm.resolve_customer($ID, '{"first_name": "Gen", "attributes": {"tier": "gold"}}'::jsonb, 'pgbench-surv', NULL::uuid);
SQL
cat > "$WORK/new.sql" <<SQL
\set c random(1, $CUSTOMERS)
\set v random(1, 1000000000)
SELECT crm.resolve_customer($ID, ('{"first_name": "N' || :v || '", "attributes": {"tier": "t' || :v || '"}}')::jsonb, 'pgbench-surv', NULL::uuid);
SQL

run() { # db script
    "$PGBENCH" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -M prepared -c "$CLIENTS" -j 2 \
        -T "$SECONDS_EACH" -f "$WORK/$2" "$1" 2>&1 | awk '/^tps/ {printf "%.0f\n", $3; exit}'
}
echo "round workload before after (tps, $CLIENTS clients, ${SECONDS_EACH}s each)"
for r in $(seq 1 "$ROUNDS"); do
    for w in same new; do
        if [ $((r % 2)) = 1 ]; then
            b=$(run crm_surv_before $w.sql); a=$(run crm_surv_after $w.sql)
        else
            a=$(run crm_surv_after $w.sql); b=$(run crm_surv_before $w.sql)
        fi
        echo "$r $w $b $a"
    done
done | tee "$WORK/rounds.txt"
awk '{ n[$2]++; b[$2] += $3; a[$2] += $4 }
     END { for (w in n) printf "%s: mean tps before %.0f, after %.0f (%+.1f %%), %d rounds\n",
                               w, b[w] / n[w], a[w] / n[w], 100 * (a[w] / b[w] - 1), n[w] }' \
    "$WORK/rounds.txt"

# CPU alone: 3,000 calls in one statement, rolled back, 4 rounds alternating.
cpu() { # db workload
    local traits="'{\"first_name\": \"Gen\", \"attributes\": {\"tier\": \"gold\"}}'::jsonb"
    [ "$2" = new ] && traits="('{\"first_name\": \"N' || g || '\", \"attributes\": {\"tier\": \"t' || g || '\"}}')::jsonb"
    q "$1" <<SQL | awk '/Execution Time/ {print $3}'
BEGIN;
EXPLAIN ANALYZE SELECT crm.resolve_customer(
    ('[{"kind":"email","value":"gen-' || (1 + (g * 7919) % $CUSTOMERS) || '@gen.example"}]')::jsonb,
    $traits, 'pgbench-surv', NULL::uuid)
  FROM generate_series(1, 3000) AS g;
ROLLBACK;
SQL
}
echo "cpu round workload before_ms after_ms"
for r in 1 2 3 4; do
    for w in same new; do
        if [ $((r % 2)) = 1 ]; then b=$(cpu crm_surv_before $w); a=$(cpu crm_surv_after $w)
        else a=$(cpu crm_surv_after $w); b=$(cpu crm_surv_before $w); fi
        echo "cpu $r $w $b $a"
    done
done
