#!/usr/bin/env bash
# The README's two commands.
#   tools/quickstart.sh demo [OUT]     set up, build, run the main job (experiment --preset quick)
#   tools/quickstart.sh test [ARGS]    set up, build, run the whole test suite (what CI runs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DRAFTEU_BUILD_DIR:-$root/build}
mode=${1:-demo}; shift || true
case $mode in
  demo) "$root/tools/setup.sh" "$build" drafteu_cli ;;  # the demo runs only the CLI
  *) "$root/tools/setup.sh" "$build" ;;
esac
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
case $mode in
  demo)
    # The paper's evaluation on the embedded testbed: no downloads, no ../shared needed.
    out=${1:-$root/runs/quick}
    "$build/drafteu" experiment --preset quick --out "$out"
    echo "quickstart: report at $out/report.html, numbers in $out/results.json" >&2
    ;;
  test)
    cd "$build"
    ctest --output-on-failure --timeout 900 -j "$(nproc)" "$@"
    ;;
  *) echo "usage: tools/quickstart.sh demo [OUT_DIR] | test [CTEST_ARGS]" >&2; exit 2 ;;
esac
