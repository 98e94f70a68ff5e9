#!/usr/bin/env bash
# Installs Debian's Docker engine, Compose v1 and debootstrap when missing, and
# starts dockerd in the background when no daemon answers. Idempotent.
#   deploy/docker/install-docker.sh
# Exits 0 with the daemon answering `docker info`, non-zero with a reason.
set -euo pipefail
packages=(docker.io docker-compose debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"  # fails at once where it would ask for a password
if [ ${#missing[@]} -gt 0 ]; then
  echo "deploy: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi
# The Debian init script fails in containers (ulimit) and nothing else starts
# the daemon there, so start it directly and wait for its socket.
log=${DOCKERD_LOG:-/tmp/dockerd.log}
echo "deploy: starting dockerd (log: $log)"
$sudo sh -c "nohup dockerd >'$log' 2>&1 &"
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "deploy: dockerd did not come up; last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
