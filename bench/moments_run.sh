#!/usr/bin/env bash
# Cost of the daily moments run (moment.due events, sql/013_moment_events.sql):
# on N generated customers (bench/gen_data.sql, seed 0.42) given birthdays
# (90 %), warranty expiries two years after 30 % of their purchases, and
# consents (marketing on any channel for 60 %, service by email for 50 %),
# time crm.moments_run for one day (the first run of the day writes its
# events; a second run of the same day writes none: the scan and the ledger
# check alone), then a scheduled run catching up 7 missed days, three times
# each, every time from the same state (rolled back). Prints a Markdown table. Usage: bench/moments_run.sh [N=10000] [DAY=2026-12-07]
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

N=${1:-10000}
DAY=${2:-2026-12-07}
DB=crm_moments_$N
build build --buildtype=debugoptimized >/dev/null
start_postgres
PSQL=(psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1)

if ! "${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    create_database "$DB"
    "$ROOT/build/crm-server" migrate --db "$(conninfo "$DB")"
    log "generating $N customers"
    "${PSQL[@]}" -d "$DB" -v customers="$N" -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
    "${PSQL[@]}" -d "$DB" >/dev/null <<'SQL'
SELECT setseed(0.42);
INSERT INTO crm.traits (customer_id, name, value, source)
SELECT customer_id, 'birthday',
       to_jsonb(to_char(date '1950-01-01' + floor(random() * 20000)::int, 'YYYY-MM-DD')), 'bench'
  FROM crm.customers WHERE random() < 0.9;
UPDATE crm.interactions
   SET payload = payload || jsonb_build_object('warranty_until',
                                               to_char(occurred_at + interval '2 years', 'YYYY-MM-DD'))
 WHERE type = 'purchase' AND random() < 0.3;
INSERT INTO crm.consent_events (customer_id, purpose, channel, status, source, occurred_at,
                                origin_customer_id)
SELECT customer_id, 'marketing', 'any', 'granted', 'bench', '2025-01-01', customer_id
  FROM crm.customers WHERE random() < 0.6;
INSERT INTO crm.consent_events (customer_id, purpose, channel, status, source, occurred_at,
                                origin_customer_id)
SELECT customer_id, 'service', 'email', 'granted', 'bench', '2025-01-01', customer_id
  FROM crm.customers WHERE random() < 0.5;
VACUUM ANALYZE;
SQL
fi
"$ROOT/build/crm-server" migrate --db "$(conninfo "$DB")" >/dev/null  # this checkout's functions
COUNTS=$("${PSQL[@]}" -d "$DB" -tAc "SELECT (SELECT count(*) FROM crm.customers) || ' customers, '
    || (SELECT count(*) FROM crm.traits WHERE name = 'birthday') || ' birthdays, '
    || (SELECT count(*) FROM crm.interactions WHERE payload ? 'warranty_until') || ' warranties, '
    || (SELECT count(*) FROM crm.interactions) || ' interactions'")

# ms of one statement, run in a transaction that is rolled back (so every
# measure starts from the same ledger): "ms result"
timed() {
    "${PSQL[@]}" -d "$DB" -tA <<SQL | tail -1
BEGIN;
DELETE FROM crm.moment_ledger;
UPDATE crm.moments_state SET last_day = date '$DAY' - 7;
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
CREATE TEMP TABLE r AS SELECT ($1)::text AS result;
$2
SELECT round(extract(epoch FROM clock_timestamp() - (SELECT t FROM t0)) * 1000) || ' ms, ' || result FROM r;
ROLLBACK;
SQL
}
# three of each (the machine may be shared): "a / b / c ms, result"
three() {
    local out=() r
    for _ in 1 2 3; do r=$(timed "$1" "$2"); out+=("${r%% ms,*}"); done
    echo "${out[0]} / ${out[1]} / ${out[2]} ms,${r#* ms,}"
}
FIRST=$(three "crm.moments_run('$DAY', '$DAY')" "")
SECOND=$(three "crm.moments_run('$DAY', '$DAY')" "UPDATE t0 SET t = clock_timestamp(); CREATE TEMP TABLE r2 AS SELECT crm.moments_run('$DAY', '$DAY'); UPDATE r SET result = (SELECT moments_run::text FROM r2);")
CATCH=$(three "crm.moments_tick('$DAY', 7)" "")

echo "$(date -u +%FT%TZ), $(nproc) cores; $COUNTS."
echo
echo "| run | time, result |"
echo "|---|---|"
echo "| first run of $DAY | $FIRST |"
echo "| the same day again | $SECOND |"
echo "| scheduled run, 7 missed days + today | $CATCH |"
