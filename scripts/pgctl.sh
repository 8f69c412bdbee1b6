#!/usr/bin/env bash
# Stop, start or restart this checkout's PostgreSQL cluster (used by the
# fault tests to take the database away under load).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
case "${1:-}" in
    stop) stop_postgres ;;
    start) start_postgres ;;
    restart) stop_postgres; start_postgres ;;
    *) echo "usage: $0 stop|start|restart" >&2; exit 2 ;;
esac
