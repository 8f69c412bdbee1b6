#!/usr/bin/env bash
# Alternated A/B runs of the ingest statements (bench/ingest_profile.md,
# "Write path"). Usage:
#   bench/ingest/ab.sh OUT ROUNDS SECONDS "script:clients ..." db1 db2 ...
# script is single, batch_own or batch_spread (files next to this one); the
# databases must hold the same data (seed.sql, run by each code's own
# crm.ingest_batch). Each round runs every case on every database, the order
# of the databases reversed every other round, so load from others hits all.
# Per run, one line in OUT/tps.txt: round script clients db tps
# cpu_us_per_tx failed transactions. CPU is that of every process of the
# cluster (live children plus what the postmaster reaped), so it counts the
# backends, WAL writer and autovacuum alike. Function statistics
# (pg_stat_user_functions, reset before each run; needs track_functions =
# all) go to OUT/fn-<script>-<clients>-<db>-<round>.txt.
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
OUT=$1 ROUNDS=$2 DUR=$3 CASES=$4; shift 4; DBS=("$@")
DIR=$(cd "$(dirname "$0")" && pwd)
BIN=$(pg_bindir)
HZ=$(getconf CLK_TCK)
mkdir -p "$OUT"
q() { psql -X -qtA -F' ' -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -d "$@"; }
pg_ticks() {
    local pm p
    pm=$(head -n 1 "$PG_DATA/postmaster.pid")
    { awk '{sub(/.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pm/stat"
      for p in $(pgrep -P "$pm"); do awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || true; done
    } | awk '{s += $1} END {print s}'
}
for r in $(seq "$ROUNDS"); do
    for cs in $CASES; do
        s=${cs%%:*} c=${cs##*:}
        order=("${DBS[@]}")
        if (( r % 2 == 0 )); then order=(); for ((i = ${#DBS[@]} - 1; i >= 0; i--)); do order+=("${DBS[$i]}"); done; fi
        for d in "${order[@]}"; do
            q "$d" -c "SELECT pg_stat_reset()" >/dev/null
            sleep 0.3
            t0=$(pg_ticks)
            out=$("$BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" -n -c "$c" -j $(( c < 2 ? 1 : 2 )) \
                  -T "$DUR" -M prepared -f "$DIR/$s.sql" "$d" 2>&1)
            sleep 0.3
            t1=$(pg_ticks)
            tps=$(echo "$out" | awk '/^tps/ {printf "%.0f", $3; exit}')
            n=$(echo "$out" | awk '/number of transactions actually processed/ {print $NF; exit}')
            n=${n%%/*}
            fail=$(echo "$out" | awk '/number of failed/ {print $5; exit}')
            cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }')
            q "$d" -c "SELECT funcname, calls, round(self_time::numeric, 1), round(total_time::numeric, 1)
                         FROM pg_stat_user_functions WHERE calls > 0 ORDER BY self_time DESC" \
                > "$OUT/fn-$s-$c-$d-$r.txt"
            echo "$r $s $c $d $tps $cpu ${fail:-0} $n" | tee -a "$OUT/tps.txt"
        done
    done
done
