#!/usr/bin/env bash
# Clang's thread-safety analysis on the code that locks quantmt::Mutex
# (engine/include/quantmt/engine/mutex.h). GCC ignores ABSL_GUARDED_BY and
# the other lock annotations; this compiles each annotated translation unit
# with clang++ -fsyntax-only -Wthread-safety -Werror=thread-safety, with the
# flags of build/compile_commands.json (compiler swapped, GCC-only flags
# dropped), and fails on the first missing lock it reports.
#
# Annotated translation units: sources under engine/, server/ and client/
# whose own text, or a project header they include directly, has a lock
# annotation or a MutexLock.
#   scripts/check-thread-safety.sh                       # build/
#   scripts/check-thread-safety.sh server/services/serving_state.cc  # only these
#   BUILD_DIR=build-asan scripts/check-thread-safety.sh  # another build
#   CLANGXX=clang++-14 scripts/check-thread-safety.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
clangxx=${CLANGXX:-clang++}
if ! command -v "$clangxx" >/dev/null; then
  echo "check-thread-safety: $clangxx not found (scripts/install-deps.sh installs clang)" >&2
  exit 1
fi
if [ ! -f "$build_dir/compile_commands.json" ]; then
  echo "check-thread-safety: no $build_dir/compile_commands.json: run scripts/build.sh first" >&2
  exit 1
fi
exec python3 - "$PWD" "$build_dir/compile_commands.json" "$clangxx" "$(nproc)" "$@" <<'PYTHON'
import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys
import time

root, database, clangxx, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
only = {os.path.normpath(os.path.join(root, path)) for path in sys.argv[5:]}
ANNOTATED = re.compile(
    r"\bMutexLock\b|\bABSL_(PT_)?GUARDED_BY\b|\bABSL_(EXCLUSIVE|SHARED)_LOCKS_REQUIRED\b|"
    r"\bABSL_LOCKS_EXCLUDED\b|\bABSL_ACQUIRED_(BEFORE|AFTER)\b|\bABSL_UNLOCK_FUNCTION\b|"
    r"\bABSL_EXCLUSIVE_LOCK_FUNCTION\b")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
# Flags clang++ does not take as GCC means them, or that only GCC needs.
DROPPED = ("-fopenmp",)
CHECKED_DIRS = tuple(os.path.join(root, d) + os.sep for d in ("engine", "server", "client"))


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def arguments(entry):
    return entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])


def include_dirs(args, directory):
    dirs = []
    for i, arg in enumerate(args):
        if arg in ("-I", "-iquote", "-isystem") and i + 1 < len(args):
            dirs.append(args[i + 1])
        elif arg.startswith("-I") and len(arg) > 2:
            dirs.append(arg[2:])
    return [os.path.normpath(os.path.join(directory, d)) for d in dirs]


def is_annotated(source, args, directory):
    text = read(source)
    if ANNOTATED.search(text):
        return True
    search = [os.path.dirname(source)] + include_dirs(args, directory)
    for name in INCLUDE.findall(text):
        for base in search:
            header = os.path.normpath(os.path.join(base, name))
            if os.path.isfile(header):
                if header.startswith(root + os.sep) and ANNOTATED.search(read(header)):
                    return True
                break
    return False


def clang_command(args, source, directory):
    command = [clangxx]
    skip = False
    for arg in args[1:]:
        if skip:
            skip = False
        elif arg in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
        elif arg in ("-c", "-MD", "-MMD") or arg.startswith(DROPPED):
            pass
        elif os.path.normpath(os.path.join(directory, arg)) == source:
            pass
        elif arg.startswith("-W") or arg == "-w":
            pass  # GCC's warning set; only the analysis is asked for below
        else:
            command.append(arg)
    return command + ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety", source]


units = []
for entry in json.load(open(database)):
    directory = entry.get("directory", root)
    source = os.path.normpath(os.path.join(directory, entry["file"]))
    args = arguments(entry)
    if only and source not in only:
        continue
    if source.startswith(CHECKED_DIRS) and is_annotated(source, args, directory):
        units.append((os.path.relpath(source, root), clang_command(args, source, directory),
                      directory))
units.sort()
if not units:
    sys.exit("check-thread-safety: no annotated translation unit in " + database)
if only and len(units) != len(only):
    sys.exit("check-thread-safety: not all of %s are annotated translation units in %s"
             % (" ".join(sorted(os.path.relpath(path, root) for path in only)), database))


def check(unit):
    name, command, directory = unit
    result = subprocess.run(command, cwd=directory, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return name, result.returncode, result.stdout


start = time.time()
failed = []
with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
    for name, code, output in pool.map(check, units):
        print(("FAIL " if code else "ok   ") + name, flush=True)
        if output.strip():
            print(output.rstrip(), flush=True)
        if code:
            failed.append(name)
print("check-thread-safety: %d translation units, %d failed, %.0f s"
      % (len(units), len(failed), time.time() - start))
sys.exit(1 if failed else 0)
PYTHON
