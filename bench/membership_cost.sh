#!/usr/bin/env bash
# Live segment membership (docs/segments.md), measured:
#
# 1. the refresher: a round of crm.segment_refresh for 1,000 changed
#    customers (an interaction each, a third of them also a traits change)
#    with 10 saved segments, on the bench data of bench/gen_data.sql
#    (10,000 customers, valued); ROUNDS rounds, each on fresh changes; and
#    the full diff of the value segments after a value run;
# 2. the write path: the server's own ingest statement (src/store.c,
#    crm.ingest on the generated customers' emails) with pgbench, on a
#    database of the code before live membership (OLD_BIN) and one of this
#    code (NEW_BIN, its refresher running with the 10 segments while
#    pgbench writes), interleaved in the same run (old new old new ...).
#
#   bench/membership_cost.sh OLD_BIN NEW_BIN [rounds=3] [seconds=10] [clients=8]
#
# Uses this checkout's PostgreSQL (scripts/lib.sh; export CRM_PG_PORT first
# to pick the cluster) and the databases crm_mship_old / crm_mship_new
# (recreated). Bounded: ROUNDS x 2 pgbench runs of SECONDS each on loopback.
set -euo pipefail
OLD_BIN=$1 NEW_BIN=$2 ROUNDS=${3:-3} SECONDS_PER=${4:-10} CLIENTS=${5:-8}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/lib.sh
. "$ROOT/scripts/lib.sh"
start_postgres
BIN=$(pg_bindir)
KEY="crm_$(python3 -c 'import uuid; print(uuid.uuid4().hex)')_$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
PORT=18093
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
WORK=$(mktemp -d)
q() { psql -X -q -tA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1 -d "$@"; }

prepare() { # bin db
    create_database "$2" recreate >/dev/null
    "$1" migrate --db "$(conninfo "$2")" >/dev/null 2>&1
    q "$2" -v customers=10000 -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
    "$1" recompute-value --db "$(conninfo "$2")" >/dev/null 2>&1
    q "$2" -c "VACUUM ANALYZE" >/dev/null
}
echo "preparing crm_mship_old (before) and crm_mship_new (after): 10,000 customers each, valued"
prepare "$OLD_BIN" crm_mship_old
prepare "$NEW_BIN" crm_mship_new

# The new server without its refresher, to make the segments; rounds are
# then run by hand (psql) and timed.
CRM_BOOTSTRAP_ADMIN_KEY=$KEY CRM_ACCESS_LOG=0 "$NEW_BIN" --db "$(conninfo crm_mship_new)" \
    --port $PORT --rate-limit 0 --segment-refresh-ms 0 >/dev/null 2>"$WORK/server.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
segment() {
    curl -sf -XPOST "http://127.0.0.1:$PORT/v1/segments" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' -d "{\"name\": \"$1\", \"rule\": $2}" >/dev/null
}
segment "buyers 90d" '{"interaction": {"type": "purchase", "within_days": 90}}'
segment "frequent" '{"interaction": {"type": "purchase", "min_count": 5}}'
segment "support need" '{"need": "support"}'
segment "top tiers" '{"field": "value.tier", "op": "in", "value": ["mvc", "mgc"]}'
segment "high clv" '{"field": "value.clv", "op": "gte", "value": 500}'
segment "churn risk" '{"all": [{"field": "value.churn_risk", "op": "gt", "value": 0.5}, {"interaction": {"type": "purchase"}}]}'
segment "named" '{"field": "traits.first_name", "op": "exists"}'
segment "vip attr" '{"field": "traits.attributes.vip", "op": "eq", "value": true}'
segment "email and web" '{"all": [{"has_identifier": "email"}, {"interaction": {"channel": "web"}}]}'
segment "not bz" '{"not": {"field": "value.tier", "op": "eq", "value": "bz"}}'
echo "10 segments: $(q crm_mship_new -c "SELECT count(*) FROM crm.segments") saved, $(q crm_mship_new -c "SELECT count(*) FROM crm.segment_members") memberships after the first fills"
q crm_mship_new -c "SELECT crm.segment_refresh(100000, 0)" >/dev/null   # the cursor to the end

# 1,000 customers changed: an interaction each (web page view with a tag,
# a purchase for every other), a traits change for every third.
changes() { # round
    q crm_mship_new <<SQL >/dev/null
SELECT crm.ingest(NULL, jsonb_build_array(jsonb_build_object('kind', 'email', 'value', 'gen-' || n || '@gen.example')),
                  gen_random_uuid(), gen_random_uuid(), 'bench-mship', 'r$1-' || n,
                  CASE WHEN n % 2 = 0 THEN 'store' ELSE 'web' END,
                  CASE WHEN n % 2 = 0 THEN 'purchase' ELSE 'page_view' END,
                  now() - interval '1 hour', CASE WHEN n % 2 = 0 THEN 30 END,
                  CASE WHEN n % 2 = 0 THEN 'EUR' END, NULL, ARRAY['support'], '{}'::jsonb)
  FROM generate_series($(( ($1 - 1) * 1000 + 1 )), $(( $1 * 1000 ))) AS n;
SELECT crm.patch_traits(md5('gen-' || n)::uuid,
                        jsonb_build_object('first_name', 'N$1', 'attributes', jsonb_build_object('vip', n % 2 = 0)),
                        'bench-mship')
  FROM generate_series($(( ($1 - 1) * 1000 + 1 )), $(( $1 * 1000 )), 3) AS n;
SQL
}
echo
echo "refresher round for 1,000 changed customers, 10 segments (crm.segment_refresh):"
for r in $(seq "$ROUNDS"); do
    changes "$r"
    out=$(q crm_mship_new <<'SQL'
\timing on
SELECT crm.segment_refresh(100000, 0);
SQL
)
    echo "  round $r: $(echo "$out" | grep -v '^Time' | head -1) in $(echo "$out" | grep '^Time' | sed 's/Time: //')"
done
echo "after a value run: the value segments diffed over all 10,000 customers"
"$NEW_BIN" recompute-value --db "$(conninfo crm_mship_new)" >/dev/null 2>&1
out=$(q crm_mship_new <<'SQL'
\timing on
SELECT crm.segment_refresh(100000, 0);
SQL
)
echo "  $(echo "$out" | grep -v '^Time' | head -1) in $(echo "$out" | grep '^Time' | sed 's/Time: //')"

# 2. the ingest statement, before and after, interleaved: after with no
# server running (the statement's own cost) and after with a server whose
# refresher follows the feed meanwhile (period 1 s: what the refresher's
# rounds take from the same two cores).
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true; PIDS=()
cat > "$WORK/own_ingest.sql" <<'SQL'
\set c random(1, 10000)
SELECT crm.ingest(NULL, ('[{"kind":"email","value":"gen-' || :c || '@gen.example"}]')::jsonb, gen_random_uuid(), gen_random_uuid(), 'pgbench-own', gen_random_uuid()::text, 'web', 'purchase', '2026-11-20T10:00:00Z'::timestamptz, 12.5, 'EUR', NULL, ARRAY['support']::text[], '{}'::jsonb);
SQL
bench_one() { # db label round
    "$BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -c "$CLIENTS" -j 2 \
        -T "$SECONDS_PER" -M prepared -f "$WORK/own_ingest.sql" "$1" 2>&1 |
        awk -v l="$2" -v r="$3" '/latency average/ {lat = $4}
                                  /^tps/ {printf "%s round %s: %.0f tps, latency %s ms\n", l, r, $3, lat}'
}
with_refresher() { # round
    CRM_BOOTSTRAP_ADMIN_KEY=$KEY CRM_ACCESS_LOG=0 "$NEW_BIN" --db "$(conninfo crm_mship_new)" \
        --port $PORT --rate-limit 0 --webhook-workers 0 >/dev/null 2>>"$WORK/server2.log" &
    local pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
    bench_one crm_mship_new after+refresher "$1"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
echo
echo "what ingest runs, compared between the two databases:"
defs() { # db: crm.ingest's body and the triggers of the tables an interaction writes
    q "$1" -c "SELECT md5(pg_get_functiondef('crm.ingest(uuid,jsonb,uuid,uuid,text,text,text,text,timestamptz,numeric,text,numeric,text[],jsonb)'::regprocedure))"
    q "$1" -c "SELECT c.relname || ': ' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                WHERE c.relnamespace = 'crm'::regnamespace AND NOT t.tgisinternal
                  AND c.relname IN ('interactions', 'interaction_stats', 'customer_needs',
                                    'identifiers', 'customers', 'profile_cache', 'events')
                ORDER BY 1"
}
defs crm_mship_old > "$WORK/defs_old"
defs crm_mship_new > "$WORK/defs_new"
if diff "$WORK/defs_old" "$WORK/defs_new" > "$WORK/defs_diff"; then
    echo "  crm.ingest and the triggers of the tables it writes: identical"
else
    echo "  crm.ingest and the triggers of the tables it writes differ (< before, > after):"
    sed 's/^/    /' "$WORK/defs_diff"
fi
echo
echo "the ingest statement, pgbench -c $CLIENTS, ${SECONDS_PER}s per run, interleaved:"
EV0=$(q crm_mship_new -c "SELECT count(*) FROM crm.events WHERE type LIKE 'segment.%'")
OUT=$(for r in $(seq "$ROUNDS"); do bench_one crm_mship_old before "$r"; bench_one crm_mship_new after "$r"; with_refresher "$r"; done)
echo "$OUT"
echo "$OUT" | awk '{gsub(",", "", $4); s[$1]+=$4; n[$1]++} END {b=s["before"]/n["before"]; a=s["after"]/n["after"]; f=s["after+refresher"]/n["after+refresher"];
    printf "mean before %.0f tps, after %.0f tps (%+.1f %%), after with the refresher running %.0f tps (%+.1f %%)\n", b, a, (a-b)/b*100, f, (f-b)/b*100}'
echo "the refresher meanwhile: $(( $(q crm_mship_new -c "SELECT count(*) FROM crm.events WHERE type LIKE 'segment.%'") - EV0 )) segment events written"

# 3. the profile read (the server's statement): segments are added at read
# time (docs/segments.md), so a cached profile costs one index scan more.
cat > "$WORK/own_profile.sql" <<'SQL'
\set c random(1, 10000)
SELECT d::text, d->>'customer_id', d->>'merged_into', (d ? 'gone')::text FROM (SELECT doc AS d FROM crm.profile_read WHERE customer_id = md5('gen-' || :c)::uuid OFFSET 0) AS x;
SQL
for db in crm_mship_old crm_mship_new; do   # fill the caches first
    q "$db" -c "SELECT count(doc) FROM crm.profile_read" >/dev/null
done
profile_one() { # db label round
    "$BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -c "$CLIENTS" -j 2 \
        -T "$SECONDS_PER" -M prepared -f "$WORK/own_profile.sql" "$1" 2>&1 |
        awk -v l="$2" -v r="$3" '/latency average/ {lat = $4}
                                  /^tps/ {printf "%s round %s: %.0f tps, latency %s ms\n", l, r, $3, lat}'
}
echo
echo "the profile read statement, pgbench -c $CLIENTS, ${SECONDS_PER}s per run, interleaved:"
OUT=$(for r in $(seq "$ROUNDS"); do profile_one crm_mship_old before "$r"; profile_one crm_mship_new after "$r"; done)
echo "$OUT"
echo "$OUT" | awk '{gsub(",", "", $4); s[$1]+=$4; n[$1]++} END {b=s["before"]/n["before"]; a=s["after"]/n["after"];
    printf "mean before %.0f tps, after %.0f tps: %+.1f %%\n", b, a, (a-b)/b*100}'
rm -rf "$WORK"
