#!/usr/bin/env bash
# Eddy against the PyTorch reference (bench/reference/reference.py) on the same
# rows of a preset stream: progressive AUC and logloss over all rows, end-to-end
# rows/s (rows / wall time of the whole process) and peak RSS (/usr/bin/time -v)
# of each, for lr, fm and deepfm, with the best achievable AUC from eddy_gen
# --report. Eddy runs with its default flags (--local, 1 server, 1 worker).
# Prints one Markdown table.
#   bench/reference/compare.sh                              # criteo_a, 500k rows
#   PRESET=criteo_b ROWS=200000 MODELS="lr fm" bench/reference/compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
PRESET=${PRESET:-criteo_a}
ROWS=${ROWS:-500000}
SEED=${SEED:-1}
MODELS=${MODELS:-"lr fm deepfm"}
OUT=${OUT:-/tmp/eddy_reference_compare}
PY=${PY:-/usr/bin/python3}
# The reference's rates, from the grid in bench/reference/README.md.
REF_FLAGS_lr=${REF_FLAGS_lr:-"--weight_lr=0.05 --dense_lr=0.01"}
REF_FLAGS_fm=${REF_FLAGS_fm:-"--weight_lr=0.05 --dense_lr=0.01 --vector_lr=0.001 --init_std=0.001"}
REF_FLAGS_deepfm=${REF_FLAGS_deepfm:-"--weight_lr=0.05 --vector_lr=0.001 --init_std=0.001 --dense_lr=0.001"}
mkdir -p "$OUT"
[ -x /usr/bin/time ] || { echo "compare.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
"$PY" -c "import torch" 2>/dev/null ||
  { echo "compare.sh: needs PyTorch for $PY (apt-get install python3-torch)" >&2; exit 1; }

DATA=$OUT/$PRESET.$SEED.$ROWS.tsv
"$BIN/eddy_gen" --preset="$PRESET" --seed="$SEED" --rows="$ROWS" --out="$DATA" --report \
  > "$OUT/gen.txt"
BEST_AUC=$(sed -n 's/.*best_auc=\([0-9.]*\).*/\1/p' "$OUT/gen.txt")

wall_s() {  # "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.03" -> seconds
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0;
    for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$1"
}
rss_mb() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }

echo "$PRESET, $ROWS rows, seed $SEED, best achievable AUC $BEST_AUC ($(date -u +%F))"
echo
echo "| model | Eddy AUC | ref AUC | gap | Eddy logloss | ref logloss | Eddy rows/s | ref rows/s | Eddy RSS MB | ref RSS MB | best AUC |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for m in $MODELS; do
  /usr/bin/time -v -o "$OUT/eddy.$m.time" "$BIN/eddy_train" --local --data="$DATA" --model="$m" \
    > "$OUT/eddy.$m.out" 2> "$OUT/eddy.$m.err"
  line=$(grep "progressive validation, since start" "$OUT/eddy.$m.out")
  e_auc=$(sed 's/.* auc=\([0-9.]*\).*/\1/' <<<"$line")
  e_ll=$(sed 's/.* logloss=\([0-9.]*\).*/\1/' <<<"$line")
  flags_var=REF_FLAGS_$m
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$OUT/ref.$m.time" "$PY" bench/reference/reference.py --data="$DATA" \
    --model="$m" ${!flags_var} > "$OUT/ref.$m.out" 2> "$OUT/ref.$m.err"
  line=$(cat "$OUT/ref.$m.out")
  r_auc=$(sed 's/.* auc=\([0-9.]*\).*/\1/' <<<"$line")
  r_ll=$(sed 's/.* logloss=\([0-9.]*\).*/\1/' <<<"$line")
  awk -v m="$m" -v ea="$e_auc" -v ra="$r_auc" -v el="$e_ll" -v rl="$r_ll" -v rows="$ROWS" \
    -v ew="$(wall_s "$OUT/eddy.$m.time")" -v rw="$(wall_s "$OUT/ref.$m.time")" \
    -v em="$(rss_mb "$OUT/eddy.$m.time")" -v rm="$(rss_mb "$OUT/ref.$m.time")" -v best="$BEST_AUC" \
    'BEGIN { printf "| %s | %.4f | %.4f | %+.4f | %.4f | %.4f | %.0f | %.0f | %s | %s | %.4f |\n",
             m, ea, ra, ea - ra, el, rl, rows / ew, rows / rw, em, rm, best }'
done
