#!/usr/bin/env bash
# Configures and builds quantmt into ${BUILD_DIR:-build}. Extra arguments go
# to cmake (e.g. -DQUANTMT_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} "$@"
# Torch translation units need ~1.5 GB each: one job per 2 GB of memory at most.
mem_jobs=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) / 2000000 ))
jobs=$(nproc)
[ "$mem_jobs" -ge 1 ] && [ "$mem_jobs" -lt "$jobs" ] && jobs=$mem_jobs
# BUILD_TARGETS (space-separated) builds only those targets.
cmake --build "$build_dir" -j"$jobs" ${BUILD_TARGETS:+--target $BUILD_TARGETS}
