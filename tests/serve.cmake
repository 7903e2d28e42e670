# drafteu_family in DEPS also selects the shared torch PCH.
drafteu_test(test_serve DEPS drafteu_serve drafteu_family NEEDS_CLI TIMEOUT 120)
