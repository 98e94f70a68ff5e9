#!/usr/bin/env bash
# The test command: installs what the build needs, builds, runs every test.
#   scripts/test.sh               # release build, whole suite
#   BUILD_DIR=build-asan scripts/test.sh -DQUANTMT_SANITIZE=ON   # under ASan+UBSan
#   QUANTMT_FUZZ_SECONDS=0 scripts/test.sh  # without the fuzzing run (default 30 s a target)
#   QUANTMT_ASAN_TESTS=0 scripts/test.sh    # without the ASan+UBSan run of the LibTorch-free tests
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh "$@"
build_dir=${BUILD_DIR:-build}
# Tests that read the public corpora find them here when present.
if [ -z "${QUANTMT_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export QUANTMT_DATA_DIR=$(cd ../shared/data && pwd)
fi
export OMP_WAIT_POLICY=PASSIVE
# deploy_docker_test packages this build into an image (a few minutes). The
# image built from source (label docker-full) compiles the whole tree again
# inside Docker: run it with `ctest --test-dir build -L docker-full`.
ctest --test-dir "$build_dir" --output-on-failure -j"$(nproc)" -LE docker-full
BUILD_DIR="$build_dir" scripts/check-thread-safety.sh  # the lock annotations, which GCC ignores
# Then the tests without LibTorch under ASan+UBSan, in their own build: they
# compile in minutes (README, Sanitizers, has the whole-suite command).
if [ "${QUANTMT_ASAN_TESTS:-1}" != 0 ]; then
  BUILD_DIR=build-asan BUILD_TARGETS=sanitizer_ci_tests scripts/build.sh -DQUANTMT_SANITIZE=ON
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -L sanitizer_ci
fi
# Then every fuzzer for a short while (scripts/fuzz.sh, its own clang build).
fuzz_seconds=${QUANTMT_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ]; then
  scripts/fuzz.sh "$fuzz_seconds"
fi
