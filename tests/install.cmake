# The installed library: install to a scratch prefix, build examples/ against it with
# find_package(drafteu), run it on stories260K (check_install.sh).
add_test(NAME test_install
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/check_install.sh ${PROJECT_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR}/examples ${PROJECT_BINARY_DIR}/test-scratch/install)
set_tests_properties(test_install PROPERTIES ENVIRONMENT "${DRAFTEU_TEST_ENV}" TIMEOUT 600)
