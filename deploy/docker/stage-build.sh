#!/usr/bin/env bash
# Fills a staging folder, the build context of Dockerfile.runtime, from a
# build tree: `cmake --install` into STAGE_DIR/quantmt, the Debian packages
# its binaries load (runtime-packages.sh) and the default model. STAGE_DIR is
# new, empty, or an earlier stage, which it replaces.
#   deploy/docker/stage-build.sh BUILD_DIR STAGE_DIR
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR STAGE_DIR" >&2; exit 2; }
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=$1
stage_dir=$2

# The image is Debian 12: binaries built elsewhere would load other libraries.
# shellcheck source=/dev/null
. /etc/os-release
if [ "${ID:-}" != debian ] || [ "${VERSION_ID:-}" != 12 ]; then
  echo "stage-build: this machine runs ${PRETTY_NAME:-an unknown system}, the image Debian 12;" \
    "build the image from source with deploy/docker/Dockerfile instead" >&2
  exit 1
fi
[ -f "$build_dir/cmake_install.cmake" ] ||
  { echo "stage-build: $build_dir is not a configured build tree (run scripts/build.sh)" >&2; exit 1; }

packages_list=quantmt/share/quantmt/runtime-packages.txt
if [ -d "$stage_dir" ] && [ -n "$(ls -A "$stage_dir")" ] && [ ! -f "$stage_dir/$packages_list" ]; then
  echo "stage-build: $stage_dir holds other files; give a new or empty folder" >&2
  exit 1
fi
rm -rf "$stage_dir"
mkdir -p "$stage_dir/models"
prefix=$(cd "$stage_dir" && pwd)/quantmt
cmake --install "$build_dir" --prefix "$prefix" --strip >/dev/null
for program in quantmt-server quantmt-health-probe; do
  [ -x "$prefix/bin/$program" ] ||
    { echo "stage-build: $build_dir did not build $program (gRPC and civetweb found?)" >&2; exit 1; }
done
mkdir -p "$prefix/share/quantmt"
"$source_dir/deploy/docker/runtime-packages.sh" "$prefix"/bin/* "$prefix"/lib/quantmt/*.so \
  >"$stage_dir/$packages_list"
cp -r "$source_dir/models/default" "$stage_dir/models/default"
