#!/usr/bin/env bash
# Self-healing benchmark, end to end: kill -9 of a server -> training again, for a
# model whose killed server shard holds SHARD_ROWS sparse rows.
#
# One process per role (--role, bound to 127.0.0.1): a scheduler, 2 servers and 2
# workers, FM with emb_dim 16 (Eddy's default optimizers: Adam on the embeddings,
# Adagrad on the first-order weights), ASP, --model_dir in a temporary directory
# (a version every SNAPSHOT_EVERY, default --full_every, --keep_versions=1). Once
# the servers hold SHARD_ROWS rows each, a version is asked for (eddy_models
# snapshot); once it is committed, server 1 gets SIGKILL and a replacement is
# started with the same flags at once (as a supervisor would). The table comes
# from the kill time (date +%s.%N) and the glog timestamps of the logs; the rows
# trained again are those of the detection time (a kill at a random moment adds
# half a version interval on average).
#
# The stream: eddy_gen --preset=criteo_a, with UNIQUE_COLS of its 26 categorical
# columns replaced by ids never seen before in its first rows, so the model grows
# by about UNIQUE_COLS rows per stream row up to the target and then stops
# growing (eddy_gen's own vocabularies top out at ~4 M ids in all, and
# --max_vocab only lowers them). It is kept in CACHE_DIR for the next run.
#
# Usage (after building; see README.md):
#   bench/heal_bench.sh                              # 10 M rows per server shard, heartbeat 500 (the default) and 200 ms
#   SHARD_ROWS=1000000 bench/heal_bench.sh           # 1 M rows per server shard
#   HEARTBEAT_MS=200 SHARD_ROWS=1000000 bench/heal_bench.sh
# Knobs (environment):
#   SHARD_ROWS=10000000   sparse rows the killed server's shard holds at the version (at least)
#   HEARTBEAT_MS="1000 200"  --heartbeat_interval_ms of each run (one table column per value)
#   SNAPSHOT_EVERY=10s    --snapshot_every
#   UNIQUE_COLS=13        fresh ids per stream row
#   MODEL_FLAGS="--model=fm --emb_dim=16"   model flags of every process
#   EXTRA_FLAGS=""        more flags for every process; on a busy machine
#                         --node_timeout_ms=30000: a server copying a version of
#                         millions of rows can miss heartbeats for > 10 s (BENCHMARKS.md)
#   BIN=build/bin  CACHE_DIR=/tmp/eddy_heal_bench  TIMEOUT_S=900 (per wait)
#   KEEP_LOGS=1           keep the logs (they are kept anyway when a run fails)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
SHARD_ROWS=${SHARD_ROWS:-10000000}
HEARTBEAT_MS=${HEARTBEAT_MS:-"500 200"}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-10s}
UNIQUE_COLS=${UNIQUE_COLS:-13}
MODEL_FLAGS=${MODEL_FLAGS:-"--model=fm --emb_dim=16"}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
CACHE_DIR=${CACHE_DIR:-/tmp/eddy_heal_bench}
TIMEOUT_S=${TIMEOUT_S:-900}
KEEP_LOGS=${KEEP_LOGS:-0}

for b in eddy_train eddy_gen eddy_models; do
  [ -x "$BIN/$b" ] || { echo "heal_bench: $BIN/$b not found; build first" >&2; exit 1; }
done
if [ "$UNIQUE_COLS" -lt 1 ] || [ "$UNIQUE_COLS" -gt 26 ]; then
  echo "heal_bench: UNIQUE_COLS must be in [1, 26]" >&2
  exit 1
fi

# ---- processes and clean-up ----------------------------------------------------
PIDS=()
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/eddy_heal_bench.XXXXXX")
FAILED=1
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2> /dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2> /dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_all
  rm -rf "$RUN_DIR"/*/models
  if [ "$FAILED" = 1 ] || [ "$KEEP_LOGS" = 1 ]; then
    echo "heal_bench: logs kept in $RUN_DIR" >&2
  else
    rm -rf "$RUN_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
  echo "heal_bench: $*" >&2
  exit 1
}

# wait_for <file> <extended regex> <what>: polls until the file has a matching line.
wait_for() {
  local file=$1 re=$2 what=$3 deadline=$((SECONDS + TIMEOUT_S))
  until grep -Eq -- "$re" "$file" 2> /dev/null; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $what (in $file)"
    kill -0 "${PIDS[0]}" 2> /dev/null || die "the scheduler ended while waiting for $what"
    sleep 0.02
  done
}

# Epoch seconds of a glog line (I20261203 15:37:24.597302 ...; the local time zone).
glog_time() {
  local d=${1:1:8} t
  t=$(cut -d' ' -f2 <<< "$1")
  date -d "${d:0:4}-${d:4:2}-${d:6:2} $t" +%s.%N
}
sub() { echo "$1 - $2" | bc -l | two; }
two() { awk '{ printf "%.2f", $1 }'; }
# m <text> <extended regex with one group>: prints the group.
m() { if [[ $1 =~ $2 ]]; then echo "${BASH_REMATCH[1]}"; fi; }

# ---- the stream ----------------------------------------------------------------
# The first FRESH_ROWS rows bring UNIQUE_COLS new ids each, 1% more than the two
# shards' target (the split between the servers is even to well under 1%); the
# rows after them take their ids from the same range again (row r reuses row
# r mod FRESH_ROWS's), so the model stops growing there and a version taken after
# that holds the target. The rows after give the workers something to train on
# once they are back: FRESH_ROWS + 1 M.
FRESH_IDS=$((2 * SHARD_ROWS * 101 / 100))
FRESH_ROWS=$(((FRESH_IDS + UNIQUE_COLS - 1) / UNIQUE_COLS))
ROWS=$((2 * FRESH_ROWS + 1000000))
mkdir -p "$CACHE_DIR"
STREAM=$CACHE_DIR/stream_${ROWS}_f${FRESH_ROWS}_u${UNIQUE_COLS}.tsv
if [ ! -f "$STREAM.done" ]; then
  echo "generating $ROWS rows ($UNIQUE_COLS fresh ids in each of the first $FRESH_ROWS) into $STREAM ..." >&2
  rm -f "$CACHE_DIR"/stream_*  # one stream at a time: mind the disk
  # Categorical columns (15..40 = C1..C26), widest vocabularies first.
  "$BIN/eddy_gen" --preset=criteo_a --rows="$ROWS" --seed=1 --out=- 2> /dev/null |
    awk -F'\t' -v OFS='\t' -v u="$UNIQUE_COLS" -v fresh="$FRESH_ROWS" '
      BEGIN { split("17 18 26 30 35 38 40 24 29 21 25 32 27 33 34 37 15 16 19 20 22 23 28 31 36 39", c, " ") }
      {
        id = sprintf("%x", (NR - 1) % fresh + 1)
        for (i = 1; i <= u; i++) $(c[i]) = id
        print
      }' > "$STREAM.tmp"
  mv "$STREAM.tmp" "$STREAM"
  touch "$STREAM.done"
fi

# ---- one run -------------------------------------------------------------------
# run <heartbeat_ms>: one job, killed once; fills T[*,<heartbeat_ms>].
run() {
  local hb=$1 dir=$RUN_DIR/hb$1
  mkdir -p "$dir/models"
  # shellcheck disable=SC2206  # word splitting of the flag lists is wanted
  local flags=($MODEL_FLAGS --num_servers=2 --num_workers=2 --policy=asp --bind=127.0.0.1
    "--data=$STREAM" "--model_dir=$dir/models" "--snapshot_every=$SNAPSHOT_EVERY"
    --keep_versions=1 "--heartbeat_interval_ms=$hb" $EXTRA_FLAGS)
  local slog=$dir/scheduler.log
  "$BIN/eddy_train" --role=scheduler "${flags[@]}" "--metrics_out=$dir/metrics.jsonl" \
    > "$slog" 2>&1 &
  PIDS+=($!)
  wait_for "$slog" "scheduler endpoint: tcp://" "the scheduler's endpoint"
  local endpoint
  endpoint=$(grep -o 'scheduler endpoint: tcp://[0-9.:]*' "$slog" | head -1 | cut -d' ' -f3)
  local names=(server0 server1 worker0 worker1) roles=(server server worker worker) i
  for i in 0 1 2 3; do
    "$BIN/eddy_train" "--role=${roles[$i]}" "--scheduler=$endpoint" "${flags[@]}" \
      > "$dir/${names[$i]}.log" 2>&1 &
    PIDS+=($!)
  done
  # Servers and workers register in start order, but the ids are the scheduler's:
  # find the process that is server 1.
  wait_for "$slog" "cluster up" "the cluster"
  local victim
  victim=$(sed -n 's/.*scheduler: server 1 ([^:]*:\([0-9]*\),.*registered$/\1/p' "$slog" | head -1)
  [ -n "$victim" ] || die "no pid for server 1 in $slog"
  local survivor_log=$dir/server0.log
  if [ "$victim" = "${PIDS[1]}" ]; then survivor_log=$dir/server1.log; fi

  # Wait until the servers hold the target (their heartbeats' row counts in the
  # metrics), then for a version taken after that moment to commit.
  local want=$FRESH_IDS deadline=$((SECONDS + TIMEOUT_S)) have=0
  while true; do
    have=$({ grep -o '"server_rows":[0-9]*' "$dir/metrics.jsonl" 2> /dev/null || true; } |
      tail -1 | cut -d: -f2)
    [ "${have:-0}" -ge "$want" ] && break
    [ $SECONDS -lt $deadline ] || die "the servers hold ${have:-0} rows, not $want, after ${TIMEOUT_S}s"
    grep -q ") finished" "$slog" && die "the stream ended before the servers held $want rows"
    kill -0 "${PIDS[0]}" 2> /dev/null || die "the scheduler ended"
    sleep 0.05
  done
  # Ask for a version now (as an operator could): its cut comes after this moment.
  local asked version
  asked=$("$BIN/eddy_models" snapshot "--scheduler=$endpoint") || die "eddy_models snapshot failed"
  version=$(m "$asked" 'version ([0-9]+) will be taken')
  [ -n "$version" ] || die "eddy_models snapshot said: $asked"
  wait_for "$slog" "version $version (committed|failed)" "version $version"
  grep -q "version $version committed" "$slog" || die "version $version failed"
  # A server whose event loop stalls past --node_timeout_ms (e.g. copying a large
  # full version) is taken for lost before the kill: no measurement then.
  if grep -q "stopped answering" "$slog"; then
    die "a node was declared lost before the kill: $(grep -m1 "stopped answering" "$slog" | cut -c1-200)"
  fi
  local committed_line
  committed_line=$(grep "version $version committed" "$slog" | head -1)

  # The kill and the supervisor's restart.
  local t_kill
  t_kill=$(date +%s.%N)
  kill -KILL "$victim"
  wait "$victim" 2> /dev/null || true  # no "Killed" message from bash
  "$BIN/eddy_train" --role=server "--scheduler=$endpoint" "${flags[@]}" > "$dir/replacement.log" 2>&1 &
  PIDS+=($!)

  wait_for "$slog" "recovered from the loss of server" "the recovery"
  wait_for "$dir/worker0.log" "training again" "worker 0 to train again"
  wait_for "$dir/worker1.log" "training again" "worker 1 to train again"
  wait_for "$dir/metrics.jsonl" '"event":"recovery","phase":"done"' "the recovery event"

  local l_noticed l_back l_survivor l_repl l_w0 l_w1
  l_noticed=$(grep "stopped answering" "$slog" | head -1)
  l_back=$(grep "scheduler: recovered from the loss of server" "$slog" | head -1)
  l_survivor=$(grep "rolled back to version" "$survivor_log" | head -1)
  l_repl=$(grep "restored version" "$dir/replacement.log" | head -1)
  l_w0=$(grep "training again" "$dir/worker0.log" | head -1)
  l_w1=$(grep "training again" "$dir/worker1.log" | head -1)
  local t_noticed t_back t_w0 t_w1 t_train
  t_noticed=$(glog_time "$l_noticed")
  t_back=$(glog_time "$l_back")
  t_w0=$(glog_time "$l_w0")
  t_w1=$(glog_time "$l_w1")
  t_train=$(printf '%s\n%s\n' "$t_w0" "$t_w1" | sort -g | tail -1)
  T[VERSION,$hb]=$(m "$l_survivor" 'rolled back to version ([0-9]+)')
  T[NOTICED,$hb]=$(sub "$t_noticed" "$t_kill")
  # The scheduler says how long ago (0.1 s steps) it saw the connection close.
  T[CLOSED,$hb]=$(sub "${T[NOTICED,$hb]}" "$(m "$l_noticed" 'connection closed ([0-9.]+) s ago')")
  T[SERVERS,$hb]=$(sub "$t_back" "$t_noticed")
  T[WORKERS,$hb]=$(sub "$t_train" "$t_back")
  T[TOTAL,$hb]=$(sub "$t_train" "$t_kill")
  T[SURV_ROWS,$hb]=$(m "$l_survivor" '\(([0-9]+) rows\) in')
  T[SURV_S,$hb]=$(m "$l_survivor" 'rows\) in ([0-9.e-]+) s' | two)
  T[REPL_ROWS,$hb]=$(m "$l_repl" ', ([0-9]+) rows from')
  T[REPL_CHAIN,$hb]=$(m "$l_repl" 'chain of ([0-9]+)')
  T[REPL_S,$hb]=$(m "$l_repl" '\) in ([0-9.e-]+) s ' | two)
  T[REPL_RATE,$hb]=$(m "$l_repl" '\(([0-9.e-]+) M rows/s read\)' | two)
  T[SKIPPED,$hb]=$(m "$l_w0" '\(([0-9]+) rows skipped')
  T[SKIP_S,$hb]=$({
    m "$l_w0" 'position in ([0-9.e-]+) s'
    m "$l_w1" 'position in ([0-9.e-]+) s'
  } | sort -g | tail -1 | two)
  T[REPLAYED,$hb]=$(m "$(grep '"event":"recovery","phase":"done"' "$dir/metrics.jsonl" | head -1)" \
    '"rows_replayed":([0-9]+)')
  echo "heartbeat $hb ms: killed server 1 (pid $victim) after version ${committed_line#*version }" >&2
  [ "${T[REPL_ROWS,$hb]}" -ge "$SHARD_ROWS" ] ||
    echo "heal_bench: warning: the killed shard held ${T[REPL_ROWS,$hb]} rows, under $SHARD_ROWS" >&2
  stop_all
  rm -rf "$dir/models"
}

LOAD_BEFORE=$(uptime | sed 's/.*load average: //')
declare -A T  # T[<what>,<heartbeat ms>]: the results of each run
HBS=()
for hb in $HEARTBEAT_MS; do
  run "$hb"
  HBS+=("$hb")
done
LOAD_AFTER=$(uptime | sed 's/.*load average: //')

row() {  # row <label> <key> [bold]
  local line="| $1 |" hb
  for hb in "${HBS[@]}"; do
    if [ "${3:-}" = bold ]; then line+=" **${T[$2,$hb]} s** |"; else line+=" ${T[$2,$hb]} |"; fi
  done
  echo "$line"
}
grouped() { printf "%'d" "$1" 2> /dev/null || echo "$1"; }

echo
echo "kill -9 of server 1 -> training again; $SHARD_ROWS+ rows per server shard;" \
  "$MODEL_FLAGS, 2 servers + 2 workers, ASP, --snapshot_every=$SNAPSHOT_EVERY;" \
  "$(nproc) cores; load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
echo
header="| step |"
sep="| --- |"
for hb in "${HBS[@]}"; do
  header+=" heartbeat $hb ms |"
  sep+=" --- |"
done
echo "$header"
echo "$sep"
line="| kill → loss noticed (connection closed, then 2 heartbeats of grace) |"
for hb in "${HBS[@]}"; do
  line+=" ${T[NOTICED,$hb]} s (closed seen after ~${T[CLOSED,$hb]} s) |"
done
echo "$line"
line="| loss → every server at the version (survivor reloads; replacement starts and loads) |"
for hb in "${HBS[@]}"; do
  line+=" ${T[SERVERS,$hb]} s (v${T[VERSION,$hb]}: survivor $(grouped "${T[SURV_ROWS,$hb]}") rows in ${T[SURV_S,$hb]} s; replacement $(grouped "${T[REPL_ROWS,$hb]}") rows, chain of ${T[REPL_CHAIN,$hb]}, in ${T[REPL_S,$hb]} s, ${T[REPL_RATE,$hb]} M rows/s read) |"
done
echo "$line"
line="| → workers training again (skip to the version's position, then the first mini-batch) |"
for hb in "${HBS[@]}"; do
  line+=" ${T[WORKERS,$hb]} s (skipped $(grouped "${T[SKIPPED,$hb]}") rows in ≤ ${T[SKIP_S,$hb]} s) |"
done
echo "$line"
row "**kill → training again**" TOTAL bold
line="| rows trained again (recovery event) |"
for hb in "${HBS[@]}"; do line+=" $(grouped "${T[REPLAYED,$hb]}") |"; done
echo "$line"
FAILED=0
