drafteu_bench(bench_model DEPS drafteu_model)
