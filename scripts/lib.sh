#!/usr/bin/env bash
# Shared set-up for run.sh and test.sh: install missing Debian packages,
# build with meson, and start a throw-away PostgreSQL cluster owned by this
# checkout (under .run/). Sourced, not executed.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${CRM_RUN_DIR:-$ROOT/.run}
PG_DIR=$RUN_DIR/pg
PG_DATA=$PG_DIR/data
# Unix socket paths are limited to ~107 bytes, so the socket lives in /tmp
# under a name derived from this checkout's path.
PG_SOCK=/tmp/crm-pg-$(printf '%s' "$ROOT" | md5sum | cut -c1-10)
# The port is chosen once per cluster (first free one from 54329) and kept.
PG_PORT=${CRM_PG_PORT:-$(cat "$PG_DIR/port" 2>/dev/null || echo 54329)}
PG_USER=crm

PACKAGES=(gcc meson ninja-build pkg-config libmicrohttpd-dev libpq-dev libjansson-dev
          uuid-dev check postgresql postgresql-contrib curl clang openssl
          libcurl4-openssl-dev libssl-dev)
# Needed as commands, from whatever package provides them (e.g. a NodeSource
# nodejs that bundles npm conflicts with Debian's npm package).
COMMANDS=("python3:python3" "npm:nodejs npm")

log() { printf '==> %s\n' "$*" >&2; }

ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    local c
    for c in "${COMMANDS[@]}"; do
        # shellcheck disable=SC2206
        command -v "${c%%:*}" >/dev/null 2>&1 || missing+=(${c#*:})
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] || { echo "no PostgreSQL server binaries found" >&2; return 1; }
    echo "$d"
}

# Run a command as the cluster owner: root cannot run initdb/postgres.
as_pg_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# build DIR [meson options...]
build() {
    local dir=$1; shift
    if [ ! -f "$ROOT/$dir/build.ninja" ]; then
        log "meson setup $dir $*"
        meson setup "$ROOT/$dir" "$ROOT" "$@" >/dev/null
    fi
    log "building $dir"
    ninja -C "$ROOT/$dir" >/dev/null
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_postgres() {
    local bin
    bin=$(pg_bindir)
    mkdir -p "$PG_DIR" "$PG_SOCK"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres: "$PG_DIR" "$PG_SOCK"
        # postgres must be able to reach its data directory.
        local d=$PG_DIR
        while [ "$d" != "/" ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
    fi
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        log "initdb $PG_DATA"
        as_pg_owner "$bin/initdb" -D "$PG_DATA" -U "$PG_USER" --auth=trust -E UTF8 \
            --locale=C.UTF-8 >/dev/null
    fi
    if as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "PostgreSQL already running on port $PG_PORT"
    else
        # A port chosen here (none remembered, none given) that turns out to
        # be taken when PostgreSQL binds it (a connect test cannot see an
        # outgoing connection's local port in the ephemeral range, which on
        # a busy machine may be any of ours) is given up for the next one.
        local choose=0 attempt
        if [ ! -f "$PG_DIR/port" ] && [ -z "${CRM_PG_PORT:-}" ]; then choose=1; fi
        for attempt in 1 2 3 4 5 6 7 8; do
            if [ "$choose" = 1 ]; then
                while port_in_use "$PG_PORT"; do PG_PORT=$((PG_PORT + 1)); done
            fi
            echo "$PG_PORT" > "$PG_DIR/port"
            log "starting PostgreSQL on port $PG_PORT (socket $PG_SOCK)"
            if as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
                -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses=127.0.0.1 -c max_connections=300" \
                start >/dev/null; then
                return 0
            fi
            if [ "$choose" = 1 ] && tail -n 5 "$PG_DIR/postgres.log" | grep -q "Address already in use"; then
                log "port $PG_PORT was taken; trying the next one"
                PG_PORT=$((PG_PORT + 1))
                continue
            fi
            tail -n 20 "$PG_DIR/postgres.log" >&2
            return 1
        done
        tail -n 20 "$PG_DIR/postgres.log" >&2
        return 1
    fi
}

stop_postgres() {
    as_pg_owner "$(pg_bindir)/pg_ctl" -D "$PG_DATA" -m fast stop >/dev/null 2>&1 || true
}

# create_database NAME [recreate]
create_database() {
    local name=$1 recreate=${2:-}
    local psql=(psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1)
    if [ -n "$recreate" ]; then
        "${psql[@]}" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)"
    fi
    if ! "${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
        "${psql[@]}" -c "CREATE DATABASE $name"
    fi
}

# The admin API key of this checkout's local server: created once in
# .run/admin.key and installed by the server as its bootstrap admin key.
admin_key() {
    local f=$RUN_DIR/admin.key
    if [ ! -s "$f" ]; then
        mkdir -p "$RUN_DIR"
        python3 -c 'import secrets, uuid
print("crm_" + uuid.uuid4().hex + "_" + secrets.token_urlsafe(32))' > "$f"
        chmod 600 "$f"
    fi
    cat "$f"
}

conninfo() { echo "host=$PG_SOCK port=$PG_PORT user=$PG_USER dbname=$1"; }
