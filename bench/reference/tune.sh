#!/usr/bin/env bash
# The reference trainer's small tuning grid, one coordinate at a time, on a
# stream that compare.sh does not measure on (another seed): LR picks the
# Adagrad rate and then the dense Adam rate, FM then the lazy-Adam rate and the
# init scale, DeepFM the dense Adam rate again. Prints one Markdown row per run.
#   bench/reference/tune.sh                      # criteo_a, seed 2, 500k rows
#   PRESET=criteo_b ROWS=100000 bench/reference/tune.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
PRESET=${PRESET:-criteo_a}
ROWS=${ROWS:-500000}
SEED=${SEED:-2}
OUT=${OUT:-/tmp/eddy_reference_tune}
PY=${PY:-/usr/bin/python3}
mkdir -p "$OUT"
DATA=$OUT/$PRESET.$SEED.$ROWS.tsv
[ -f "$DATA" ] || "$BIN/eddy_gen" --preset="$PRESET" --seed="$SEED" --rows="$ROWS" --out="$DATA"

run() {  # model, then reference.py flags
  local model=$1
  shift
  local line
  line=$(nice -n 10 "$PY" bench/reference/reference.py --data="$DATA" --model="$model" "$@")
  local auc ll
  auc=$(sed 's/.*auc=\([0-9.]*\).*/\1/' <<<"$line")
  ll=$(sed 's/.*logloss=\([0-9.]*\).*/\1/' <<<"$line")
  echo "| $model | $* | $auc | $ll |" >&2
  echo "$auc $*"
}
best() { sort -rn | head -1 | cut -d' ' -f2-; }

echo "| model | flags | AUC | logloss |" >&2
echo "|---|---|---|---|" >&2
W=$(for lr in 0.02 0.05 0.1 0.2 0.5; do run lr --weight_lr=$lr; done | best)
W=$(for dlr in 0.001 0.003 0.01 0.03; do run lr $W --dense_lr=$dlr; done | best)
V=$(for vlr in 0.0003 0.001 0.003 0.01; do
  for init in 0.01 0.001; do run fm $W --vector_lr=$vlr --init_std=$init; done
done | best)
V_NO_DENSE=$(sed 's/--dense_lr=[0-9.]* *//' <<<"$V")
# shellcheck disable=SC2086
D=$(for dlr in 0.0003 0.001 0.003 0.01; do run deepfm $V_NO_DENSE --dense_lr=$dlr; done | best)
echo "best: lr: $W; fm: $V; deepfm: $D" >&2
