#!/usr/bin/env bash
# Scoring throughput, side by side: `drafteu score` (in-process TokenScorer, the time of the
# scoring loop alone) and POST /v1/score on a running `drafteu serve` (client-measured, one
# keep-alive connection, batches of BATCH texts), on the same texts, models, drafts and threads.
#   tools/score_bench.sh [BIN] [MODEL]
#     env: RECORDS=64 BATCH=8 THREADS=1 DRAFT_NOISE=3
# Prints both figures in tokens/s and their ratio (HTTP / CLI).
set -euo pipefail
BIN=${1:-build/drafteu}
MODEL=${2:-${DRAFTEU_SHARED:-../shared}/models/stories260K/stories260K.gguf}
RECORDS=${RECORDS:-64}
BATCH=${BATCH:-8}
THREADS=${THREADS:-1}
NOISE=${DRAFT_NOISE:-3}
[[ -x "$BIN" ]] || { echo "score_bench.sh: no drafteu binary at $BIN" >&2; exit 2; }
[[ -f "$MODEL" ]] || { echo "score_bench.sh: no model at $MODEL" >&2; exit 2; }
PY=/usr/bin/python3

work=$(mktemp -d)
pid=""
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# The texts: short story openings and continuations, cycled to RECORDS records.
"$PY" - "$work/in.jsonl" "$RECORDS" <<'EOF'
import json, sys
pairs = [("Once upon a time", " there was a little girl named Lily. She liked to play outside."),
         ("The dog", " ran to the park and saw a big red ball. He was very happy."),
         ("Tom was happy", " because his mom gave him a cake. He said thank you."),
         ("One day, a bird", " flew over the tree and sang a song to the sun."),
         ("Sue had a box", " full of toys. She shared them with her friend Ben.")]
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        p, c = pairs[i % len(pairs)]
        f.write(json.dumps({"prompt": p, "response": c}) + "\n")
EOF

drafts=(--draft "$MODEL" --draft-noise "$NOISE" --draft-sigma 0.05 --draft-seed 1)
cli=$("$BIN" --threads "$THREADS" score --input "$work/in.jsonl" --output "$work/out.jsonl" \
  "${drafts[@]}" --reference "$MODEL" 2>&1 |
  sed -n 's/^score: \([0-9]*\) tokens in \([0-9.]*\) s.*/\1 \2/p')
[[ -n "$cli" ]] || { echo "score_bench.sh: drafteu score printed no timing" >&2; exit 1; }

"$BIN" --threads "$THREADS" serve --model "$MODEL" --model-name bench "${drafts[@]}" --port 0 \
  --max-score-inputs "$BATCH" >"$work/serve.log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 300); do
  port="$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.log")"
  [[ -n "$port" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$port" ]] || { echo "score_bench.sh: the server did not start" >&2; exit 1; }

"$PY" - "$work/in.jsonl" "$port" "$BATCH" "$cli" <<'EOF'
import http.client, json, sys, time
records = [json.loads(l) for l in open(sys.argv[1])]
port, batch = int(sys.argv[2]), int(sys.argv[3])
cli_tokens, cli_seconds = sys.argv[4].split()
conn = http.client.HTTPConnection("127.0.0.1", port)
def post(items):
    body = json.dumps([{"model": "bench", "prompt": r["prompt"], "completion": r["response"]}
                       for r in items])
    conn.request("POST", "/v1/score", body, {"Content-Type": "application/json"})
    reply = conn.getresponse()
    data = reply.read()
    if reply.status != 200:
        sys.exit(f"score_bench.sh: HTTP {reply.status}: {data[:300]!r}")
    return sum(len(d["tokens"]) for d in json.loads(data)["data"])
post(records[:1])  # warm-up
t0 = time.perf_counter()
tokens = sum(post(records[i:i + batch]) for i in range(0, len(records), batch))
seconds = time.perf_counter() - t0
cli_rate = int(cli_tokens) / float(cli_seconds)
http_rate = tokens / seconds
print(f"drafteu score (CLI, in-process): {cli_tokens} tokens in {float(cli_seconds):.3f} s, "
      f"{cli_rate:.0f} tokens/s")
print(f"POST /v1/score (HTTP, batches of {batch}): {tokens} tokens in {seconds:.3f} s, "
      f"{http_rate:.0f} tokens/s")
print(f"HTTP / CLI: {http_rate / cli_rate:.2f}")
if int(cli_tokens) != tokens:
    sys.exit(f"score_bench.sh: the CLI scored {cli_tokens} tokens, the server {tokens}")
EOF
