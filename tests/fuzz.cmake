# Fuzz harnesses (tests/fuzz/fuzz_<target>.cpp). They link only torch-free sources: the modules
# util, io and tokenizer, plus the readers of other modules that are kept torch-free for this
# (DRAFTEU_FUZZ_READER_SOURCES). torch 1.13's headers do not compile under Debian's clang 14 in
# C++20 (std::vector<c10::IValue> of an incomplete type in ATen/core/List.h), so a reader that
# needs torch cannot be fuzzed: its parsing lives in a torch-free file instead.
#  - Always: fuzz_replay runs every harness over its checked-in corpus (one ctest entry).
#  - -DDRAFTEU_FUZZ=ON with clang: one libFuzzer executable per target, fuzz_<target>, with
#    ASan + UBSan (tools/fuzz.sh TARGET SECONDS builds and runs one).
option(DRAFTEU_FUZZ "Build libFuzzer harnesses (clang only)" OFF)
set(DRAFTEU_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
file(STRINGS ${DRAFTEU_FUZZ_DIR}/fuzz_targets.inc DRAFTEU_FUZZ_LINES REGEX "^DRAFTEU_FUZZ_TARGET")
set(DRAFTEU_FUZZ_TARGETS "")
foreach(line ${DRAFTEU_FUZZ_LINES})
  string(REGEX REPLACE "DRAFTEU_FUZZ_TARGET\\(([a-z_]+)\\)" "\\1" t "${line}")
  list(APPEND DRAFTEU_FUZZ_TARGETS ${t})
endforeach()
file(GLOB DRAFTEU_FUZZ_LIB_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/util/*.cpp
     ${CMAKE_SOURCE_DIR}/src/model/io/*.cpp ${CMAKE_SOURCE_DIR}/src/model/tokenizer/*.cpp)
set(DRAFTEU_FUZZ_READER_SOURCES
    src/model/config.cpp src/model/compute_dtype.cpp
    src/family/module_names.cpp src/family/lora_config.cpp src/family/peft_format.cpp
    src/uncertainty/scoring/score_records.cpp src/distill/samples.cpp
    src/eval/experiment_config.cpp src/eval/testbed_options.cpp src/eval/testbed_task.cpp
    src/serve/openai_request.cpp src/serve/score_request.cpp)
list(TRANSFORM DRAFTEU_FUZZ_READER_SOURCES PREPEND ${CMAKE_SOURCE_DIR}/)
list(APPEND DRAFTEU_FUZZ_LIB_SOURCES ${DRAFTEU_FUZZ_READER_SOURCES})

if(DRAFTEU_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DRAFTEU_FUZZ needs clang (configure with -DCMAKE_CXX_COMPILER=clang++)")
  endif()
  set(san -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
  add_library(drafteu_fuzz_lib OBJECT ${DRAFTEU_FUZZ_LIB_SOURCES})
  target_include_directories(drafteu_fuzz_lib PUBLIC ${CMAKE_SOURCE_DIR}/src ${DRAFTEU_FUZZ_DIR})
  target_link_libraries(drafteu_fuzz_lib PUBLIC nlohmann_json::nlohmann_json PkgConfig::PCRE2)
  target_compile_options(drafteu_fuzz_lib PUBLIC ${san} -fsanitize=fuzzer-no-link)
  foreach(t ${DRAFTEU_FUZZ_TARGETS})
    add_executable(fuzz_${t} ${DRAFTEU_FUZZ_DIR}/fuzz_${t}.cpp)
    target_link_libraries(fuzz_${t} PRIVATE drafteu_fuzz_lib)
    target_link_options(fuzz_${t} PRIVATE ${san} -fsanitize=fuzzer)
  endforeach()
else()
  set(replay_sources ${DRAFTEU_FUZZ_DIR}/fuzz_replay.cpp)
  foreach(t ${DRAFTEU_FUZZ_TARGETS})
    list(APPEND replay_sources ${DRAFTEU_FUZZ_DIR}/fuzz_${t}.cpp)
    set_source_files_properties(${DRAFTEU_FUZZ_DIR}/fuzz_${t}.cpp PROPERTIES
                                COMPILE_DEFINITIONS "LLVMFuzzerTestOneInput=fuzz_${t}")
  endforeach()
  add_executable(fuzz_replay ${replay_sources} ${DRAFTEU_FUZZ_READER_SOURCES})
  target_include_directories(fuzz_replay PRIVATE ${DRAFTEU_FUZZ_DIR})
  target_link_libraries(fuzz_replay PRIVATE drafteu_tokenizer drafteu_io drafteu_util)
  target_compile_options(fuzz_replay PRIVATE ${DRAFTEU_WARNINGS})
  add_test(NAME fuzz_replay COMMAND fuzz_replay ${DRAFTEU_FUZZ_DIR}/corpus)
  set_tests_properties(fuzz_replay PROPERTIES TIMEOUT 120)
endif()
