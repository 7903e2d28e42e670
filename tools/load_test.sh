#!/usr/bin/env bash
# Loopback load test of `drafteu serve` (stories260K target with noise drafts): CONCURRENCY
# clients send completion requests back to back for DURATION seconds, then the figures: requests,
# errors (anything but 200 and 429, connection failures included), 429s (queue full), latency
# p50/p99 of the answered ones, and the server's RSS before (after a warm-up) and after the run.
#   tools/load_test.sh [BIN] [MODEL]
#     env: CONCURRENCY=64 DURATION=60 MAX_TOKENS=16 MAX_BATCH=8 MAX_QUEUE=CONCURRENCY THREADS=1
#          OUT=report.json
# Exit status 1 when there were errors or RSS grew by 10 % or more.
set -euo pipefail
BIN=${1:-build/drafteu}
MODEL=${2:-${DRAFTEU_SHARED:-../shared}/models/stories260K/stories260K.gguf}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-60}
MAX_TOKENS=${MAX_TOKENS:-16}
[[ -x "$BIN" ]] || { echo "load_test.sh: no drafteu binary at $BIN" >&2; exit 2; }
[[ -f "$MODEL" ]] || { echo "load_test.sh: no model at $MODEL" >&2; exit 2; }

work=$(mktemp -d)
log="$work/serve.log"
"$BIN" --threads "${THREADS:-1}" serve --model "$MODEL" --model-name stories260K --draft "$MODEL" \
  --draft-noise 3 --draft-sigma 0.05 --port 0 --max-batch "${MAX_BATCH:-8}" \
  --max-queue "${MAX_QUEUE:-$CONCURRENCY}" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=""
for _ in $(seq 1 300); do
  port="$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")"
  [[ -n "$port" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$port" ]] || { echo "load_test.sh: the server did not start" >&2; cat "$log" >&2; exit 1; }

echo "load test: port $port, $CONCURRENCY clients for $DURATION s, max_tokens $MAX_TOKENS, max_batch ${MAX_BATCH:-8}"
/usr/bin/python3 - "$port" "$pid" "$CONCURRENCY" "$DURATION" "$MAX_TOKENS" "${OUT:-}" <<'PY'
import json, sys, threading, time, urllib.error, urllib.request

port, pid, clients, seconds, max_tokens, out = sys.argv[1:7]
clients, seconds, max_tokens = int(clients), float(seconds), int(max_tokens)
url = f"http://127.0.0.1:{port}/v1/completions"
prompts = ["Once upon a time", "The dog", "Lily saw a", "Tom was happy", "One day"]

def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def one(i, k):
    body = json.dumps({"model": "stories260K", "prompt": prompts[(i + k) % len(prompts)],
                       "max_tokens": max_tokens, "temperature": 0.8, "seed": i * 1000 + k}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            json.loads(r.read())
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except Exception as e:  # refused, reset, timeout, bad body
        status = repr(e)
    return status, time.monotonic() - t0

for k in range(3):  # warm up before the first RSS reading
    one(0, k)
rss_before = rss_kb()
lock = threading.Lock()
latencies, statuses = [], {}
deadline = time.monotonic() + seconds

def client(i):
    k = 0
    while time.monotonic() < deadline:
        status, dt = one(i, k)
        k += 1
        with lock:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 200:
                latencies.append(dt)
        if status == 429:
            time.sleep(0.05)

threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
time.sleep(1)
rss_after = rss_kb()
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")
errors = sum(n for s, n in statuses.items() if s not in ("200", "429"))
report = {"clients": clients, "seconds": seconds, "max_tokens": max_tokens,
          "requests": sum(statuses.values()), "ok": statuses.get("200", 0),
          "queue_full_429": statuses.get("429", 0), "errors": errors, "statuses": statuses,
          "latency_p50_s": q(0.50), "latency_p99_s": q(0.99),
          "rss_before_mb": rss_before / 1024, "rss_after_mb": rss_after / 1024,
          "rss_growth_pct": 100.0 * (rss_after - rss_before) / max(1, rss_before)}
print(json.dumps(report, indent=1))
if out:
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
sys.exit(1 if errors or report["rss_growth_pct"] >= 10 else 0)
PY
