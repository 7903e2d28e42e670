drafteu_test(test_family DEPS drafteu_family)
