# CTest tests for fuzzing and sanitizers (labels `fuzz` and `sanitize`; exclude them
# with `ctest -LE 'fuzz|sanitize'`). CI runs only the plain gcc build and `ctest`, so
# these tests build a second tree with clang + ASan + UBSan + libFuzzer coverage
# under <build>/sanitize-tree (CUDA off, only the targets they need, ccache when
# present), then run each fuzzer for a bounded time over its corpus and a fast subset
# of the unit tests in it. Without clang, its fuzzer runtime (libclang-rt-14-dev) or
# libomp, one test says so and is reported as skipped. See docs/fuzzing.md.
if(NOT VISPLAY_FUZZ_TESTS OR VISPLAY_FUZZ OR VISPLAY_SANITIZE)
  return()  # off, or this already is a sanitizer tree
endif()

set(VISPLAY_FUZZ_SECONDS 20 CACHE STRING "Seconds each fuzzer runs in the fuzz.* CTest tests")
set(visplay_fuzz_targets image safetensors tokenizer benchmark)
# The unit-test subset under ASan + UBSan: the executables and a filter leaving out
# the slow cases: throughput and training tests, the largest finite-difference
# attention shape (40 s under ASan), all but one of the tests that load the 7 MB Qwen
# tokenizer (~5 s each) and the HF parity fixture.
set(visplay_sanitize_tests test_runtime test_model test_data)
string(JOIN ":" visplay_sanitize_filter
  "-*Throughput*" "*LongPieces*" "*ThreadsGiveTheSameIds*" "*TrainingLowersTheLoss*"
  "*SameSeedSameWeightsAndTraining*" "HfParity.*" "*GradientsMatchFiniteDifferences/B2_Sq70*"
  "TokenizerBpe.StringMergesMatchPairMerges" "TokenizerBpe.FileAndFolderLoadTheSame"
  "TokenizerBpe.QwenReproducesTestVectors")
set(visplay_skip_code 77)

# Can clang build a libFuzzer + ASan + UBSan + OpenMP program? Probed once per
# compiler path (about a second) and cached.
find_program(VISPLAY_FUZZ_CLANGXX NAMES clang++ clang++-14 clang++-15 clang++-16)
find_program(VISPLAY_FUZZ_CLANG NAMES clang clang-14 clang-15 clang-16)
set(visplay_fuzz_missing "")
if(NOT VISPLAY_FUZZ_CLANGXX OR NOT VISPLAY_FUZZ_CLANG)
  set(visplay_fuzz_missing "clang/clang++ not found (Debian: apt-get install clang libclang-rt-14-dev libomp-14-dev)")
elseif(NOT DEFINED VISPLAY_FUZZ_PROBE_OK OR NOT VISPLAY_FUZZ_PROBE_COMPILER STREQUAL VISPLAY_FUZZ_CLANGXX)
  set(probe_dir ${CMAKE_BINARY_DIR}/CMakeFiles/visplay_fuzz_probe)
  file(MAKE_DIRECTORY ${probe_dir})
  file(WRITE ${probe_dir}/probe.cpp
    "#include <cstddef>\n#include <cstdint>\n#include <omp.h>\n"
    "extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return omp_get_max_threads() < 0; }\n")
  execute_process(
    COMMAND ${VISPLAY_FUZZ_CLANGXX} -fsanitize=fuzzer,address,undefined -fopenmp
            ${probe_dir}/probe.cpp -o ${probe_dir}/probe
    RESULT_VARIABLE probe_rc OUTPUT_VARIABLE probe_out ERROR_VARIABLE probe_out)
  if(probe_rc EQUAL 0)
    set(VISPLAY_FUZZ_PROBE_OK ON CACHE INTERNAL "")
  else()
    set(VISPLAY_FUZZ_PROBE_OK OFF CACHE INTERNAL "")
    string(REGEX REPLACE "\n.*" "" probe_first_line "${probe_out}")
    set(VISPLAY_FUZZ_PROBE_ERROR "${probe_first_line}" CACHE INTERNAL "")
  endif()
  set(VISPLAY_FUZZ_PROBE_COMPILER ${VISPLAY_FUZZ_CLANGXX} CACHE INTERNAL "")
endif()
if(VISPLAY_FUZZ_CLANGXX AND NOT VISPLAY_FUZZ_PROBE_OK)
  set(visplay_fuzz_missing "${VISPLAY_FUZZ_CLANGXX} cannot link -fsanitize=fuzzer,address,undefined -fopenmp (${VISPLAY_FUZZ_PROBE_ERROR}); Debian: apt-get install libclang-rt-14-dev libomp-14-dev")
endif()

if(visplay_fuzz_missing)
  message(STATUS "visplay: fuzz/sanitize tests will be skipped: ${visplay_fuzz_missing}")
  add_test(NAME fuzz.unavailable
           COMMAND sh -c "echo 'skipped: ${visplay_fuzz_missing}'; exit ${visplay_skip_code}")
  set_tests_properties(fuzz.unavailable PROPERTIES LABELS "fuzz;sanitize"
                       SKIP_RETURN_CODE ${visplay_skip_code} TIMEOUT 10)
  return()
endif()
message(STATUS "visplay: fuzz/sanitize tests build ${CMAKE_BINARY_DIR}/sanitize-tree with ${VISPLAY_FUZZ_CLANGXX}")

set(tree ${CMAKE_BINARY_DIR}/sanitize-tree)
find_program(VISPLAY_FUZZ_CCACHE ccache)
cmake_host_system_information(RESULT visplay_cores QUERY NUMBER_OF_LOGICAL_CORES)
set(build_targets fuzzers ${visplay_sanitize_tests})
string(REPLACE ";" "," build_targets_arg "${build_targets}")
add_test(NAME sanitize.build_tree
         COMMAND ${CMAKE_COMMAND}
                 -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DTREE=${tree}
                 -DGENERATOR=${CMAKE_GENERATOR}
                 -DCLANG=${VISPLAY_FUZZ_CLANG} -DCLANGXX=${VISPLAY_FUZZ_CLANGXX}
                 -DCCACHE=${VISPLAY_FUZZ_CCACHE} -DJOBS=${visplay_cores}
                 -DTARGETS=${build_targets_arg}
                 -P ${PROJECT_SOURCE_DIR}/fuzz/build_tree.cmake)
# It uses every core, so ctest runs it alone; 25 minutes is a hang, not a slow build.
set_tests_properties(sanitize.build_tree PROPERTIES LABELS "fuzz;sanitize"
                     FIXTURES_SETUP visplay_sanitize_tree RUN_SERIAL ON TIMEOUT 1500)

set(sanitizer_env
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
    "OMP_NUM_THREADS=1" "OMP_WAIT_POLICY=passive")
foreach(target ${visplay_fuzz_targets})
  # libFuzzer writes new inputs to the first folder (in the build tree) and only
  # reads the committed seeds; crash reproducers go to <build>/fuzz-artifacts/.
  set(work ${CMAKE_BINARY_DIR}/fuzz-corpus/${target})
  set(artifacts ${CMAKE_BINARY_DIR}/fuzz-artifacts)
  add_test(NAME fuzz.${target}
           COMMAND ${CMAKE_COMMAND} -E env ${sanitizer_env}
                   sh -c "mkdir -p '${work}' '${artifacts}' && exec '${tree}/bin/fuzz_${target}' -max_total_time=${VISPLAY_FUZZ_SECONDS} -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix='${artifacts}/${target}-' '${work}' '${PROJECT_SOURCE_DIR}/fuzz/corpus/${target}'")
  math(EXPR fuzz_timeout "${VISPLAY_FUZZ_SECONDS} + 120")
  set_tests_properties(fuzz.${target} PROPERTIES LABELS "fuzz"
                       FIXTURES_REQUIRED visplay_sanitize_tree TIMEOUT ${fuzz_timeout})
endforeach()
foreach(exe ${visplay_sanitize_tests})
  add_test(NAME sanitize.${exe}
           COMMAND ${CMAKE_COMMAND} -E env ${sanitizer_env}
                   ${tree}/bin/${exe} --gtest_filter=${visplay_sanitize_filter} --gtest_brief=1)
  set_tests_properties(sanitize.${exe} PROPERTIES LABELS "sanitize"
                       FIXTURES_REQUIRED visplay_sanitize_tree TIMEOUT 600)
endforeach()
