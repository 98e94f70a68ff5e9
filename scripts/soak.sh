#!/usr/bin/env bash
# Soak under overload, the long run: quantmt-server at about twice its
# measured capacity for SECONDS (default 600) with mixed sentence lengths,
# client cancellations and short deadlines; prints a table of checks (see
# tests/server/soak_test.py, which ctest runs for 60 s). Needs a build:
#   BUILD_DIR=build scripts/build.sh && scripts/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
seconds=${1:-600}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=PASSIVE
python3 tests/server/soak_test.py "$build_dir/server/quantmt-server" "$build_dir/client/quantmt" \
  "$PWD" "$work" "$seconds"
