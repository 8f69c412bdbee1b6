#!/usr/bin/env bash
# The peer of issue 17: the same profile read served by crm-server and by
# PostGraphile (npm, pinned in bench/peer/package.json, MIT) over the same
# database, alternating in one run. Seeds 10,000 customers (one purchase each)
# into a fresh database crm_peer through the server's batch API, reads 1,000
# of their ids, then for each connection count runs ROUNDS rounds of
# [our GET /v1/customers/{id}; PostGraphile's customerByCustomerId query of
# customer, identifiers, traits, interaction stats and needs] for DURATION
# seconds each, and reports the median rate, p50 and p99 of each side and
# their ratio. Our document is larger (it also carries value, preferences,
# consents, segments, cases and satisfaction), so the ratio flatters the peer.
# PostGraphile runs as one Node.js process (its default), with a pool as large
# as the server's. Appends a section LABEL to bench/peer_results.md.
# Usage: bench/peer.sh LABEL [duration=5] [rounds=2] [connections="1 16 64"]
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

LABEL=${1:?usage: bench/peer.sh LABEL [duration] [rounds] [connections]}
DURATION=${2:-5}
ROUNDS=${3:-2}
CONNS=${4:-1 16 64}
PORT=${CRM_PEER_PORT:-18084}
GQL_PORT=${CRM_PEER_GQL_PORT:-18085}
POOL=${CRM_PEER_POOL:-8}
DB=crm_peer
OUT=$ROOT/bench/peer_results.md
case $LABEL in *[!A-Za-z0-9._-]*|'') echo "LABEL must be letters, digits, . _ -" >&2; exit 2 ;; esac

PACKAGES+=(wrk)
ensure_packages
for p in "$PORT" "$GQL_PORT"; do
    if port_in_use "$p"; then echo "port $p is in use; set CRM_PEER_PORT / CRM_PEER_GQL_PORT" >&2; exit 1; fi
done
[ -x "$ROOT/build/crm-server" ] || build build --buildtype=debugoptimized
start_postgres
create_database "$DB" recreate
KEY=$(admin_key)
WORK=$RUN_DIR/peer/$LABEL
rm -rf "$WORK"; mkdir -p "$WORK"
(cd "$ROOT/bench/peer" && npm ci --no-audit --no-fund --prefer-offline >"$WORK/npm.log" 2>&1) ||
    { echo "npm ci failed: see $WORK/npm.log" >&2; exit 1; }

SERVER= GQL=
cleanup() { for p in $SERVER $GQL; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
CRM_BOOTSTRAP_ADMIN_KEY=$KEY "$ROOT/build/crm-server" --port "$PORT" --db "$(conninfo "$DB")" \
    --pool-size "$POOL" --rate-limit 0 > "$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
CRM_SEED_KEY=$KEY python3 "$ROOT/bench/seed.py" "$PORT" 10000 "$WORK/ids.txt" peer 10
export CRM_BENCH_IDS=$WORK/ids.txt

# PostGraphile sees only what the read needs: schema peer, one view per table
# (the planner inlines them), with the keys as smart comments. The whole crm
# schema would also expose every crm function as a query field.
psql -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$DB" <<'SQL'
CREATE SCHEMA peer;
CREATE VIEW peer.customers AS SELECT customer_id, created_at, updated_at, merged_into FROM crm.customers;
CREATE VIEW peer.identifiers AS SELECT customer_id, kind, namespace, value, source, created_at FROM crm.identifiers;
CREATE VIEW peer.traits AS SELECT customer_id, name, value, source, updated_at FROM crm.traits;
CREATE VIEW peer.interaction_stats AS
    SELECT customer_id, channel, type, currency, n, amount, cost, first_at, last_at FROM crm.interaction_stats;
CREATE VIEW peer.customer_needs AS SELECT customer_id, need, n, first_at, last_at FROM crm.customer_needs;
COMMENT ON VIEW peer.customers IS E'@primaryKey customer_id';
COMMENT ON VIEW peer.identifiers IS E'@primaryKey kind,namespace,value\n@foreignKey (customer_id) references peer.customers (customer_id)';
COMMENT ON VIEW peer.traits IS E'@primaryKey customer_id,name\n@foreignKey (customer_id) references peer.customers (customer_id)';
COMMENT ON VIEW peer.interaction_stats IS E'@primaryKey customer_id,channel,type,currency\n@foreignKey (customer_id) references peer.customers (customer_id)';
COMMENT ON VIEW peer.customer_needs IS E'@primaryKey customer_id,need\n@foreignKey (customer_id) references peer.customers (customer_id)';
SQL

SOCK_ENC=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$PG_SOCK")
"$ROOT/bench/peer/node_modules/.bin/postgraphile" -c "postgres://$PG_USER@$SOCK_ENC:$PG_PORT/$DB" \
    --schema peer --disable-default-mutations --host 127.0.0.1 --port "$GQL_PORT" --disable-query-log --max-pool-size "$POOL" \
    > "$WORK/postgraphile.log" 2>&1 &
GQL=$!
for _ in $(seq 300); do
    curl -sf -H 'Content-Type: application/json' -d '{"query":"{__typename}"}' \
        "http://127.0.0.1:$GQL_PORT/graphql" >/dev/null && break
    kill -0 "$GQL" 2>/dev/null || { cat "$WORK/postgraphile.log" >&2; exit 1; }
    sleep 0.5
done
# Both sides must answer the same customer before anything is timed.
ID=$(head -n 1 "$WORK/ids.txt")
curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/customers/$ID" > "$WORK/ours.json"
QUERY=$(sed -n 's/^local query = "\(.*\)"$/\1/p; s/^  \.\. "\(.*\)"$/\1/p' "$ROOT/bench/peer_graphql.lua" | tr -d '\n')
python3 - "$GQL_PORT" "$ID" "$QUERY" "$WORK/peer.json" <<'PY'
import json, sys, urllib.request
port, cid, query, out = sys.argv[1:]
req = urllib.request.Request("http://127.0.0.1:%s/graphql" % port,
                             json.dumps({"query": query, "variables": {"id": cid}}).encode(),
                             {"Content-Type": "application/json"})
body = json.load(urllib.request.urlopen(req))
assert "errors" not in body, body
c = body["data"]["customerByCustomerId"]
assert c["customerId"] == cid and c["identifiersByCustomerId"]["nodes"], body
open(out, "w").write(json.dumps(body))
PY

to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) sub(/ms$/, "", v); else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.2f", v }'; }
run() { # side conns round
    local side=$1 c=$2 r=$3 threads=2 out
    [ "$c" -lt 2 ] && threads=1
    if [ "$side" = ours ]; then
        out=$(wrk -t$threads -c"$c" -d"${DURATION}s" --latency -H "Authorization: Bearer $KEY" \
              -s "$ROOT/bench/profile_get.lua" "http://127.0.0.1:$PORT")
    else
        out=$(wrk -t$threads -c"$c" -d"${DURATION}s" --latency -s "$ROOT/bench/peer_graphql.lua" \
              "http://127.0.0.1:$GQL_PORT")
    fi
    echo "$out" > "$WORK/$side-$c-$r.txt"
    local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    [ -z "$non2xx" ] || { echo "$side at $c connections: $non2xx non-2xx answers" >&2; exit 1; }
    echo "$side $c $r $(echo "$out" | awk '/Requests\/sec/ {print $2}') $(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')") $(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")" >> "$WORK/runs.txt"
}
for c in $CONNS; do
    for r in $(seq "$ROUNDS"); do
        if (( r % 2 )); then run ours "$c" "$r"; run peer "$c" "$r"; else run peer "$c" "$r"; run ours "$c" "$r"; fi
    done
    log "$c connections done"
done

CODE="$(git -C "$ROOT" rev-parse --short HEAD)$( [ -z "$(git -C "$ROOT" status --porcelain -- src include sql)" ] || echo ' + uncommitted changes')"
{
    echo "## $LABEL"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), code $CODE, 10,000 customers, $ROUNDS alternating rounds of ${DURATION}s per side and connection count, pool $POOL connections each, PostGraphile $(node -p 'require(process.argv[1]).version' "$ROOT/bench/peer/node_modules/postgraphile/package.json") on Node.js $(node --version). Median of the rounds."
    echo
    echo "| connections | crm-server req/s | p50 ms | p99 ms | PostGraphile req/s | p50 ms | p99 ms | crm-server / PostGraphile |"
    echo "|---|---|---|---|---|---|---|---|"
    python3 - "$WORK/runs.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
conns = []
for r in rows:
    if int(r[1]) not in conns: conns.append(int(r[1]))
for c in conns:
    m = {}
    for side in ("ours", "peer"):
        rs = [r for r in rows if r[0] == side and int(r[1]) == c]
        m[side] = [statistics.median(float(r[i]) for r in rs) for i in (3, 4, 5)]
    print("| %d | %s | %.2f | %.2f | %s | %.2f | %.2f | %.1f× |" % (
        c, format(round(m["ours"][0]), ","), m["ours"][1], m["ours"][2],
        format(round(m["peer"][0]), ","), m["peer"][1], m["peer"][2], m["ours"][0] / m["peer"][0]))
PY
} > "$WORK/section.md"
python3 "$ROOT/bench/put_section.py" "$OUT" "$LABEL" "$WORK/section.md" \
    "# The peer: the same profile read through PostGraphile

Written by \`bench/peer.sh\` (see its header for what is compared and how)."
cat "$WORK/section.md"
