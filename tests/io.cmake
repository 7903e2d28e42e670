drafteu_test(test_io DEPS drafteu_io)
