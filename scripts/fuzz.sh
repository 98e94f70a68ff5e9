#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan) into ${FUZZ_BUILD_DIR:-build-fuzz}
# and runs each for a number of seconds over its seed corpus in fuzz/corpus/.
#   scripts/fuzz.sh              # every target, 60 s each
#   scripts/fuzz.sh 600          # every target, 10 minutes each
#   scripts/fuzz.sh 60 fuzz_utf8 # one target
# Prints executions, coverage and crashes per target; exits non-zero if any
# target crashed (the input is saved under build-fuzz/fuzz-findings/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_model_config fuzz_utf8 fuzz_tokenizer
  fuzz_translate_request)
build_dir=${FUZZ_BUILD_DIR:-build-fuzz}

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
CC=clang CXX=clang++ cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DQUANTMT_BUILD_FUZZERS=ON -DQUANTMT_BUILD_TESTS=OFF -DQUANTMT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build_dir" --target "${targets[@]}"

# The safetensors target writes and rereads a file per input: on tmpfs the
# fsync in the writer costs nothing.
[ -z "${TMPDIR:-}" ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm

status=0
printf '\n%-24s %8s %12s %10s %8s %8s\n' target seconds executions exec/s cov crashes
for target in "${targets[@]}"; do
  # One process (no -jobs). The seed corpus stays as committed; what
  # libFuzzer learns goes to a working corpus in the build tree.
  work="$build_dir/fuzz-corpus/$target"
  findings="$build_dir/fuzz-findings/$target"
  log="$build_dir/fuzz-logs/$target.log"
  mkdir -p "$work" "$findings" "$(dirname "$log")"
  dict=()
  [ -f "fuzz/$target.dict" ] && dict=(-dict="fuzz/$target.dict")
  crashed=0
  "$build_dir/fuzz/$target" -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$findings/" "$work" "fuzz/corpus/$target" >"$log" 2>&1 || crashed=1
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  printf '%-24s %8s %12s %10s %8s %8s\n' "$target" "$seconds" "${executions:-?}" "${rate:-?}" \
    "${cov:-?}" "$crashed"
  if [ "$crashed" -ne 0 ]; then
    status=1
    echo "  $target failed; log: $log; inputs: $findings/" >&2
    grep -m5 -E 'ERROR|invariant broken|SUMMARY' "$log" >&2 || true
  fi
done
exit $status
