#!/usr/bin/env bash
# Usage: check_install.sh BUILD_DIR EXAMPLES_DIR WORK_DIR (env: DRAFTEU_SHARED, DRAFTEU_BIN).
# Installs BUILD_DIR to WORK_DIR/prefix, builds EXAMPLES_DIR against it through find_package, runs
# score_text on stories260K and checks one sane line per scored token.
set -euo pipefail
build=$1 examples=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$examples" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" \
  "${launcher[@]}" >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log"

model=$DRAFTEU_SHARED/models/stories260K/stories260K.gguf
text="Once upon a time, there was a little girl named Lily. She loved to play outside."
"$work/build/score_text" "$model" "$model" "$text" 3 >"$work/out.tsv"
# The reference token count comes from the installed CLI's tokenizer, not from the example.
ids=$("$work/prefix/bin/drafteu" tokenize --tokenizer "$model" --text "$text" --bos)
python3 - "$work/out.tsv" "$ids" <<'PY'
import json, math, sys
lines = open(sys.argv[1]).read().splitlines()
ids = json.loads(sys.argv[2])
assert lines[0].split("\t")[0] == "index", lines[0]
rows = [l.split("\t") for l in lines[1:]]
assert len(rows) == len(ids) - 1, f"{len(rows)} rows for {len(ids) - 1} scored tokens"
for i, (index, token, eu_hat, jsd, bias) in enumerate(rows):
    eu_hat, jsd, bias = float(eu_hat), float(jsd), float(bias)
    assert int(index) == i and isinstance(json.loads(token), str), rows[i]
    assert all(math.isfinite(v) for v in (eu_hat, jsd, bias)), rows[i]
    assert jsd >= -1e-6 and bias >= -1e-6, rows[i]
    assert abs(eu_hat - (jsd + bias)) <= 1e-5 * (1 + abs(eu_hat)), rows[i]
assert max(float(r[3]) for r in rows) > 0, "the drafts never disagree"
print(f"check_install: {len(rows)} tokens scored")
PY
