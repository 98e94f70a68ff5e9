#!/usr/bin/env python3
"""quantmt-server started with --config FILE (a TOML file written here),
checked through Python grpcio against the real process:

- the ports, model root, models, replicas, limits and admin token come
  from the file;
- a flag on the command line wins over the file, the file wins over a
  QUANTMT_* variable, and a variable sets what the file leaves out;
- a bad file (unknown key, wrong type, value out of range, missing file)
  ends startup with a message naming the problem and a non-zero exit.

Usage: config_test.py SERVER_BIN QUANTMT_BIN SOURCE_DIR WORK_DIR
"""
import os
import subprocess
import sys
import unittest

SERVER_BIN, QUANTMT_BIN, SOURCE_DIR, WORK_DIR = sys.argv[1:5]
del sys.argv[1:5]
HERE = os.path.dirname(os.path.abspath(__file__))
STUB_DIR = os.path.join(WORK_DIR, "config_test_stubs")
TOKEN = "token-from-the-file"

sys.path.insert(0, HERE)
from server_harness import Server, generate_stubs, requests_by_code, write_config  # noqa: E402

generate_stubs(SOURCE_DIR, STUB_DIR)
import grpc  # noqa: E402
from quantmt.v1 import models_pb2, models_pb2_grpc  # noqa: E402
from quantmt.v1 import translation_pb2, translation_pb2_grpc  # noqa: E402


def error_of(call):
    """(code, details) of the RpcError `call` raises; fails if it succeeds."""
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError("the call succeeded")


class ConfigFileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        config = {"threads": 1, "replicas": 1, "max_sentences": 3, "max_request_bytes": 120,
                  "max_receive_message_bytes": 2048, "default_beam_size": 1,
                  "admin_token": TOKEN}
        environment = {"QUANTMT_MAX_REQUEST_BYTES": "50",  # the file's 120 wins
                       "QUANTMT_MAX_BEAM_SIZE": "2"}  # not in the file: applies
        cls.server = Server(SERVER_BIN, WORK_DIR, "--max_sentences=5",  # the flag wins
                            model_root=os.path.join(SOURCE_DIR, "models"),
                            models="default,copy=default", config=config,
                            env=environment)
        cls.channel = grpc.insecure_channel(cls.server.address)
        cls.stub = translation_pb2_grpc.TranslationServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop()

    def translate(self, sentences, **options):
        request = translation_pb2.TranslateRequest(sentences=sentences)
        for key, value in options.items():
            setattr(request.options, key, value)
        return self.stub.Translate(request, timeout=60)

    def test_ports_and_models_come_from_the_file(self):
        # The harness passed nothing but --config and one limit.
        self.assertEqual(self.server.process.args[1:],
                         ["--config", self.server.config_path, "--max_sentences=5"])
        self.assertIn(f"gRPC on 127.0.0.1:{self.server.port}", self.server.text())
        listed = models_pb2_grpc.ModelServiceStub(self.channel).ListModels(
            models_pb2.ListModelsRequest(), timeout=30)
        models = {m.name: m for m in listed.models}
        self.assertEqual(set(models), {"default", "copy"})
        self.assertTrue(models["default"].is_default)  # the first in the file's list
        self.assertTrue(models["copy"].model_dir.endswith(os.path.join("models", "default")))
        # The file's replicas, not the automatic plan (two on two cores).
        self.assertEqual([m.replicas for m in listed.models], [1, 1])
        self.assertIn("quantmt_requests_total", self.server.metrics())

    def test_a_flag_wins_over_the_file(self):
        code, details = error_of(lambda: self.translate(["Hallo."] * 6))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("6 sentences; the limit is 5", details)
        self.assertEqual(len(self.translate(["Hallo."] * 5).translations), 5)

    def test_the_file_wins_over_the_environment(self):
        # 96 bytes: over the environment's 50, within the file's 120.
        self.assertEqual(len(self.translate(["Ein Hund rennt. " * 3] * 2).translations), 2)
        code, details = error_of(lambda: self.translate(["a" * 65] * 2))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("130 bytes of text; the limit is 120", details)

    def test_the_environment_sets_what_the_file_leaves_out(self):
        code, details = error_of(lambda: self.translate(["Hallo."], beam_size=3))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("use 1 (greedy) to 2", details)

    def test_message_size_limit_from_the_file_is_counted(self):
        before = requests_by_code(self.server.metrics()).get("RESOURCE_EXHAUSTED", 0)
        code, details = error_of(lambda: self.translate(["a" * 1000] * 3))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("over the size limit of 2048 (--max_receive_message_bytes)", details)
        after = requests_by_code(self.server.metrics()).get("RESOURCE_EXHAUSTED", 0)
        self.assertEqual(after, before + 1)

    def test_admin_token_from_the_file(self):
        stub = models_pb2_grpc.ModelServiceStub(self.channel)
        request = models_pb2.UnloadModelRequest(name="no-such-model")

        def unload(token):
            return stub.UnloadModel(request, timeout=30,
                                    metadata=[("authorization", f"Bearer {token}")])

        code, _ = error_of(lambda: unload("a-guess"))
        self.assertEqual(code, grpc.StatusCode.PERMISSION_DENIED)
        code, details = error_of(lambda: unload(TOKEN))  # past the token check
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("no-such-model", details)


class BadConfigFileTest(unittest.TestCase):
    """Each file ends startup before any model loads: no server is left."""

    def start_with(self, name, settings):
        path = os.path.join(WORK_DIR, name)
        if settings is not None:
            write_config(path, {"port": 0, "metrics_port": -1, **settings})
        result = subprocess.run([SERVER_BIN, "--config", path], capture_output=True, text=True,
                                timeout=120, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
        self.assertNotEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("ready", result.stderr)
        return result.stderr, path

    def test_unknown_key(self):
        message, path = self.start_with("unknown_key.toml", {"max_sentencez": 3})
        self.assertIn(f"--config {path}", message)
        self.assertIn("max_sentencez", message)

    def test_section(self):
        path = os.path.join(WORK_DIR, "section.toml")
        with open(path, "w") as f:
            f.write("[server]\nport = 0\n")
        message, _ = self.start_with("section.toml", None)
        self.assertIn(f"--config {path}: section [server] is not a setting", message)
        self.assertIn("at the top level of the file", message)
        self.assertNotIn("++", message)

    def test_wrong_type(self):
        message, _ = self.start_with("wrong_type.toml", {"max_sentences": "many"})
        self.assertIn("--max_sentences", message)
        self.assertIn("many", message)

    def test_value_out_of_range(self):
        message, _ = self.start_with("out_of_range.toml", {"max_beam_size": 0})
        self.assertIn("--max_beam_size is 0: use 1 to 64", message)

    def test_missing_file(self):
        message, path = self.start_with("no_such_file.toml", None)
        self.assertIn(path, message)
        self.assertIn("not readable", message)


if __name__ == "__main__":
    unittest.main(verbosity=2)
