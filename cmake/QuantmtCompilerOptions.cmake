# Warnings, sanitizers and ccache for every quantmt target.

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

add_compile_options(-Wall -Wextra -Wno-unused-parameter)
if(QUANTMT_WERROR)
  add_compile_options(-Werror)
endif()

# Fuzzer builds: libFuzzer's coverage instrumentation in every library, under
# ASan+UBSan; the targets in fuzz/ add libFuzzer's main (see scripts/fuzz.sh).
if(QUANTMT_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "QUANTMT_BUILD_FUZZERS needs clang: configure with CXX=clang++")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
  set(QUANTMT_SANITIZE ON)
endif()

if(QUANTMT_SANITIZE AND QUANTMT_SANITIZE_THREAD)
  message(FATAL_ERROR "QUANTMT_SANITIZE and QUANTMT_SANITIZE_THREAD are exclusive")
endif()
# -O1 whatever the build type, as the sanitizers' documentation advises: the
# checks stay affordable, and the LibTorch-heavy translation units compile
# much faster than at -O3.
if(QUANTMT_SANITIZE OR QUANTMT_SANITIZE_THREAD)
  add_compile_options(-O1)
  # GCC's manual warns that sanitizers raise false -Wmaybe-uninitialized
  # reports; under ASan they come from LibTorch's headers (c10::optional).
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-Wno-maybe-uninitialized)
  endif()
endif()
if(QUANTMT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(QUANTMT_SANITIZE_THREAD)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()

# Every test sees the source tree, and libgomp waits passively: spinning
# OpenMP workers fight OpenBLAS's own threads on small machines (see
# docs/benchmarks.md).
set(QUANTMT_TEST_ENVIRONMENT "QUANTMT_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMP_WAIT_POLICY=PASSIVE")
# Sanitizer builds: every test (and every process it starts) reports with
# stacks and fails on the first UBSan finding. The suppression files name only
# reports from inside libraries that are not instrumented; each entry says why.
set(quantmt_sanitizer_files ${PROJECT_SOURCE_DIR}/tests/sanitizers)
if(QUANTMT_SANITIZE)
  list(APPEND QUANTMT_TEST_ENVIRONMENT
       "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
       "LSAN_OPTIONS=suppressions=${quantmt_sanitizer_files}/lsan.supp:print_suppressions=0")
endif()
if(QUANTMT_SANITIZE_THREAD)
  list(APPEND QUANTMT_TEST_ENVIRONMENT
       "TSAN_OPTIONS=suppressions=${quantmt_sanitizer_files}/tsan.supp:second_deadlock_stack=1")
endif()

# quantmt_add_test(name SOURCES ... [LIBS ...]): one gtest binary, one ctest entry.
function(quantmt_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${QUANTMT_TEST_ENVIRONMENT}")
endfunction()

# The pip (CUDA) LibTorch exports its own copies of some libstdc++ symbols
# (std::filesystem among them). Listed after it in the load order, the system
# libstdc++ loses them, and std::filesystem::remove_all jumps to null. Naming
# libstdc++ first among the needed libraries keeps the system's definitions.
# It must be the shared library: a toolchain that has only libstdc++.a
# (some GPU images) would otherwise bind these calls to LibTorch's copies.
# (Put in the link rule itself: as a link option, some CMake versions move it.)
execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++.so
                OUTPUT_VARIABLE QUANTMT_LIBSTDCXX OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT IS_ABSOLUTE "${QUANTMT_LIBSTDCXX}" OR NOT EXISTS "${QUANTMT_LIBSTDCXX}")
  find_library(QUANTMT_LIBSTDCXX_SYSTEM NAMES libstdc++.so.6
               PATHS /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib64 /lib64)
  set(QUANTMT_LIBSTDCXX "${QUANTMT_LIBSTDCXX_SYSTEM}")
endif()
if(NOT QUANTMT_LIBSTDCXX)
  set(QUANTMT_LIBSTDCXX "-lstdc++")
endif()
message(STATUS "quantmt: libstdc++ linked first: ${QUANTMT_LIBSTDCXX}")
set(CMAKE_CXX_LINK_EXECUTABLE
    "<CMAKE_CXX_COMPILER> <FLAGS> <CMAKE_CXX_LINK_FLAGS> -Wl,--push-state,--no-as-needed ${QUANTMT_LIBSTDCXX} -Wl,--pop-state <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")
