#!/usr/bin/env bash
# High-availability loopback test: losing the primary. A pg_auto_failover
# formation on 127.0.0.1 (Debian's postgresql-15-auto-failover: a monitor, a
# primary and a secondary with synchronous replication, each run by its own
# `pg_autoctl run`), one crm-server whose --db is the libpq multi-host
# conninfo of both nodes with target_session_attrs=read-write, then
# tests/ha/test_ha.py: 16 clients POST interactions while the primary is
# lost, twice (its postmaster SIGKILLed; then, once the old primary has
# rejoined, the new primary's whole node: pg_autoctl and Postgres), and the
# test checks the promotion, the server's reconnection, that every
# acknowledged interaction survived, that re-posting the failed ones is
# idempotent, and how long writes stopped. About 50 s on 2 cores.
# CRM_HA_PRODUCTION_TIMEOUTS=1 keeps pg_auto_failover's default detection
# timeouts (then also set HA_RESUME_BOUND=120: the whole-node loss takes
# about 50 s); CRM_HA_PORT_BASE moves the ports.
#
# Everything lives under $RUN_DIR/ha (wiped at start; pg_autoctl's own
# configuration and state files too, through XDG_CONFIG_HOME/XDG_DATA_HOME/
# XDG_RUNTIME_DIR) and is torn down on exit; the dev cluster under .run/pg is
# not touched. Ends with "ha: N passed, N failed"; exits non-zero on any
# failure. Works as root (PostgreSQL and pg_autoctl then run as user postgres)
# and as a normal user.
set -uo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"

HA_DIR=$RUN_DIR/ha
# Unix socket paths must stay short (< 108 bytes).
HA_SOCK=/tmp/crm-ha-$(printf '%s' "$ROOT" | md5sum | cut -c1-10)
MONITOR_DATA=$HA_DIR/monitor
NODE1_DATA=$HA_DIR/node1
NODE2_DATA=$HA_DIR/node2
BIN=$ROOT/build/crm-server
T0=$(date +%s%N)
elapsed() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }  # ms since start

CRM_PID=
BIN_PG=
TORN_DOWN=
AUTOCTL_PIDS=()

# Ports: the first free odd ones from 55451 upward (tests/scaleout takes its
# ports from 55400), each used once; see tests/scaleout/run.sh for why odd.
NEXT_PORT=${CRM_HA_PORT_BASE:-55451}
tcp_port_busy() {
    port_in_use "$1" && return 0
    command -v ss >/dev/null 2>&1 && [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
}
pick_port() {  # pick_port VAR: the next free port into VAR
    [ $((NEXT_PORT % 2)) -eq 1 ] || NEXT_PORT=$((NEXT_PORT + 1))
    while tcp_port_busy "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 2)); done
    printf -v "$1" '%s' "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 2))
}

# pg_autoctl as the cluster owner, with its files under $HA_DIR/xdg and the
# PostgreSQL binaries of pg_bindir on PATH.
AUTOCTL=(env XDG_CONFIG_HOME="$HA_DIR/xdg/config" XDG_DATA_HOME="$HA_DIR/xdg/data"
         XDG_RUNTIME_DIR="$HA_DIR/xdg/run" PGHOST="$HA_SOCK" pg_autoctl)
[ "$(id -u)" -eq 0 ] && AUTOCTL=(runuser -u postgres -- "${AUTOCTL[@]}")
autoctl() { PATH="$BIN_PG:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" "${AUTOCTL[@]}" "$@"; }

stop_formation() {
    local d
    for d in "$NODE2_DATA" "$NODE1_DATA" "$MONITOR_DATA"; do
        [ -f "$d/pg_autoctl.cfg" ] || [ -f "$d/postmaster.pid" ] || continue
        autoctl stop --pgdata "$d" --immediate >/dev/null 2>&1
    done
    # Each pg_autoctl runs in a session of its own (run_autoctl): what is
    # left of it (a keeper orphaned by the test's SIGKILL) goes with its group.
    local p
    for p in "${AUTOCTL_PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$p" 2>/dev/null
    done
    # Whatever pg_autoctl left running (e.g. it was killed itself).
    for d in "$NODE2_DATA" "$NODE1_DATA" "$MONITOR_DATA"; do
        [ -f "$d/postmaster.pid" ] && [ -n "$BIN_PG" ] &&
            as_pg_owner "$BIN_PG/pg_ctl" -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1
    done
    return 0
}

teardown() {
    [ -n "$TORN_DOWN" ] && return 0
    TORN_DOWN=1
    log "tearing down"
    if [ -n "$CRM_PID" ]; then
        kill -TERM "$CRM_PID" 2>/dev/null
        wait "$CRM_PID" 2>/dev/null
    fi
    stop_formation
    rm -rf "$HA_SOCK"
    return 0
}

finish() {  # finish PASSED FAILED
    teardown
    log "logs in $HA_DIR (run took $(elapsed) ms)"
    echo "ha: $1 passed, $2 failed"
    [ "$2" -eq 0 ] && [ "$1" -gt 0 ]
    exit $?
}

setup_failed() {
    echo "!! HA set-up failed: $*" >&2
    local f
    for f in "$HA_DIR"/*.log; do
        [ -s "$f" ] || continue
        echo "---- tail of $f ----" >&2
        tail -n 15 "$f" >&2
    done
    finish 0 1
}

trap 'teardown' EXIT
trap 'teardown; exit 130' INT TERM

# ---------------------------------------------------------------------------
ensure_packages || setup_failed "installing packages"
BIN_PG=$(pg_bindir) || setup_failed "no PostgreSQL binaries"
PG_MAJOR=$(basename "$(dirname "$BIN_PG")")
# pg_auto_failover for the installed PostgreSQL (it pulls in pg-auto-failover-cli).
PACKAGES=("postgresql-$PG_MAJOR-auto-failover")
ensure_packages || setup_failed "installing postgresql-$PG_MAJOR-auto-failover"
command -v pg_autoctl >/dev/null || setup_failed "pg_autoctl not installed"
build build --buildtype=debugoptimized || setup_failed "build"

# A previous run may have left a formation running (killed script): stop it,
# then kill what is left in its pg_autoctl sessions (process groups).
stop_formation
if [ -s "$HA_DIR/autoctl.pgids" ]; then
    while read -r g; do
        for f in /proc/[0-9]*/stat; do
            read -r pid comm _ _ pgrp _ < "$f" 2>/dev/null || continue
            [ "$pgrp" = "$g" ] || continue
            case $comm in "(pg_autoctl)" | "(postgres)") kill -KILL "$pid" 2>/dev/null ;; esac
        done
    done < "$HA_DIR/autoctl.pgids"
fi
p=$(cat "$HA_DIR/crm.pid" 2>/dev/null) &&
    { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null | grep -qF -- "$BIN --listen 127.0.0.1" &&
    kill "$p"
rm -rf "$HA_DIR" "$HA_SOCK"
mkdir -p "$HA_DIR/xdg/config" "$HA_DIR/xdg/data" "$HA_DIR/xdg/run" "$HA_SOCK"
chmod 700 "$HA_DIR/xdg/run"
if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres: "$HA_DIR" "$HA_SOCK"
    d=$HA_DIR
    while [ "$d" != "/" ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
fi
# initdb (run by pg_autoctl) names the superuser after the OS user.
PG_SUPER=$(as_pg_owner id -un)
PSQL=("$BIN_PG/psql" -X -q -At -h 127.0.0.1 -U "$PG_SUPER" -v ON_ERROR_STOP=1)

# run_autoctl NAME ARGS...: `pg_autoctl ARGS` in the background (it stays in
# the foreground as the node's supervisor), output in $HA_DIR/NAME.log.
run_autoctl() {
    local name=$1
    shift
    PATH="$BIN_PG:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" setsid "${AUTOCTL[@]}" "$@" \
        >>"$HA_DIR/$name.log" 2>&1 &
    AUTOCTL_PIDS+=($!)
    echo "$!" >> "$HA_DIR/autoctl.pgids"
}

# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for i in $(seq $((secs * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    setup_failed "$what (not within $secs s)"
}

monitor_sql() { "${PSQL[@]}" -p "$MONITOR_PORT" -d pg_auto_failover -c "$1"; }
# node_in_state NODE_PORT STATE: reported and assigned state both STATE.
node_in_state() {
    [ "$(monitor_sql "SELECT reportedstate || '/' || goalstate FROM pgautofailover.node
                      WHERE nodeport = $1")" = "$2/$2" ]
}

# pg_autoctl would run initdb itself, but with the default socket directory
# (/var/run/postgresql, not writable by every user): initdb here with the
# sockets in $HA_SOCK; pg_autoctl takes an existing data directory as it is,
# and the secondary's pg_basebackup copies the setting. No spread checkpoints:
# the secondary's pg_basebackup waits for one (90 s on an idle test cluster).
init_data() {
    as_pg_owner "$BIN_PG/initdb" -D "$1" --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$HA_DIR/initdb-$(basename "$1").log" 2>&1 || setup_failed "initdb $1"
    printf '%s\n' "" "# --- crm HA test ---" "unix_socket_directories = '$HA_SOCK'" \
        "shared_buffers = 32MB" "fsync = off" \
        "checkpoint_completion_target = 0" |
        as_pg_owner tee -a "$1/postgresql.conf" >/dev/null
}

# --- monitor -----------------------------------------------------------------
pick_port MONITOR_PORT
init_data "$MONITOR_DATA"
log "pg_autoctl create monitor (port $MONITOR_PORT)"
run_autoctl monitor create monitor --pgdata "$MONITOR_DATA" --pgport "$MONITOR_PORT" \
    --hostname 127.0.0.1 --listen 127.0.0.1 --auth trust --no-ssl --run
wait_for 60 "monitor up" monitor_sql "SELECT 1 FROM pgautofailover.formation"
MONITOR_URI="postgres://autoctl_node@127.0.0.1:$MONITOR_PORT/pg_auto_failover?sslmode=disable"

# Failure detection. pg_auto_failover's defaults (production values, see
# deploy/pg_auto_failover.md): health_check_period 5 s, health_check_timeout
# 5 s, health_check_max_retries 2, health_check_retry_delay 2 s,
# node_considered_unhealthy_timeout 20 s, primary_demote_timeout 30 s. A
# killed postmaster is reported by the node's own keeper within a second and
# needs none of them; they decide when the whole node (keeper included) goes
# silent: the monitor waits for unhealthy, then gives the old primary
# primary_demote_timeout to demote itself before promoting the secondary.
# That must stay above the keepers' network_partition_timeout (a primary cut
# off from the monitor and its standby demotes itself after that long), so
# both are shortened here, in the same order (5 s < 10 s).
# CRM_HA_PRODUCTION_TIMEOUTS=1 keeps pg_auto_failover's defaults (slower:
# about a minute of outage when the whole node is lost).
TUNED=(health_check_period=1000 health_check_timeout=1000 health_check_max_retries=1
       health_check_retry_delay=500 node_considered_unhealthy_timeout=5000
       primary_demote_timeout=10000)
if [ "${CRM_HA_PRODUCTION_TIMEOUTS:-0}" = 1 ]; then
    log "keeping pg_auto_failover's default timeouts"
    TUNED=()
fi
for setting in "${TUNED[@]}"; do
    monitor_sql "ALTER SYSTEM SET pgautofailover.${setting%%=*} = ${setting#*=}" ||
        setup_failed "tuning the monitor"
done
monitor_sql "SELECT pg_reload_conf()" >/dev/null

# --- primary, then secondary -------------------------------------------------
# create_node NAME DATA PORT_VAR
create_node() {
    pick_port "$3"
    [ "$1" = node1 ] && init_data "$2"
    log "pg_autoctl create postgres $1 (port ${!3})"
    run_autoctl "$1" create postgres --pgdata "$2" --pgport "${!3}" --pgctl "$BIN_PG/pg_ctl" \
        --name "$1" --hostname 127.0.0.1 --listen 127.0.0.1 --auth trust --no-ssl \
        --dbname crm --monitor "$MONITOR_URI" --run
}
create_node node1 "$NODE1_DATA" NODE1_PORT
wait_for 90 "node1 primary" node_in_state "$NODE1_PORT" single
[ "${CRM_HA_PRODUCTION_TIMEOUTS:-0}" = 1 ] ||
    autoctl config set --pgdata "$NODE1_DATA" timeout.network_partition_timeout 5 >/dev/null ||
    setup_failed "node1 network_partition_timeout"
# The server's role and database (the secondary gets them by replication).
"${PSQL[@]}" -p "$NODE1_PORT" -d crm -c "CREATE ROLE $PG_USER LOGIN;
    ALTER DATABASE crm OWNER TO $PG_USER; ALTER SCHEMA public OWNER TO $PG_USER" ||
    setup_failed "creating role $PG_USER"
create_node node2 "$NODE2_DATA" NODE2_PORT
wait_for 120 "node2 secondary" node_in_state "$NODE2_PORT" secondary
[ "${CRM_HA_PRODUCTION_TIMEOUTS:-0}" = 1 ] ||
    autoctl config set --pgdata "$NODE2_DATA" timeout.network_partition_timeout 5 >/dev/null ||
    setup_failed "node2 network_partition_timeout"
wait_for 60 "node1 primary" node_in_state "$NODE1_PORT" primary
log "formation up after $(elapsed) ms: $(autoctl show uri --pgdata "$MONITOR_DATA" \
    --formation default 2>/dev/null)"
[ "$("${PSQL[@]}" -p "$NODE1_PORT" -d crm -c "SHOW synchronous_standby_names")" != "" ] ||
    setup_failed "no synchronous standby on the primary"

# --- crm-server on the multi-host conninfo -----------------------------------
ADMIN_KEY=$(python3 -c 'import secrets, uuid
print("crm_" + uuid.uuid4().hex + "_" + secrets.token_urlsafe(32))')
echo "$ADMIN_KEY" > "$HA_DIR/admin.key"
chmod 600 "$HA_DIR/admin.key"
DB_URL="host=127.0.0.1,127.0.0.1 port=$NODE1_PORT,$NODE2_PORT dbname=crm user=$PG_USER"
DB_URL+=" target_session_attrs=read-write connect_timeout=2"
start_crm() {
    pick_port CRM_PORT
    CRM_BOOTSTRAP_ADMIN_KEY=$ADMIN_KEY "$BIN" --listen 127.0.0.1 --port "$CRM_PORT" \
        --db "$DB_URL" --db-wait 10 --drain-timeout 5 --rate-limit 0 \
        >>"$HA_DIR/crm.log" 2>&1 &
    local pid=$!
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 1; }
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CRM_PORT/ready")" = 200 ]
        then
            CRM_PID=$pid
            echo "$pid" > "$HA_DIR/crm.pid"
            return 0
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null
    return 1
}
for attempt in 1 2 3; do
    start_crm && break
    grep -qi "in use" "$HA_DIR/crm.log" || setup_failed "crm-server did not start"
done
[ -n "$CRM_PID" ] || setup_failed "crm-server: no free port"
log "crm-server on port $CRM_PORT; set-up done after $(elapsed) ms"

# --- tests -------------------------------------------------------------------
OUT=$HA_DIR/test.out
HA_CRM_PORT=$CRM_PORT HA_ADMIN_KEY=$ADMIN_KEY HA_PG_BINDIR=$BIN_PG HA_PG_SUPER=$PG_SUPER \
HA_MONITOR_PORT=$MONITOR_PORT HA_NODE_PORTS="$NODE1_PORT,$NODE2_PORT" \
HA_NODE_DATA="$NODE1_DATA,$NODE2_DATA" HA_MONITOR_DATA=$MONITOR_DATA HA_DIR=$HA_DIR \
HA_XDG="$HA_DIR/xdg" HA_CRM_PID=$CRM_PID \
    python3 "$ROOT/tests/ha/test_ha.py" "$@" 2>&1 | tee "$OUT"
rc=${PIPESTATUS[0]}
line=$(grep -E '^ha: [0-9]+ passed, [0-9]+ failed' "$OUT" | tail -n 1)
if [ -z "$line" ]; then
    echo "!! test_ha.py printed no summary (exit $rc)"
    finish 0 1
fi
passed=$(echo "$line" | sed -E 's/ha: ([0-9]+) passed.*/\1/')
failed=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "!! test_ha.py exited $rc"
    failed=1
fi
kill -0 "$CRM_PID" 2>/dev/null || { echo "!! crm-server died during the test"; failed=$((failed + 1)); }
finish "$passed" "$failed"
