#!/usr/bin/env bash
# Re-creates tests/data/release_9275496_schema.sql: the database state the
# last release (git commit 9275496, migrations 001..006) leaves behind.
# Each migration of that commit is applied with psql in its own transaction
# and recorded in public.crm_schema_migrations as that release's migrate.c
# did, then the database is dumped. Needs the cluster of scripts/lib.sh
# (start_postgres) and the commit in the local history. Not part of the suite.
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
RELEASE=9275496
DB=crm_release_dump
OUT=$ROOT/tests/data/release_${RELEASE}_schema.sql
psql=(psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1 -d "$DB")
create_database "$DB" recreate
"${psql[@]}" -c "CREATE TABLE public.crm_schema_migrations (version text PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now())"
for f in $(git -C "$ROOT" ls-tree --name-only "$RELEASE" sql/ | grep -E '^sql/[0-9]+_.*\.sql$' | sort); do
    name=$(basename "$f" .sql)
    { echo "SET client_min_messages = warning; BEGIN;"
      git -C "$ROOT" show "$RELEASE:$f"
      echo
      echo "INSERT INTO public.crm_schema_migrations (version) VALUES ('$name'); COMMIT;"; } | "${psql[@]}"
done
{ sed -n '1,/^-- (PostgreSQL 15). Do not edit by hand.$/p' "$OUT" 2>/dev/null | grep . ||
      echo "-- The schema of a database migrated by the last release ($RELEASE)."
  pg_dump -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" --no-owner --no-privileges \
      --restrict-key=crmrelease$RELEASE "$DB" | grep -v '^-- Dumped from\|^-- Dumped by'
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d postgres -c "DROP DATABASE $DB"
echo "wrote $OUT"
