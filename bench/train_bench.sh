#!/usr/bin/env bash
# End-to-end training benchmark: quality (progressive AUC / logloss against the
# generator's best possible) and speed (rows/s including parsing) of eddy_train on
# a generated drifting stream, in local mode and under mpirun (1 server, 1 worker),
# plus a model frozen after the first 20% against incremental training on the
# remaining 80%. Prints a Markdown table for BENCHMARKS.md.
#   bench/train_bench.sh                       # 2M rows, drift every 500k (~10 min on 2 cores)
#   ROWS=400000 DRIFT=100000 bench/train_bench.sh   # quicker
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
ROWS=${ROWS:-2000000}
DRIFT=${DRIFT:-500000}
SEED=${SEED:-1}
OUT=${OUT:-/tmp/eddy_train_bench}
MODELS=${MODELS:-"deepfm lr"}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo

GEN_FLAGS="--rows=$ROWS --drift_every=$DRIFT --seed=$SEED"
STREAM=$OUT/stream.tsv
TRUTH=$OUT/truth.txt
if [ ! -f "$STREAM.done" ] || [ "$(cat "$STREAM.done")" != "$GEN_FLAGS" ]; then
  "$BIN/eddy_gen" $GEN_FLAGS --out="$STREAM" --truth_out="$TRUTH" --report > "$OUT/gen.txt"
  echo "$GEN_FLAGS" > "$STREAM.done"
fi
TAIL_FROM=$((ROWS / 5))  # the frozen model stops learning after the first 20%

# Exact AUC and logloss of the true probabilities over rows [from, end): the best
# any model can do on those rows.
best() {
  local from=$1
  paste <(cut -f1 "$STREAM") "$TRUTH" | tail -n +$((from + 1)) | sort -t$'\t' -k2,2g |
    awk -F'\t' '
      { y[NR] = $1; p[NR] = $2; ll += ($1 == 1) ? -log($2) : -log(1 - $2); pos += $1 }
      END {
        n = NR; neg = n - pos; i = 1; rank_sum = 0
        while (i <= n) {  # average ranks over ties
          j = i; while (j < n && p[j + 1] == p[i]) j++
          r = (i + j) / 2; for (k = i; k <= j; k++) if (y[k] == 1) rank_sum += r
          i = j + 1
        }
        printf "%.4f %.4f\n", (rank_sum - pos * (pos + 1) / 2) / (pos * neg), ll / n
      }'
}
read -r BEST_AUC BEST_LL < <(best 0)
read -r TAIL_AUC TAIL_LL < <(best "$TAIL_FROM")

field() { sed -n "s/.*$2=\([0-9.na-]*\).*/\1/p" <<< "$1" | head -1; }

# run <label> <launcher: local|mpi> <flags...>: trains, prints one table row.
run() {
  local label=$1 launcher=$2
  shift 2
  local log=$OUT/$label.log
  local start end
  start=$(date +%s.%N)
  if [ "$launcher" = mpi ]; then
    mpirun --oversubscribe -np 3 "$BIN/eddy_train" --num_servers=1 --data="$STREAM" "$@" > "$log" 2>&1
  else
    "$BIN/eddy_train" --local --num_servers=1 --num_workers=1 --data="$STREAM" "$@" > "$log" 2>&1
  fi
  end=$(date +%s.%N)
  local all tail rate
  all=$(grep "since start:" "$log")
  tail=$(grep "evaluated tail" "$log" || true)
  rate=$(sed -n 's/.* s by .*: \(.*\) rows\/s$/\1/p' "$log")
  printf "| %s | %s | %s | %s | %s | %s | %.1f |\n" "$label" "$(field "$all" auc)" \
    "$(field "$all" logloss)" "$(field "$tail" auc)" "$(field "$tail" logloss)" "$rate" \
    "$(echo "$end - $start" | bc)"
}

echo "stream: eddy_gen $GEN_FLAGS; best possible AUC $BEST_AUC, logloss $BEST_LL;" \
  "on rows $TAIL_FROM.. (the last 80%): AUC $TAIL_AUC, logloss $TAIL_LL"
echo "machine: $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| run | progressive AUC | logloss | AUC last 80% | logloss last 80% | rows/s (training) | wall s |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for model in $MODELS; do
  run "$model-local" local --model="$model" --eval_from_rows="$TAIL_FROM"
  run "$model-mpirun-1+1" mpi --model="$model" --eval_from_rows="$TAIL_FROM"
  run "$model-frozen-after-20%" local --model="$model" --eval_from_rows="$TAIL_FROM" \
    --freeze_after_rows="$TAIL_FROM"
done
