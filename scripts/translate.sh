#!/usr/bin/env bash
# The run command (until the gRPC server lands): installs what the build
# needs, builds, and translates stdin to stdout with the shipped default model.
#   echo "Ein Hund rennt über die Wiese." | scripts/translate.sh
# Extra arguments go to quantmt-translate (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >&2
scripts/build.sh >&2
export OMP_WAIT_POLICY=PASSIVE
exec "${BUILD_DIR:-build}"/train/quantmt-translate --model_dir models/default "$@"
