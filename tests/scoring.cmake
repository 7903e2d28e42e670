drafteu_test(test_scoring DEPS drafteu_scoring NEEDS_CLI)
