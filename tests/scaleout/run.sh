#!/usr/bin/env bash
# Scale-out loopback test (issue 6): a fresh PostgreSQL primary and a streaming
# replica (pg_basebackup -R), PgBouncer in transaction mode in front of the
# primary, two crm-server instances (database through PgBouncer with
# --db-prepared 0, reads through --db-replica) and HAProxy round-robin in
# front of them, all on 127.0.0.1. Then tests/scaleout/test_scaleout.py runs
# against the proxy. Everything lives under $RUN_DIR/scaleout (wiped at start)
# and is torn down on exit; the dev cluster under .run/pg is not touched.
#
# Ends with "scaleout: N passed, N failed"; exits non-zero on any failure.
# Works as root (PostgreSQL and PgBouncer then run as user postgres) and as a
# normal user.
set -uo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"

PACKAGES+=(haproxy pgbouncer)
SO_DIR=$RUN_DIR/scaleout
# Unix socket paths must stay short (< 108 bytes): PostgreSQL and PgBouncer
# sockets live in /tmp under a name derived from this checkout's path.
SO_SOCK=/tmp/crm-so-$(printf '%s' "$ROOT" | md5sum | cut -c1-10)
PRIMARY_DATA=$SO_DIR/primary
REPLICA_DATA=$SO_DIR/replica
PGB_DIR=$SO_DIR/pgbouncer
BIN=$ROOT/build/crm-server
T0=$(date +%s%N)
elapsed() { echo $(( ($(date +%s%N) - T0) / 1000000 )); }  # ms since start

PIDS_CRM=()
HAPROXY_PID=
BIN_PG=
TORN_DOWN=

# ---------------------------------------------------------------------------
# Ports: the first free odd ones from 55400 upward, each used once. These lie
# in Linux's ephemeral range, where connect() takes even ports first (and odd
# ones only when the even ones run out), so an odd port is far less likely to
# be taken by the local end of an outgoing connection between picking and
# binding; a port counts as taken when any TCP socket uses it locally, not
# only a listener. on_free_port (below) still retries on "in use".
NEXT_PORT=${CRM_SCALEOUT_PORT_BASE:-55400}
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

# pid_of_ours PIDFILE PATTERN: the pid in PIDFILE if that process's command
# line contains PATTERN (a pid file left by a killed run may name a process
# that has nothing to do with us by now).
pid_of_ours() {
    local p
    [ -s "$1" ] || return 1
    p=$(cat "$1")
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    echo "$p"
}

stop_pgbouncer() {  # SIGTERM: immediate shutdown (SIGINT waits for clients)
    local p
    p=$(pid_of_ours "$PGB_DIR/pgbouncer.pid" "$PGB_DIR/pgbouncer.ini") || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PGB_DIR/pgbouncer.pid" 2>/dev/null
}

teardown() {
    [ -n "$TORN_DOWN" ] && return 0
    TORN_DOWN=1
    log "tearing down"
    [ -n "$HAPROXY_PID" ] && kill "$HAPROXY_PID" 2>/dev/null
    local p
    for p in "${PIDS_CRM[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS_CRM[@]}"; do wait "$p" 2>/dev/null; done
    [ -n "$HAPROXY_PID" ] && wait "$HAPROXY_PID" 2>/dev/null
    stop_pgbouncer
    if [ -n "$BIN_PG" ]; then
        local d
        for d in "$REPLICA_DATA" "$PRIMARY_DATA"; do
            [ -f "$d/postmaster.pid" ] &&
                as_pg_owner "$BIN_PG/pg_ctl" -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1
        done
    fi
    rm -rf "$SO_SOCK"
    return 0
}

finish() {  # finish PASSED FAILED
    teardown
    log "logs in $SO_DIR (run took $(elapsed) ms)"
    echo "scaleout: $1 passed, $2 failed"
    [ "$2" -eq 0 ] && [ "$1" -gt 0 ]
    exit $?
}

setup_failed() {
    echo "!! scale-out set-up failed: $*" >&2
    local f
    for f in "$SO_DIR"/*.log "$PGB_DIR"/*.log; do
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
build build --buildtype=debugoptimized || setup_failed "build"
BIN_PG=$(pg_bindir) || setup_failed "no PostgreSQL binaries"
command -v haproxy >/dev/null || setup_failed "haproxy not installed"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$PGBOUNCER" ] || setup_failed "pgbouncer not installed"

# A previous run may have left processes behind (killed script): stop them
# through their pid files before wiping.
for d in "$REPLICA_DATA" "$PRIMARY_DATA"; do
    [ -f "$d/postmaster.pid" ] && as_pg_owner "$BIN_PG/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
done
stop_pgbouncer
p=$(pid_of_ours "$SO_DIR/haproxy.pid" "$SO_DIR/haproxy.cfg") && kill "$p"
for f in "$SO_DIR"/crm?.pid; do
    p=$(pid_of_ours "$f" "$BIN --listen 127.0.0.1 --port") && kill "$p"
done
rm -rf "$SO_DIR" "$SO_SOCK"
mkdir -p "$SO_DIR" "$PGB_DIR" "$SO_SOCK"
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$SO_DIR" "$PGB_DIR" "$SO_SOCK"
    d=$SO_DIR
    while [ "$d" != "/" ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
fi
chmod 700 "$SO_SOCK"
[ "$(id -u)" -eq 0 ] && chmod 755 "$SO_SOCK"  # root's psql/crm-server use TCP; keep it listable

PSQL=("$BIN_PG/psql" -X -q -At -h 127.0.0.1 -U "$PG_USER" -v ON_ERROR_STOP=1)

# on_free_port VAR LOG WHAT START_FN: pick a port into VAR and run START_FN.
# A port can be taken between picking and binding (by a listener or by the
# local end of an outgoing connection): when START_FN fails and what it
# appended to LOG says "in use", try the next port.
on_free_port() {
    local var=$1 logf=$2 what=$3 fn=$4 attempt size
    for attempt in 1 2 3 4 5; do
        pick_port "$var"
        size=$(stat -c %s "$logf" 2>/dev/null || echo 0)
        "$fn" && return 0
        tail -c +"$((size + 1))" "$logf" 2>/dev/null | grep -qi "in use" ||
            setup_failed "$what did not start (port ${!var})"
        log "$what: port ${!var} was taken meanwhile, trying another"
    done
    setup_failed "$what: no free port"
}

# --- primary ---------------------------------------------------------------
log "initdb primary"
as_pg_owner "$BIN_PG/initdb" -D "$PRIMARY_DATA" -U "$PG_USER" --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$SO_DIR/initdb.log" 2>&1 || setup_failed "initdb"
# initdb --auth=trust also trusts replication connections from 127.0.0.1.
printf '%s\n' "" "# --- crm scale-out test ---" \
    "listen_addresses = '127.0.0.1'" \
    "unix_socket_directories = '$SO_SOCK'" \
    "max_connections = 100" \
    "shared_buffers = 32MB" \
    "wal_level = replica" \
    "max_wal_senders = 5" \
    "wal_keep_size = 64MB" \
    "hot_standby = on" \
    "fsync = off" \
    "full_page_writes = off" \
    "log_min_messages = warning" |
    as_pg_owner tee -a "$PRIMARY_DATA/postgresql.conf" >/dev/null
# The port goes last in postgresql.conf (the last setting wins), so that the
# replica's copy of the file can be given its own and pg_ctl needs no options.
start_primary() {
    echo "port = $PRIMARY_PORT" | as_pg_owner tee -a "$PRIMARY_DATA/postgresql.conf" >/dev/null
    as_pg_owner "$BIN_PG/pg_ctl" -D "$PRIMARY_DATA" -l "$SO_DIR/primary.log" -w -t 30 start \
        >/dev/null
}
on_free_port PRIMARY_PORT "$SO_DIR/primary.log" primary start_primary
log "primary on port $PRIMARY_PORT (Unix sockets in $SO_SOCK)"
"${PSQL[@]}" -p "$PRIMARY_PORT" -d postgres -c "CREATE DATABASE crm" || setup_failed "createdb"

# --- streaming replica -------------------------------------------------------
log "pg_basebackup -R replica"
as_pg_owner "$BIN_PG/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U "$PG_USER" \
    -D "$REPLICA_DATA" -R -X stream -c fast >"$SO_DIR/basebackup.log" 2>&1 ||
    setup_failed "pg_basebackup"
start_replica() {
    echo "port = $REPLICA_PORT" | as_pg_owner tee -a "$REPLICA_DATA/postgresql.conf" >/dev/null
    as_pg_owner "$BIN_PG/pg_ctl" -D "$REPLICA_DATA" -l "$SO_DIR/replica.log" -w -t 30 start \
        >/dev/null
}
on_free_port REPLICA_PORT "$SO_DIR/replica.log" replica start_replica
log "replica on port $REPLICA_PORT"
streaming=
for _ in $(seq 100); do
    streaming=$("${PSQL[@]}" -p "$PRIMARY_PORT" -d postgres \
        -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)
    [ "$streaming" = 1 ] && break
    sleep 0.1
done
[ "$streaming" = 1 ] || setup_failed "replica is not streaming"
[ "$("${PSQL[@]}" -p "$REPLICA_PORT" -d postgres -c "SELECT pg_is_in_recovery()")" = t ] ||
    setup_failed "replica is not in recovery"

# --- PgBouncer (transaction pooling) in front of the primary ------------------
# PgBouncer refuses to run as root: as root it runs as postgres, so its files
# are postgres'. stats_period = 1 so that SHOW STATS is current for the tests.
printf '"%s" ""\n' "$PG_USER" | as_pg_owner tee "$PGB_DIR/userlist.txt" >/dev/null
start_pgbouncer() {
    printf '%s\n' "[databases]" \
        "crm = host=127.0.0.1 port=$PRIMARY_PORT dbname=crm user=$PG_USER" \
        "" \
        "[pgbouncer]" \
        "listen_addr = 127.0.0.1" \
        "listen_port = $PGB_PORT" \
        "unix_socket_dir = $SO_SOCK" \
        "auth_type = trust" \
        "auth_file = $PGB_DIR/userlist.txt" \
        "admin_users = $PG_USER" \
        "stats_users = $PG_USER" \
        "pool_mode = transaction" \
        "stats_period = 1" \
        "query_wait_timeout = 2" \
        "server_login_retry = 1" \
        "default_pool_size = 20" \
        "max_client_conn = 200" \
        "server_reset_query =" \
        "ignore_startup_parameters = extra_float_digits,options" \
        "logfile = $PGB_DIR/pgbouncer.log" \
        "pidfile = $PGB_DIR/pgbouncer.pid" |
        as_pg_owner tee "$PGB_DIR/pgbouncer.ini" >/dev/null
    as_pg_owner rm -f "$PGB_DIR/pgbouncer.pid"
    as_pg_owner "$PGBOUNCER" -d "$PGB_DIR/pgbouncer.ini" >>"$SO_DIR/pgbouncer-start.log" 2>&1 ||
        return 1
    for _ in $(seq 50); do
        "${PSQL[@]}" -p "$PGB_PORT" -d crm -c "SELECT 1" >/dev/null 2>&1 && return 0
        # PgBouncer 1.18 only warns when the TCP port is taken and goes on
        # serving its Unix socket: stop that one before the next attempt.
        if grep -q "cannot listen on 127.0.0.1:$PGB_PORT" "$PGB_DIR/pgbouncer.log" 2>/dev/null; then
            stop_pgbouncer
            return 1
        fi
        sleep 0.1
    done
    stop_pgbouncer
    return 1
}
on_free_port PGB_PORT "$PGB_DIR/pgbouncer.log" PgBouncer start_pgbouncer
log "PgBouncer on port $PGB_PORT"

# --- two crm-server instances ------------------------------------------------
ADMIN_KEY=$(python3 -c 'import secrets, uuid
print("crm_" + uuid.uuid4().hex + "_" + secrets.token_urlsafe(32))')
echo "$ADMIN_KEY" > "$SO_DIR/admin.key"
chmod 600 "$SO_DIR/admin.key"
DB_PGB="host=127.0.0.1 port=$PGB_PORT dbname=crm user=$PG_USER"
DB_PRIMARY="host=127.0.0.1 port=$PRIMARY_PORT dbname=crm user=$PG_USER"
DB_REPLICA="host=127.0.0.1 port=$REPLICA_PORT dbname=crm user=$PG_USER connect_timeout=2"

# Migrations hold a session advisory lock, which transaction pooling cannot
# keep: apply them on the primary directly (as in deploy/README.md).
log "migrating the primary"
"$BIN" migrate --db "$DB_PRIMARY" >"$SO_DIR/migrate.log" 2>&1 || setup_failed "migrate"

# start_crm NAME PORT_VAR [extra flags...]: fails if the server exits during start-up.
start_crm() {
    local name=$1 port=${!2} pid
    shift 2
    CRM_BOOTSTRAP_ADMIN_KEY=$ADMIN_KEY "$BIN" --listen 127.0.0.1 --port "$port" \
        --db "$DB_PGB" --db-prepared 0 --db-replica "$DB_REPLICA" --replica-wait-ms 200 \
        --pool-size 8 --db-wait 10 --drain-timeout 5 --rate-limit 0 "$@" \
        >>"$SO_DIR/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 1; }
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = 200 ]; then
            PIDS_CRM+=("$pid")
            echo "$pid" > "$SO_DIR/$name.pid"
            return 0
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null
    setup_failed "$name not ready on port $port"
}
# The first instance checks the (already applied) migrations and installs the
# bootstrap admin key; the second starts after it with --no-migrate.
start_crm1() { start_crm crm1 CRM1_PORT; }
start_crm2() { start_crm crm2 CRM2_PORT --no-migrate; }
on_free_port CRM1_PORT "$SO_DIR/crm1.log" crm1 start_crm1
on_free_port CRM2_PORT "$SO_DIR/crm2.log" crm2 start_crm2
log "crm1 on port $CRM1_PORT, crm2 on port $CRM2_PORT"

# --- HAProxy -----------------------------------------------------------------
# Round-robin over the two instances, health-checked on /health, and the
# name of the instance that answered in X-Served-By.
start_haproxy() {
    local pid
    printf '%s\n' "global" \
        "    maxconn 2000" \
        "" \
        "defaults" \
        "    mode http" \
        "    timeout connect 2s" \
        "    timeout client 30s" \
        "    timeout server 30s" \
        "    option http-keep-alive" \
        "" \
        "frontend crm" \
        "    bind 127.0.0.1:$PROXY_PORT" \
        "    default_backend crm_servers" \
        "" \
        "backend crm_servers" \
        "    balance roundrobin" \
        "    option httpchk GET /health" \
        "    http-check expect status 200" \
        "    default-server inter 500ms fall 2 rise 1" \
        "    http-response set-header X-Served-By %s" \
        "    server crm1 127.0.0.1:$CRM1_PORT check" \
        "    server crm2 127.0.0.1:$CRM2_PORT check" > "$SO_DIR/haproxy.cfg"
    haproxy -c -q -f "$SO_DIR/haproxy.cfg" >>"$SO_DIR/haproxy.log" 2>&1 ||
        setup_failed "haproxy.cfg invalid"
    haproxy -db -f "$SO_DIR/haproxy.cfg" >>"$SO_DIR/haproxy.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 1; }
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/health")" = 200 ]; then
            HAPROXY_PID=$pid
            echo "$pid" > "$SO_DIR/haproxy.pid"
            return 0
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null
    setup_failed "haproxy does not answer"
}
on_free_port PROXY_PORT "$SO_DIR/haproxy.log" HAProxy start_haproxy
log "HAProxy on port $PROXY_PORT"
log "set-up done after $(elapsed) ms"

# --- tests -------------------------------------------------------------------
OUT=$SO_DIR/test.out
SO_PROXY_PORT=$PROXY_PORT SO_CRM_PORTS="$CRM1_PORT,$CRM2_PORT" SO_ADMIN_KEY=$ADMIN_KEY \
SO_PRIMARY_PORT=$PRIMARY_PORT SO_REPLICA_PORT=$REPLICA_PORT SO_PGBOUNCER_PORT=$PGB_PORT \
SO_PG_BINDIR=$BIN_PG SO_PG_USER=$PG_USER SO_REPLICA_DATA=$REPLICA_DATA \
SO_PRIMARY_DATA=$PRIMARY_DATA SO_PRIMARY_LOG=$SO_DIR/primary.log \
SO_REPLICA_LOG=$SO_DIR/replica.log SO_DIR=$SO_DIR \
    python3 "$ROOT/tests/scaleout/test_scaleout.py" "$@" 2>&1 | tee "$OUT"
rc=${PIPESTATUS[0]}
line=$(grep -E '^scaleout: [0-9]+ passed, [0-9]+ failed' "$OUT" | tail -n 1)
if [ -z "$line" ]; then
    echo "!! test_scaleout.py printed no summary (exit $rc)"
    finish 0 1
fi
passed=$(echo "$line" | sed -E 's/scaleout: ([0-9]+) passed.*/\1/')
failed=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "!! test_scaleout.py exited $rc"
    failed=1
fi
# A crashed server is a failure even if every test passed.
for p in "${PIDS_CRM[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "!! crm-server pid $p died during the tests"; failed=$((failed + 1)); }
done
finish "$passed" "$failed"
