#!/usr/bin/env bash
# Instructions per ingest statement, repeatable on a shared machine
# (bench/ingest_profile.md, "Write path"). Usage:
#   bench/ingest/callgrind.sh COPY KIND N1 N2 db...
# COPY is a pristine copy of this checkout's cluster (pg_basebackup -D COPY,
# owned by the cluster's owner, server stopped on it: it is copied again
# before every run). KIND: single (crm.ingest, known customer), new (crm.ingest,
# new customer) or batch (crm.ingest_batch, 100 known customers). Runs N1
# and N2 statements, each its own transaction, in single-user mode under
# callgrind and prints (Ir(N2) - Ir(N1)) / (N2 - N1) per database.
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
COPY=$1 KIND=$2 N1=$3 N2=$4; shift 4
BIN=$(pg_bindir)
WORK=$(mktemp -d)
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT
statements() { # kind n
    python3 - "$1" "$2" <<'PY'
import sys, uuid, random
kind, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
tail = ("gen_random_uuid(), gen_random_uuid(), 'cg', gen_random_uuid()::text, 'web', 'purchase', "
        "'2026-11-20T10:00:00Z'::timestamptz, 12.5, 'EUR', NULL, ARRAY[]::text[], '{}'::jsonb);")
for i in range(n):
    k = (i * 7919) % 10000
    if kind == "single":
        v = "bench-%d@bench.example" % k
    elif kind == "new":
        v = "cgnew-%s@bench.example" % uuid.UUID(int=rnd.getrandbits(128))
    if kind in ("single", "new"):
        print("SELECT crm.ingest(NULL, '[{\"kind\":\"email\",\"value\":\"%s\"}]'::jsonb, %s\n" % (v, tail))
    else:
        print("SELECT crm.ingest_batch((SELECT jsonb_agg(jsonb_build_object('new_customer_id', "
              "gen_random_uuid(), 'interaction_id', gen_random_uuid(), 'source', 'cgb', 'external_id', "
              "gen_random_uuid()::text, 'channel', 'web', 'type', 'visit', 'occurred_at', "
              "'2026-11-20T10:00:00Z', 'tags', '[]'::jsonb, 'identifiers', jsonb_build_array("
              "jsonb_build_object('kind', 'email', 'value', 'bench-' || ((%d + g * 97) %% 10000) "
              "|| '@bench.example'))) ORDER BY g) FROM generate_series(0, 99) AS g));\n" % k)
PY
}
ir() { # db n
    statements "$KIND" "$2" > "$WORK/in.sql"
    chmod 644 "$WORK/in.sql"
    rm -rf "$WORK/data" && cp -a "$COPY" "$WORK/data"
    as_pg_owner valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
        "$BIN/postgres" --single -j -D "$WORK/data" -c track_functions=none \
        -c synchronous_commit=off -c autovacuum=off "$1" < "$WORK/in.sql" > "$WORK/log" 2>&1
    grep -m1 '^summary:' "$WORK/cg.out" | awk '{print $2}'
}
for d in "$@"; do
    a=$(ir "$d" "$N1")
    b=$(ir "$d" "$N2")
    echo "$KIND $d $(( (b - a) / (N2 - N1) ))"
done
