#!/usr/bin/env bash
# Compares two builds of Eddy in one sitting, alternating their runs (A, B, A, B, ...)
# so that drift of the machine hits both alike. Three workloads:
#   kv     mpirun -np 3 eddy_bench --preset=pslite            (sparse push+pull keys/s)
#   train  eddy_train --local, DeepFM on a generated stream    (end-to-end rows/s)
#   pause  eddy_train --local --model_dir --snapshot_every     (training pause per version)
# Usage:
#   bench/ab_compare.sh BIN_DIR_A BIN_DIR_B [ROUNDS]
#   e.g. bench/ab_compare.sh /tmp/before/build/bin build/bin 3
# A_TRAIN_FLAGS / B_TRAIN_FLAGS add flags to one side's eddy_train runs (e.g. to
# give both the same model when defaults differ); WORKLOADS="kv train" picks some.
# Prints one line per run and a table of medians. Note the machine's idle state
# (uptime's load average is printed first and last) next to the figures.
set -euo pipefail

if (($# < 2)); then
  sed -n '2,12p' "$0"
  exit 2
fi
A=$(cd "$1" && pwd)
B=$(cd "$2" && pwd)
ROUNDS=${3:-3}
TRAIN_ROWS=${TRAIN_ROWS:-400000}
WORKLOADS=${WORKLOADS:-kv train pause}
WORK=$(mktemp -d /tmp/eddy_ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export GLOG_minloglevel=1

kv() {  # keys/s in millions
  mpirun --oversubscribe -np 3 "$1/eddy_bench" --preset=pslite --duration_s=5 --warmup_s=1 \
    2>/dev/null | sed -n 's/.*sparse: .* req\/s, \([0-9.]*\) M keys\/s.*/\1/p'
}

train() {  # rows/s in thousands
  # shellcheck disable=SC2086
  "$1/eddy_train" --local --data="gen:rows=$TRAIN_ROWS,drift=100000" $2 2>&1 |
    sed -n 's/^trained on .*: \([0-9.]*\)k rows\/s.*/\1/p'
}

pause() {  # median training pause per version, ms
  rm -rf "$WORK/pm" "$WORK/pm.jsonl"
  # shellcheck disable=SC2086
  "$1/eddy_train" --local --data="gen:rows=$TRAIN_ROWS,drift=100000" $2 --model_dir="$WORK/pm" \
    --snapshot_every=1s --keep_versions=2 --metrics_out="$WORK/pm.jsonl" >/dev/null 2>&1
  grep '"event":"version"' "$WORK/pm.jsonl" |
    sed -n 's/.*"pause_ms":\([0-9.]*\).*/\1/p' | sort -g |
    awk '{v[NR] = $1} END { if (NR == 0) print "nan"; else print v[int((NR + 1) / 2)] }'
}

median() { sort -g | awk '{v[NR] = $1} END { print (NR ? v[int((NR + 1) / 2)] : "nan") }'; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)   A=$A   B=$B   rounds=$ROUNDS"
echo "A_TRAIN_FLAGS=${A_TRAIN_FLAGS:-}   B_TRAIN_FLAGS=${B_TRAIN_FLAGS:-}"
declare -A results
for ((r = 1; r <= ROUNDS; ++r)); do
  for w in $WORKLOADS; do
    for side in A B; do
      dir=$A
      flags=${A_TRAIN_FLAGS:-}
      if [ "$side" = B ]; then
        dir=$B
        flags=${B_TRAIN_FLAGS:-}
      fi
      v=$("$w" "$dir" "$flags")
      results[$w,$side]+="$v "
      printf 'round %d  %-5s  %s  %s\n' "$r" "$w" "$side" "$v"
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n| workload | A (median) | B (median) | B / A |\n| --- | --- | --- | --- |\n'
for w in $WORKLOADS; do
  ma=$(tr ' ' '\n' <<<"${results[$w,A]}" | grep . | median)
  mb=$(tr ' ' '\n' <<<"${results[$w,B]}" | grep . | median)
  unit="M keys/s"
  [ "$w" = train ] && unit="k rows/s"
  [ "$w" = pause ] && unit="ms"
  printf '| %s (%s) | %s | %s | %s |\n' "$w" "$unit" "$ma" "$mb" \
    "$(awk -v a="$ma" -v b="$mb" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "n/a" }')"
done
