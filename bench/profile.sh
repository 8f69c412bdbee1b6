#!/usr/bin/env bash
# Profile of the profile-GET hot path (issue 6), for before/after comparisons.
# Seeds CUSTOMERS customers into a fresh database crm_prof (so every run sees
# the same data), then drives REQUESTS sequential GET /v1/customers/{id} over
# one keep-alive connection (with CRM_PROF_REQUEST=post: POST /v1/interactions,
# one new purchase of an existing customer each, the write path) and measures:
#   1. instructions of the server process with valgrind --tool=callgrind
#      (repeatable on a shared machine): counters zeroed after a warm-up,
#      dumped after the run; Ir per request, self Ir by object, top 15
#      functions by inclusive and by self Ir, top crm-server functions;
#   2. without perf: CPU time per request of the server and of its
#      PostgreSQL backends (utime+stime from /proc) and the client's wall time;
#   3. the PostgreSQL backend side with perf record/report when
#      `perf stat -e instructions true` works; otherwise it says so and, if
#      perf can sample at all, adds a cpu-clock (software timer) profile.
# Appends a section LABEL to bench/profile_results.md (replacing an earlier
# section of that label). Raw files: .run/prof/LABEL/.
# Usage: bench/profile.sh LABEL [requests=2000] [customers=1000] [rev]
#   rev (or CRM_PROF_REV): profile a committed revision (e.g. HEAD) built from
#   `git archive` instead of the working tree; the working tree is built into
#   build-prof, a revision into build-prof-<sha>, both debugoptimized.
# Environment: CRM_PROF_PORT (server port, 18082); CRM_PROF_REQUEST (get or post).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

LABEL=${1:?usage: bench/profile.sh LABEL [requests=2000] [customers=1000] [rev]}
REQUESTS=${2:-2000}
CUSTOMERS=${3:-1000}
REV=${4:-${CRM_PROF_REV:-}}
PORT=${CRM_PROF_PORT:-18082}
REQUEST=${CRM_PROF_REQUEST:-get}
case $REQUEST in get|post) ;; *) echo "CRM_PROF_REQUEST must be get or post" >&2; exit 2 ;; esac
DB=crm_prof
WARMUP=200
PERF_REQUESTS=$((REQUESTS * 5)) # more samples for the timer-based fallback
case $LABEL in *[!A-Za-z0-9._-]*|'') echo "LABEL must be letters, digits, . _ -" >&2; exit 2 ;; esac

PACKAGES+=(valgrind)
ensure_packages
if [ -n "$REV" ]; then
    SHA=$(git -C "$ROOT" rev-parse --verify "$REV^{commit}")
    SRC=$RUN_DIR/prof-src/$SHA
    BUILD_DIR=$ROOT/build-prof-${SHA:0:10}
    if [ ! -d "$SRC" ]; then
        rm -rf "$SRC.tmp"
        mkdir -p "$SRC.tmp"
        git -C "$ROOT" archive "$SHA" | tar -x -C "$SRC.tmp"
        mv "$SRC.tmp" "$SRC"
    fi
    if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        log "meson setup $BUILD_DIR (revision ${SHA:0:10})"
        meson setup "$BUILD_DIR" "$SRC" --buildtype=debugoptimized >/dev/null
    fi
    log "building $BUILD_DIR"
    ninja -C "$BUILD_DIR" crm-server > "$RUN_DIR/prof-build.log" 2>&1 ||
        { tail -n 30 "$RUN_DIR/prof-build.log" >&2; exit 1; }
    CODE="commit ${SHA:0:10} ($REV)"
else
    build build-prof --buildtype=debugoptimized ||
        { echo "build failed: see ninja -C build-prof" >&2; exit 1; }
    BUILD_DIR=$ROOT/build-prof
    CODE="working tree at $(git -C "$ROOT" rev-parse --short HEAD)"
    if [ -n "$(git -C "$ROOT" status --porcelain -- src include sql)" ]; then
        CODE="$CODE with uncommitted changes in src/include/sql"
    fi
fi
SERVER_BIN=$BUILD_DIR/crm-server

if port_in_use "$PORT"; then
    echo "port $PORT is in use; set CRM_PROF_PORT" >&2
    exit 1
fi
start_postgres
create_database "$DB" recreate
PSQL=(psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d postgres -tA)
WORK=$RUN_DIR/prof/$LABEL
rm -rf "$WORK"
mkdir -p "$WORK"
KEY=$(admin_key)
export CRM_PROF_KEY=$KEY
SERVER_ARGS=(--port "$PORT" --db "$(conninfo "$DB")" --pool-size 4 --rate-limit 0)
SERVER=
PERF=
cleanup() {
    [ -n "$PERF" ] && kill -INT "$PERF" 2>/dev/null
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
    return 0
}
trap cleanup EXIT

wait_up() {
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
        kill -0 "$SERVER" 2>/dev/null || break
        sleep 0.2
    done
    echo "server did not start; see $WORK" >&2
    exit 1
}
stop_server() {
    kill -TERM "$SERVER"
    for _ in $(seq 600); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}

# drive N: N sequential requests over one keep-alive connection (ids
# round-robin): profile GETs (200), or with REQUEST=post new purchases of those
# customers by id (201; external ids unique per call). Prints the elapsed seconds.
DRIVES=0
drive() {
    DRIVES=$((DRIVES + 1))
    python3 - "$PORT" "$1" "$WORK/ids.txt" "$REQUEST" "$DRIVES" <<'PY'
import http.client, json, os, sys, time
port, n, ids_path, mode, run = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4],
                                sys.argv[5])
ids = open(ids_path).read().split()
auth = {"Authorization": "Bearer " + os.environ["CRM_PROF_KEY"]}
post = dict(auth, **{"Content-Type": "application/json"})
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
start = time.monotonic()
for i in range(n):
    cid = ids[i % len(ids)]
    if mode == "post":
        c.request("POST", "/v1/interactions", json.dumps({
            "customer_id": cid, "source": "prof", "external_id": "p%s-%d-%d" % (run, os.getpid(), i),
            "channel": "web", "type": "purchase", "occurred_at": "2026-02-01T10:00:00Z",
            "amount": 12.5, "currency": "EUR"}), post)
        want = 201
    else:
        c.request("GET", "/v1/customers/" + cid, headers=auth)
        want = 200
    r = c.getresponse(); body = r.read()
    assert r.status == want, (r.status, body[:300])
print("%.6f" % (time.monotonic() - start))
PY
}

# CPU ticks (utime+stime) of a list of pids.
ticks() {
    local t=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$((t + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
    done
    echo "$t"
}
backend_pids() {
    "${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'
                     AND backend_type = 'client backend'" | tr '\n' ' '
}

log "seeding $CUSTOMERS customers into $DB ($CODE)"
CRM_BOOTSTRAP_ADMIN_KEY=$KEY "$SERVER_BIN" "${SERVER_ARGS[@]}" > "$WORK/server.log" 2>&1 &
SERVER=$!
wait_up
CRM_SEED_KEY=$KEY python3 "$ROOT/bench/seed.py" "$PORT" "$CUSTOMERS" "$WORK/ids.txt" prof 1

log "CPU time per request ($REQUESTS ${REQUEST^^}s, no valgrind)"
drive "$WARMUP" >/dev/null
read -ra BACKENDS <<< "$(backend_pids)"
HZ=$(getconf CLK_TCK)
S0=$(ticks "$SERVER"); B0=$(ticks "${BACKENDS[@]}")
WALL=$(drive "$REQUESTS")
S1=$(ticks "$SERVER"); B1=$(ticks "${BACKENDS[@]}")
us() { awk -v t="$1" -v hz="$HZ" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }'; }
CPU_SERVER=$(us $((S1 - S0)))
CPU_BACKEND=$(us $((B1 - B0)))
WALL_US=$(awk -v s="$WALL" -v n="$REQUESTS" 'BEGIN { printf "%.0f", s / n * 1e6 }')
log "wall ${WALL_US} us/req, server ${CPU_SERVER} us/req, backends ${CPU_BACKEND} us/req"

log "PostgreSQL backend side (perf)"
PERF_REPORT=
if ! command -v perf >/dev/null 2>&1; then
    PERF_STATUS="perf is not installed: the backend side was not profiled."
else
    perf stat -e instructions true > "$WORK/perf-stat.txt" 2>&1 || true
    if grep -qE '<not supported>|<not counted>|not supported|Error' "$WORK/perf-stat.txt" ||
        ! grep -q instructions "$WORK/perf-stat.txt"; then
        HW=no
        PERF_STATUS="\`perf stat -e instructions true\` does not work on this machine (hardware counters: $(grep -oE '<not supported>|<not counted>' "$WORK/perf-stat.txt" | head -1 || echo 'error')); no instruction-based profile of the backend."
        EVENT=cpu-clock
    else
        HW=yes
        EVENT=instructions
        PERF_STATUS="perf record -e instructions of the PostgreSQL backends of $DB while $PERF_REQUESTS more GETs ran; perf report --no-children --sort dso,symbol, top 15:"
    fi
    if [ ${#BACKENDS[@]} -gt 0 ]; then
        perf record -e "$EVENT" -F 4000 -o "$WORK/perf.data" -p "$(IFS=,; echo "${BACKENDS[*]}")" \
            > "$WORK/perf-record.log" 2>&1 &
        PERF=$!
        sleep 1
        drive "$PERF_REQUESTS" >/dev/null
        kill -INT "$PERF" 2>/dev/null || true
        wait "$PERF" 2>/dev/null || true
        PERF=
        if perf report -i "$WORK/perf.data" --stdio --no-children --sort dso,symbol \
            > "$WORK/perf-report.txt" 2> "$WORK/perf-report.log" &&
            grep -qE '^\s+[0-9.]+%' "$WORK/perf-report.txt"; then
            PERF_REPORT=$WORK/perf-report.txt
            perf report -i "$WORK/perf.data" --stdio --no-children --sort dso \
                > "$WORK/perf-report-dso.txt" 2>> "$WORK/perf-report.log" || true
            if [ "$HW" = no ]; then
                PERF_STATUS="$PERF_STATUS Instead: perf record -e cpu-clock (software timer sampling, so time rather than instructions, noisy on a shared machine) of the PostgreSQL backends of $DB while $PERF_REQUESTS more GETs ran; perf report --no-children --sort dso,symbol, top 15:"
            fi
        else
            PERF_STATUS="$PERF_STATUS perf record -e $EVENT of the backends gave no samples (see .run/prof/$LABEL/perf-record.log)."
        fi
    else
        PERF_STATUS="$PERF_STATUS No backend connections of $DB were found."
    fi
fi
stop_server

log "callgrind: $REQUESTS ${REQUEST^^}s (warm-up $WARMUP not counted)"
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    "$SERVER_BIN" "${SERVER_ARGS[@]}" > "$WORK/server-callgrind.log" 2>&1 &
SERVER=$!
wait_up
drive "$WARMUP" >/dev/null
callgrind_control -z "$SERVER" > "$WORK/callgrind-control.log" 2>&1 ||
    { cat "$WORK/callgrind-control.log" >&2; exit 1; }
CG_WALL=$(drive "$REQUESTS")
callgrind_control -d "$SERVER" >> "$WORK/callgrind-control.log" 2>&1 ||
    { cat "$WORK/callgrind-control.log" >&2; exit 1; }
stop_server
[ -s "$WORK/callgrind.out.1" ] || { echo "no callgrind dump (see $WORK)" >&2; exit 1; }
log "callgrind run took ${CG_WALL}s"

WHAT='`GET /v1/customers/{id}`'
[ "$REQUEST" = post ] && WHAT='`POST /v1/interactions` (a new purchase of a seeded customer, by customer_id)'
SETUP="$REQUESTS sequential $WHAT over one keep-alive connection (python http.client, ids round-robin over $CUSTOMERS customers seeded through the batch API into a fresh database $DB), after $WARMUP warm-up requests; server \`--pool-size 4 --rate-limit 0\`, access log on (default), build debugoptimized; $(nproc) cores shared with other work. Raw files: .run/prof/$LABEL/."
M_LABEL=$LABEL M_DATE=$(date -u +%FT%TZ) M_CODE=$CODE M_REQUESTS=$REQUESTS M_CUSTOMERS=$CUSTOMERS \
M_CALLGRIND=$WORK/callgrind.out.1 M_SETUP=$SETUP M_WALL=$WALL_US M_SERVER=$CPU_SERVER \
M_BACKEND=$CPU_BACKEND M_DB=$DB M_PERF_STATUS=$PERF_STATUS M_PERF_REPORT=$PERF_REPORT \
M_PERF_REPORT_DSO=${PERF_REPORT:+$WORK/perf-report-dso.txt} \
python3 - "$WORK/metrics.json" <<'PY'
import json, os, sys
e = os.environ
json.dump({
    "label": e["M_LABEL"], "date": e["M_DATE"], "code": e["M_CODE"],
    "requests": int(e["M_REQUESTS"]), "customers": int(e["M_CUSTOMERS"]),
    "callgrind": e["M_CALLGRIND"], "setup": e["M_SETUP"],
    "cpu": {"wall_us": e["M_WALL"], "server_us": e["M_SERVER"], "backend_us": e["M_BACKEND"],
            "db": e["M_DB"]},
    "perf": {"status": e["M_PERF_STATUS"], "report": e["M_PERF_REPORT"],
             "report_dso": e["M_PERF_REPORT_DSO"]},
}, open(sys.argv[1], "w"), indent=1)
PY
python3 "$ROOT/bench/profile_report.py" "$ROOT/bench/profile_results.md" "$WORK/metrics.json"
log "wrote bench/profile_results.md (section $LABEL)"
