#!/usr/bin/env python3
"""The server's lifecycle as clients see it, through Python grpcio:

- starting (the port is open, models still loading): health says
  NOT_SERVING, Translate is refused with UNAVAILABLE ("starting"), and the
  metrics count each refusal; then SERVING and translations;
- SIGTERM: a client watching health (grpc.health.v1 Watch) sees
  NOT_SERVING, an accepted request still finishes OK, the server exits 0.

Usage: lifecycle_test.py SERVER_BIN QUANTMT_BIN SOURCE_DIR WORK_DIR
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

SERVER_BIN, QUANTMT_BIN, SOURCE_DIR, WORK_DIR = sys.argv[1:5]
del sys.argv[1:5]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_harness import Server, generate_stubs, requests_by_code  # noqa: E402

STUB_DIR = os.path.join(WORK_DIR, "lifecycle_test_stubs")
generate_stubs(SOURCE_DIR, STUB_DIR)
# The Python package `grpc` would shadow modules generated as grpc/health/v1:
# generate the same messages as health_check/health.proto.
HEALTH_DIR = os.path.join(STUB_DIR, "health_check")
os.makedirs(HEALTH_DIR, exist_ok=True)
shutil.copy(os.path.join(SOURCE_DIR, "proto", "grpc", "health", "v1", "health.proto"), HEALTH_DIR)
subprocess.run(["protoc", "-I", STUB_DIR, "--python_out", STUB_DIR, "--grpc_python_out", STUB_DIR,
                "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin"),
                "health_check/health.proto"], check=True)
import grpc  # noqa: E402
from health_check import health_pb2, health_pb2_grpc  # noqa: E402
from quantmt.v1 import translation_pb2, translation_pb2_grpc  # noqa: E402

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MODELS = os.path.join(SOURCE_DIR, "models")
LONG = ("Die Forscher untersuchten, wie sich das Klima in den Alpen in den letzten hundert "
        "Jahren verändert hat, und fanden heraus, dass die Gletscher schneller schmelzen.")


def translate(channel, sentences, **options):
    request = translation_pb2.TranslateRequest(
        sentences=sentences, options=translation_pb2.TranslationOptions(**options))
    return translation_pb2_grpc.TranslationServiceStub(channel).Translate(request, timeout=120)


def health(channel):
    return health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=10).status


class LifecycleTest(unittest.TestCase):
    def test_starting_refuses_until_ready(self):
        # Two models to load (the same directory twice) keep it starting for
        # a few seconds after the port opens.
        server = Server(SERVER_BIN, WORK_DIR, "--threads=1", model_root=MODELS,
                        models="default,copy=default", wait=False)
        try:
            deadline = time.time() + 120
            while "gRPC on" not in server.text() and time.time() < deadline:
                self.assertTrue(server.alive(), server.text())
                time.sleep(0.01)
            # Until the log says ready, ask; the last answers may already
            # come from the ready server.
            statuses, refusals = [], []
            with grpc.insecure_channel(server.address) as channel:
                while "ready" not in server.text() and time.time() < deadline:
                    statuses.append(health(channel))
                    try:
                        translate(channel, ["Danke."])
                    except grpc.RpcError as error:
                        refusals.append((error.code(), error.details()))
                self.assertTrue(server.wait_ready(), server.text())
                self.assertGreater(len(refusals), 0, "never saw the server starting")
                self.assertEqual(statuses[0], NOT_SERVING)
                # Never SERVING and then NOT_SERVING again.
                self.assertEqual(statuses, sorted(statuses, key=lambda s: s == SERVING))
                for code, details in refusals:
                    self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
                    self.assertIn("starting (loading its models): retry shortly", details)
                self.assertEqual(health(channel), SERVING)
                self.assertTrue(translate(channel, ["Danke."]).translations)
            counted = requests_by_code(server.metrics())
            self.assertEqual(counted.get("UNAVAILABLE"), len(refusals), counted)
        finally:
            server.stop()

    def test_sigterm_tells_watchers_and_finishes_accepted_work(self):
        server = Server(SERVER_BIN, WORK_DIR, "--threads=1", "--shutdown_grace_s=60",
                        model_root=MODELS)
        try:
            with grpc.insecure_channel(server.address) as channel:
                watch = health_pb2_grpc.HealthStub(channel).Watch(
                    health_pb2.HealthCheckRequest(service=""), timeout=120)
                self.assertEqual(next(watch).status, SERVING)
                outcome = {}

                def long_request():
                    try:
                        outcome["response"] = translate(channel, [LONG] * 8, beam_size=4)
                    except grpc.RpcError as error:
                        outcome["error"] = (error.code(), error.details())

                worker = threading.Thread(target=long_request)
                worker.start()
                time.sleep(0.3)  # accepted and decoding
                server.process.send_signal(signal.SIGTERM)
                # Health went NOT_SERVING before the server stopped accepting.
                self.assertEqual(next(watch).status, NOT_SERVING)
                worker.join(timeout=120)
                self.assertNotIn("error", outcome)
                self.assertEqual(len(outcome["response"].translations), 8)
                watch.cancel()
            self.assertEqual(server.process.wait(timeout=120), 0, server.text())
            self.assertIn("stopped", server.text())
        finally:
            server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
