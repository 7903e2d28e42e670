drafteu_test(test_experiment DEPS drafteu_eval NEEDS_CLI LABELS slow TIMEOUT 900)
