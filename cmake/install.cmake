# `cmake --install build --prefix P`: the library (drafteu::drafteu and one drafteu::<module> per
# stage), its headers under P/include/drafteu, the CLI, and a package config so that a project
# with find_package(drafteu CONFIG REQUIRED) builds against P (-DCMAKE_PREFIX_PATH=P).
include(CMakePackageConfigHelpers)
set(DRAFTEU_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/drafteu)

foreach(module ${DRAFTEU_MODULES})
  string(REPLACE "drafteu_" "" short ${module})
  set_target_properties(${module} PROPERTIES EXPORT_NAME ${short})
endforeach()
install(TARGETS drafteu ${DRAFTEU_MODULES} EXPORT drafteuTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS drafteu_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Every module header: the public ones (README, "C++ library") include the others.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/src/ DESTINATION ${DRAFTEU_INCLUDE_DIR}
        FILES_MATCHING PATTERN "*.h"
        PATTERN cli EXCLUDE)
install(EXPORT drafteuTargets NAMESPACE drafteu:: DESTINATION ${DRAFTEU_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/drafteuConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/drafteuConfig.cmake
                              INSTALL_DESTINATION ${DRAFTEU_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/drafteuConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/drafteuConfig.cmake
              ${PROJECT_BINARY_DIR}/drafteuConfigVersion.cmake
        DESTINATION ${DRAFTEU_CMAKE_DIR})
