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
log "serving on http://${CRM_LISTEN:-127.0.0.1}:${CRM_PORT:-8080} (Ctrl-C to stop)"
exec "$ROOT/build/crm-server" "$@"
