#!/usr/bin/env bash
# Scale benchmark of the value layer (issue 3): on N generated customers
# (bench/gen_data.sql, deterministic), time the value recompute (CLV fit and
# the whole run, /usr/bin/time -v for peak memory), and the first page and
# count of segments through the HTTP API, with EXPLAIN ANALYZE of the page
# query. Writes bench/value_results.md. Usage: bench/value_scale.sh [N=1000000]
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

N=${1:-1000000}
PORT=${CRM_BENCH_PORT:-18081}
DB=crm_scale_$N
PACKAGES+=(time)
ensure_packages
build build --buildtype=debugoptimized
start_postgres
WORK=$RUN_DIR/bench-value
mkdir -p "$WORK"
PSQL=(psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER")
CONN=$(conninfo "$DB")

if ! "${PSQL[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    create_database "$DB"
    "$ROOT/build/crm-server" migrate --db "$CONN"
    log "generating $N customers"
    start=$(date +%s)
    "${PSQL[@]}" -d "$DB" -v customers="$N" -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
    log "generated in $(( $(date +%s) - start )) s"
fi
COUNTS=$("${PSQL[@]}" -d "$DB" -tAc "SELECT (SELECT count(*) FROM crm.customers) || ' customers, ' || (SELECT count(*) FROM crm.interactions) || ' interactions'")

log "recompute-value"
/usr/bin/time -v "$ROOT/build/crm-server" recompute-value --db "$CONN" \
    --as-of 2026-01-01T00:00:00Z > "$WORK/summary.json" 2> "$WORK/recompute.log"
FIT=$(grep -oE 'fit [0-9.]+ s' "$WORK/recompute.log" | head -1)
TOTAL=$(grep -oE 'finished in [0-9.]+ s' "$WORK/recompute.log" | head -1)
RSS=$(awk -F': ' '/Maximum resident/ {print $2}' "$WORK/recompute.log")
PARAMS=$(grep -E 'BG/NBD' "$WORK/recompute.log" | sed 's/.*BG\/NBD/BG\/NBD/')

KEY=$(admin_key)
CRM_BOOTSTRAP_ADMIN_KEY=$KEY "$ROOT/build/crm-server" --port "$PORT" --db "$CONN" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

AUTH="Authorization: Bearer $KEY"
post() { curl -s -XPOST "http://127.0.0.1:$PORT$1" -H "$AUTH" -H 'Content-Type: application/json' -d "$2"; }
# median of 7 timings of a GET
median_ms() {
    for _ in $(seq 7); do curl -s -o /dev/null -H "$AUTH" -w '%{time_total}\n' "http://127.0.0.1:$PORT$1"; done |
        sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[4] * 1000}'
}
declare -A RULES=(
    [mvc]='{"field": "value.tier", "op": "eq", "value": "mvc"}'
    [mvc_premium_support]='{"all": [{"field": "value.tier", "op": "in", "value": ["mvc", "mgc"]}, {"need": "premium_support"}]}'
    [at_risk_high_value]='{"all": [{"field": "value.clv", "op": "gt", "value": 200}, {"field": "value.p_alive", "op": "lt", "value": 0.5}]}'
    [complained_90d]='{"interaction": {"type": "complaint", "within_days": 730}}'
)
ROWS=""
for name in mvc mvc_premium_support at_risk_high_value complained_90d; do
    id=$(post /v1/segments "{\"name\": \"bench-$name-$(date +%s%N)\", \"rule\": ${RULES[$name]}}" |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["segment_id"])')
    first=$(median_ms "/v1/segments/$id/customers?limit=100")
    count_ms=$(median_ms "/v1/segments/$id/customers?limit=100&count=true")
    members=$(curl -s -H "$AUTH" "http://127.0.0.1:$PORT/v1/segments/$id/customers?limit=1&count=true" |
              python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
    ROWS+="| $name | $members | $first | $count_ms |"$'\n'
done

"${PSQL[@]}" -d "$DB" > "$WORK/explain.txt" <<'SQL'
EXPLAIN (ANALYZE, BUFFERS)
SELECT c.customer_id FROM crm.customers c LEFT JOIN crm.customer_value v ON v.customer_id = c.customer_id
 WHERE c.merged_into IS NULL AND (v.tier = 'mvc') ORDER BY c.customer_id LIMIT 101;
SQL

{
    echo "# Value layer at scale"
    echo
    echo "$(date -u +%FT%TZ), $(nproc) cores; $COUNTS (bench/gen_data.sql, seed 0.42)."
    echo
    echo "| step | result |"
    echo "|---|---|"
    echo "| CLV model fit (BG/NBD + Gamma-Gamma, C) | $FIT |"
    echo "| whole recompute (read, fit, predict, RFM, tiers, write) | $TOTAL |"
    echo "| recompute peak RSS | $RSS kB |"
    echo "| fitted | $PARAMS |"
    echo
    echo "| segment | members | first page (ms, median of 7) | first page + count (ms) |"
    echo "|---|---|---|---|"
    printf '%s' "$ROWS"
    echo
    echo "EXPLAIN ANALYZE of the first page of the mvc segment:"
    echo
    echo '```'
    cat "$WORK/explain.txt"
    echo '```'
} | tee "$ROOT/bench/value_results.md"
