#!/usr/bin/env bash
# HTTP/JSON predict throughput and latency of eddy_serve (wrk, Debian's `wrk`):
# trains a small deepfm model (or uses MODEL_DIR), starts a replica with
# --http_port and drives POST /v1/models/eddy:predict with 1-row and 64-row
# bodies. Prints wrk's latency percentiles and rows/s per case.
#   bench/http_bench.sh                      # build/bin, 10 s per case
#   DURATION=5s CONNECTIONS=4 bench/http_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bin}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-4}
THREADS=${THREADS:-2}
HTTP_THREADS=${HTTP_THREADS:-4}
command -v wrk >/dev/null || { echo "http_bench: install wrk (apt-get install wrk)"; exit 2; }
WORK=$(mktemp -d)
SERVE_PID=""
cleanup() { [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
if [ -z "${MODEL_DIR:-}" ]; then
  "$BIN/eddy_gen" --rows=20000 --seed=5 --out="$WORK/rows.tsv" >/dev/null 2>&1
  "$BIN/eddy_train" --local --data="$WORK/rows.tsv" --model_dir="$WORK/models" --model=deepfm \
    --emb_dim=16 --hidden=400,400,400 >/dev/null 2>&1
  MODEL_DIR=$WORK/models
  head -64 "$WORK/rows.tsv" | cut -f2- > "$WORK/rows64.txt"
else
  "$BIN/eddy_gen" --rows=64 --seed=5 --out="$WORK/r.tsv" >/dev/null 2>&1
  cut -f2- "$WORK/r.tsv" > "$WORK/rows64.txt"
fi
"$BIN/eddy_serve" --model_dir="$MODEL_DIR" --http_port=0 --http_threads="$HTTP_THREADS" \
  >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do grep -q "loaded version" "$WORK/serve.log" && break; sleep 0.1; done
PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/serve.log" | head -1 | sed 's/.*://')
[ -n "$PORT" ] || { cat "$WORK/serve.log"; exit 1; }
for rows in 1 64; do
  python3 - "$WORK/rows64.txt" "$rows" > "$WORK/body$rows.json" <<'PY'
import json, sys
rows = [l.rstrip("\n") for l in open(sys.argv[1])][: int(sys.argv[2])]
print(json.dumps({"instances": [{"row": r} for r in rows]}))
PY
  cat > "$WORK/post$rows.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$WORK/body$rows.json"); wrk.body = f:read("*a"); f:close()
LUA
  echo "== POST :predict, $rows row(s) per request, $CONNECTIONS connections, $DURATION"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/post$rows.lua" \
    "http://127.0.0.1:$PORT/v1/models/eddy:predict" | tee "$WORK/wrk$rows.txt" |
    grep -E "Latency|50%|99%|Requests/sec|Non-2xx"
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk$rows.txt")
  echo "rows/s: $(python3 -c "print(round($rps * $rows))")"
done
