drafteu_bench(bench_family DEPS drafteu_family)
