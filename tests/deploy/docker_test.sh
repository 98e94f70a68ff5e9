#!/usr/bin/env bash
# The Docker image and the Compose stack, for real: installs and starts
# dockerd when needed, builds a local Debian base image, the quantmt image and
# a Prometheus image from Debian's package, then checks that
#  - every binary in the image finds its libraries, and it runs as non-root;
#  - the container turns healthy (HEALTHCHECK through grpc.health.v1), answers
#    a Translate call and a health check from the host, and exits 0 on SIGTERM;
#  - `docker-compose up` brings quantmt + Prometheus up, and Prometheus scrapes
#    quantmt (target up, the model's state and the test's request counted).
# Grafana's image cannot be pulled here; deploy_files_test checks its files.
#   tests/deploy/docker_test.sh SOURCE_DIR WORK_DIR
# Exit status 0: passed; 77: Docker cannot run on this machine (reason
# printed); anything else: failed.
set -euo pipefail
source_dir=$(cd "$1" && pwd)
work_dir=$2
base_image=${QUANTMT_BASE_IMAGE:-local/debian:bookworm}
image=quantmt:test
prometheus_image=local/prometheus:test
python=/usr/bin/python3
# The classic builder: no buildx here, and nothing to pull for it.
export DOCKER_BUILDKIT=0
mkdir -p "$work_dir"

if [ ! -f "$source_dir/server/main.cc" ]; then
  echo "SKIP: this tree has no quantmt-server yet: nothing to deploy"
  exit 77
fi

step() { echo "== $(date +%T) $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() { $python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "docker engine"
if ! "$source_dir/deploy/docker/install-docker.sh"; then
  echo "SKIP: Docker cannot run on this machine (see above)"
  exit 77
fi

step "base image $base_image"
if ! docker image inspect "$base_image" >/dev/null 2>&1; then
  if [ -n "${QUANTMT_BASE_IMAGE:-}" ]; then
    docker pull "$base_image"
  else
    "$source_dir/deploy/docker/make-base-image.sh" "$base_image"
  fi
fi

step "build $image"
docker build -f "$source_dir/deploy/docker/Dockerfile" --build-arg BASE_IMAGE="$base_image" \
  -t "$image" "$source_dir"
step "build $prometheus_image"
docker build -f "$source_dir/deploy/docker/Dockerfile.prometheus-debian" \
  --build-arg BASE_IMAGE="$base_image" -t "$prometheus_image" "$source_dir/deploy/docker"

step "runtime libraries and user"
missing=$(docker run --rm --entrypoint sh "$image" -c \
  'ldd /opt/quantmt/bin/* /opt/quantmt/lib/quantmt/*.so 2>&1 | grep "not found" || true')
[ -z "$missing" ] || fail "libraries missing in the image: $missing"
uid=$(docker run --rm --entrypoint id "$image" -u)
[ "$uid" != 0 ] || fail "the image runs as root"
docker run --rm "$image" --help >/dev/null || fail "quantmt-server --help fails in the image"

container=quantmt-test-$$
project=quantmttest$$
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
grpc_address=$(docker port "$container" 50051/tcp | head -n1)
metrics_address=$(docker port "$container" 9464/tcp | head -n1)
case $grpc_address in 127.0.0.1:*) ;; *) fail "gRPC published on $grpc_address, not loopback" ;; esac
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
export QUANTMT_GRPC_PORT=$(free_port) QUANTMT_METRICS_PORT=$(free_port) PROMETHEUS_PORT=$(free_port)
"${compose[@]}" config -q
"${compose[@]}" up -d quantmt prometheus
check_grpc=($python "$source_dir/tests/deploy/quantmt_grpc.py" "$source_dir" "$work_dir/stubs"
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
echo "PASS: image, container and Compose stack"
