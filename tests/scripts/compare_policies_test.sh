#!/usr/bin/env bash
# Smoke test of scripts/compare_policies.sh in QUICK mode (a 20k-row stream, 2
# workers, bsp / ssp s=1 / asp with a straggler): the script succeeds, prints a
# table row per run, writes the CSV (header, one row per run, numeric rows/s and
# AUC) and a non-empty PNG. Runs from any directory; BIN (the binaries' directory)
# is passed on to the script, ctest sets it to the build's bin/.
#   tests/scripts/compare_policies_test.sh
#   BIN=/path/to/build/bin tests/scripts/compare_policies_test.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/compare_policies_test.XXXXXX")
RUNS=3  # QUICK mode: bsp, ssp s=1, asp, one straggler setting

fail() {
  echo "FAIL: $*" >&2
  echo "(output kept in $OUT)" >&2
  exit 1
}

rc=0
QUICK=1 OUT=$OUT "$ROOT/scripts/compare_policies.sh" > "$OUT/stdout.txt" 2> "$OUT/stderr.txt" || rc=$?
cat "$OUT/stdout.txt"
if [ "$rc" != 0 ]; then
  cat "$OUT/stderr.txt" >&2
  fail "compare_policies.sh exited with $rc"
fi

# The table: one row per run, for each policy.
rows=$(grep -cE '^\| (bsp|ssp|asp) \|' "$OUT/stdout.txt" || true)
[ "$rows" = "$RUNS" ] || fail "the table has $rows run rows, expected $RUNS"
for p in bsp ssp asp; do
  grep -qE "^\| $p \|" "$OUT/stdout.txt" || fail "no table row for $p"
done

# The CSV: the header, one row per run, numeric rows_per_s (> 0) and auc (in [0, 1]).
CSV=$OUT/results.csv
[ -f "$CSV" ] || fail "no $CSV"
header=policy,staleness,straggler,rows_per_s,auc,logloss,time_to_target_s,staleness_mean,staleness_p99,wait_s
[ "$(head -n 1 "$CSV")" = "$header" ] || fail "unexpected CSV header: $(head -n 1 "$CSV")"
lines=$(tail -n +2 "$CSV" | grep -c . || true)
[ "$lines" = "$RUNS" ] || fail "the CSV has $lines rows, expected $RUNS"
tail -n +2 "$CSV" | awk -F, '
  function numeric(v) { return v ~ /^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
  NF != 10 { print "CSV row " NR ": " NF " fields, expected 10: " $0; bad = 1; next }
  !numeric($4) || $4 <= 0 { print "CSV row " NR ": rows_per_s is not a positive number: " $4; bad = 1 }
  !numeric($5) || $5 > 1 { print "CSV row " NR ": auc is not a number in [0, 1]: " $5; bad = 1 }
  END { exit bad }' >&2 || fail "bad CSV rows in $CSV"

# The plot.
PNG=$OUT/auc_vs_time.png
[ -s "$PNG" ] || fail "$PNG is missing or empty"
[ "$(head -c 4 "$PNG" | tail -c 3)" = PNG ] || fail "$PNG is not a PNG file"

rm -rf "$OUT"
echo "PASS"
