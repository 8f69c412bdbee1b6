#!/usr/bin/env bash
# The write-path cost of the change feed: POST /v1/interactions throughput
# of two server binaries (before and after sql/010_activation.sql), each on
# a fresh database of its own, measured in the same run, interleaved
# (A B A B ...), with wrk and bench/interaction_post.lua (identifiers of
# CRM_BENCH_CUSTOMERS emails: the first round creates the customers, the
# later ones find them).
#
#   bench/activation_cost.sh OLD_BIN NEW_BIN [rounds=3] [seconds=10] [connections=16]
#
# Uses this checkout's PostgreSQL (scripts/lib.sh; export CRM_PG_PORT first
# to pick the cluster) and the databases crm_cost_old / crm_cost_new
# (recreated). Prints one line per run and the mean of each side.
set -euo pipefail
OLD_BIN=$1 NEW_BIN=$2 ROUNDS=${3:-3} SECONDS_PER=${4:-10} CONNS=${5:-16}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
start_postgres
KEY="crm_$(python3 -c 'import uuid; print(uuid.uuid4().hex)')_$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
serve() { # bin db port
    create_database "$2" recreate >/dev/null
    CRM_BOOTSTRAP_ADMIN_KEY=$KEY CRM_ACCESS_LOG=0 "$1" --db "$(conninfo "$2")" --port "$3" \
        --rate-limit 0 >/dev/null 2>"/tmp/crm-cost-$2.log" &
    PIDS+=($!)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$3/health" >/dev/null && return; sleep 0.1; done
    echo "server $1 did not start" >&2; exit 1
}
serve "$OLD_BIN" crm_cost_old 18091
serve "$NEW_BIN" crm_cost_new 18092
run() { # port label round
    CRM_BENCH_KEY=$KEY CRM_BENCH_RUN="$2$3" wrk -t2 -c"$CONNS" -d"${SECONDS_PER}s" \
        -s "$ROOT/bench/interaction_post.lua" "http://127.0.0.1:$1" |
        awk -v l="$2" -v r="$3" '/Requests\/sec/ {printf "%s round %s: %.0f req/s\n", l, r, $2}'
}
OUT=$(for r in $(seq "$ROUNDS"); do run 18091 before "$r"; run 18092 after "$r"; done)
echo "$OUT"
echo "$OUT" | awk '{s[$1]+=$4; n[$1]++} END {b=s["before"]/n["before"]; a=s["after"]/n["after"];
    printf "mean before %.0f req/s, after %.0f req/s: %+.1f %%\n", b, a, (a-b)/b*100}'
# Pairs (before r, after r) ran back to back: their ratio is less exposed to
# what else the machine does than the means are.
echo "$OUT" | awk '$1 == "before" {b[$3] = $4} $1 == "after" {a[$3] = $4}
    END {n = 0; for (r in a) if (b[r] > 0) x[++n] = a[r] / b[r];
         for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) {t = x[i]; x[i] = x[j]; x[j] = t}
         m = n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2;
         printf "median after/before of the %d pairs: %.3f (%+.1f %%)\n", n, m, (m - 1) * 100}'
