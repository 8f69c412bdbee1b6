#!/usr/bin/env bash
# One command to run the service: install what is missing, build, start a
# local PostgreSQL, apply migrations and serve on ${CRM_PORT:-8080}.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ensure_packages
build build --buildtype=debugoptimized
start_postgres
create_database crm
export CRM_DATABASE_URL=${CRM_DATABASE_URL:-$(conninfo crm)}
export CRM_BOOTSTRAP_ADMIN_KEY=${CRM_BOOTSTRAP_ADMIN_KEY:-$(admin_key)}
log "admin API key (first start installs it): $RUN_DIR/admin.key"
# The server prints the address it really listens on ("serving on …"), with
# the environment and any --listen/--port/--tls-* given here taken into account.
log "starting crm-server $* (Ctrl-C to stop)"
exec "$ROOT/build/crm-server" "$@"
