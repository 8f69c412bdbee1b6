#!/usr/bin/env bash
# The ingest statement before and after cases (issue 16, part 1), measured
# by pgbench in the same run, alternating: the server's own statement
# (src/store.c INGEST_SQL) resolving a known customer by email, on two
# databases with the same generated data (bench/gen_data.sql, same seed):
# one migrated by the binary before the change (17-argument crm.ingest), one
# by the binary after it (19 arguments; case_id and case role NULL, as for
# any interaction without a case that is not a complaint), plus the after
# database with a complaint that opens a case, for comparison. Then the CPU
# cost alone (N crm.ingest calls in one rolled-back statement, alternating)
# and the row's length (pageinspect) of a caseless interaction in each.
#   bench/cases_ingest.sh BEFORE_BIN AFTER_BIN [customers] [rounds] [seconds] [clients]
# Expects a running PostgreSQL of this checkout (scripts/lib.sh; CRM_PG_PORT).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
BEFORE_BIN=$1 AFTER_BIN=$2
CUSTOMERS=${3:-20000} ROUNDS=${4:-3} SECONDS_EACH=${5:-10} CLIENTS=${6:-8}
PGBENCH=$(pg_bindir)/pgbench
WORK=$RUN_DIR/bench-cases
mkdir -p "$WORK"
q() { local db=$1; shift; psql -X -q -tA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$db" "$@"; }

setup() { # db bin
    create_database "$1" recreate >/dev/null
    "$2" migrate --db "$(conninfo "$1")" >/dev/null 2>&1
    q "$1" -v customers="$CUSTOMERS" -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
    q "$1" -c "VACUUM ANALYZE" >/dev/null
}
setup crm_cases_before "$BEFORE_BIN"
setup crm_cases_after "$AFTER_BIN"

PRE="SELECT CASE WHEN (d->>'status' = 'duplicate') IS NOT TRUE THEN d WHEN pg_logical_emit_message(true, 'crm.duplicate', '') IS NOT NULL THEN d END FROM crm.ingest(NULL::uuid, ('[{\"kind\":\"email\",\"value\":\"gen-' || :c || '@gen.example\"}]')::jsonb, gen_random_uuid(), gen_random_uuid(), 'pgbench-cases', gen_random_uuid()::text"
ARGS="'web', 'purchase', '2026-11-20T10:00:00Z'::timestamptz, 12.5::numeric, 'EUR', NULL::numeric, ARRAY[]::text[], '{}'::jsonb, NULL::smallint, NULL::smallint, NULL::smallint"
cat > "$WORK/before.sql" <<SQL
\set c random(1, $CUSTOMERS)
$PRE, $ARGS) AS d;
SQL
cat > "$WORK/after.sql" <<SQL
\set c random(1, $CUSTOMERS)
$PRE, $ARGS, NULL::uuid, NULL::text) AS d;
SQL
cat > "$WORK/after_complaint.sql" <<SQL
\set c random(1, $CUSTOMERS)
$PRE, 'phone', 'complaint', '2026-11-20T10:00:00Z'::timestamptz, NULL::numeric, NULL, NULL::numeric, ARRAY[]::text[], '{}'::jsonb, NULL::smallint, NULL::smallint, NULL::smallint, NULL::uuid, 'open') AS d;
SQL

run() { # db script
    "$PGBENCH" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -M prepared -c "$CLIENTS" -j 2 \
        -T "$SECONDS_EACH" -f "$WORK/$2" "$1" 2>&1 | awk '/^tps/ {printf "%.0f\n", $3; exit}'
}
echo "round before after after_complaint (tps, $CLIENTS clients, ${SECONDS_EACH}s each)"
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then  # alternate which goes first
        b=$(run crm_cases_before before.sql)
        a=$(run crm_cases_after after.sql)
    else
        a=$(run crm_cases_after after.sql)
        b=$(run crm_cases_before before.sql)
    fi
    s=$(run crm_cases_after after_complaint.sql)
    echo "$r $b $a $s"
done | tee "$WORK/rounds.txt"
awk '$2 > 0 { n++; b += $2; a += $3; s += $4; ra[n] = $3 / $2; rs[n] = $4 / $2 }
     function median(x, k,  i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
                                          if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                      return k % 2 ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2 }
     END { printf "mean tps: before %.0f, after %.0f (%+.1f %%), after complaint %.0f (%+.1f %%)\n",
                  b / n, a / n, 100 * (a / b - 1), s / n, 100 * (s / b - 1)
           printf "median of pair ratios: after/before %.3f, complaint/before %.3f (%d rounds)\n",
                  median(ra, n), median(rs, n), n }' "$WORK/rounds.txt"

# CPU alone: 3,000 calls in one statement, rolled back (no commit, no WAL
# flush), alternating, 4 rounds; milliseconds of EXPLAIN ANALYZE.
cpu() { # db extra-args
    q "$1" <<SQL | awk '/Execution Time/ {print $3}'
BEGIN;
EXPLAIN ANALYZE SELECT crm.ingest(NULL::uuid,
    ('[{"kind":"email","value":"gen-' || (1 + (g * 7919) % $CUSTOMERS) || '@gen.example"}]')::jsonb,
    gen_random_uuid(), gen_random_uuid(), 'cpu-cases', gen_random_uuid()::text, $ARGS$2)
  FROM generate_series(1, 3000) AS g;
ROLLBACK;
SQL
}
echo "cpu round before_ms after_ms"
for r in 1 2 3 4; do
    if [ $((r % 2)) = 1 ]; then b=$(cpu crm_cases_before ""); a=$(cpu crm_cases_after ", NULL::uuid, NULL::text")
    else a=$(cpu crm_cases_after ", NULL::uuid, NULL::text"); b=$(cpu crm_cases_before ""); fi
    echo "cpu $r $b $a"
done

# The row of a caseless interaction: length and header (pageinspect).
for db in crm_cases_before crm_cases_after; do
    q "$db" -c "CREATE EXTENSION IF NOT EXISTS pageinspect" >/dev/null
    echo "$db: $(q "$db" -c "SELECT 'tuple ' || h.lp_len || ' bytes, header ' || h.t_hoff
        FROM (SELECT ctid FROM crm.interactions WHERE source = 'pgbench-cases' AND type = 'purchase'
               LIMIT 1) AS x,
             heap_page_items(get_raw_page('crm.interactions', (x.ctid::text::point)[0]::int)) AS h
       WHERE h.lp = (x.ctid::text::point)[1]::int")"
done
