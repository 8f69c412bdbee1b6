#!/usr/bin/env bash
# Browser test of the console (issue 19): Debian's chromium (installed here
# with the project's packages) driven by playwright-core from npm, and
# axe-core (MPL-2.0) evaluated in each screen by the test (both pinned in
# package.json/package-lock.json, installed with `npm ci`; nothing
# downloads a browser). A fresh database, one crm-server with a bootstrap admin key, then
# console.test.mjs seeds data through the API and signs in as each role.
# Everything lives under $RUN_DIR/console (server log, screenshots of a failed
# check) and the server is stopped on exit; the dev cluster is only given one
# more database (crm_console, recreated each run).
#
#   tests/console/run.sh                 the test
#   tests/console/run.sh --screenshots   also writes docs/console/*.png
#
# Ends with "console: N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"

PACKAGES+=(chromium)
CON_DIR=$RUN_DIR/console
BIN=$ROOT/build/crm-server
CHROMIUM=${CRM_CHROMIUM:-/usr/bin/chromium}
CRM_PID=
SHOTS=
[ "${1:-}" = "--screenshots" ] && SHOTS=$ROOT/docs/console

setup_failed() {
    echo "!! console set-up failed: $*" >&2
    [ -s "$CON_DIR/server.log" ] && tail -n 20 "$CON_DIR/server.log" >&2
    echo "console: 0 passed, 1 failed"
    exit 1
}
teardown() {
    if [ -n "$CRM_PID" ]; then
        kill -TERM "$CRM_PID" 2>/dev/null
        wait "$CRM_PID" 2>/dev/null
        CRM_PID=
    fi
}
trap teardown EXIT
trap 'teardown; exit 130' INT TERM

rm -rf "$CON_DIR"
mkdir -p "$CON_DIR"
ensure_packages || setup_failed "installing packages"
[ -x "$CHROMIUM" ] || setup_failed "no browser at $CHROMIUM"
build build --buildtype=debugoptimized || setup_failed "build"
start_postgres || setup_failed "PostgreSQL"
create_database crm_console recreate >/dev/null || setup_failed "database"
(cd "$ROOT/tests/console" && npm ci --no-audit --no-fund --prefer-offline >"$CON_DIR/npm.log" 2>&1) ||
    setup_failed "npm ci (see $CON_DIR/npm.log)"

KEY=$(python3 -c 'import secrets, uuid
print("crm_" + uuid.uuid4().hex + "_" + secrets.token_urlsafe(32))')
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CRM_BOOTSTRAP_ADMIN_KEY=$KEY CRM_ACCESS_LOG=0 "$BIN" --listen 127.0.0.1 --port "$PORT" \
    --db "$(conninfo crm_console)" --pool-size 8 --webhook-allow-hosts 127.0.0.1 \
    --webhook-poll-ms 100 --webhook-retry-base-ms 60000 --moments-period 0 \
    >"$CON_DIR/server.log" 2>&1 &
CRM_PID=$!
for _ in $(seq 150); do
    curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    kill -0 "$CRM_PID" 2>/dev/null || setup_failed "the server exited"
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 || setup_failed "the server did not answer"

CRM_URL=http://127.0.0.1:$PORT CRM_ADMIN_KEY=$KEY CRM_CHROMIUM=$CHROMIUM CRM_CONSOLE_DIR=$CON_DIR \
    CRM_SCREENSHOTS=$SHOTS node "$ROOT/tests/console/console.test.mjs"
rc=$?
teardown
exit $rc
