#!/usr/bin/env bash
# Loopback load test of `drafteu serve`: starts the server on a free port (or uses URL), sends
# REQUESTS completion requests with CONCURRENCY in flight (curl, each capped at 120 s; the whole
# run at DEADLINE s), then prints requests/s, p50/p99 latency and the error count.
#   tools/load_test.sh [BIN] [MODEL]   env: REQUESTS=64 CONCURRENCY=8 MAX_TOKENS=32 DEADLINE=300 THREADS=1
#                                      MAX_BATCH=8 (requests the server decodes together)
#   URL=http://127.0.0.1:8080 tools/load_test.sh   (an already running server; MODEL_NAME=...)
set -euo pipefail
BIN=${1:-build/drafteu}
MODEL=${2:-../shared/models/stories260K/stories260K.gguf}
REQUESTS=${REQUESTS:-64}
CONCURRENCY=${CONCURRENCY:-8}
MAX_TOKENS=${MAX_TOKENS:-32}
DEADLINE=${DEADLINE:-300}
MODEL_NAME=${MODEL_NAME:-$(basename "${MODEL%.*}")}
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "${URL:-}" ]]; then
  "$BIN" --threads "${THREADS:-1}" serve --model "$MODEL" --draft "$MODEL" --draft-noise 3 --draft-sigma 0.05 \
    --host 127.0.0.1 --port 0 --max-queue "$REQUESTS" --max-batch "${MAX_BATCH:-8}" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 1 300); do
    URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/server.out" 2>/dev/null || true)
    [[ -n "$URL" ]] && break
    sleep 0.1
  done
  [[ -n "$URL" ]] || { echo "server did not start:"; cat "$work/server.err"; exit 1; }
fi
echo "load test: $URL, $REQUESTS requests, concurrency $CONCURRENCY, max_tokens $MAX_TOKENS, max_batch ${MAX_BATCH:-8}"

prompts=("Once upon a time" "The little dog" "Lily wanted" "Tom and Sam" "One day, a bird")
for i in $(seq 0 $((REQUESTS - 1))); do
  p=${prompts[$((i % ${#prompts[@]}))]}
  printf '{"model":"%s","prompt":"%s","max_tokens":%d,"temperature":0.8,"seed":%d}\n' \
    "$MODEL_NAME" "$p" "$MAX_TOKENS" "$i" >"$work/req.$i.json"
done

start=$(date +%s.%N)
seq 0 $((REQUESTS - 1)) | timeout "$DEADLINE" xargs -P "$CONCURRENCY" -I{} \
  curl -s -o /dev/null -m 120 -w '%{http_code} %{time_total}\n' \
  -H 'Content-Type: application/json' --data-binary "@$work/req.{}.json" "$URL/v1/completions" \
  >"$work/results.txt" || true
end=$(date +%s.%N)

n=$(wc -l <"$work/results.txt")
errors=$(awk '$1 != 200' "$work/results.txt" | wc -l)
awk '$1 == 200 { print $2 }' "$work/results.txt" | sort -g >"$work/lat.txt"
ok=$(wc -l <"$work/lat.txt")
pct() { [[ "$ok" -gt 0 ]] && sed -n "$(( (ok - 1) * $1 / 100 + 1 ))p" "$work/lat.txt" || echo nan; }
awk -v s="$start" -v e="$end" -v ok="$ok" -v n="$n" -v total="$REQUESTS" -v err="$errors" \
    -v p50="$(pct 50)" -v p99="$(pct 99)" 'BEGIN {
  printf "completed %d/%d in %.2f s: %.2f requests/s, p50 %s s, p99 %s s, errors %d\n",
         n, total, e - s, ok / (e - s), p50, p99, err + total - n }'
curl -s "$URL/metrics" | grep -E '^drafteu_(acceptance_rate|tokens_generated_total|requests_total|batch_rows_(sum|count))' || true
