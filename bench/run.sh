#!/usr/bin/env bash
# Benchmarks of the hot paths against ceilings measured in the same run:
#   HTTP ceiling  = GET /health on the same server (no database work),
#   DB ceilings   = pgbench select-only and single-row insert on the same cluster.
# Writes bench/results.md. Uses wrk and pgbench; bounded (DURATION s per scenario),
# loopback only. Usage: bench/run.sh [customers=10000] [duration=10] [connections="1 16 64"]
# Scenarios: profile GET by id and by email, single interaction POST, batch
# POST (100 events per request), segment first page; each at every connection
# count. Ceilings run at the largest connection count.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

CUSTOMERS=${1:-10000}
DURATION=${2:-10}
CONN_LIST=${3:-"1 16 64"}
CONNS=$(echo "$CONN_LIST" | tr ' ' '\n' | sort -n | tail -n 1)
PORT=${CRM_BENCH_PORT:-18080}
PACKAGES+=(wrk)
ensure_packages
build build --buildtype=debugoptimized
start_postgres
create_database crm_bench
create_database crm_pgbench
BIN=$(pg_bindir)
WORK=$RUN_DIR/bench
mkdir -p "$WORK"
export CRM_BENCH_CUSTOMERS=$CUSTOMERS CRM_BENCH_RUN=$(date +%s) CRM_BENCH_IDS=$WORK/ids.txt

KEY=$(admin_key)
export CRM_BENCH_KEY=$KEY
CRM_BOOTSTRAP_ADMIN_KEY=$KEY "$ROOT/build/crm-server" --port "$PORT" --db "$(conninfo crm_bench)" --pool-size "$CONNS" --rate-limit 0 \
    > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

log "seeding $CUSTOMERS customers through the batch API"
python3 - "$PORT" "$CUSTOMERS" "$CRM_BENCH_IDS" <<'PY'
import http.client, json, sys
import os
port, n, ids_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
auth = {"Authorization": "Bearer " + os.environ["CRM_BENCH_KEY"]}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for start in range(0, n, 500):
    items = [{"identifiers": [{"kind": "email", "value": "bench-%d@bench.example" % k}],
              "source": "seed", "external_id": "seed-%d" % k, "channel": "store",
              "type": "purchase", "occurred_at": "2026-01-01T10:00:00Z", "amount": 10,
              "currency": "EUR"} for k in range(start, min(n, start + 500))]
    c.request("POST", "/v1/interactions:batch", json.dumps({"items": items}),
              dict(auth, **{"Content-Type": "application/json"}))
    r = c.getresponse(); body = json.loads(r.read())
    assert r.status == 200 and body["failed"] == 0, body
with open(ids_path, "w") as f:
    for k in range(0, n, max(1, n // 2000)):
        c.request("GET", "/v1/customers?email=bench-%d%%40bench.example" % k, headers=auth)
        r = c.getresponse(); f.write(json.loads(r.read())["customer_id"] + "\n")
PY

wrk_run() { # name connections script-or-path
    local name=$1 conns=$2 target=$3 out threads=2
    [ "$conns" -lt 2 ] && threads=1
    if [[ $target == *.lua ]]; then
        out=$(wrk -t$threads -c"$conns" -d"${DURATION}s" --latency -H "Authorization: Bearer $KEY" \
              -s "$ROOT/bench/$target" "http://127.0.0.1:$PORT")
    else
        out=$(wrk -t$threads -c"$conns" -d"${DURATION}s" --latency -H "Authorization: Bearer $KEY" \
              "http://127.0.0.1:$PORT$target")
    fi
    echo "$out" > "$WORK/$name-$conns.txt"
    local rps p50 p99 non2xx
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    echo "$name|$rps|$p50|$p99|${non2xx:-0}|$conns"
}

pgbench_run() { # name extra-args
    local name=$1; shift
    local out tps
    out=$("$BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -c "$CONNS" -j 2 \
          -T "$DURATION" -M prepared "$@" crm_pgbench 2>&1)
    echo "$out" > "$WORK/$name.txt"
    tps=$(echo "$out" | awk '/^tps/ {print $3; exit}')
    echo "$name|$tps"
}

log "pgbench ceilings"
"$BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -i -q -s 10 crm_pgbench >/dev/null 2>&1
printf 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now());\n' \
    > "$WORK/insert.sql"
PG_SELECT=$(pgbench_run pgbench_select -S)
PG_INSERT=$(pgbench_run pgbench_insert -f "$WORK/insert.sql")

SEGMENT=$(curl -s -XPOST "http://127.0.0.1:$PORT/v1/segments" -H "Authorization: Bearer $KEY" \
          -H 'Content-Type: application/json' \
          -d "{\"name\": \"bench-$CRM_BENCH_RUN\", \"rule\": {\"has_identifier\": \"email\"}}" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["segment_id"])')

log "wrk scenarios (connections: $CONN_LIST; ${DURATION}s each)"
HEALTH=$(wrk_run health "$CONNS" /health)
ROWS=()
for c in $CONN_LIST; do
    ROWS+=("$(wrk_run profile_get "$c" profile_get.lua):$PG_SELECT")
    ROWS+=("$(wrk_run profile_by_email "$c" email_get.lua):$PG_SELECT")
    ROWS+=("$(wrk_run interaction_post "$c" interaction_post.lua):$PG_INSERT")
    ROWS+=("$(wrk_run batch_post_x100 "$c" batch_post.lua):$PG_INSERT")
    ROWS+=("$(wrk_run segment_first_page "$c" "/v1/segments/$SEGMENT/customers?limit=100"):$PG_SELECT")
done
RSS=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$SERVER/status")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }'; }
field() { echo "$1" | cut -d'|' -f"$2"; }

{
    echo "# Benchmark results"
    echo
    echo "$(date -u +%FT%TZ), $(nproc) cores (wrk, server and PostgreSQL share them), $CUSTOMERS customers, ${DURATION}s per scenario, pool $CONNS; ceilings at $CONNS connections."
    echo
    echo "| ceiling | tps |"
    echo "|---|---|"
    echo "| pgbench select-only (-S, prepared) | $(field "$PG_SELECT" 2) |"
    echo "| pgbench single-row insert (prepared) | $(field "$PG_INSERT" 2) |"
    echo "| HTTP: GET /health (no database) | $(field "$HEALTH" 2) |"
    echo
    echo "| scenario | connections | req/s | p50 | p99 | non-2xx | vs ceiling |"
    echo "|---|---|---|---|---|---|---|"
    for row in "${ROWS[@]}"; do
        r=${row%%:*}; c=${row#*:}
        echo "| $(field "$r" 1) | $(field "$r" 6) | $(field "$r" 2) | $(field "$r" 3) | $(field "$r" 4) | $(field "$r" 5) | $(ratio "$(field "$r" 2)" "$(field "$c" 2)") of $(field "$c" 1) |"
    done
    echo
    echo "batch_post_x100 carries 100 events per request: events/s = 100 x req/s."
    echo
    echo "Server peak RSS: $RSS."
} | tee "$ROOT/bench/results.md"
