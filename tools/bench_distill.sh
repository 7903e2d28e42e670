#!/bin/bash
# Training tokens/s, C++ (bench_distill) beside the PyTorch-Python eager reference of the same
# step, 1 and 2 threads. Both sides get the same malloc settings (keep freed memory: page faults
# on fresh full-vocabulary buffers otherwise dominate a 32k-vocabulary step on these machines).
# Usage: tools/bench_distill.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=1073741824
export OMP_WAIT_POLICY=passive
cd "$(dirname "$0")/.."
echo "== C++ (drafteu, $build/bench/bench_distill)"
"$build/bench/bench_distill" --benchmark_counters_tabular=true
echo "== PyTorch-Python eager reference (/usr/bin/python3)"
/usr/bin/python3 tools/bench_distill_ref.py --threads 1 2
