#!/usr/bin/env bash
# The README's two commands.
#   tools/quickstart.sh demo [OUT]     set up, build, run the main job (experiment --preset quick)
#   tools/quickstart.sh test [ARGS]    set up, build, run the whole test suite (what CI runs)
#   tools/quickstart.sh test-sanitize [ARGS]   the same under ASan + UBSan, in build-sanitize/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-demo}; shift || true
case $mode in
  test-sanitize)
    build=${DRAFTEU_BUILD_DIR:-$root/build-sanitize}
    # Benchmarks are not built: timings under ASan say nothing.
    export DRAFTEU_CMAKE_ARGS="-DDRAFTEU_SANITIZE=address,undefined -DDRAFTEU_BUILD_BENCH=OFF"
    ;;
  *) build=${DRAFTEU_BUILD_DIR:-$root/build} ;;
esac
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
  test-sanitize)
    # Any ASan or UBSan report ends its process with an error, so the test that ran it fails
    # (the CLI runs the tests start inherit these). Leak checking stays on: libtorch and OpenMP
    # report no leak here, so nothing is suppressed.
    export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    cd "$build"
    ctest --output-on-failure --timeout 1800 -j "$(nproc)" "$@"
    ;;
  *) echo "usage: tools/quickstart.sh demo [OUT_DIR] | test [CTEST_ARGS] | test-sanitize [CTEST_ARGS]" >&2; exit 2 ;;
esac
