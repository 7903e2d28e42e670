drafteu_test(test_eval DEPS drafteu_eval)
if(TARGET test_eval)
  # The DEPS pattern in drafteu_test does not know drafteu_eval: add torch's PCH here.
  target_precompile_headers(test_eval REUSE_FROM drafteu_pch)
endif()
