#!/usr/bin/env bash
# Scale benchmark of the look-alikes (issue 20, docs/lookalikes.md): on N
# generated customers (bench/gen_data.sql, deterministic; the same database
# as bench/value_scale.sh, generated and valued here when missing), two
# segments (high value tiers with the premium_support need; customers
# created before June 2024), then GET /v1/segments/{id}/lookalikes three
# times each: the first call reads every live customer's features, fits
# and scores; the next ones use the kept fit. Reports the server's own
# timings (read, fit, score), the wall time of each call, the held-out
# AUC, peak server RSS and the feature query alone (EXPLAIN ANALYZE).
# Writes bench/lookalike_results.md. Usage: bench/lookalike_scale.sh [N=1000000]
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

N=${1:-1000000}
PORT=${CRM_BENCH_PORT:-18083}
DB=crm_scale_$N
build build --buildtype=debugoptimized
start_postgres
WORK=$RUN_DIR/bench-lookalike
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
"$ROOT/build/crm-server" migrate --db "$CONN" >/dev/null
if [ "$("${PSQL[@]}" -d "$DB" -tAc "SELECT count(*) FROM crm.customer_value")" = 0 ]; then
    log "recompute-value"
    "$ROOT/build/crm-server" recompute-value --db "$CONN" --as-of 2026-01-01T00:00:00Z --live 1 \
        > "$WORK/summary.json" 2> "$WORK/recompute.log"
fi
COUNTS=$("${PSQL[@]}" -d "$DB" -tAc "SELECT (SELECT count(*) FROM crm.customers) || ' customers, ' || (SELECT count(*) FROM crm.interactions) || ' interactions'")

KEY=$(admin_key)
CRM_BOOTSTRAP_ADMIN_KEY=$KEY "$ROOT/build/crm-server" --port "$PORT" --db "$CONN" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

AUTH="Authorization: Bearer $KEY"
# Two segments: one defined by the model's own features (high value tiers
# and a need: the AUC should be near 1), one by something it does not see
# (the customer's creation date, only correlated with recency and
# frequency: the AUC says how much of it the features recover).
declare -A RULES=(
    [mvc_mgc_premium_support]='{"all": [{"field": "value.tier", "op": "in", "value": ["mvc", "mgc"]}, {"need": "premium_support"}]}'
    [created_before_2024_06]='{"field": "customer.created_at", "op": "lt", "value": "2024-06-01T00:00:00Z"}'
)

call() { # one GET into $WORK/call-<name>.json; prints the wall time in s
    curl -s -o "$WORK/call-$1.json" -H "$AUTH" -w '%{time_total}' \
        "http://127.0.0.1:$PORT/v1/segments/$2/lookalikes?limit=100"
}
summary() {
    python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
f, t = d["fit"], d["timings"]
fit = "kept" if t["fit_ms"] is None else "%.0f" % t["fit_ms"]
print("| %.0f | %s | %.0f | %d | %d | %s | %s |" % (
    t["read_ms"], fit, t["score_ms"], f["n"], f["positives"],
    "null" if f["held_out_auc"] is None else "%.3f" % f["held_out_auc"], f["cached"]))
PY
}
ROWS=""
DETAILS=""
for name in mvc_mgc_premium_support created_before_2024_06; do
    log "creating the segment $name"
    sid=$(curl -s -XPOST "http://127.0.0.1:$PORT/v1/segments" -H "$AUTH" -H 'Content-Type: application/json' \
            -d "{\"name\": \"bench-lookalike-$name-$(date +%s%N)\", \"rule\": ${RULES[$name]}}" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["segment_id"])')
    [ -n "${SID:-}" ] || SID=$sid
    for i in 1 2 3; do
        log "lookalikes of $name, call $i"
        wall=$(call "$name-$i" "$sid")
        ROWS+="| $name | $i | $(printf '%.2f' "$wall") $(summary "$WORK/call-$name-$i.json")"$'\n'
    done
    f=$WORK/call-$name-1.json
    DETAILS+="- $name: coefficients $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(", ".join("%s %.2f" % (f["name"], f["coefficient"]) for f in d["fit"]["features"]))' "$f")"$'\n'
    DETAILS+="  best look-alike $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); it=d["items"][0]; print(round(it["score"],3), [(f["name"], round(f["contribution"],2)) for f in it["top_features"]])' "$f")"$'\n'
done
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
NEEDS=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["fit"]["needs"]))' "$WORK/call-mvc_mgc_premium_support-1.json")

"${PSQL[@]}" -d "$DB" > "$WORK/explain.txt" <<SQL
EXPLAIN (ANALYZE, TIMING OFF)
SELECT * FROM crm.lookalike_features('$SID', ARRAY(SELECT jsonb_array_elements_text('$NEEDS'::jsonb)));
SQL
QUERY_MS=$(awk '/Execution Time/ {print $3}' "$WORK/explain.txt")

{
    echo "# Look-alikes at scale"
    echo
    echo "$(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg);"
    echo "$COUNTS (bench/gen_data.sql, seed 0.42), values from a run as of 2026-01-01."
    echo "Call 1 of a segment fits (read, fit, score), calls 2 and 3 use the kept fit."
    echo
    echo "| segment | call | wall (s) | read (ms) | fit (ms) | score (ms) | n | members | held-out AUC | cached |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf '%s' "$ROWS"
    echo
    echo "- feature query of the first segment alone (EXPLAIN ANALYZE, no transfer): $QUERY_MS ms"
    echo "- server peak RSS: $RSS kB"
    printf '%s' "$DETAILS"
} | tee "$ROOT/bench/lookalike_results.md"
