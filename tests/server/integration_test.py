#!/usr/bin/env python3
"""quantmt-server against independent tools, on loopback.

- Python grpcio (Debian's python3-grpcio) as a second client: Translate,
  grpc.health.v1 and server reflection, with stubs generated here by protoc.
- A real Prometheus scrapes /metrics; a query over the scraped series gives
  the counts of the requests this test sent. `promtool check metrics` passes.
- The quantmt load tester runs a bounded load above the queue limit: only
  OK and RESOURCE_EXHAUSTED, memory flat, the server's counts equal the
  client's.
- SIGTERM under load: every accepted request is answered; the rest are
  refused with UNAVAILABLE ("shutting down") or never connect.

Usage: integration_test.py SERVER_BIN QUANTMT_BIN SOURCE_DIR WORK_DIR
Environment: QUANTMT_LOAD_SECONDS (default 5) sets the load run's length.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

# Shared with the soak and fault tests.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_harness import (free_port, requests_by_code, resident_bytes, sample,  # noqa: E402
                            sanitizer_report)

SERVER_BIN, QUANTMT_BIN, SOURCE_DIR, WORK_DIR = sys.argv[1:5]
del sys.argv[1:5]
LOAD_SECONDS = float(os.environ.get("QUANTMT_LOAD_SECONDS", "5"))


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def generate_stubs(out_dir):
    proto_dir = os.path.join(SOURCE_DIR, "proto")
    plugin = "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"
    subprocess.run(
        ["protoc", "-I", proto_dir, "--python_out", out_dir, "--grpc_python_out", out_dir, plugin,
         "quantmt/v1/translation.proto", "quantmt/v1/models.proto"], check=True)
    # The Python package `grpc` would shadow modules generated as
    # grpc/health/v1: generate the same messages as health_check/health.proto.
    health_dir = os.path.join(out_dir, "health_proto", "health_check")
    os.makedirs(health_dir, exist_ok=True)
    shutil.copy(os.path.join(proto_dir, "grpc/health/v1/health.proto"), health_dir)
    subprocess.run(
        ["protoc", "-I", os.path.dirname(health_dir), "--python_out", out_dir, "--grpc_python_out",
         out_dir, plugin, "health_check/health.proto"], check=True)
    sys.path.insert(0, out_dir)


class Server:
    def __init__(self, *extra):
        self.port, self.metrics_port = free_port(), free_port()
        self.log = tempfile.NamedTemporaryFile(mode="w+", dir=WORK_DIR, suffix=".log")
        self.process = subprocess.Popen(
            [SERVER_BIN, "--host=127.0.0.1", f"--port={self.port}",
             f"--metrics_port={self.metrics_port}", f"--model_root={SOURCE_DIR}/models",
             "--models=default", "--threads=1", *extra],
            stderr=self.log, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
        deadline = time.time() + 120
        while time.time() < deadline:
            if "quantmt-server: ready" in self.text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("quantmt-server did not start:\n" + self.text())

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def metrics(self):
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def stop(self):
        """Kills the server; fails if its log holds a sanitizer report."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        report = sanitizer_report(self.text())
        self.log.close()
        if report:
            raise AssertionError("quantmt-server reported:\n" + report)


def run_load(server, *args):
    result = subprocess.run(
        [QUANTMT_BIN, "--address", server.address, "load", "--json", *args],
        capture_output=True, text=True, timeout=LOAD_SECONDS + 120)
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    return json.loads(result.stdout)


class IntegrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        generate_stubs(WORK_DIR)
        cls.server = Server("--max_queued_sentences=8")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def channel(self):
        import grpc
        return grpc.insecure_channel(self.server.address)

    def test_1_python_client_translates(self):
        import grpc
        from quantmt.v1 import translation_pb2, translation_pb2_grpc
        with self.channel() as channel:
            stub = translation_pb2_grpc.TranslationServiceStub(channel)
            request = translation_pb2.TranslateRequest(
                sentences=["Ein kleiner Hund rennt über die Wiese.", "Danke."])
            request.options.beam_size = 2
            response = stub.Translate(request, timeout=60)
            self.assertEqual(response.model, "default")
            self.assertEqual(len(response.translations), 2)
            self.assertIn("dog", response.translations[0].hypotheses[0].text)
            with self.assertRaises(grpc.RpcError) as error:
                stub.Translate(translation_pb2.TranslateRequest(model="nope", sentences=["x"]),
                               timeout=10)
            self.assertEqual(error.exception.code(), grpc.StatusCode.NOT_FOUND)
            self.assertIn("nope", error.exception.details())

    def test_2_python_client_health(self):
        import grpc
        from health_check import health_pb2, health_pb2_grpc
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ["", "quantmt.v1.TranslationService", "quantmt.v1.ModelService",
                            "default"]:
                response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                self.assertEqual(response.status, health_pb2.HealthCheckResponse.SERVING, service)
            with self.assertRaises(grpc.RpcError) as error:
                stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
            self.assertEqual(error.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_3_reflection_describes_the_api(self):
        # A raw ServerReflectionInfo exchange, as grpcurl does it: field 7
        # (list_services), then field 4 (file_containing_symbol).
        with self.channel() as channel:
            call = channel.stream_stream(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
            symbol = b"quantmt.v1.TranslationService"
            requests = [b"\x3a\x00", b"\x22" + bytes([len(symbol)]) + symbol]
            answers = list(call(iter(requests), timeout=10))
        self.assertEqual(len(answers), 2)
        for service in [b"quantmt.v1.TranslationService", b"quantmt.v1.ModelService",
                        b"grpc.health.v1.Health"]:
            self.assertIn(service, answers[0])
        self.assertIn(b"quantmt/v1/translation.proto", answers[1])
        self.assertIn(b"TranslateRequest", answers[1])

    def test_4_prometheus_scrapes_and_promtool_accepts(self):
        import grpc
        from quantmt.v1 import translation_pb2, translation_pb2_grpc
        before = requests_by_code(self.server.metrics())
        with self.channel() as channel:
            stub = translation_pb2_grpc.TranslationServiceStub(channel)
            for _ in range(3):
                stub.Translate(translation_pb2.TranslateRequest(sentences=["Ein Hund."]),
                               timeout=60)
            for _ in range(5):
                with self.assertRaises(grpc.RpcError):
                    stub.Translate(translation_pb2.TranslateRequest(), timeout=10)
        expected_ok = before.get("OK", 0) + 3
        expected_invalid = before.get("INVALID_ARGUMENT", 0) + 5

        text = self.server.metrics()
        check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                               capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        for name in ["quantmt_requests_total", "quantmt_request_duration_seconds_bucket",
                     "quantmt_queue_duration_seconds_bucket", "quantmt_compute_duration_seconds_count",
                     "quantmt_batch_sentences_bucket", "quantmt_batch_tokens_bucket",
                     "quantmt_source_tokens_total", "quantmt_generated_tokens_total",
                     "quantmt_queued_sentences", "quantmt_inflight_requests",
                     "quantmt_model_weights_bytes", "quantmt_model_loaded",
                     "process_resident_memory_bytes"]:
            self.assertIn("\n" + name, "\n" + text, name)
        self.assertEqual(sample(text, 'quantmt_model_loaded{model="default",state="ready"}'), 1)

        prometheus_port = free_port()
        data = tempfile.mkdtemp(dir=WORK_DIR)
        config = os.path.join(data, "prometheus.yml")
        with open(config, "w") as out:
            out.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                      "  - job_name: quantmt\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{self.server.metrics_port}']\n")
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}/tsdb",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def query(expression):
                url = (f"http://127.0.0.1:{prometheus_port}/api/v1/query?" +
                       urllib.parse.urlencode({"query": expression}))
                result = json.loads(http_get(url))["data"]["result"]
                return float(result[0]["value"][1]) if result else None

            ok = invalid = None
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    ok = query('sum(quantmt_requests_total{rpc="Translate",code="OK"})')
                    invalid = query(
                        'sum(quantmt_requests_total{rpc="Translate",code="INVALID_ARGUMENT"})')
                    if ok == expected_ok and invalid == expected_invalid:
                        break
                except OSError:
                    pass  # not listening yet
                time.sleep(0.5)
            self.assertEqual(ok, expected_ok)
            self.assertEqual(invalid, expected_invalid)
            self.assertEqual(query('up{job="quantmt"}'), 1)
            self.assertGreater(query('process_resident_memory_bytes{job="quantmt"}'), 1e7)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
            shutil.rmtree(data, ignore_errors=True)

    def test_5_load_above_the_queue_limit(self):
        before = requests_by_code(self.server.metrics())
        pid = self.server.process.pid
        rss = [resident_bytes(pid)]
        load = subprocess.Popen(
            [QUANTMT_BIN, "--address", self.server.address, "load", "--json",
             "--concurrency", "12", "--sentences", "2", "--duration", str(LOAD_SECONDS)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while load.poll() is None:
            time.sleep(0.25)
            rss.append(resident_bytes(pid))
        result = json.loads(load.stdout.read())
        load.stdout.close()
        self.assertEqual(load.returncode, 0)
        codes = result["codes"]
        self.assertGreater(codes.get("OK", 0), 0, result)
        self.assertGreater(codes.get("RESOURCE_EXHAUSTED", 0), 0, result)
        self.assertEqual(set(codes) - {"OK", "RESOURCE_EXHAUSTED"}, set(), result)
        after = requests_by_code(self.server.metrics())
        for code, count in codes.items():
            self.assertEqual(after.get(code, 0) - before.get(code, 0), count, code)
        # Flat: the second half of the run holds no more than the first.
        half = len(rss) // 2
        growth = max(rss[half:]) - max(rss[:half])
        print(f"\nload: {result['requests']} requests in {result['seconds']:.1f} s, "
              f"{result['requests_per_second']:.1f}/s, codes {codes}, "
              f"rss {rss[0] / 1e6:.0f} -> {rss[-1] / 1e6:.0f} MB "
              f"(max first half {max(rss[:half]) / 1e6:.0f}, second {max(rss[half:]) / 1e6:.0f})",
              file=sys.stderr)
        self.assertLess(growth, 32 << 20, rss)


class GracefulShutdownTest(unittest.TestCase):
    def test_sigterm_under_load_loses_no_accepted_request(self):
        server = Server("--max_queued_sentences=8", "--shutdown_grace_s=30")
        try:
            load = subprocess.Popen(
                [QUANTMT_BIN, "--address", server.address, "load", "--json",
                 "--concurrency", "6", "--duration", "4", "--request_timeout", "60"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(1.5)
            server.process.send_signal(signal.SIGTERM)
            self.assertEqual(server.process.wait(timeout=60), 0, server.text())
            result = json.loads(load.communicate(timeout=60)[0])
            log = server.text()
        finally:
            server.stop()
        codes = result["codes"]
        self.assertGreater(codes.get("OK", 0), 0, result)
        self.assertEqual(set(codes) - {"OK", "RESOURCE_EXHAUSTED", "UNAVAILABLE", "CANCELLED"},
                         set(), result)
        # CANCELLED only for calls caught in flight when the gRPC server stops
        # (the engine has drained by then, so they are refusals in progress):
        # at most the load's concurrency. While the engine drains, new calls
        # are refused with UNAVAILABLE.
        self.assertLessEqual(codes.get("CANCELLED", 0), 6, result)
        # UNAVAILABLE only as a refusal: draining, or no server to connect to.
        for message in result["error_messages"]:
            if message.startswith("UNAVAILABLE"):
                self.assertTrue("shutting down" in message or "connect" in message.lower(),
                                message)
        self.assertIn("draining", log)
        self.assertIn("stopped", log)
        print(f"\nshutdown under load: codes {codes}", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
