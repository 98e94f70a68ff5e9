#!/usr/bin/env bash
# Prints, one per line, the Debian packages that provide the shared libraries
# the given ELF files load (`ldd`), so that the runtime image installs exactly
# those. Fails, naming the library, when one is missing or belongs to no
# package. Files that are not ELF (scripts) are skipped.
#   deploy/docker/runtime-packages.sh /opt/quantmt/bin/* /opt/quantmt/lib/quantmt/*.so
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 ELF..." >&2; exit 2; }

libs=()
for elf in "$@"; do
  [ "$(od -An -c -N4 "$elf" | tr -d ' ')" = "177ELF" ] || continue
  while read -r line; do
    case $line in
      *"not found"*) echo "runtime-packages: $elf: $line" >&2; exit 1 ;;
      *"=> /"*) line=${line#*=> } ;;
      /*) ;;
      *) continue ;;
    esac
    libs+=("$(readlink -f "${line%% *}")")
  done < <(ldd "$elf")
done
mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)

# dpkg records some libraries under /lib, some under /usr/lib (merged /usr):
# ask for both spellings of each in one query, which is much faster than one
# query per library.
candidates=()
for lib in "${libs[@]}"; do candidates+=("$lib" "${lib#/usr}"); done
owners=$(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)
for lib in "${libs[@]}"; do
  awk -v a="$lib" -v b="${lib#/usr}" -F': ' '$2 == a || $2 == b {found = 1} END {exit !found}' \
    <<<"$owners" || { echo "runtime-packages: $lib belongs to no Debian package" >&2; exit 1; }
done
sed -E 's/^([^:,]+).*/\1/' <<<"$owners" | sort -u
