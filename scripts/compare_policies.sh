#!/usr/bin/env bash
# Compares update policies (BSP, SSP with several staleness bounds, ASP) on one
# generated drifting stream, without and with a straggler worker. Every run is an
# eddy_train job under mpirun: 1 scheduler, 1 server and W workers. From each run's
# JSON-lines metrics it reports rows/s (rows over the slowest worker's training
# time, as eddy_train prints it), the final progressive AUC and logloss, the time
# (elapsed_s of the metrics) to first reach a target AUC, the mean and p99
# staleness of pulls ("n/a" if the binary does not report them) and the time the
# workers spent waiting for pulls, summed over workers.
#
# Output (in OUT): a Markdown table on stdout (also table.md; it adds the maximum
# staleness and the wall time of each mpirun), the raw numbers in results.csv,
# AUC against elapsed time per run in auc_vs_time.png (one panel per straggler
# setting), and per run runs/<label>.log, .jsonl (metrics) and .dat (plot data).
#
#   scripts/compare_policies.sh                      # 400k rows, 4 workers, 10 runs (~1.5 min on 2 cores)
#   QUICK=1 scripts/compare_policies.sh              # 20k rows, 2 workers, bsp / ssp s=1 / asp with a straggler
#   WORKERS=2 ROWS=1000000 DRIFT=250000 scripts/compare_policies.sh
#   scripts/compare_policies.sh --workers=8 --straggler=3:50 --target_auc=0.7 --out=/tmp/p
#   POLICIES="bsp ssp:2 asp" STRAGGLERS="none 0:10 0:40" scripts/compare_policies.sh
#   EXTRA_FLAGS="--model=lr --batch_size=1024" scripts/compare_policies.sh
#
# Settings: environment variable, or the flag --<lower-case name>=value (the flag wins).
#   ROWS, DRIFT, SEED  the stream: eddy_gen --rows --drift_every --seed (400000, 100000, 1);
#                      generated once into OUT and reused while these stay the same
#   WORKERS            worker processes per job (4)
#   POLICIES           space-separated: bsp, bsp:sum, ssp:S (staleness bound S), asp
#                      ("bsp bsp:sum ssp:1 ssp:4 ssp:16 asp"; bsp averages the workers'
#                      gradients of a clock, bsp:sum adds them)
#   STRAGGLER          worker:ms, a worker slowed down by ms per mini-batch (0:20)
#   STRAGGLERS         space-separated straggler settings, "none" for none ("none $STRAGGLER")
#   TARGET_AUC         the AUC whose first crossing is timed (0.75)
#   MODEL_FLAGS        the model ("--model=deepfm --emb_dim=8 --hidden=64,32 --batch_size=512")
#   EXTRA_FLAGS        more eddy_train flags, after MODEL_FLAGS (a repeated flag: the last wins)
#   OUT                output directory (/tmp/eddy_policies)
#   BIN                directory of eddy_train and eddy_gen (build/bin of the repository)
#   RUN_TIMEOUT        seconds before a run is killed and reported as failed (600)
#   QUICK=1 (--quick)  smaller defaults for a smoke test: ROWS=20000 DRIFT=5000 WORKERS=2
#                      POLICIES="bsp ssp:1 asp" STRAGGLERS="$STRAGGLER"
# Relative OUT and BIN paths are taken from the directory the script is called from.
# Needs mpirun, python3 and gnuplot (installed as gnuplot-nox with apt-get if missing).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "compare_policies: $*" >&2; exit 1; }

# Flags override the environment.
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --quick) QUICK=1 ;;
    --rows=*) ROWS=${arg#*=} ;;
    --drift=*) DRIFT=${arg#*=} ;;
    --seed=*) SEED=${arg#*=} ;;
    --workers=*) WORKERS=${arg#*=} ;;
    --policies=*) POLICIES=${arg#*=} ;;
    --straggler=*) STRAGGLER=${arg#*=} ;;
    --stragglers=*) STRAGGLERS=${arg#*=} ;;
    --target_auc=*) TARGET_AUC=${arg#*=} ;;
    --model_flags=*) MODEL_FLAGS=${arg#*=} ;;
    --extra_flags=*) EXTRA_FLAGS=${arg#*=} ;;
    --out=*) OUT=${arg#*=} ;;
    --bin=*) BIN=${arg#*=} ;;
    --run_timeout=*) RUN_TIMEOUT=${arg#*=} ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# absolute <path>: a relative path is taken from the caller's directory.
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
BIN=$(absolute "${BIN:-$ROOT/build/bin}")
OUT=$(absolute "${OUT:-/tmp/eddy_policies}")

QUICK=${QUICK:-0}
STRAGGLER=${STRAGGLER:-0:20}
if [ "$QUICK" = 1 ]; then
  ROWS=${ROWS:-20000} DRIFT=${DRIFT:-5000} WORKERS=${WORKERS:-2}
  POLICIES=${POLICIES:-"bsp ssp:1 asp"} STRAGGLERS=${STRAGGLERS:-"$STRAGGLER"}
else
  ROWS=${ROWS:-400000} DRIFT=${DRIFT:-100000} WORKERS=${WORKERS:-4}
  POLICIES=${POLICIES:-"bsp bsp:sum ssp:1 ssp:4 ssp:16 asp"} STRAGGLERS=${STRAGGLERS:-"none $STRAGGLER"}
fi
SEED=${SEED:-1}
TARGET_AUC=${TARGET_AUC:-0.75}
MODEL_FLAGS=${MODEL_FLAGS:-"--model=deepfm --emb_dim=8 --hidden=64,32 --batch_size=512"}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
PROGRESS_MS=250

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_positive() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }
is_positive "$ROWS" || die "ROWS must be a positive integer, not '$ROWS'"
is_uint "$DRIFT" || die "DRIFT must be an integer >= 0, not '$DRIFT'"
is_uint "$SEED" || die "SEED must be an integer >= 0, not '$SEED'"
is_positive "$WORKERS" || die "WORKERS must be a positive integer, not '$WORKERS'"
is_uint "$RUN_TIMEOUT" || die "RUN_TIMEOUT must be a number of seconds, not '$RUN_TIMEOUT'"
awk -v t="$TARGET_AUC" 'BEGIN { exit !(t ~ /^[0-9]*\.?[0-9]+$/ && t <= 1) }' ||
  die "TARGET_AUC must be a number in [0, 1], not '$TARGET_AUC'"
for s in $STRAGGLERS; do
  [ "$s" = none ] || [[ $s =~ ^[0-9]+:[0-9]+$ ]] ||
    die "straggler setting '$s' is neither 'none' nor worker:ms"
done
# parse_policy <bsp|ssp:S|asp>: sets policy, staleness (the bound; -1: none),
# policy_flags (for eddy_train) and title (for the plot).
parse_policy() {
  case $1 in
    bsp) policy=bsp staleness=0 policy_flags=(--policy=bsp) title=bsp ;;
    bsp:sum) policy=bsp-sum staleness=0 policy_flags=(--policy=bsp --aggregate=sum) title="bsp sum" ;;
    asp) policy=asp staleness=-1 policy_flags=(--policy=asp) title=asp ;;
    ssp:*)
      policy=ssp staleness=${1#ssp:}
      is_positive "$staleness" || die "'$1' in POLICIES: ssp needs a bound >= 1 (ssp:S)"
      policy_flags=(--policy=ssp --staleness="$staleness") title="ssp s=$staleness" ;;
    *) die "unknown policy '$1' in POLICIES (bsp, bsp:sum, ssp:S or asp)" ;;
  esac
}
for p in $POLICIES; do parse_policy "$p"; done
[ -n "$POLICIES" ] || die "POLICIES is empty"
[ -n "$STRAGGLERS" ] || die "STRAGGLERS is empty"

# The tools: binaries, mpirun, python3, gnuplot (installed if missing).
for b in eddy_train eddy_gen; do
  [ -x "$BIN/$b" ] || die "$BIN/$b not found; build it: cmake --build $ROOT/build --target eddy_train eddy_gen (or set BIN)"
done
command -v mpirun > /dev/null || die "mpirun not found (Debian: apt-get install openmpi-bin, or run scripts/setup.sh)"
command -v python3 > /dev/null || die "python3 not found"
if ! command -v gnuplot > /dev/null; then
  echo "compare_policies: gnuplot missing; installing gnuplot-nox with apt-get" >&2
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo > /dev/null || die "gnuplot is missing and we are not root: apt-get install gnuplot-nox"
    SUDO=(sudo)
  fi
  if ! { "${SUDO[@]}" apt-get update -qq &&
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox; } > "${TMPDIR:-/tmp}/compare_policies_apt.log" 2>&1; then
    tail -n 20 "${TMPDIR:-/tmp}/compare_policies_apt.log" >&2
    die "could not install gnuplot-nox (log above)"
  fi
  command -v gnuplot > /dev/null || die "gnuplot-nox installed but gnuplot is still not on PATH"
fi

mkdir -p "$OUT/runs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo

# The stream, generated once for these flags (the .done file names them).
GEN_FLAGS="--rows=$ROWS --drift_every=$DRIFT --seed=$SEED"
STREAM=$OUT/stream.tsv
if [ ! -f "$STREAM.done" ] || [ "$(cat "$STREAM.done")" != "$GEN_FLAGS" ]; then
  echo "compare_policies: generating the stream: eddy_gen $GEN_FLAGS" >&2
  rm -f "$STREAM.done"
  # shellcheck disable=SC2086  # GEN_FLAGS is a list of flags
  "$BIN/eddy_gen" $GEN_FLAGS --out="$STREAM" --report > "$OUT/gen.txt" 2>&1 ||
    { tail -n 20 "$OUT/gen.txt" >&2; die "eddy_gen failed (log above)"; }
  echo "$GEN_FLAGS" > "$STREAM.done"
fi
BEST=$(sed -n 's/^\(best_auc=.*\) (.*/\1/p' "$OUT/gen.txt" 2> /dev/null || true)

read -r -a model_flags <<< "$MODEL_FLAGS"
read -r -a extra_flags <<< "$EXTRA_FLAGS"

# Per run: its metrics -> one CSV line on stdout (the columns of results.csv, then
# staleness_max and wall_s for the table), and its AUC curve (elapsed_s auc) into
# the .dat file. Fails with a message when the metrics are missing or broken.
summarize_run() {
  python3 - "$@" << 'PY'
import csv, json, re, sys

policy, staleness, straggler, jsonl, log, dat, target, wall_s = sys.argv[1:9]
target = float(target)

def fail(msg):
    print(f"{jsonl}: {msg}", file=sys.stderr)
    sys.exit(1)

records = []
try:
    with open(jsonl) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    fail(f"line {n} is not JSON: {e}")
except OSError as e:
    fail(f"cannot read the metrics: {e}")
if not records:
    fail("no metrics records")
final = records[-1]
if final.get("final") is not True:
    fail('the last record is not the final one ("final":true)')

def num(v, fmt):
    return fmt % v if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"

# rows/s as eddy_train reports it: fresh rows over the slowest worker's training
# time ("trained on N rows (...) in T s by W worker(s): R rows/s", R like 850,
# 45.3k or 1.23M); without that line, rows over the elapsed time of the final record.
rows_per_s = "n/a"
with open(log, errors="replace") as f:
    m = re.search(r"^trained on [\d,]+ rows \(.*\) in [\d.]+ s by \d+ worker\(s\): "
                  r"([\d.]+)([kM]?) rows/s$", f.read(), re.M)
if m:
    rows_per_s = "%.1f" % (float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6}[m.group(2)])
elif isinstance(final.get("rows"), int) and (final.get("elapsed_s") or 0) > 0:
    rows_per_s = "%.1f" % (final["rows"] / final["elapsed_s"])

time_to_target = "never"
for r in records:
    if isinstance(r.get("auc"), (int, float)) and r["auc"] >= target:
        time_to_target = num(r.get("elapsed_s"), "%.2f")
        break

with open(dat, "w") as f:
    f.write("# elapsed_s auc\n")
    for r in records:
        if isinstance(r.get("auc"), (int, float)) and isinstance(r.get("elapsed_s"), (int, float)):
            f.write(f"{r['elapsed_s']} {r['auc']}\n")

csv.writer(sys.stdout, lineterminator="\n").writerow([
    policy, staleness, straggler, rows_per_s,
    num(final.get("auc"), "%.6f"), num(final.get("logloss"), "%.6f"), time_to_target,
    num(final.get("staleness_mean"), "%.3f"), num(final.get("staleness_p99"), "%g"),
    num(final.get("wait_s"), "%.3f"), num(final.get("staleness_max"), "%g"), wall_s,
])
PY
}

CSV=$OUT/results.csv
HEADER=policy,staleness,straggler,rows_per_s,auc,logloss,time_to_target_s,staleness_mean,staleness_p99,wait_s
echo "$HEADER" > "$CSV"
SUMMARY=$OUT/runs/summary.csv  # results.csv + staleness_max, wall_s (the table's source)
echo "$HEADER,staleness_max,wall_s" > "$SUMMARY"
PLOT_RUNS=()  # "straggler|title|dat file" per run, for gnuplot
PLOT_DATS=()  # the dat files
n_runs=$(($(wc -w <<< "$POLICIES") * $(wc -w <<< "$STRAGGLERS")))
i=0
for straggler in $STRAGGLERS; do
  for p in $POLICIES; do
    parse_policy "$p"
    label=${p/:/-s}
    straggler_flags=()
    if [ "$straggler" != none ]; then
      straggler_flags=(--straggler="$straggler")
      label+=-straggler-${straggler/:/-}
    fi
    i=$((i + 1))
    log=$OUT/runs/$label.log
    jsonl=$OUT/runs/$label.jsonl
    rm -f "$jsonl"
    printf 'compare_policies: run %d/%d: %-8s straggler %-5s ... ' "$i" "$n_runs" "$title" "$straggler" >&2
    start=$(date +%s.%N)
    rc=0
    timeout --kill-after=10 "$RUN_TIMEOUT" \
      mpirun --oversubscribe -np $((WORKERS + 2)) "$BIN/eddy_train" --num_servers=1 \
      --data="$STREAM" "${policy_flags[@]}" "${straggler_flags[@]}" "${model_flags[@]}" \
      "${extra_flags[@]}" --progress_interval_ms=$PROGRESS_MS --metrics_out="$jsonl" \
      > "$log" 2>&1 || rc=$?
    end=$(date +%s.%N)
    wall_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" != 0 ]; then
      echo "failed" >&2
      [ "$rc" = 124 ] && echo "compare_policies: killed after RUN_TIMEOUT=$RUN_TIMEOUT s" >&2
      echo "--- last 30 lines of $log:" >&2
      tail -n 30 "$log" >&2
      die "run '$label' failed (exit $rc); its log: $log"
    fi
    if ! line=$(summarize_run "$policy" "$staleness" "$straggler" "$jsonl" "$log" \
      "$OUT/runs/$label.dat" "$TARGET_AUC" "$wall_s"); then
      echo "failed" >&2
      echo "--- last 30 lines of $log:" >&2
      tail -n 30 "$log" >&2
      die "run '$label' left no usable metrics in $jsonl"
    fi
    echo "$line" | cut -d, -f1-10 >> "$CSV"
    echo "$line" >> "$SUMMARY"
    echo "$wall_s s" >&2
    PLOT_RUNS+=("$straggler|$title|$OUT/runs/$label.dat")
    PLOT_DATS+=("$OUT/runs/$label.dat")
  done
done

# AUC against wall time: one panel per straggler setting, one line per policy.
PNG=$OUT/auc_vs_time.png
n_panels=$(wc -w <<< "$STRAGGLERS")
terminal=png
gnuplot -e 'set terminal pngcairo' > /dev/null 2>&1 && terminal=pngcairo
{
  echo "set terminal $terminal noenhanced size $((640 * n_panels + 80)),520"
  echo "set output '$PNG'"
  echo "set multiplot layout 1,$n_panels title 'Progressive AUC: eddy_gen $GEN_FLAGS; $WORKERS workers, 1 server'"
  echo "set xlabel 'elapsed s'"
  echo "set ylabel 'progressive AUC'"
  # The same time axis in every panel, to compare them.
  xmax=$(cat "${PLOT_DATS[@]}" | awk '!/^#/ && $1 > m { m = $1 } END { print (m > 0 ? 1.03 * m : 1) }')
  echo "set xrange [0:$xmax]"
  echo "set key bottom right"
  echo "set grid"
  for straggler in $STRAGGLERS; do
    if [ "$straggler" = none ]; then echo "set title 'no straggler'"; else
      echo "set title 'straggler $straggler (worker:ms per mini-batch)'"
    fi
    plot="plot"
    for run in "${PLOT_RUNS[@]}"; do
      IFS='|' read -r s title dat <<< "$run"
      [ "$s" = "$straggler" ] || continue
      plot+=" '$dat' using 1:2 with linespoints lw 2 pt 7 ps 0.4 title '$title',"
    done
    echo "$plot $TARGET_AUC with lines dt 2 lc rgb 'gray50' title 'target $TARGET_AUC'"
  done
  echo "unset multiplot"
} > "$OUT/auc_vs_time.gp"
gnuplot "$OUT/auc_vs_time.gp" 2> "$OUT/gnuplot.log" ||
  { cat "$OUT/gnuplot.log" >&2; die "gnuplot failed on $OUT/auc_vs_time.gp"; }
[ -s "$PNG" ] || die "gnuplot wrote no $PNG"

# The Markdown table, from the CSV.
python3 - "$SUMMARY" "$TARGET_AUC" > "$OUT/table.md" << 'PY'
import csv, sys

path, target = sys.argv[1:3]

def fmt(v, spec):
    try:
        return format(float(v), spec)
    except ValueError:
        return v

print(f"| policy | staleness bound | straggler | rows/s | wall s | AUC | logloss "
      f"| s to AUC {target} | staleness mean | p99 | max | pull wait s (all workers) |")
print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
with open(path) as f:
    for r in csv.DictReader(f):
        bound = "none" if r["staleness"] == "-1" else r["staleness"]
        print(f"| {r['policy']} | {bound} | {r['straggler']} | {fmt(r['rows_per_s'], ',.0f')} "
              f"| {r['wall_s']} | {fmt(r['auc'], '.4f')} | {fmt(r['logloss'], '.5f')} "
              f"| {fmt(r['time_to_target_s'], '.2f')} | {fmt(r['staleness_mean'], '.2f')} "
              f"| {r['staleness_p99']} | {r['staleness_max']} | {fmt(r['wait_s'], '.1f')} |")
PY

echo "stream: eddy_gen $GEN_FLAGS${BEST:+; $BEST}"
echo "job: mpirun -np $((WORKERS + 2)): 1 server, $WORKERS workers; $MODEL_FLAGS${EXTRA_FLAGS:+ $EXTRA_FLAGS}"
echo "machine: $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
cat "$OUT/table.md"
echo
echo "csv: $CSV"
echo "plot: $PNG"
