drafteu_test(test_model DEPS drafteu_model)
