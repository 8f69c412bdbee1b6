#!/usr/bin/env bash
# Currencies (issue 18): what converting amounts at read time costs where
# they are summed, on base-currency data (bench/gen_data.sql: every amount
# in EUR, the base currency), before and after, in the same database: the
# functions of the commit before the change are loaded under *_before names
# and both are timed alternately. The ingest statement is not measured: the
# change does not touch it (sql/functions/ingest.sql, src/store.c).
#   bench/fx_read.sh BEFORE_COMMIT [customers] [rounds]
# Expects a running PostgreSQL of this checkout (scripts/lib.sh;
# CRM_PG_PORT) and build/crm-server built from the working tree.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
BEFORE=$1 CUSTOMERS=${2:-20000} ROUNDS=${3:-3}
DB=crm_bench_fx
q() { psql -X -q -tA -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$DB" "$@"; }

create_database "$DB" recreate >/dev/null
"$ROOT/build/crm-server" migrate --db "$(conninfo "$DB")" >/dev/null 2>&1
q -v customers="$CUSTOMERS" -v seed=0.42 -f "$ROOT/bench/gen_data.sql" >/dev/null
"$ROOT/build/crm-server" recompute-value --db "$(conninfo "$DB")" >/dev/null 2>&1
q -c "VACUUM ANALYZE" >/dev/null

# The functions before, renamed (value_inputs, value_section, kpis).
extract() { # file function
    git -C "$ROOT" show "$BEFORE:$1" | awk -v f="FUNCTION crm.$2(" '
        index($0, f) { on = 1 } on { print } on && /^(\$\$;|END \$\$;)$/ { exit }' |
        sed "s/crm\.$2(/crm.$2_before(/"
}
{ extract sql/functions/value.sql value_inputs
  extract sql/functions/value.sql value_section
  extract sql/functions/segments.sql kpis; } | q >/dev/null

ms() { # sql: run time in ms of the statement
    q -c '\timing on' -c "$1" | awk '/^Time:/ { print $2 }'
}
INPUTS="SELECT count(*), sum(revenue) FROM crm.value_inputs%s(now())"
SECTION="SELECT count(*), sum(length(crm.value_section%s(customer_id)::text)) FROM (SELECT customer_id FROM crm.customer_value ORDER BY customer_id LIMIT 5000) v"
KPIS="SELECT length(crm.kpis%s(now() - interval '365 days', now(), NULL)::text)"
echo "customers $CUSTOMERS, $(q -c 'SELECT count(*) FROM crm.interactions') interactions"
for r in $(seq 1 "$ROUNDS"); do
    for what in INPUTS SECTION KPIS; do
        tmpl=${!what}
        b=$(ms "$(printf "$tmpl" _before)")
        a=$(ms "$(printf "$tmpl" '')")
        echo "round $r $what before ${b} ms after ${a} ms"
    done
done
# the same answers on base-currency data
for what in INPUTS SECTION; do
    tmpl=${!what}
    [ "$(q -c "$(printf "$tmpl" _before)")" = "$(q -c "$(printf "$tmpl" '')")" ] &&
        echo "$what: same answer" || echo "$what: DIFFERENT answer"
done
