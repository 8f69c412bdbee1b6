#!/usr/bin/env bash
# Catalogue test: a database migrated from scratch and one upgraded from the
# last release's schema must end with the same catalogue.
#   A: an empty database, `crm-server migrate`;
#   B: tests/data/release_9275496_schema.sql (what release 9275496 left:
#      migrations 001..006), then `crm-server migrate`.
# First, the layout: no function, trigger or view in a migration, one
# definition per function. Compared in schema crm: every function
# (pg_get_functiondef, by signature), trigger (pg_get_triggerdef), index
# (pg_get_indexdef), view (pg_get_viewdef), constraint (pg_get_constraintdef)
# and the columns of every table (name, type, default, not null). Then checks of the check: a
# body changed and a trigger dropped by hand in B must show up as
# differences, and the next `crm-server migrate` must put both back (the
# functions files are applied at every start).
# Expects test.sh's set-up (build/, a running PostgreSQL; CRM_BIN overrides
# the binary). Last line: "schema: N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
BIN=${CRM_BIN:-$ROOT/build/crm-server}
DUMP=$ROOT/tests/data/release_9275496_schema.sql
OUT=$RUN_DIR/schema-test
mkdir -p "$OUT"
passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
psql_db() { local db=$1; shift; psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1 -d "$db" "$@"; }

# catalogue DB SECTION: one line per object, ordered.
catalogue() {
    local db=$1 section=$2 q
    case $section in
    functions) q="SELECT p.oid::regprocedure::text || E'\n' || pg_get_functiondef(p.oid)
                    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'crm' ORDER BY p.oid::regprocedure::text" ;;
    triggers) q="SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
                   JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'crm' AND NOT t.tgisinternal ORDER BY c.relname, t.tgname" ;;
    indexes) q="SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'crm' ORDER BY c.relname" ;;
    views) q="SELECT c.relname || E'\n' || pg_get_viewdef(c.oid) FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'crm' AND c.relkind IN ('v', 'm') ORDER BY c.relname" ;;
    constraints) q="SELECT c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
                      FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = 'crm' ORDER BY c.relname, k.conname" ;;
    columns) q="SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
                       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                       || CASE a.attgenerated WHEN 's' THEN ' GENERATED' ELSE '' END
                  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE n.nspname = 'crm' AND c.relkind IN ('r', 'p') AND a.attnum > 0
                   AND NOT a.attisdropped ORDER BY c.relname, a.attnum" ;;
    esac
    psql_db "$db" -tA -c "$q"
}
SECTIONS="functions triggers indexes views constraints columns"

# compare LABEL: A against B, section by section; returns 1 on any difference.
compare() {
    local label=$1 s diffs=0
    for s in $SECTIONS; do
        catalogue crm_schema_a "$s" > "$OUT/a.$s" 2>&1
        catalogue crm_schema_b "$s" > "$OUT/b.$s" 2>&1
        if [ "$label" = main ]; then
            if [ ! -s "$OUT/a.$s" ] && [ "$s" != views ]; then
                bad "$s: the fresh database has none"
                continue
            fi
            if diff -u "$OUT/a.$s" "$OUT/b.$s" > "$OUT/diff.$s"; then
                ok "$s equal ($(grep -c '' "$OUT/a.$s") lines)"
            else
                bad "$s differ (fresh vs upgraded from 9275496):"
                head -n 60 "$OUT/diff.$s"
            fi
        else
            diff -q "$OUT/a.$s" "$OUT/b.$s" >/dev/null || diffs=$((diffs + 1))
        fi
    done
    [ "$diffs" -eq 0 ]
}

# The layout: migrations hold no function, trigger or view, and each crm.*
# function has one definition under sql/functions/.
hits=$(cd "$ROOT" && grep -nEi '^[[:space:]]*CREATE[[:space:]]+(OR[[:space:]]+REPLACE[[:space:]]+)?(FUNCTION|PROCEDURE|TRIGGER|VIEW)' sql/[0-9]*.sql)
if [ -z "$hits" ]; then
    ok "sql/NNN_*.sql create no function, trigger or view"
else
    bad "functions, triggers or views in migrations (they belong in sql/functions/):"; echo "$hits"
fi
dups=$(cd "$ROOT" && grep -ohEi 'CREATE[[:space:]]+OR[[:space:]]+REPLACE[[:space:]]+FUNCTION[[:space:]]+crm\.[a-z_0-9]+' \
           sql/functions/*.sql | awk '{print tolower($NF)}' | sort | uniq -d)
if [ -z "$dups" ]; then
    ok "each crm.* function has one definition in sql/functions/"
else
    bad "defined more than once in sql/functions/: $dups"
fi

create_database crm_schema_a recreate
create_database crm_schema_b recreate
if "$BIN" migrate --db "$(conninfo crm_schema_a)" > "$OUT/migrate_a.log" 2>&1; then
    ok "fresh database: crm-server migrate"
else
    bad "fresh database: crm-server migrate failed:"; tail -n 20 "$OUT/migrate_a.log"
fi
if psql_db crm_schema_b -f "$DUMP" > "$OUT/restore_b.log" 2>&1 &&
   "$BIN" migrate --db "$(conninfo crm_schema_b)" > "$OUT/migrate_b.log" 2>&1; then
    ok "release 9275496 database: restore and crm-server migrate"
else
    bad "release 9275496 database: restore or migrate failed:"
    tail -n 20 "$OUT/restore_b.log" "$OUT/migrate_b.log"
fi
compare main

# The check of the check: a body changed by hand is a difference ...
psql_db crm_schema_b -c "CREATE OR REPLACE FUNCTION crm.ts(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE AS \$\$ SELECT 'drift'::text \$\$" > /dev/null 2>&1
if compare drift; then
    bad "a function body changed by hand in B is not detected"
else
    ok "a function body changed by hand in B is detected"
fi
psql_db crm_schema_b -c "DROP TRIGGER settings_profile_stale ON crm.settings" > /dev/null 2>&1
if catalogue crm_schema_b triggers | diff -q "$OUT/a.triggers" - > /dev/null; then
    bad "a trigger dropped by hand in B is not detected"
else
    ok "a trigger dropped by hand in B is detected"
fi
# ... and the next start puts the repository's body back.
"$BIN" migrate --db "$(conninfo crm_schema_b)" > "$OUT/migrate_b2.log" 2>&1
if compare repaired; then
    ok "the next crm-server migrate puts the repository's function body and trigger back"
else
    bad "after another crm-server migrate, B still differs from A"
fi

echo "schema: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
