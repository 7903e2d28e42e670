# drafteu_family in DEPS also selects the shared torch PCH.
drafteu_test(test_serve DEPS drafteu_serve drafteu_family drafteu_distill NEEDS_CLI TIMEOUT 120)
