#!/usr/bin/env bash
# One command to run the whole suite: install what is missing, build (plain
# and with AddressSanitizer+UBSan), start a local PostgreSQL, then run the
# Check unit tests and the end-to-end HTTP tests against the real server and
# database under both builds, the console in a browser, and lint
# openapi.yaml. Ends with one line "N passed, N failed"; exits non-zero if
# anything failed.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

set -e
ensure_packages
build build --buildtype=debugoptimized
build build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
start_postgres
set +e

LOG_DIR=$RUN_DIR/test-logs
rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"
passed=0
failed=0

# Check prints "NN%: Checks: N, Failures: F, Errors: E".
run_unit() {
    local bin=$1 out
    out=$("$bin" 2>&1)
    local rc=$?
    echo "$out"
    local line
    line=$(echo "$out" | grep -E '^[0-9]+%: Checks: [0-9]+' | tail -n 1)
    if [ -z "$line" ]; then
        echo "!! $bin printed no Check summary (exit $rc)"
        failed=$((failed + 1))
        return
    fi
    local checks failures errors
    checks=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    failures=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
    errors=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
    passed=$((passed + checks - failures - errors))
    failed=$((failed + failures + errors))
    if [ "$rc" -ne 0 ] && [ $((failures + errors)) -eq 0 ]; then
        echo "!! $bin exited $rc"
        failed=$((failed + 1))
    fi
}

# The e2e runner prints "e2e: N passed, N failed[, N skipped]".
run_e2e() {
    local label=$1 bin=$2 db=$3 script=$4
    create_database "$db"
    local out
    out=$(CRM_BIN=$bin CRM_DATABASE_URL=$(conninfo "$db") CRM_E2E_LOGDIR=$LOG_DIR/$label \
          CRM_PG_CTL=$ROOT/scripts/pgctl.sh python3 "$ROOT/tests/e2e/$script" 2>&1)
    local rc=$?
    echo "$out"
    local line
    line=$(echo "$out" | grep -E '^e2e: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        echo "!! e2e ($label) printed no summary (exit $rc)"
        failed=$((failed + 1))
        return
    fi
    local p f
    p=$(echo "$line" | sed -E 's/e2e: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "!! e2e ($label) exited $rc"
        failed=$((failed + 1))
    fi
    # Sanitizer reports in the server log are failures even if every test passed.
    if grep -rqE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$LOG_DIR/$label" 2>/dev/null; then
        echo "!! sanitizer report in $LOG_DIR/$label:"
        grep -rE -A 20 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$LOG_DIR/$label" | head -60
        failed=$((failed + 1))
    fi
}

echo "== unit tests (plain build)"
for t in "$ROOT"/build/test_*; do [ -f "$t" ] && [ -x "$t" ] && run_unit "$t"; done
echo "== unit tests (ASan+UBSan build)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=99}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
for t in "$ROOT"/build-asan/test_*; do [ -f "$t" ] && [ -x "$t" ] && CK_FORK=no run_unit "$t"; done

# Fresh databases: migrations are tested from scratch on every run.
create_database crm_test recreate
create_database crm_test_asan recreate
# run_e2e_build LABEL BINARY DATABASE: every suite, then the fault tests
# (last: they restart PostgreSQL).
E2E_SUITES="api http identity customize access value audiences satisfaction cases cache activation membership identity_rules summary fx stage survivorship lookalikes"
run_e2e_build() {
    local label=$1 bin=$2 db=$3 suite
    echo "== end-to-end tests ($label build)"
    for suite in $E2E_SUITES; do
        if [ "$suite" = api ]; then
            run_e2e "$label" "$bin" "$db" test_api.py
        else
            run_e2e "$label-$suite" "$bin" "$db" "test_$suite.py"
        fi
    done
    echo "== fault tests: PostgreSQL restarts under load ($label build)"
    run_e2e "$label-faults" "$bin" "$db" test_faults.py
}
run_e2e_build plain "$ROOT/build/crm-server" crm_test
run_e2e_build asan "$ROOT/build-asan/crm-server" crm_test_asan

# count_summary PREFIX OUTPUT: add the counts of the line "PREFIX: N passed,
# N failed" in OUTPUT; a missing line is one failure.
count_summary() {
    local prefix=$1 out=$2 line
    line=$(echo "$out" | grep -E "^$prefix: [0-9]+ passed, [0-9]+ failed" | tail -n 1)
    if [ -z "$line" ]; then
        echo "!! $prefix printed no summary"
        failed=$((failed + 1))
        return
    fi
    passed=$((passed + $(echo "$line" | sed -E "s/$prefix: ([0-9]+) passed.*/\\1/")))
    failed=$((failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')))
}

echo "== catalogue: fresh database vs upgraded from release 9275496 (tests/schema/run.sh)"
schema_out=$(bash "$ROOT/tests/schema/run.sh" 2>&1)
echo "$schema_out"
count_summary schema "$schema_out"

echo "== scripts and self-containment (tests/scripts/run.sh)"
scripts_out=$(bash "$ROOT/tests/scripts/run.sh" 2>&1)
echo "$scripts_out"
count_summary scripts "$scripts_out"

echo "== fuzzing (libFuzzer, ${CRM_FUZZ_SECONDS:-20} s per harness)"
fuzz_out=$("$ROOT/tests/fuzz/run.sh" "${CRM_FUZZ_SECONDS:-20}" 2>&1)
echo "$fuzz_out"
count_summary fuzz "$fuzz_out"

echo "== scale-out loopback test (primary + streaming replica, PgBouncer, HAProxy, two servers)"
so_out=$(bash "$ROOT/tests/scaleout/run.sh" 2>&1)
echo "$so_out"
count_summary scaleout "$so_out"

echo "== HA loopback test (pg_auto_failover: the primary's postmaster killed under 16 writing clients)"
ha_out=$(bash "$ROOT/tests/ha/run.sh" 2>&1)
echo "$ha_out"
count_summary ha "$ha_out"

echo "== console in a browser (tests/console/run.sh: chromium + playwright-core)"
console_out=$(bash "$ROOT/tests/console/run.sh" 2>&1)
echo "$console_out"
count_summary console "$console_out"

if [ -x "$ROOT/tests/lint_openapi.sh" ]; then
    echo "== openapi.yaml lint"
    if "$ROOT/tests/lint_openapi.sh"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
