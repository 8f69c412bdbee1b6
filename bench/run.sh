#!/usr/bin/env bash
# Benchmarks of the hot paths (issue 6) against ceilings measured in the same
# run, at every connection count:
#   HTTP ceiling = crm-bench-ceiling (bench/ceiling.c): bare libmicrohttpd with
#                  the real server's daemon mode and flags, fixed /health-sized
#                  reply, no database;
#   DB ceilings  = pgbench select-only (-S) and a single-row INSERT, both
#                  prepared, on the same cluster with as many clients.
# The ceilings of a connection count run right before its scenarios.
# GET /health on the real server is an extra row (routing, JSON, access log).
# Each row: req/s (POST and batch: interactions stored per second, counted
# in the database), p50, p99, ratio to its database ceiling (profile GETs
# and segment page vs select-only, POSTs vs insert) and
# to the bare MHD ceiling, and the server's peak RSS during that row (VmHWM,
# reset before each row through /proc/PID/clear_refs). The issue's targets are
# checked (PASS/MISS). Writes bench/results.md. Uses wrk and pgbench; bounded
# (DURATION s per scenario), loopback only.
# Usage: bench/run.sh [customers=10000] [duration=10] [connections="1 16 64"]
# Environment: CRM_BENCH_PORT (server, 18080), CRM_BENCH_CEILING_PORT (bare
# MHD server, port+9), CRM_BENCH_BUILD (build directory, build),
# CRM_BENCH_HTTP_THREADS (both servers' HTTP threads), CRM_BENCH_POOL,
# CRM_BENCH_PG_CPUS and CRM_BENCH_CLIENT_CPUS (taskset CPU lists, both or
# neither: PostgreSQL on the first, the server, the ceiling, wrk and pgbench
# on the second, to measure with PostgreSQL on cores of its own).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

CUSTOMERS=${1:-10000}
DURATION=${2:-10}
CONN_LIST=${3:-"1 16 64"}
CONN_LIST=$(echo "$CONN_LIST" | tr ' ' '\n' | grep . | sort -n | uniq | tr '\n' ' ')
CONNS=$(echo "$CONN_LIST" | tr ' ' '\n' | grep . | tail -n 1)
PORT=${CRM_BENCH_PORT:-18080}
CEIL_PORT=${CRM_BENCH_CEILING_PORT:-$((PORT + 9))}
BUILD=${CRM_BENCH_BUILD:-build}
# Issue 6 targets.
T_GET_PCT=70 T_POST_PCT=70 T_BATCH_EPS=50000 T_P99_MS=5 T_P99_CONNS=64

PACKAGES+=(wrk)
ensure_packages
build "$BUILD" --buildtype=debugoptimized ||
    { echo "build failed: see ninja -C $BUILD" >&2; exit 1; }
CODE="commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ -n "$(git -C "$ROOT" status --porcelain -- src include sql 2>/dev/null)" ]; then
    CODE="$CODE (uncommitted changes in src/include/sql)"
fi
for p in "$PORT" "$CEIL_PORT"; do
    if port_in_use "$p"; then
        echo "port $p is in use; set CRM_BENCH_PORT / CRM_BENCH_CEILING_PORT" >&2
        exit 1
    fi
done
start_postgres
# The kernel's autogroup scheduler shares the CPUs between sessions, not
# threads; pg_ctl starts PostgreSQL in a session of its own, so on 2 cores a
# runnable backend waited up to 256 ms (perf sched latency) while the
# server's threads ran, and profile GET p99 at 16 connections was 60-700 ms
# instead of 5 ms. Production runs PostgreSQL as a service in its own cgroup
# (or host), where autogroup does not apply, so the run switches it off when
# it may, and puts it back on exit; results.md says which.
AUTOGROUP_FILE=/proc/sys/kernel/sched_autogroup_enabled
AUTOGROUP_WAS=$(cat "$AUTOGROUP_FILE" 2>/dev/null || echo absent)
AUTOGROUP_NOTE="scheduler autogroup: $AUTOGROUP_WAS"
if [ "$AUTOGROUP_WAS" = 1 ] && [ "${CRM_BENCH_KEEP_AUTOGROUP:-0}" != 1 ] &&
    { echo 0 > "$AUTOGROUP_FILE"; } 2>/dev/null; then
    AUTOGROUP_NOTE="scheduler autogroup: switched off for the run (was on; CRM_BENCH_KEEP_AUTOGROUP=1 keeps it)"
fi
restore_autogroup() {
    if [ "$AUTOGROUP_WAS" = 1 ]; then echo 1 2>/dev/null > "$AUTOGROUP_FILE" || true; fi
}
trap restore_autogroup EXIT
# Optional CPU split (see the usage above). PostgreSQL's running processes are
# moved, and the backends forked later inherit the postmaster's CPUs; all of
# them get every CPU back on exit (the cluster is shared with the tests).
PG_CPUS=${CRM_BENCH_PG_CPUS:-} CLIENT_CPUS=${CRM_BENCH_CLIENT_CPUS:-}
ON_CLIENT=() CPU_NOTE="no CPU pinning"
if [ -n "$PG_CPUS" ] || [ -n "$CLIENT_CPUS" ]; then
    if [ -z "$PG_CPUS" ] || [ -z "$CLIENT_CPUS" ]; then
        echo "set both CRM_BENCH_PG_CPUS and CRM_BENCH_CLIENT_CPUS" >&2
        exit 1
    fi
    ON_CLIENT=(taskset -c "$CLIENT_CPUS")
    CPU_NOTE="PostgreSQL pinned to CPUs $PG_CPUS, server, ceiling, wrk and pgbench to CPUs $CLIENT_CPUS"
fi
pin_postgres() { # cpu-list
    local pm
    pm=$(head -n 1 "$PG_DATA/postmaster.pid")
    for p in "$pm" $(pgrep -P "$pm"); do taskset -a -p -c "$1" "$p" >/dev/null; done
}
if [ -n "$PG_CPUS" ]; then
    pin_postgres "$PG_CPUS"
    trap 'restore_autogroup; pin_postgres "0-$(( $(nproc) - 1 ))"' EXIT
fi
# A fresh crm_bench each run: every run sees the same data (the POST rows
# of earlier runs would grow it) and the current migrations.
create_database crm_bench recreate
create_database crm_pgbench
BIN=$(pg_bindir)
WORK=$RUN_DIR/bench
mkdir -p "$WORK"
CRM_BENCH_RUN=$(date +%s)
export CRM_BENCH_CUSTOMERS=$CUSTOMERS CRM_BENCH_RUN CRM_BENCH_IDS=$WORK/ids.txt

KEY=$(admin_key)
export CRM_BENCH_KEY=$KEY
# The server's default pool size unless told otherwise: on 2 cores more
# backends than that only add context switches.
POOL=${CRM_BENCH_POOL:-16}
# HTTP worker threads of the server and of the bare MHD ceiling alike
# (--http-threads; unset: the server's default, 4 per CPU; 0: one thread per
# connection).
HTTP_THREADS=${CRM_BENCH_HTTP_THREADS:-}
CRM_BOOTSTRAP_ADMIN_KEY=$KEY "${ON_CLIENT[@]}" "$ROOT/$BUILD/crm-server" --port "$PORT" --db "$(conninfo crm_bench)" \
    --pool-size "$POOL" --rate-limit 0 ${HTTP_THREADS:+--http-threads "$HTTP_THREADS"} \
    > "$WORK/server.log" 2>&1 &
SERVER=$!
"${ON_CLIENT[@]}" "$ROOT/$BUILD/bench/crm-bench-ceiling" "$CEIL_PORT" $HTTP_THREADS > "$WORK/ceiling.log" 2>&1 &
CEILING=$!
trap 'kill $SERVER $CEILING 2>/dev/null || true; restore_autogroup
      [ -z "$PG_CPUS" ] || pin_postgres "0-$(( $(nproc) - 1 ))"' EXIT
wait_up() { # port pid
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    exit 1
}
wait_up "$PORT" "$SERVER"
wait_up "$CEIL_PORT" "$CEILING"

log "seeding $CUSTOMERS customers through the batch API"
CRM_SEED_KEY=$KEY python3 "$ROOT/bench/seed.py" "$PORT" "$CUSTOMERS" "$CRM_BENCH_IDS" bench \
    $((CUSTOMERS / 2000))

# Peak RSS per row: writing 5 to clear_refs resets VmHWM to the current RSS
# (Linux >= 4.0); where that is not allowed the figure is the peak since start.
HWM_RESET=yes
reset_hwm() { echo 5 2>/dev/null > "/proc/$1/clear_refs" || HWM_RESET=no; }
reset_hwm "$SERVER"
read_hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# wrk latency ("812.00us", "1.20ms", "1.96s", "2.00m") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v == "") { print "-"; exit }
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
        if (f < 0) print "-"; else printf "%.2f", n * f }'
}

# wrk_run name connections port pid path-or-script.lua
# -> name|connections|req/s|p50 ms|p99 ms|non-2xx|socket errors|peak RSS kB
wrk_run() {
    local name=$1 conns=$2 port=$3 pid=$4 target=$5 out threads=2
    [ "$conns" -lt 2 ] && threads=1
    reset_hwm "$pid"
    if [[ $target == *.lua ]]; then
        out=$("${ON_CLIENT[@]}" wrk -t$threads -c"$conns" -d"${DURATION}s" --latency -H "Authorization: Bearer $KEY" \
              -s "$ROOT/bench/$target" "http://127.0.0.1:$port")
    else
        out=$("${ON_CLIENT[@]}" wrk -t$threads -c"$conns" -d"${DURATION}s" --latency -H "Authorization: Bearer $KEY" \
              "http://127.0.0.1:$port$target")
    fi
    echo "$out" > "$WORK/$name-$conns.txt"
    local rps p50 p99 non2xx errs
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
    p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
    # No request completed: wrk prints zero latencies, which are no measurement.
    if [ "$(echo "$out" | awk '/requests in/ {print $1; exit}')" = 0 ]; then p50=- p99=-; fi
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    errs=$(echo "$out" | awk '/Socket errors/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}')
    echo "$name|$conns|$rps|$p50|$p99|${non2xx:-0}|${errs:-0}|$(read_hwm "$pid")"
}

# Interactions stored in crm_bench so far (reltuples would lag; count(*) of
# a few hundred thousand rows takes tens of ms, outside the measured window).
stored_count() {
    psql -X -qtA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d crm_bench \
         -c "SELECT count(*) FROM crm.interactions"
}

# Build every customer's profile document that writes have invalidated.
warm_profiles() {
    psql -X -qtA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d crm_bench \
         -c "SELECT count(doc) FROM crm.profile_read" >/dev/null
}

# stored_run name connections script.lua -> wrk_run's row + |interactions stored
# during it. The POST and batch rates are counted from what was stored, so a
# load that repeats keys (answered as cheap duplicates) cannot pass for one
# that creates.
stored_run() {
    local before row
    before=$(stored_count)
    row=$(wrk_run "$1" "$2" "$PORT" "$SERVER" "$3")
    echo "$row|$(( $(stored_count) - before ))"
}

# pgbench_run name connections extra-args -> tps (on crm_pgbench, or PGBENCH_DB)
pgbench_run() {
    local name=$1 conns=$2 threads=2 out tps; shift 2
    [ "$conns" -lt 2 ] && threads=1
    out=$("${ON_CLIENT[@]}" "$BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -c "$conns" -j "$threads" \
          -T "$DURATION" -M prepared "$@" "${PGBENCH_DB:-crm_pgbench}" 2>&1)
    echo "$out" > "$WORK/$name-$conns.txt"
    tps=$(echo "$out" | awk '/^tps/ {print $3; exit}')
    printf '%.0f\n' "${tps:-0}"
}

log "pgbench -i (scale 10) into crm_pgbench"
"$BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -i -q -s 10 crm_pgbench >/dev/null 2>&1
printf 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now());\n' \
    > "$WORK/insert.sql"

# The server's own statements for two scenarios, as src/store.c prepares
# them ("lookup" and "ingest"), with the arguments the wrk scripts' requests
# give them, run by pgbench on crm_bench: what the database alone allows for
# profile_by_email and interaction_post, so the rows can say how much the
# server and HTTP add to them.
cat > "$WORK/own_lookup.sql" <<SQL
\set c random(0, $((CUSTOMERS - 1)))
SELECT d::text, d->>'customer_id', d->>'merged_into', (d ? 'gone')::text FROM (SELECT (SELECT r.doc FROM crm.profile_read r WHERE r.customer_id = i.customer_id) AS d FROM crm.identifiers i WHERE i.kind = 'email' AND i.namespace = '' AND i.value = 'bench-' || :c || '@bench.example' OFFSET 0) AS x;
SQL
cat > "$WORK/own_ingest.sql" <<SQL
\set c random(0, $((CUSTOMERS - 1)))
SELECT crm.ingest(NULL, ('[{"kind":"email","value":"bench-' || :c || '@bench.example"}]')::jsonb, gen_random_uuid(), gen_random_uuid(), 'pgbench-own', gen_random_uuid()::text, 'web', 'purchase', '2026-11-20T10:00:00Z'::timestamptz, 12.5, 'EUR', NULL, ARRAY[]::text[], '{}'::jsonb);
SQL

SEGMENT=$(curl -s -XPOST "http://127.0.0.1:$PORT/v1/segments" -H "Authorization: Bearer $KEY" \
          -H 'Content-Type: application/json' \
          -d "{\"name\": \"bench-$CRM_BENCH_RUN\", \"rule\": {\"has_identifier\": \"email\"}}" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["segment_id"])')

# Per connection count: its three ceilings, then its scenarios, so that each
# ratio compares runs close in time (the machine is shared; load drifts).
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A PG_SELECT PG_INSERT PG_LOOKUP PG_INGEST MHD
ROWS=()
for c in $CONN_LIST; do
    log "$c connections: ceilings (pgbench select-only, insert, bare MHD, the server's lookup and ingest statements), then scenarios; ${DURATION}s each"
    PG_SELECT[$c]=$(pgbench_run pgbench_select "$c" -S)
    PG_INSERT[$c]=$(pgbench_run pgbench_insert "$c" -f "$WORK/insert.sql")
    MHD[$c]=$(wrk_run bare_mhd "$c" "$CEIL_PORT" "$CEILING" /health)
    PG_INGEST[$c]=$(PGBENCH_DB=crm_bench pgbench_run own_ingest "$c" -f "$WORK/own_ingest.sql")
    # Writes (this ingest, the previous count's POST and batch rows)
    # invalidate the documents of the customers they touch; the profile rows
    # and the lookup statement read a warm cache. A miss costs more
    # (bench/load_profile.md).
    warm_profiles
    PG_LOOKUP[$c]=$(PGBENCH_DB=crm_bench pgbench_run own_lookup "$c" -f "$WORK/own_lookup.sql")
    ROWS+=("$(wrk_run health "$c" "$PORT" "$SERVER" /health)")
    ROWS+=("$(wrk_run profile_get "$c" "$PORT" "$SERVER" profile_get.lua)")
    ROWS+=("$(wrk_run profile_by_email "$c" "$PORT" "$SERVER" email_get.lua)")
    ROWS+=("$(wrk_run summary_get "$c" "$PORT" "$SERVER" summary_get.lua)")
    ROWS+=("$(stored_run interaction_post "$c" interaction_post.lua)")
    ROWS+=("$(stored_run batch_post_x100 "$c" batch_post.lua)")
    ROWS+=("$(wrk_run segment_first_page "$c" "$PORT" "$SERVER" \
              "/v1/segments/$SEGMENT/customers?limit=100")")
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

field() { echo "$1" | cut -d'|' -f"$2"; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "-"; else { p = 100 * a / b
                                          printf (p < 10 ? "%.1f" : "%.0f"), p } }'; }
mb() { awk -v k="$1" 'BEGIN { if (k > 0) printf "%.1f MB", k / 1024; else print "-" }'; }
num() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && a + 0 >= b + 0) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "-" && a + 0 < b + 0) }'; }
verdict() { if "$@"; then echo PASS; else echo MISS; fi; }

# One table row per scenario; SUMMARY keeps what the targets table needs.
declare -A SUMMARY
table_row() {
    local r=$1 name conns rps p50 p99 non2xx errs rss stored rate events dbname dbtps vsdb vsmhd
    local target result
    IFS='|' read -r name conns rps p50 p99 non2xx errs rss stored <<< "$r"
    events=$rps rate="$(num "$rps") req/s" dbname='' dbtps=''
    # POST and batch: interactions stored per second (see stored_run).
    [ -n "$stored" ] && events=$(awk -v n="$stored" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')
    case $name in
        profile_get|profile_by_email|summary_get|segment_first_page) dbname=select-only dbtps=${PG_SELECT[$conns]} ;;
        interaction_post)
            dbname=insert dbtps=${PG_INSERT[$conns]}
            rate="$events stored/s ($(num "$rps") req/s)" ;;
        batch_post_x100)
            dbname=insert dbtps=${PG_INSERT[$conns]}
            rate="$events events stored/s ($(num "$rps") req/s)" ;;
    esac
    vsdb=-
    [ -n "$dbname" ] && vsdb="$(pct "$events" "$dbtps")% of $dbname"
    vsmhd="$(pct "$rps" "$(field "${MHD[$conns]}" 3)")%"
    target=- result=-
    case $name in
        profile_get|profile_by_email)
            target=">= ${T_GET_PCT}% of select-only" result=$(verdict ge "$(pct "$events" "$dbtps")" "$T_GET_PCT")
            if [ "$conns" = "$T_P99_CONNS" ]; then
                target="$target; p99 < ${T_P99_MS} ms"
                lt "$p99" "$T_P99_MS" || result=MISS
            fi ;;
        interaction_post)
            target=">= ${T_POST_PCT}% of insert" result=$(verdict ge "$(pct "$events" "$dbtps")" "$T_POST_PCT") ;;
        batch_post_x100)
            target=">= $T_BATCH_EPS events/s" result=$(verdict ge "$events" "$T_BATCH_EPS") ;;
    esac
    # An error answer is no pass, however fast.
    if [ "$result" = PASS ] && [ "$non2xx" != 0 ]; then result="MISS (non-2xx)"; fi
    SUMMARY[$name/$conns]="$events|$p99|$dbtps|$non2xx"
    [ "$errs" != 0 ] && non2xx="$non2xx (+$errs socket errors)"
    echo "| $name | $conns | $rate | $p50 | $p99 | $non2xx | $vsdb | $vsmhd | $(mb "$rss") | $target | $result |"
}

target_row() { # text scenario kind(pct|eps|p99) threshold [db-name]
    local text=$1 name=$2 kind=$3 th=$4 c=$CONNS s events p99 dbtps non2xx measured result
    [ "$kind" = p99 ] && c=$T_P99_CONNS
    s=${SUMMARY[$name/$c]:-}
    if [ -z "$s" ]; then
        echo "| $text | not measured ($name at $c connections) | - |"
        return
    fi
    IFS='|' read -r events p99 dbtps non2xx <<< "$s"
    case $kind in
        pct) measured="$(num "$events")/s = $(pct "$events" "$dbtps")% of $5 $dbtps tps ($c connections)"
             result=$(verdict ge "$(pct "$events" "$dbtps")" "$th") ;;
        eps) measured="$events events/s ($c connections)"
             result=$(verdict ge "$events" "$th") ;;
        p99) # wrk keeps $c requests in flight, so by Little's law the mean
             # latency is $c / rate: the p99 cannot be below it.
             measured="p99 $p99 ms ($c connections; mean $(awk -v c="$c" -v r="$events" \
                 'BEGIN { if (r > 0) printf "%.2f", 1000 * c / r; else print "-" }') ms = $c in flight / $(num "$events")/s)"
             result=$(verdict lt "$p99" "$th") ;;
    esac
    if [ "$result" = PASS ] && [ "$non2xx" != 0 ]; then result="MISS ($non2xx non-2xx)"; fi
    echo "| $text | $measured | $result |"
}

PEAK=0
for r in "${ROWS[@]}"; do
    rss=$(field "$r" 8)
    if [ "${rss:-0}" -gt "$PEAK" ]; then PEAK=$rss; fi
done
# Scenario rows first (in this shell: they fill SUMMARY for the targets table).
for r in "${ROWS[@]}"; do table_row "$r"; done > "$WORK/rows.md"

{
    echo "# Benchmark results"
    echo
    echo "$(date -u +%FT%TZ), $CODE, $(nproc) cores ($( [ -n "$PG_CPUS" ] && echo "$CPU_NOTE" || echo "wrk, server and PostgreSQL share them"); other work on the machine adds noise), $CUSTOMERS customers, ${DURATION}s per scenario, server pool $POOL, HTTP threads ${HTTP_THREADS:-default (4 per CPU)}, $AUTOGROUP_NOTE. Latencies in ms (wrk). Load average before/after: $LOAD_BEFORE / $LOAD_AFTER."
    echo
    echo "## Targets (issue 6)"
    echo
    echo "Ratios at $CONNS connections, against the pgbench ceiling with the same number of clients."
    echo
    echo "| target | measured | result |"
    echo "|---|---|---|"
    target_row "profile GET (by id) >= ${T_GET_PCT}% of pgbench select-only tps" profile_get pct "$T_GET_PCT" select-only
    target_row "profile GET by email >= ${T_GET_PCT}% of pgbench select-only tps" profile_by_email pct "$T_GET_PCT" select-only
    target_row "single interaction POST >= ${T_POST_PCT}% of pgbench insert tps" interaction_post pct "$T_POST_PCT" insert
    target_row "batch ingest >= $T_BATCH_EPS events/s" batch_post_x100 eps "$T_BATCH_EPS"
    target_row "profile GET (by id) p99 < ${T_P99_MS} ms at $T_P99_CONNS connections" profile_get p99 "$T_P99_MS"
    target_row "profile GET by email p99 < ${T_P99_MS} ms at $T_P99_CONNS connections" profile_by_email p99 "$T_P99_MS"
    echo
    echo "## Ceilings"
    echo
    echo "Measured just before the scenarios of the same connection count. pgbench: -M prepared, scale 10, -c = connections. Bare MHD: crm-bench-ceiling (bench/ceiling.c), same daemon mode and flags as the server, fixed {\"status\":\"ok\"} reply. HTTP + select: 1 / (1/bare MHD + 1/select-only), what a service that answers each request with one bare MHD reply and one pgbench select could reach when both share these cores; as % of select-only, the highest profile GET ratio possible on this machine."
    echo
    echo "| connections | pgbench select-only tps | pgbench insert tps | bare MHD req/s | bare MHD p50 | bare MHD p99 | bare MHD peak RSS | HTTP + select |"
    echo "|---|---|---|---|---|---|---|---|"
    for c in $CONN_LIST; do
        m=${MHD[$c]}
        both=$(awk -v h="$(field "$m" 3)" -v d="${PG_SELECT[$c]}" 'BEGIN {
            if (h + 0 <= 0 || d + 0 <= 0) { print "-"; exit }
            b = 1 / (1 / h + 1 / d); printf "%.0f/s = %.0f%% of select-only", b, 100 * b / d }')
        echo "| $c | ${PG_SELECT[$c]} | ${PG_INSERT[$c]} | $(num "$(field "$m" 3)") | $(field "$m" 4) | $(field "$m" 5) | $(mb "$(field "$m" 8)") | $both |"
    done
    echo
    echo "## The server against its own SQL"
    echo
    echo "pgbench running the statement the server prepares for the scenario (src/store.c: \"lookup\" for GET /v1/customers?email=, \"ingest\" for POST /v1/interactions), on crm_bench, with the same kind of arguments, just after the ceilings above. The ratio is what the server, HTTP and wrk leave of the database's own rate for that work; the rest of the gap to select-only or insert is the statement itself."
    echo
    echo "| connections | lookup statement tps | profile_by_email | ratio | ingest statement tps | interaction_post | ratio |"
    echo "|---|---|---|---|---|---|---|"
    for c in $CONN_LIST; do
        get=$(field "${SUMMARY[profile_by_email/$c]}" 1) post=$(field "${SUMMARY[interaction_post/$c]}" 1)
        echo "| $c | ${PG_LOOKUP[$c]} | $(num "$get") req/s | $(pct "$get" "${PG_LOOKUP[$c]}")% | ${PG_INGEST[$c]} | $post stored/s | $(pct "$post" "${PG_INGEST[$c]}")% |"
    done
    echo
    echo "## Scenarios"
    echo
    echo "vs database: profile GETs and the segment page against pgbench select-only, POSTs against pgbench insert (batch: events/s against insert tps), same connection count. POST and batch rates are interactions stored (rows added to crm.interactions during the row, per second), not requests answered, so duplicates cannot count; wrk's req/s is in brackets. vs bare MHD: req/s against crm-bench-ceiling at the same connection count. Profile rows read a warm cache: every document the previous rows' writes invalidated is built again before the ceilings' lookup statement and the profile rows. Peak RSS: the server's VmHWM during that row$( [ "$HWM_RESET" = yes ] || echo ' (could not reset VmHWM: peak since server start)'). batch_post_x100 carries 100 events per request; its latencies are per request."
    echo
    echo "| scenario | connections | rate | p50 | p99 | non-2xx | vs database | vs bare MHD | peak RSS | target | result |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    cat "$WORK/rows.md"
    echo
    echo "Server peak RSS over the run: $(mb "$PEAK")."
} > "$WORK/results.md"
cp "$WORK/results.md" "$ROOT/bench/results.md"
cat "$ROOT/bench/results.md"
