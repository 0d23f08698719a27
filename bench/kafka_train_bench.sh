#!/usr/bin/env bash
# DeepFM training speed from a Kafka topic against the same rows from a file, in
# one sitting, runs alternating (file, topic, file, topic, ...). The rows are
# eddy_gen's (same flags and seed for both); the topic has one partition per
# worker. Needs a broker: KAFKA_BOOTSTRAP, or one is started with scripts/kafka.sh.
# Prints a Markdown table for BENCHMARKS.md.
#   bench/kafka_train_bench.sh                          # 500k rows, 3 rounds
#   ROWS=200000 ROUNDS=2 WORKERS=2 bench/kafka_train_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
ROWS=${ROWS:-500000}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-1}
OUT=${OUT:-/tmp/eddy_kafka_train_bench}
TRAIN_FLAGS=${TRAIN_FLAGS:-"--model=deepfm"}
mkdir -p "$OUT"

started=0
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  eval "$(scripts/kafka.sh start)"
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then scripts/kafka.sh stop >/dev/null; fi; }
trap cleanup EXIT

GEN_FLAGS="--rows=$ROWS --seed=3 --preset=criteo_a"
TOPIC=eddy-bench-$$
"$BIN/eddy_gen" $GEN_FLAGS --out="$OUT/stream.tsv" 2>/dev/null
start=$(date +%s.%N)
"$BIN/eddy_gen" $GEN_FLAGS --kafka_partitions="$WORKERS" \
  --out="kafka://$KAFKA_BOOTSTRAP/$TOPIC" 2>/dev/null
produce_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

# Rows/s of the job's summary ("... worker(s): 31.2k rows/s"), in rows.
rate() {
  sed -n 's/.*worker(s): \([0-9.]*\)\([kM]\?\) rows\/s.*/\1 \2/p' "$1" | tail -1 |
    awk '{ m = ($2 == "k") ? 1e3 : ($2 == "M") ? 1e6 : 1; printf "%.0f\n", $1 * m }'
}
auc() { sed -n 's/.*since start: .*auc=\([0-9.]*\).*/\1/p' "$1" | head -1; }

echo "| round | source | rows/s | progressive AUC |"
echo "| --- | --- | --- | --- |"
file_rates=()
kafka_rates=()
for r in $(seq 1 "$ROUNDS"); do
  "$BIN/eddy_train" --local --num_servers=1 --num_workers="$WORKERS" $TRAIN_FLAGS \
    --data="$OUT/stream.tsv" > "$OUT/file_$r.log" 2>&1
  f=$(rate "$OUT/file_$r.log")
  file_rates+=("$f")
  echo "| $r | file | $f | $(auc "$OUT/file_$r.log") |"
  "$BIN/eddy_train" --local --num_servers=1 --num_workers="$WORKERS" $TRAIN_FLAGS \
    --data="kafka://$KAFKA_BOOTSTRAP/$TOPIC?end=latest&group=bench-$r" > "$OUT/kafka_$r.log" 2>&1
  k=$(rate "$OUT/kafka_$r.log")
  kafka_rates+=("$k")
  echo "| $r | kafka | $k | $(auc "$OUT/kafka_$r.log") |"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
fm=$(median "${file_rates[@]}")
km=$(median "${kafka_rates[@]}")
echo
echo "median rows/s: file $fm, kafka $km (kafka/file $(awk -v k="$km" -v f="$fm" 'BEGIN { printf "%.3f", k / f }'));" \
  "producing $ROWS rows took ${produce_s}s"
