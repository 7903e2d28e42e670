#!/usr/bin/env bash
# tools/fuzz.sh TARGET SECONDS: builds the libFuzzer harness tests/fuzz/fuzz_TARGET.cpp with clang,
# ASan and UBSan (in build-fuzz/, once), then fuzzes it for SECONDS from a working copy of the
# checked-in corpus. Crashes land in build-fuzz/artifacts/TARGET/; add each to
# tests/fuzz/corpus/TARGET/ once fixed (fuzz_replay then guards it in the normal test suite).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -ne 2 ]]; then
  echo "usage: $0 TARGET SECONDS   (targets: $(sed -n 's/^DRAFTEU_FUZZ_TARGET(\(.*\))/\1/p' \
    "$root/tests/fuzz/fuzz_targets.inc" | tr '\n' ' '))" >&2
  exit 2
fi
target="$1" seconds="$2"
build="$root/build-fuzz"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DDRAFTEU_FUZZ=ON -DDRAFTEU_BUILD_BENCH=OFF >/dev/null
fi
ninja -C "$build" "fuzz_$target"
work="$build/corpus/$target" artifacts="$build/artifacts/$target/"
mkdir -p "$work" "$artifacts"
cp -n "$root/tests/fuzz/corpus/$target/"* "$work/" 2>/dev/null || true
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
exec "$build/tests/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len=65536 -artifact_prefix="$artifacts" -print_final_stats=1 "$work"
