#!/usr/bin/python3
"""Every PromQL expression of the Grafana dashboard returns data from a real
Prometheus scraping a real quantmt-server.

Starts quantmt-server (default model) and Prometheus (Debian's package) on
loopback, sends Translate traffic (some of it refused, so that error series
exist) through gRPC stubs generated from the project's .proto files, waits
for Prometheus to scrape it, then evaluates each dashboard query and each
template-variable query through Prometheus's HTTP API.

  dashboard_promql_test.py SOURCE_DIR WORK_DIR QUANTMT_SERVER
Exit status 0: passed; 77: skipped (reason printed); anything else: failed.
"""
import concurrent.futures
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from quantmt_grpc import generate_stubs, health_serving

SKIP = 77
# Grafana's values for the dashboard's variables when "All" is selected
# (allValue) and for its automatic rate interval: wide enough to cover the
# traffic this test sends, at a 1 s scrape interval.
VARIABLES = {"$datasource": "prometheus", "$job": ".*", "$model": ".*", "$rpc": ".*",
             "$__rate_interval": "1m"}
# Exported only while a model is loaded on a GPU (see docs/metrics.md).
GPU_ONLY_METRICS = {"quantmt_gpu_memory_bytes"}


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def wait_for(what, predicate, timeout_s, process=None, log=None):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise Failure(f"{what}: process exited with {process.returncode}\n{tail(log)}")
        try:
            if predicate():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.25)
    raise Failure(f"{what}: not reached in {timeout_s} s\n{tail(log)}")


def tail(path, lines=30):
    if not path or not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def dashboard_queries(source_dir):
    """(title, expr) of every panel target and template variable."""
    path = os.path.join(source_dir, "deploy/compose/grafana/dashboards/quantmt.json")
    with open(path) as f:
        dashboard = json.load(f)
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((f'panel "{panel["title"]}" {target["refId"]}', target["expr"]))
    variables = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            variables.append((variable["name"], variable["query"]["query"]))
    return queries, variables


def substitute(expr):
    # Longest names first, so that $model never eats part of $models.
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    if "$" in expr:
        raise Failure(f"unknown dashboard variable left in {expr!r}")
    return expr


def prometheus_query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = json.loads(http_get(url))
    except urllib.error.HTTPError as error:
        raise Failure(f"Prometheus refused {expr!r}: {error.read().decode()}")
    if body.get("status") != "success":
        raise Failure(f"Prometheus refused {expr!r}: {body}")
    return body["data"]["result"]


def label_values(port, variable_query):
    """Grafana's label_values(METRIC_SELECTOR, LABEL) through the series API."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable_query.strip())
    if not match:
        raise Failure(f"variable query {variable_query!r} is not label_values(selector, label)")
    selector, label = substitute(match.group(1)), match.group(2)
    url = (f"http://127.0.0.1:{port}/api/v1/label/{label}/values?"
           + urllib.parse.urlencode({"match[]": selector}))
    return json.loads(http_get(url))["data"]


def send_traffic(grpc_port):
    import grpc
    from quantmt.v1 import translation_pb2, translation_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stub = translation_pb2_grpc.TranslationServiceStub(channel)
    sentences = ["Ein Hund läuft über die Wiese.", "Zwei Kinder spielen im Park.",
                 "Eine Frau liest ein Buch.", "Der Mann fährt Fahrrad."]

    def translate(i):
        request = translation_pb2.TranslateRequest(
            sentences=sentences[: 1 + i % len(sentences)],
            options=translation_pb2.TranslationOptions(beam_size=1 + i % 2, max_length=24))
        response = stub.Translate(request, timeout=60)
        if len(response.translations) != len(request.sentences):
            raise Failure(f"Translate answered {len(response.translations)} translations "
                          f"for {len(request.sentences)} sentences")
        return len(request.sentences)

    # Concurrent requests, so that batches hold more than one sentence.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(translate, range(16)))
    refused = 0
    for bad in (translation_pb2.TranslateRequest(model="no-such-model", sentences=["Hallo"]),
                translation_pb2.TranslateRequest(sentences=[])):
        try:
            stub.Translate(bad, timeout=10)
            raise Failure(f"a bad request was accepted: {bad}")
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.OK:
                raise Failure("a bad request was answered OK")
            refused += 1
    channel.close()
    return 16 + refused


def has_finite_value(result):
    for series in result:
        value = series["value"][1]
        if not math.isnan(float(value)) and not math.isinf(float(value)):
            return True
    return False


def run(source_dir, work_dir, server_binary):
    generate_stubs(source_dir, os.path.join(work_dir, "stubs"))
    queries, variables = dashboard_queries(source_dir)
    grpc_port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    server_log = os.path.join(work_dir, "server.log")
    prometheus_log = os.path.join(work_dir, "prometheus.log")
    config = os.path.join(work_dir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n"
                "scrape_configs:\n  - job_name: quantmt\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n")

    processes = []
    try:
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        server = subprocess.Popen(
            [server_binary, "--host=127.0.0.1", f"--port={grpc_port}",
             f"--metrics_port={metrics_port}", f"--model_root={source_dir}/models",
             "--models=default", "--threads=1", "--max_batch_wait_ms=20"],
            stdout=open(server_log, "w"), stderr=subprocess.STDOUT, env=env)
        processes.append(server)
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(work_dir, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=open(prometheus_log, "w"), stderr=subprocess.STDOUT)
        processes.append(prometheus)

        wait_for("quantmt-server health SERVING", lambda: health_serving(f"127.0.0.1:{grpc_port}"), 120,
                 server, server_log)
        wait_for("Prometheus ready",
                 lambda: "Ready" in http_get(f"http://127.0.0.1:{prometheus_port}/-/ready"),
                 60, prometheus, prometheus_log)
        # Two rounds of traffic, scrapes apart: series appear with the first
        # request, so rate() sees an increase only if traffic continues after
        # Prometheus has sampled them once (one round can fit in one scrape).
        def scraped(expr, at_least):
            result = prometheus_query(prometheus_port, expr)
            return bool(result) and float(result[0]["value"][1]) >= at_least

        # The second round starts once Prometheus holds the first one's
        # samples (a fixed pause was not always enough on a busy machine).
        sent = send_traffic(grpc_port)
        wait_for(f"Prometheus scraping the first {sent} requests",
                 lambda: scraped('sum(quantmt_request_duration_seconds_count{job="quantmt"})', sent),
                 30, prometheus, prometheus_log)
        time.sleep(1.5)
        sent += send_traffic(grpc_port)
        # Prometheus has the traffic once its count of answered RPCs does.
        wait_for(f"Prometheus scraping all {sent} requests",
                 lambda: scraped('sum(quantmt_requests_total{job="quantmt"})', sent) and
                 scraped('sum(quantmt_request_duration_seconds_count{job="quantmt"})', sent),
                 30, prometheus, prometheus_log)
        # One more scrape after the last request, so that every rate() has
        # two samples after the traffic as well as before it.
        time.sleep(2.5)

        exposition = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
        failures = []
        for name, query in variables:
            values = label_values(prometheus_port, query)
            print(f"variable ${name}: {values}")
            if not values:
                failures.append(f"variable ${name}: {query} has no values")
        for title, expr in queries:
            concrete = substitute(expr)
            result = prometheus_query(prometheus_port, concrete)
            metrics = set(re.findall(r"\b(?:quantmt|process)_[a-z_]+", concrete))
            gpu_only = metrics & GPU_ONLY_METRICS
            if gpu_only and not any(re.search(rf"^{m}\{{", exposition, re.M) for m in gpu_only):
                print(f"ok (no GPU: evaluates, no series expected)  {title}")
                continue
            status = "ok" if has_finite_value(result) else "NO DATA"
            print(f"{status:<5} {len(result)} series  {title}: {concrete}")
            if status != "ok":
                failures.append(f"{title}: {concrete} returned {result}")
        if failures:
            raise Failure("dashboard queries without data:\n  " + "\n  ".join(failures))

        server.send_signal(signal.SIGTERM)
        if server.wait(timeout=60) != 0:
            raise Failure(f"quantmt-server exited with {server.returncode} after SIGTERM\n"
                          f"{tail(server_log)}")
        print(f"PASS: {len(queries)} queries and {len(variables)} variables return data")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    source_dir, work_dir, server_binary = sys.argv[1:]
    if not server_binary or not os.path.exists(server_binary):
        print("SKIP: quantmt-server is not built (gRPC or civetweb missing)")
        return SKIP
    for tool in ("prometheus", "protoc", "grpc_python_plugin"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} not found; scripts/install-deps.sh installs it")
            return SKIP
    shutil.rmtree(work_dir, ignore_errors=True)
    os.makedirs(work_dir)
    try:
        run(source_dir, work_dir, server_binary)
    except Failure as failure:
        print(f"FAIL: {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
