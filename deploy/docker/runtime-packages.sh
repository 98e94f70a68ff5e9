#!/usr/bin/env bash
# Prints, one per line, the Debian packages that provide the shared libraries
# the given ELF files load (`ldd`), so that the runtime image installs exactly
# those. Fails, naming the library, when one is missing or belongs to no
# package. Files that are not ELF (scripts) are skipped.
#   deploy/docker/runtime-packages.sh /opt/quantmt/bin/* /opt/quantmt/lib/quantmt/*.so
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 ELF..." >&2; exit 2; }

elfs=()
for elf in "$@"; do
  [ "$(od -An -c -N4 "$elf" | tr -d ' ')" = "177ELF" ] && elfs+=("$elf")
done
[ ${#elfs[@]} -gt 0 ] || exit 0
# One ldd for all files: it heads each file's libraries, indented lines of
# "name => /path (address)" or "/path (address)", with a "FILE:" line. A
# file that is not dynamic makes it exit non-zero but has no libraries.
listing=$(ldd "${elfs[@]}" 2>&1) || true
[ ${#elfs[@]} -gt 1 ] || listing="${elfs[0]}:"$'\n'"$listing"
missing=$(awk '/^[^\t]/ {file = $0} /not found/ {print file $0}' <<<"$listing")
[ -z "$missing" ] || { echo "runtime-packages: not found: $missing" >&2; exit 1; }
# Resolved in one readlink call: a fork per library takes a minute here.
mapfile -t libs < <(awk '/^\t/ {
    lib = substr($0, 2)
    if (lib ~ /=> \//) sub(/.*=> /, "", lib)
    else if (lib !~ /^\//) next
    sub(/ \(0x[0-9a-f]+\)$/, "", lib)
    print lib
  }' <<<"$listing" | sort -u | xargs -r -d '\n' readlink -f | sort -u)

# dpkg records some libraries under /lib, some under /usr/lib (merged /usr):
# ask for both spellings of each in one query, which is much faster than one
# query per library.
candidates=()
for lib in "${libs[@]}"; do candidates+=("$lib" "${lib#/usr}"); done
owners=$(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)
unowned=$(awk -F': ' 'NR == FNR {owned[$2]; next}
  {short = $0; sub(/^\/usr/, "", short)} !($0 in owned) && !(short in owned)' \
  <(printf '%s\n' "$owners") <(printf '%s\n' "${libs[@]}"))
[ -z "$unowned" ] || { echo "runtime-packages: in no Debian package: $unowned" >&2; exit 1; }
sed -E 's/^([^:,]+).*/\1/' <<<"$owners" | sort -u
