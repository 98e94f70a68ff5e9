#!/usr/bin/env bash
# The Docker image and the Compose stack, for real: installs and starts
# dockerd when needed, builds a local Debian base image, the quantmt image and
# a Prometheus image from Debian's package, then checks that
#  - every binary in the image finds its libraries, and it runs as non-root;
#  - the container turns healthy (HEALTHCHECK through grpc.health.v1), answers
#    a Translate call and a health check from the host on ports published on
#    127.0.0.1 only, and exits 0 on SIGTERM;
#  - `docker-compose up` brings quantmt + Prometheus up on loopback ports, and
#    Prometheus scrapes quantmt (target up, the model's state and the test's
#    request counted).
# Grafana's image cannot be pulled here; deploy_files_test checks its files.
#   tests/deploy/docker_test.sh SOURCE_DIR WORK_DIR BUILD_DIR      # image from this build (minutes)
#   tests/deploy/docker_test.sh SOURCE_DIR WORK_DIR --from-source  # image compiled in Docker (long)
# Re-runs reuse the base image and Docker's layer cache, and first remove what
# a killed run left behind. Exit status 0: passed; 77: Docker cannot run on
# this machine (reason printed); anything else: failed.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SOURCE_DIR WORK_DIR BUILD_DIR|--from-source" >&2; exit 2; }
source_dir=$(cd "$1" && pwd)
work_dir=$2
image_from=$3
base_image=${QUANTMT_BASE_IMAGE:-local/debian:bookworm}
prometheus_image=local/prometheus:test
python=/usr/bin/python3
# The classic builder: no buildx here, and nothing to pull for it.
export DOCKER_BUILDKIT=0
mkdir -p "$work_dir"
started=$(date +%s)

if [ ! -f "$source_dir/server/main.cc" ]; then
  echo "SKIP: this tree has no quantmt-server yet: nothing to deploy"
  exit 77
fi

step() { echo "== $(date +%T) (+$(($(date +%s) - started)) s) $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# docker build with its output in WORK_DIR/NAME.log, shown when it fails.
build_image() {
  local log=$work_dir/$1.log
  shift
  docker build "$@" >"$log" 2>&1 || { tail -n 40 "$log"; fail "docker build failed: $log"; }
}
free_port() { $python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Fails unless every port that the containers matching a `docker ps` filter
# publish is bound to 127.0.0.1.
loopback_only() {
  local ports
  ports=$(docker ps --filter "$1" --format '{{.Ports}}' | tr ',' '\n' | grep -- '->' || true)
  [ -n "$ports" ] || fail "no published ports for $1"
  if grep -v '^ *127\.0\.0\.1:' <<<"$ports"; then fail "ports published beyond loopback: $ports"; fi
}

step "docker engine"
if ! "$source_dir/deploy/docker/install-docker.sh"; then
  echo "SKIP: Docker cannot run on this machine (see above)"
  exit 77
fi

# Names carry the PID of the run that made them: what a run killed on its
# timeout left behind (its PID gone, or now ours) is removed, a concurrent
# run's is not.
prefix=quantmttest
# Containers first: networks and volumes in use cannot go.
{
  docker ps -a --format 'container {{.Names}}'
  docker network ls --format 'network {{.Name}}'
  docker volume ls --format 'volume {{.Name}}'
} | sed -nE "s/^([a-z]+) ($prefix([0-9]+).*)/\1 \3 \2/p" | while read -r kind pid name; do
  [ "$pid" != $$ ] && kill -0 "$pid" 2>/dev/null && continue
  echo "removing $kind $name, left by an earlier run"
  docker "$kind" rm -f "$name" >/dev/null 2>&1 || docker "$kind" rm "$name" >/dev/null ||
    echo "could not remove $kind $name"
done

step "base image $base_image"
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  if [ -n "${QUANTMT_BASE_IMAGE:-}" ]; then
    docker pull "$base_image"
  else
    "$source_dir/deploy/docker/make-base-image.sh" "$base_image"
  fi
fi

# Prometheus's image builds beside quantmt's: both mostly wait on apt.
step "build $prometheus_image (in the background)"
build_image prometheus-image -f "$source_dir/deploy/docker/Dockerfile.prometheus-debian" \
  --build-arg BASE_IMAGE="$base_image" -t "$prometheus_image" "$source_dir/deploy/docker" &
prometheus_build=$!
if [ "$image_from" = --from-source ]; then
  image=quantmt:test-source
  step "build $image from source (deploy/docker/Dockerfile)"
  build_image image-from-source -f "$source_dir/deploy/docker/Dockerfile" --build-arg BASE_IMAGE="$base_image" \
    -t "$image" "$source_dir"
else
  image=quantmt:test
  step "stage $image_from"
  "$source_dir/deploy/docker/stage-build.sh" "$image_from" "$work_dir/stage"
  step "build $image from the staged build (deploy/docker/Dockerfile.runtime)"
  build_image image -f "$source_dir/deploy/docker/Dockerfile.runtime" \
    --build-arg BASE_IMAGE="$base_image" -t "$image" "$work_dir/stage"
fi

wait "$prometheus_build" || fail "the Prometheus image did not build"

step "runtime libraries and user"
missing=$(docker run --rm --entrypoint sh "$image" -c \
  'ldd /opt/quantmt/bin/* /opt/quantmt/lib/quantmt/*.so 2>&1 | grep "not found" || true')
[ -z "$missing" ] || fail "libraries missing in the image: $missing"
uid=$(docker run --rm --entrypoint id "$image" -u)
[ "$uid" != 0 ] || fail "the image runs as root"
docker run --rm "$image" --help >/dev/null || fail "quantmt-server --help fails in the image"

container=$prefix$$
project=$prefix$$
compose=(docker-compose -p "$project" -f "$source_dir/deploy/compose/docker-compose.yml")
cleanup() {
  docker rm -f "$container" >/dev/null 2>&1 || true
  "${compose[@]}" down -v >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "container: health check, Translate, SIGTERM"
docker run -d --init --name "$container" -p 127.0.0.1::50051 -p 127.0.0.1::9464 "$image" >/dev/null
for _ in $(seq 1 120); do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$container")
  [ "$health" = healthy ] && break
  [ "$(docker inspect -f '{{.State.Running}}' "$container")" = true ] ||
    { docker logs "$container" | tail -n 20; fail "the container stopped"; }
  sleep 1
done
[ "$health" = healthy ] || { docker logs "$container" | tail -n 20; fail "container health: $health"; }
loopback_only "name=^$container\$"
grpc_address=$(docker port "$container" 50051/tcp | head -n1)
metrics_address=$(docker port "$container" 9464/tcp | head -n1)
$python "$source_dir/tests/deploy/quantmt_grpc.py" "$source_dir" "$work_dir/stubs" "$grpc_address"
$python - "$metrics_address" <<'PY' || fail "no quantmt metrics at $metrics_address"
import sys, urllib.request
text = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
assert 'quantmt_requests_total{rpc="Translate",model="default",code="OK"}' in text, text[:2000]
PY
docker stop -t 40 "$container" >/dev/null
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$container")
[ "$exit_code" = 0 ] || { docker logs "$container" | tail -n 20; fail "exit status $exit_code after SIGTERM"; }

step "compose: quantmt + Prometheus"
export QUANTMT_IMAGE=$image PROMETHEUS_IMAGE=$prometheus_image
QUANTMT_GRPC_PORT=$(free_port)
QUANTMT_METRICS_PORT=$(free_port)
PROMETHEUS_PORT=$(free_port)
export QUANTMT_GRPC_PORT QUANTMT_METRICS_PORT PROMETHEUS_PORT
"${compose[@]}" config -q
"${compose[@]}" up -d quantmt prometheus
loopback_only "label=com.docker.compose.project=$project"
check_grpc=("$python" "$source_dir/tests/deploy/quantmt_grpc.py" "$source_dir" "$work_dir/stubs"
            "127.0.0.1:$QUANTMT_GRPC_PORT")
for _ in $(seq 1 120); do
  "${check_grpc[@]}" >/dev/null 2>&1 && break
  sleep 1
done
"${check_grpc[@]}" || { "${compose[@]}" logs --tail=20; fail "the Compose quantmt does not answer"; }
$python - "$PROMETHEUS_PORT" <<'PY' || { "${compose[@]}" logs --tail=20; fail "Prometheus does not scrape quantmt"; }
import json, sys, time, urllib.parse, urllib.request
port = sys.argv[1]
def query(expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"]
checks = {
    'up{job="quantmt"} == 1': "target up",
    'quantmt_model_loaded{model="default",state="ready"} == 1': "default model ready",
    'quantmt_requests_total{rpc="Translate",code="OK"} > 0': "Translate counted",
}
deadline = time.time() + 90
pending = dict(checks)
while pending and time.time() < deadline:
    for expr in list(pending):
        try:
            if query(expr):
                print(f"prometheus: {pending.pop(expr)}: {expr}")
        except OSError:
            pass
    time.sleep(1)
if pending:
    sys.exit(f"not seen in 90 s: {list(pending.values())}")
PY
step "clean up"
cleanup
trap - EXIT
step "PASS: image $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')), container and Compose stack"
