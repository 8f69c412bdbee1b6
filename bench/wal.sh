#!/usr/bin/env bash
# WAL written per stored interaction (issue 17), through the real server.
# Seeds 10,000 customers into a fresh database crm_wal, then for each shape
# (single POSTs of purchases of existing customers; batches of 100) runs a
# fixed load twice: right after a CHECKPOINT (the first change of every page
# writes a full-page image, as at the start of every checkpoint cycle) and
# straight again (steady state, few full pages). For each pass it reads
# pg_current_wal_lsn() around the load and the rows added to
# crm.interactions, and breaks the WAL down by record type with pg_walinspect
# (a contrib module of Debian's postgresql package), created in the public
# schema of crm_wal only. Deterministic enough to run on a busy machine: it
# counts bytes, not time. Appends a section LABEL to bench/wal_results.md
# (replacing an earlier one of that label).
# Usage: bench/wal.sh LABEL [singles=2000] [batches=40] [build-dir=build]
#   build-dir: relative to the checkout, or absolute (another revision's build).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

LABEL=${1:?usage: bench/wal.sh LABEL [singles] [batches] [build-dir]}
SINGLES=${2:-2000}
BATCHES=${3:-40}
BUILD_DIR=${4:-build}
PORT=${CRM_WAL_PORT:-18083}
DB=crm_wal
OUT=$ROOT/bench/wal_results.md
case $LABEL in *[!A-Za-z0-9._-]*|'') echo "LABEL must be letters, digits, . _ -" >&2; exit 2 ;; esac

ensure_packages
if port_in_use "$PORT"; then
    echo "port $PORT is in use; set CRM_WAL_PORT" >&2
    exit 1
fi
case $BUILD_DIR in /*) SERVER_BIN=$BUILD_DIR/crm-server ;; *) SERVER_BIN=$ROOT/$BUILD_DIR/crm-server ;; esac
[ -x "$SERVER_BIN" ] || build "$BUILD_DIR" --buildtype=debugoptimized
start_postgres
create_database "$DB" recreate
KEY=$(admin_key)
WORK=$RUN_DIR/wal/$LABEL
rm -rf "$WORK"; mkdir -p "$WORK"
q() { psql -X -qtA -F'|' -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$DB" "$@"; }

CRM_BOOTSTRAP_ADMIN_KEY=$KEY "$SERVER_BIN" --port "$PORT" --db "$(conninfo "$DB")" \
    --pool-size 4 --rate-limit 0 > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
CRM_SEED_KEY=$KEY python3 "$ROOT/bench/seed.py" "$PORT" 10000 "$WORK/ids.txt" wal 1000
q -c "CREATE EXTENSION IF NOT EXISTS pg_walinspect SCHEMA public" >/dev/null
q -c "VACUUM ANALYZE" >/dev/null

# load SHAPE COUNT PASS: COUNT single POSTs or batches of 100, purchases of
# random seeded customers (by email) dated now, every external id new.
# SHAPE warm: one purchase dated now for every seeded customer (batches of
# 500), so that the measured purchases are those of active customers buying
# again (the seed's purchases are dated 2026-01-01), the common case.
load() {
    CRM_WAL_KEY=$KEY python3 - "$PORT" "$1" "$2" "$3" <<'PY'
import http.client, json, os, random, sys
port, shape, n, run = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
rnd = random.Random(run)
hdr = {"Authorization": "Bearer " + os.environ["CRM_WAL_KEY"], "Content-Type": "application/json"}
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
import datetime
def item(i, k=None):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"identifiers": [{"kind": "email", "value": "wal-%d@bench.example" % (rnd.randrange(10000) if k is None else k)}],
            "source": "wal", "external_id": "%s-%s-%d" % (shape, run, i), "channel": "web",
            "type": "purchase", "occurred_at": now, "amount": 12.5, "currency": "EUR"}
if shape == "warm":
    for b in range(0, 10000, 500):
        c.request("POST", "/v1/interactions:batch",
                  json.dumps({"items": [item(k, k) for k in range(b, b + 500)]}), hdr)
        r = c.getresponse(); body = r.read()
        assert r.status == 200, (r.status, body[:300])
    sys.exit(0)
for i in range(n):
    if shape == "single":
        c.request("POST", "/v1/interactions", json.dumps(item(i)), hdr); want = 201
    else:
        c.request("POST", "/v1/interactions:batch",
                  json.dumps({"items": [item(i * 100 + k) for k in range(100)]}), hdr); want = 200
    r = c.getresponse(); body = r.read()
    assert r.status == want, (r.status, body[:300])
PY
}

measure() { # shape count pass
    local shape=$1 n=$2 pass=$3 l0 l1 i0 i1
    [ "$pass" = after-checkpoint ] && q -c "CHECKPOINT" >/dev/null
    i0=$(q -c "SELECT count(*) FROM crm.interactions"); l0=$(q -c "SELECT pg_current_wal_lsn()")
    load "$shape" "$n" "$pass"
    l1=$(q -c "SELECT pg_current_wal_lsn()"); i1=$(q -c "SELECT count(*) FROM crm.interactions")
    local rows=$((i1 - i0))
    q -c "SELECT '$shape', '$pass', $rows, pg_wal_lsn_diff('$l1', '$l0')::bigint,
                 round(pg_wal_lsn_diff('$l1', '$l0') / $rows),
                 (SELECT round(sum(count)::numeric / $rows, 1) FROM public.pg_get_wal_stats('$l0', '$l1')),
                 (SELECT round(sum(fpi_size)::numeric / $rows) FROM public.pg_get_wal_stats('$l0', '$l1'))" \
        >> "$WORK/summary.txt"
    q -c "SELECT '$shape', '$pass', \"resource_manager/record_type\", round(count::numeric / $rows, 2),
                 round(record_size::numeric / $rows), round(fpi_size::numeric / $rows)
            FROM public.pg_get_wal_stats('$l0', '$l1', true) WHERE count > 0
           ORDER BY combined_size DESC LIMIT 12" >> "$WORK/records.txt"
}
load warm 0 warm
for pass in after-checkpoint steady; do
    measure single "$SINGLES" "$pass"
    measure batch100 "$BATCHES" "$pass"
done
kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true; trap - EXIT

CODE=${CRM_WAL_CODE:-}; [ -n "$CODE" ] || CODE="$(git -C "$ROOT" rev-parse --short HEAD)$( [ -z "$(git -C "$ROOT" status --porcelain -- src include sql)" ] || echo ' + uncommitted changes')"
{
    echo "## $LABEL"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), code $CODE, $BUILD_DIR, 10,000 customers, $SINGLES single POSTs and $BATCHES batches of 100 per pass."
    echo
    echo "| shape | pass | interactions stored | WAL bytes | bytes per interaction | WAL records per interaction | of which full-page image bytes |"
    echo "|---|---|---|---|---|---|---|"
    awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}' "$WORK/summary.txt"
    echo
    echo "<details><summary>By record type (per interaction: records, record bytes, full-page bytes)</summary>"
    echo
    echo "| shape | pass | record type | records | record bytes | FPI bytes |"
    echo "|---|---|---|---|---|---|"
    awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' "$WORK/records.txt"
    echo
    echo "</details>"
} > "$WORK/section.md"
python3 "$ROOT/bench/put_section.py" "$OUT" "$LABEL" "$WORK/section.md" \
    "# WAL per stored interaction

Written by \`bench/wal.sh\` (see its header). Issue 17's targets: at most 500 bytes per single POST and 250 per batched event."
cat "$WORK/section.md"
