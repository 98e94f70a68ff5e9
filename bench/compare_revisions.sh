#!/usr/bin/env bash
# Decoding speed of this tree against an earlier revision, side by side in
# one window: builds the earlier revision's quantmt-bench-decode in a
# worktree, then runs both binaries in interleaved rounds with the same
# arguments and prints each batch size's median tokens/s and the ratio.
#
#   bench/compare_revisions.sh REV [ROUNDS] -- [quantmt-bench-decode flags]
#   bench/compare_revisions.sh HEAD~3 3 -- --threads 2 --compute_type int8
#   bench/compare_revisions.sh HEAD~3 2 -- --device cuda --compute_type float16 \
#     --decoder graphs --batch_sizes 1,8,32,64,256
#
# This tree's benchmark must be built first (scripts/build.sh, BUILD_DIR
# honoured). CMAKE_PREFIX_PATH and the like are taken from the environment,
# as for scripts/build.sh. The earlier build stays in build-rev-<commit>/ for
# the next comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
rev=$(git rev-parse --short "$1")
shift
rounds=3
if [ $# -gt 0 ] && [ "$1" != "--" ]; then rounds=$1; shift; fi
[ "${1:-}" = "--" ] && shift
new=${BUILD_DIR:-build}/bench/quantmt-bench-decode
[ -x "$new" ] || { echo "compare_revisions: build this tree first ($new is missing)" >&2; exit 1; }

old_dir=build-rev-$rev
old=$old_dir/build/bench/quantmt-bench-decode
if [ ! -x "$old" ]; then
  echo "compare_revisions: building quantmt-bench-decode at $rev in $old_dir/" >&2
  rm -rf "$old_dir/src"
  mkdir -p "$old_dir"
  git archive "$rev" | tar -x -C "$old_dir" --one-top-level=src
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S "$old_dir/src" -B "$old_dir/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DQUANTMT_BUILD_TESTS=OFF > "$old_dir/configure.log"
  cmake --build "$old_dir/build" -j"$(nproc)" --target quantmt-bench-decode > "$old_dir/build.log"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for round in $(seq "$rounds"); do
  for side in before after; do
    binary=$old
    [ "$side" = after ] && binary=$new
    echo "round $round/$rounds: $side" >&2
    "$binary" "$@" | awk -v side="$side" '$1 ~ /^[0-9]+$/ && NF >= 4 {print side, $1, $2}' >> "$log"
  done
done
python3 - "$log" "$rev" "$rounds" <<'PYTHON'
import collections
import statistics
import sys

path, rev, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
runs = collections.defaultdict(list)
for line in open(path):
    side, batch, tokens = line.split()
    runs[(side, int(batch))].append(float(tokens))
print(f"tokens/s, median of {rounds} interleaved rounds: {rev} (before) and this tree (after)")
print(f"{'batch':>6} {'before':>10} {'after':>10} {'ratio':>7}   rounds before / after")
for batch in sorted({b for _, b in runs}):
    before, after = runs[("before", batch)], runs[("after", batch)]
    if not before or not after:
        continue
    b, a = statistics.median(before), statistics.median(after)
    spread = lambda xs: "/".join(f"{x:.0f}" for x in xs)
    print(f"{batch:>6} {b:>10.0f} {a:>10.0f} {a / b:>6.2f}x   {spread(before)} | {spread(after)}")
PYTHON
