# drafteu's own git commit, taken at configure time into a generated source of drafteu_util (kept
# out of unity batches, so a new commit recompiles one tiny file). Git's HEAD and the checked-out
# branch's ref are configure dependencies: committing re-runs CMake before the next build.
set(DRAFTEU_GIT_COMMIT "")
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                  OUTPUT_VARIABLE head OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_QUIET)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --show-toplevel
                  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                  OUTPUT_VARIABLE top OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  # Only this project's repository: not one that merely contains a copied source tree.
  if(rc EQUAL 0 AND EXISTS "${top}" AND EXISTS "${PROJECT_SOURCE_DIR}")
    file(REAL_PATH "${top}" top)
    file(REAL_PATH "${PROJECT_SOURCE_DIR}" src)
  endif()
  if(rc EQUAL 0 AND top STREQUAL src)
    set(DRAFTEU_GIT_COMMIT ${head})
    execute_process(COMMAND ${GIT_EXECUTABLE} symbolic-ref -q HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                    OUTPUT_VARIABLE ref OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    foreach(what HEAD ${ref})
      execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --git-path ${what}
                      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE p
                      OUTPUT_STRIP_TRAILING_WHITESPACE)
      if(NOT IS_ABSOLUTE "${p}")
        set(p "${PROJECT_SOURCE_DIR}/${p}")
      endif()
      if(EXISTS "${p}")
        set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${p}")
      endif()
    endforeach()
  endif()
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/build_info.cpp.in ${PROJECT_BINARY_DIR}/generated/build_info.cpp
               @ONLY)
target_sources(drafteu_util PRIVATE ${PROJECT_BINARY_DIR}/generated/build_info.cpp)
set_source_files_properties(${PROJECT_BINARY_DIR}/generated/build_info.cpp PROPERTIES
                            SKIP_UNITY_BUILD_INCLUSION ON)
