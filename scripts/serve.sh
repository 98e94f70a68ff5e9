#!/usr/bin/env bash
# The run command: installs what the build needs, builds, and starts
# quantmt-server on the shipped default model (gRPC on :50051, Prometheus
# metrics on :9464/metrics). Extra arguments go to quantmt-server (--help).
#   scripts/serve.sh
#   build/client/quantmt translate <<< "Ein Hund rennt über die Wiese."
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >&2
scripts/build.sh >&2
export OMP_WAIT_POLICY=PASSIVE
exec "${BUILD_DIR:-build}"/server/quantmt-server --model_root models --models default "$@"
