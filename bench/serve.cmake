drafteu_bench(bench_serve DEPS drafteu_serve)
