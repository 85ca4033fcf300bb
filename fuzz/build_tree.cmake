# Configures and builds the clang + ASan + UBSan + libFuzzer tree for the fuzz/sanitize
# CTest tests (cmake/FuzzTests.cmake): cmake -DSOURCE_DIR=.. -DTREE=.. -DGENERATOR=..
# -DCLANG=.. -DCLANGXX=.. [-DCCACHE=..] -DJOBS=n -DTARGETS=a,b,c -P build_tree.cmake
# -O1 with line tables keeps the build short and the sanitizer reports readable; CUDA,
# benchmarks and gtest discovery at build time are off.
string(REPLACE "," ";" targets "${TARGETS}")
set(flags "-O1 -gline-tables-only")
set(configure
    ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${TREE} -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
    -DCMAKE_C_COMPILER=${CLANG} -DCMAKE_CXX_COMPILER=${CLANGXX}
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO=${flags} -DCMAKE_C_FLAGS_RELWITHDEBINFO=${flags}
    -DVISPLAY_FUZZ=ON -DVISPLAY_CUDA=OFF -DVISPLAY_BUILD_BENCH=OFF -DVISPLAY_BUILD_TESTS=ON
    -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST)
if(CCACHE)
  list(APPEND configure -DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE} -DCMAKE_C_COMPILER_LAUNCHER=${CCACHE})
endif()
string(TIMESTAMP start "%s")
execute_process(COMMAND ${configure} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the sanitizer tree in ${TREE} failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${TREE} -j ${JOBS} --target ${targets}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building ${targets} in ${TREE} failed (${rc})")
endif()
string(TIMESTAMP end "%s")
math(EXPR seconds "${end} - ${start}")
message(STATUS "sanitizer tree ${TREE}: ${targets} built in ${seconds} s")
