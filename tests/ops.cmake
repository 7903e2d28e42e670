drafteu_test(test_ops DEPS drafteu_family)
