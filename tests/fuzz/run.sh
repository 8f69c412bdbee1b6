#!/usr/bin/env bash
# Build the libFuzzer harnesses with clang (ASan + UBSan) against the pure
# modules and run each for SECONDS (default 20; CI uses the default).
# Longer runs: tests/fuzz/run.sh 3600. Crashes are written to .run/fuzz/.
# Prints "fuzz: N passed, N failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECONDS_EACH=${1:-20}
OUT=$ROOT/.run/fuzz
mkdir -p "$OUT"
command -v clang >/dev/null || { echo "fuzz: clang not found"; echo "fuzz: 0 passed, 1 failed"; exit 1; }
# The pure library as meson.build lists it (pure_lib), so that a module a
# fuzzed one comes to need is never missing here (it was: stage.c).
mapfile -t SRCS < <(sed -n "/^pure_lib = static_library/,/include_directories/p" "$ROOT/meson.build" |
                    grep -oE "'src/[a-z_]+\.c'" | tr -d "'" | sed "s|^|$ROOT/|")
CFLAGS=(-std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined -I"$ROOT/include" $(pkg-config --cflags jansson uuid libcrypto))
LIBS=($(pkg-config --libs jansson uuid libcrypto) -lm -pthread)
passed=0
failed=0
for h in request router segment; do
    bin=$OUT/fuzz_$h
    if ! clang "${CFLAGS[@]}" -o "$bin" "$ROOT/tests/fuzz/fuzz_$h.c" "${SRCS[@]}" "${LIBS[@]}"; then
        echo "fuzz: $h did not build"
        failed=$((failed + 1))
        continue
    fi
    mkdir -p "$OUT/corpus-$h"
    if "$bin" -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=10 \
        -artifact_prefix="$OUT/crash-$h-" "$OUT/corpus-$h" "$ROOT/tests/fuzz/corpus/$h" \
        > "$OUT/$h.log" 2>&1; then
        echo "fuzz: $h ok ($(grep -oE 'stat::number_of_executed_units: [0-9]+' "$OUT/$h.log" || tail -n 1 "$OUT/$h.log"))"
        passed=$((passed + 1))
    else
        echo "fuzz: $h FAILED, see $OUT/$h.log:"
        tail -n 30 "$OUT/$h.log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
