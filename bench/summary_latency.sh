#!/usr/bin/env bash
# One measurement of the agent's summary latency (docs/summary.md) next to
# the profile GET on the same data and server: seeds CUSTOMERS customers
# into a fresh database crm_sumbench as bench/run.sh does (bench/seed.py: one
# purchase each), runs a value run (tiers, CLV, churn risk), warms the
# profile cache, then sends REQUESTS sequential GETs of each kind, alternating,
# over one keep-alive connection per kind, to ids picked at random, and
# prints p50/p90/p99 in ms as the client sees them (loopback, Python
# http.client). Not a throughput test: bench/run.sh has the summary_get row
# at 1/16/64 connections for that.
# Usage: bench/summary_latency.sh [customers=10000] [requests=2000]
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
CUSTOMERS=${1:-10000}
REQUESTS=${2:-2000}
PORT=${CRM_BENCH_PORT:-18180}
BUILD=${CRM_BENCH_BUILD:-build}
WORK=$RUN_DIR/summary-latency
mkdir -p "$WORK"
build "$BUILD" --buildtype=debugoptimized
start_postgres
create_database crm_sumbench recreate
KEY=$(admin_key)
CRM_BOOTSTRAP_ADMIN_KEY=$KEY "$ROOT/$BUILD/crm-server" --port "$PORT" --db "$(conninfo crm_sumbench)" \
    --rate-limit 0 > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    sleep 0.1
done
log "seeding $CUSTOMERS customers"
CRM_SEED_KEY=$KEY python3 "$ROOT/bench/seed.py" "$PORT" "$CUSTOMERS" "$WORK/ids.txt" bench \
    $((CUSTOMERS / 2000))
curl -sf -XPOST "http://127.0.0.1:$PORT/v1/value:recompute" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{}' > /dev/null
psql -X -qtA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d crm_sumbench \
     -c "SELECT count(doc) FROM crm.profile_read" > /dev/null
log "measuring $REQUESTS requests of each kind"
KEY=$KEY PORT=$PORT IDS=$WORK/ids.txt N=$REQUESTS python3 - <<'PY'
import http.client, os, random, time
ids = [l.strip() for l in open(os.environ["IDS"]) if l.strip()]
auth = {"Authorization": "Bearer " + os.environ["KEY"]}
conns = {k: http.client.HTTPConnection("127.0.0.1", int(os.environ["PORT"])) for k in ("profile", "summary")}
paths = {"profile": "/v1/customers/%s", "summary": "/v1/customers/%s/summary"}
times = {"profile": [], "summary": []}
rng = random.Random(1)
for i in range(int(os.environ["N"]) + 200):
    cid = rng.choice(ids)
    for kind in ("profile", "summary"):
        t = time.perf_counter()
        conns[kind].request("GET", paths[kind] % cid, headers=auth)
        r = conns[kind].getresponse()
        r.read()
        dt = (time.perf_counter() - t) * 1000
        assert r.status == 200, (kind, r.status)
        if i >= 200:  # the first 200 warm the connections and prepared statements
            times[kind].append(dt)
for kind, ts in times.items():
    ts.sort()
    q = lambda p: ts[min(len(ts) - 1, int(p * len(ts)))]
    print("%-8s n=%d p50=%.2f ms p90=%.2f ms p99=%.2f ms" % (kind, len(ts), q(0.5), q(0.9), q(0.99)))
PY
