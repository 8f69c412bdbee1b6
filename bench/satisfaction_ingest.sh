#!/usr/bin/env bash
# The ingest statement before and after satisfaction scores (issue 16, part
# 2), measured by pgbench in the same run, alternating: the server's own
# statement (src/store.c INGEST_SQL) resolving a known customer by email, on
# two databases with the same generated data (bench/gen_data.sql, same seed):
# one migrated by the binary before the change (the 14-argument crm.ingest),
# one by the binary after it (17 arguments; the three scores NULL, as for any
# interaction without scores), plus the after database with a scored
# feedback interaction for comparison.
#   bench/satisfaction_ingest.sh BEFORE_BIN AFTER_BIN [customers] [rounds] [seconds] [clients]
# Expects a running PostgreSQL of this checkout (scripts/lib.sh; CRM_PG_PORT).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
BEFORE_BIN=$1 AFTER_BIN=$2
CUSTOMERS=${3:-20000} ROUNDS=${4:-3} SECONDS_EACH=${5:-10} CLIENTS=${6:-8}
PGBENCH=$(pg_bindir)/pgbench
WORK=$RUN_DIR/bench-satisfaction
mkdir -p "$WORK"

setup() { # db bin
    create_database "$1" recreate >/dev/null
    "$2" migrate --db "$(conninfo "$1")" >/dev/null 2>&1
    psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$1" -v customers="$CUSTOMERS" \
         -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
    psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$1" -c "VACUUM ANALYZE" >/dev/null
}
setup crm_sat_before "$BEFORE_BIN"
setup crm_sat_after "$AFTER_BIN"

PRE="SELECT CASE WHEN (d->>'status' = 'duplicate') IS NOT TRUE THEN d WHEN pg_logical_emit_message(true, 'crm.duplicate', '') IS NOT NULL THEN d END FROM crm.ingest(NULL::uuid, ('[{\"kind\":\"email\",\"value\":\"gen-' || :c || '@gen.example\"}]')::jsonb, gen_random_uuid(), gen_random_uuid(), 'pgbench-sat', gen_random_uuid()::text"
cat > "$WORK/before.sql" <<SQL
\set c random(1, $CUSTOMERS)
$PRE, 'web', 'purchase', '2026-11-20T10:00:00Z'::timestamptz, 12.5::numeric, 'EUR', NULL::numeric, ARRAY[]::text[], '{}'::jsonb) AS d;
SQL
cat > "$WORK/after.sql" <<SQL
\set c random(1, $CUSTOMERS)
$PRE, 'web', 'purchase', '2026-11-20T10:00:00Z'::timestamptz, 12.5::numeric, 'EUR', NULL::numeric, ARRAY[]::text[], '{}'::jsonb, NULL::smallint, NULL::smallint, NULL::smallint) AS d;
SQL
cat > "$WORK/after_scored.sql" <<SQL
\set c random(1, $CUSTOMERS)
\set n random(0, 10)
$PRE, 'web', 'feedback', '2026-11-20T10:00:00Z'::timestamptz, NULL::numeric, NULL, NULL::numeric, ARRAY[]::text[], '{"comment":"ok"}'::jsonb, :n::smallint, 4::smallint, NULL::smallint) AS d;
SQL

run() { # name db script
    "$PGBENCH" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -M prepared -c "$CLIENTS" -j 2 \
        -T "$SECONDS_EACH" -f "$WORK/$3" "$2" 2>&1 | awk '/^tps/ {printf "%.0f\n", $3; exit}'
}
echo "round before after after_scored (tps, $CLIENTS clients, ${SECONDS_EACH}s each)"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then  # alternate which goes first
        b=$(run before crm_sat_before before.sql)
        a=$(run after crm_sat_after after.sql)
    else
        a=$(run after crm_sat_after after.sql)
        b=$(run before crm_sat_before before.sql)
    fi
    s=$(run after_scored crm_sat_after after_scored.sql)
    echo "$r $b $a $s"
done | tee "$WORK/rounds.txt"
# Pair ratios (after / before, scored / before): the machine's load moves
# both of a round alike, so the median ratio says more than the means.
awk 'NR > 0 && $2 > 0 { n++; b += $2; a += $3; s += $4; ra[n] = $3 / $2; rs[n] = $4 / $2 }
     function median(x, k,  i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
                                          if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                      return k % 2 ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2 }
     END { printf "mean tps: before %.0f, after %.0f (%+.1f %%), after scored %.0f (%+.1f %%)\n",
                  b / n, a / n, 100 * (a / b - 1), s / n, 100 * (s / b - 1)
           printf "median of pair ratios: after/before %.3f, scored/before %.3f (%d rounds)\n",
                  median(ra, n), median(rs, n), n }' "$WORK/rounds.txt"
