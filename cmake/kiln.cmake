# kiln_test(NAME SOURCES... LIBS lib...) — a GoogleTest binary registered with CTest.
# Tests find ../shared through KILN_SHARED (default: ../shared next to the source tree).
function(kiln_test name)
  cmake_parse_arguments(KT "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${KT_SOURCES})
  target_link_libraries(${name} PRIVATE ${KT_LIBS} GTest::gtest GTest::gtest_main Threads::Threads)
  add_test(NAME ${name} COMMAND ${name})
  set(_env "KILN_SOURCE_DIR=${CMAKE_SOURCE_DIR}" "KILN_BUILD_DIR=${CMAKE_BINARY_DIR}")
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${_env}" LABELS "${KT_LABELS}")
  if("gpu" IN_LIST KT_LABELS)
    # GPU-only binaries: reported as skipped (gtest's reason is in the log) without a GPU.
    set_tests_properties(${name} PROPERTIES SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
  endif()
endfunction()

# kiln_bench(NAME SOURCES... LIBS lib...) — a Google Benchmark binary (not a test).
function(kiln_bench name)
  cmake_parse_arguments(KB "" "" "SOURCES;LIBS" ${ARGN})
  if(NOT benchmark_FOUND)
    return()
  endif()
  add_executable(${name} ${KB_SOURCES})
  target_link_libraries(${name} PRIVATE ${KB_LIBS} benchmark::benchmark Threads::Threads)
endfunction()
