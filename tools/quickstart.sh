#!/usr/bin/env bash
# The README's two commands.
#   tools/quickstart.sh demo [MODEL]   set up, build, run the main job on the embedded default
#   tools/quickstart.sh test [ARGS]    set up, build, run the whole test suite (what CI runs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DRAFTEU_BUILD_DIR:-$root/build}
mode=${1:-demo}; shift || true
"$root/tools/setup.sh" "$build"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
case $mode in
  demo)
    model=${1:-$root/../shared/models/stories260K/stories260K.gguf}
    if [[ ! -e $model ]]; then
      echo "quickstart: no model at $model; pass one: tools/quickstart.sh demo PATH (.gguf or HF dir)" >&2
      exit 2
    fi
    "$build/drafteu" generate --model "$model" --prompt "" --max-tokens 120 --temperature 0
    ;;
  test)
    cd "$build"
    ctest --output-on-failure --timeout 900 -j "$(nproc)" "$@"
    ;;
  *) echo "usage: tools/quickstart.sh demo [MODEL] | test [CTEST_ARGS]" >&2; exit 2 ;;
esac
