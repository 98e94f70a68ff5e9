#!/usr/bin/env python3
"""Faults against a real quantmt-server, through Python grpcio:

- the weights of a loaded model truncated or replaced on disk: the server
  keeps serving from memory, a reload fails with an error naming the file,
  and the old version keeps serving; a corrupt directory under a new name
  fails to load and harms nothing;
- a TranslateStream client that cancels, or whose process is killed, with
  long requests in flight: the engine drops them (CANCELLED, nothing
  finished) within seconds, long before they could have completed;
- TLS on the gRPC port with a certificate generated here by openssl;
- settings that cannot work (unreadable TLS key, port in use) end the
  server with a message;
- every configurable request limit, provoked once.

Usage: fault_test.py SERVER_BIN QUANTMT_BIN SOURCE_DIR WORK_DIR
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SERVER_BIN, QUANTMT_BIN, SOURCE_DIR, WORK_DIR = sys.argv[1:5]
del sys.argv[1:5]
HERE = os.path.dirname(os.path.abspath(__file__))
STUB_DIR = os.path.join(WORK_DIR, "fault_test_stubs")
TOKEN = "fault-test-token"
SOURCE = "Ein kleiner Hund rennt über die Wiese."

sys.path.insert(0, HERE)
from server_harness import Server, generate_stubs, requests_by_code, run_load, sample  # noqa: E402

generate_stubs(SOURCE_DIR, STUB_DIR)
import grpc  # noqa: E402
from quantmt.v1 import models_pb2, models_pb2_grpc  # noqa: E402
from quantmt.v1 import translation_pb2, translation_pb2_grpc  # noqa: E402


def translate(channel, sentences, timeout=60, **options):
    request = translation_pb2.TranslateRequest(sentences=sentences)
    for key, value in options.items():
        setattr(request.options, key, value)
    return translation_pb2_grpc.TranslationServiceStub(channel).Translate(request, timeout=timeout)


def error_of(call):
    """(code, details) of the RpcError `call` raises; fails if it succeeds."""
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError("the call succeeded")


def drain(call):
    """Reads a response stream to its end; a cancelled stream just ends."""
    try:
        for _ in call:
            pass
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            raise


def wait_until(condition, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class ModelDirectoryFaultsTest(unittest.TestCase):
    """A copy of the default model as "m", broken in place while served."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(dir=WORK_DIR)
        cls.original = os.path.join(SOURCE_DIR, "models", "default")
        cls.model_dir = os.path.join(cls.root, "m")
        shutil.copytree(cls.original, cls.model_dir)
        cls.server = Server(SERVER_BIN, WORK_DIR, "--threads=1", "--default_beam_size=1",
                            f"--admin_token={TOKEN}", model_root=cls.root, models="m")
        cls.channel = grpc.insecure_channel(cls.server.address)
        cls.expected = translate(cls.channel, [SOURCE]).translations[0].hypotheses[0].text

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.restore()

    def restore(self):
        shutil.rmtree(self.model_dir, ignore_errors=True)
        shutil.copytree(self.original, self.model_dir)

    def load(self, name, directory):
        stub = models_pb2_grpc.ModelServiceStub(self.channel)
        return stub.LoadModel(models_pb2.LoadModelRequest(name=name, directory=directory),
                              metadata=[("authorization", f"Bearer {TOKEN}")], timeout=120)

    def models(self):
        stub = models_pb2_grpc.ModelServiceStub(self.channel)
        response = stub.ListModels(models_pb2.ListModelsRequest(), timeout=10)
        return {model.name: model for model in response.models}

    def assert_still_serving(self):
        self.assertTrue(self.server.alive(), self.server.text())
        result = translate(self.channel, [SOURCE])
        self.assertEqual(result.translations[0].hypotheses[0].text, self.expected)
        self.assertEqual(self.models()["m"].state, "ready")
        self.assertEqual(
            sample(self.server.metrics(), 'quantmt_model_loaded{model="m",state="ready"}'), 1)

    def assert_reload_fails(self, message_part):
        code, details = error_of(lambda: self.load("m", "m"))
        self.assertNotIn(code, (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), details)
        self.assertIn(message_part, details)
        self.assertIn(message_part, self.models()["m"].last_error)
        self.assert_still_serving()

    def test_weights_truncated_while_serving(self):
        weights = os.path.join(self.model_dir, "model.safetensors")
        size = os.path.getsize(weights)
        for keep in (size // 2, 100, 0):
            os.truncate(weights, keep)
            self.assert_still_serving()
            self.assert_reload_fails("model.safetensors")

    def test_weights_replaced_while_serving(self):
        weights = os.path.join(self.model_dir, "model.safetensors")
        size = os.path.getsize(weights)
        replacement = weights + ".new"
        # Garbage of the same size, renamed over the file (as a deploy would).
        with open(replacement, "wb") as out:
            out.write(os.urandom(size))
        os.replace(replacement, weights)
        self.assert_still_serving()
        self.assert_reload_fails("model.safetensors")
        # Rewritten in place: a valid header, every tensor's bytes zeroed.
        self.restore()
        with open(weights, "r+b") as f:
            header_size = int.from_bytes(f.read(8), "little")
            f.seek(8 + header_size)
            f.write(b"\0" * (size - 8 - header_size))
        self.assert_still_serving()
        # Zeroed weights load (they are valid numbers): the reload succeeds
        # and serves what is now on disk; putting the original back and
        # reloading restores the translations.
        self.load("m", "m")
        self.restore()
        self.load("m", "m")
        self.assert_still_serving()

    def test_config_replaced_while_serving(self):
        config = os.path.join(self.model_dir, "config.json")
        with open(config) as f:
            text = f.read()
        for broken, part in [(text[:len(text) // 2], "config.json"),
                             (text.replace('"d_model": 384', '"d_model": 512', 1), "shape")]:
            with open(config, "w") as f:
                f.write(broken)
            self.assert_still_serving()
            self.assert_reload_fails(part)
        os.remove(config)
        self.assert_reload_fails("config.json")

    def test_corrupt_model_under_a_new_name_leaves_the_served_one_alone(self):
        broken = os.path.join(self.root, "broken")
        shutil.copytree(self.original, broken, dirs_exist_ok=True)
        os.truncate(os.path.join(broken, "model.safetensors"), 4096)
        code, details = error_of(lambda: self.load("broken", "broken"))
        self.assertIn("model.safetensors", details)
        self.assertNotIn(code, (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), details)
        code, details = error_of(lambda: translation_pb2_grpc.TranslationServiceStub(
            self.channel).Translate(translation_pb2.TranslateRequest(model="broken",
                                                                     sentences=[SOURCE]),
                                    timeout=30))
        self.assertIn(code, (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND), details)
        self.assert_still_serving()
        shutil.rmtree(broken)

    def test_weights_truncated_while_loading(self):
        # The loader maps the file while it copies the tensors out; the file
        # shrinks under it at some point of the load.
        weights = os.path.join(self.model_dir, "model.safetensors")
        size = os.path.getsize(weights)
        for delay in (0.0, 0.05, 0.15, 0.3):
            self.restore()
            outcome = {}

            def reload():
                try:
                    self.load("m", "m")
                    outcome["code"] = grpc.StatusCode.OK
                except grpc.RpcError as error:
                    outcome["code"] = error.code()

            loader = threading.Thread(target=reload)
            loader.start()
            time.sleep(delay)
            os.truncate(weights, size // 3)
            loader.join(timeout=120)
            self.assertTrue(self.server.alive(), f"delay {delay}: " + self.server.text()[-3000:])
            self.assertIn("code", outcome)
            self.assert_still_serving()


class StreamDisconnectTest(unittest.TestCase):
    """Long requests in flight on a stream whose client goes away."""

    REQUESTS, SENTENCES = 6, 16

    @classmethod
    def setUpClass(cls):
        cls.server = Server(SERVER_BIN, WORK_DIR, "--threads=1",
                            model_root=os.path.join(SOURCE_DIR, "models"))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def gauges(self):
        text = self.server.metrics()
        return {name: sample(text, f'quantmt_{name}{{model="default"}}')
                for name in ("queued_sentences", "running_sentences", "inflight_requests")}

    def busy(self):
        gauges = self.gauges()
        return (gauges["running_sentences"] > 0 and
                gauges["inflight_requests"] == self.REQUESTS)

    def check_freed(self, disconnect):
        """`disconnect` ends the client; its work must be gone soon after."""
        before = self.server.metrics()
        self.assertTrue(wait_until(self.busy, 60), self.gauges())
        disconnect()
        gone = time.time()
        freed = wait_until(lambda: not any(self.gauges().values()), 10)
        seconds = time.time() - gone
        after = self.server.metrics()
        self.assertTrue(freed, self.gauges())
        delta = {code: n - requests_by_code(before, "TranslateStream").get(code, 0)
                 for code, n in requests_by_code(after, "TranslateStream").items()}
        # Every request ended CANCELLED, none finished: the work was dropped,
        # not run to its end.
        self.assertEqual(delta.get("CANCELLED", 0), self.REQUESTS, delta)
        self.assertEqual(delta.get("OK", 0), 0, delta)
        self.assertEqual(sample(after, 'quantmt_generated_tokens_total{model="default"}'),
                         sample(before, 'quantmt_generated_tokens_total{model="default"}'))
        print(f"\n  freed {seconds:.2f} s after the disconnect", file=sys.stderr)
        self.assertLess(seconds, 5)
        with grpc.insecure_channel(self.server.address) as channel:
            self.assertTrue(translate(channel, [SOURCE], beam_size=1).translations)

    def test_cancelled_stream_frees_its_work(self):
        hold = threading.Event()

        def messages():
            for i in range(self.REQUESTS):
                message = translation_pb2.TranslateStreamRequest(id=i + 1)
                message.request.sentences.extend([SOURCE * 6] * self.SENTENCES)
                message.request.options.beam_size = 4
                message.request.options.max_length = 200
                yield message
            hold.wait()

        with grpc.insecure_channel(self.server.address) as channel:
            call = translation_pb2_grpc.TranslationServiceStub(channel).TranslateStream(
                messages(), timeout=300)
            reader = threading.Thread(target=drain, args=(call,), daemon=True)
            try:
                reader.start()
                self.check_freed(call.cancel)
            finally:
                hold.set()
                call.cancel()
                reader.join(timeout=30)

    def test_killed_client_frees_its_work(self):
        client = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "stream_client.py"), STUB_DIR,
             self.server.address, str(self.REQUESTS), str(self.SENTENCES)],
            stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(client.stdout.readline().strip(), "sent")
            self.check_freed(lambda: (client.send_signal(signal.SIGKILL), client.wait()))
        finally:
            client.kill()
            client.wait()
            client.stdout.close()


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is not installed")
        cls.dir = tempfile.mkdtemp(dir=WORK_DIR)
        for name in ("server", "other"):
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                 "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                 "-keyout", os.path.join(cls.dir, f"{name}.key"),
                 "-out", os.path.join(cls.dir, f"{name}.pem")],
                check=True, capture_output=True)
        cls.cert, cls.key = os.path.join(cls.dir, "server.pem"), os.path.join(cls.dir, "server.key")
        cls.server = Server(SERVER_BIN, WORK_DIR, "--threads=1", "--default_beam_size=1",
                            f"--tls_cert={cls.cert}", f"--tls_key={cls.key}",
                            model_root=os.path.join(SOURCE_DIR, "models"))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def credentials(self, name):
        with open(os.path.join(self.dir, f"{name}.pem"), "rb") as f:
            return grpc.ssl_channel_credentials(root_certificates=f.read())

    def test_trusted_client_translates(self):
        with grpc.secure_channel(self.server.address, self.credentials("server")) as channel:
            response = translate(channel, [SOURCE])
        self.assertIn("dog", response.translations[0].hypotheses[0].text)

    def test_quantmt_cli_over_tls(self):
        result = subprocess.run(
            [QUANTMT_BIN, "--address", self.server.address, "--tls", "--ca_cert", self.cert,
             "load", "--json", "--concurrency", "1", "--requests", "2"],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('"OK": 2', result.stdout)

    def test_plaintext_and_untrusted_clients_are_refused(self):
        with grpc.insecure_channel(self.server.address) as channel:
            code, _ = error_of(lambda: translate(channel, [SOURCE], timeout=10))
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        with grpc.secure_channel(self.server.address, self.credentials("other")) as channel:
            code, _ = error_of(lambda: translate(channel, [SOURCE], timeout=10))
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        self.assertTrue(self.server.alive())



class StartupFailureTest(unittest.TestCase):
    """Settings that cannot work stop the server with a message, not a crash."""

    def start(self, *flags):
        result = subprocess.run(
            [SERVER_BIN, "--host=127.0.0.1", "--metrics_port=-1",
             f"--model_root={SOURCE_DIR}/models", *flags],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 1, result.stderr)
        return result.stderr

    def test_unreadable_tls_key(self):
        self.assertIn("cannot read /nonexistent/server.key",
                      self.start("--port=0", "--tls_cert=/nonexistent/server.pem",
                                 "--tls_key=/nonexistent/server.key"))

    def test_port_in_use(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            self.assertIn(f"cannot listen on 127.0.0.1:{port}", self.start(f"--port={port}"))


class RequestLimitsTest(unittest.TestCase):
    """Each limit set low by its flag, then exceeded once."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server(
            SERVER_BIN, WORK_DIR, "--threads=1", "--default_beam_size=1", "--max_sentences=4",
            "--max_sentence_bytes=300", "--max_request_bytes=500",
            "--max_receive_message_bytes=2048", "--max_concurrent_streams=2",
            "--max_length=32", "--default_max_length=32", "--max_beam_size=2",
            "--max_sentence_tokens=24",
            model_root=os.path.join(SOURCE_DIR, "models"))
        cls.channel = grpc.insecure_channel(cls.server.address)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.stop()

    def test_each_limit(self):
        long_sentence = " ".join(["Hund"] * 40)  # 199 bytes, 41+ tokens
        cases = [
            ("sentences per request", lambda: translate(self.channel, ["Hallo."] * 5),
             grpc.StatusCode.INVALID_ARGUMENT, "5 sentences; the limit is 4"),
            ("bytes per sentence", lambda: translate(self.channel, ["a" * 301]),
             grpc.StatusCode.INVALID_ARGUMENT, "301 bytes; the limit is 300"),
            ("bytes per request", lambda: translate(self.channel, ["a" * 200] * 3),
             grpc.StatusCode.INVALID_ARGUMENT, "600 bytes of text; the limit is 500"),
            ("tokens per sentence", lambda: translate(self.channel, [long_sentence]),
             grpc.StatusCode.INVALID_ARGUMENT, "the limit of 24"),
            ("message size", lambda: translate(self.channel, ["a" * 700] * 4),
             grpc.StatusCode.RESOURCE_EXHAUSTED, "over the size limit of 2048"),
            ("max_length", lambda: translate(self.channel, ["Hallo."], max_length=33),
             grpc.StatusCode.INVALID_ARGUMENT, "max_length 33"),
            ("beam size", lambda: translate(self.channel, ["Hallo."], beam_size=3),
             grpc.StatusCode.INVALID_ARGUMENT, "beam_size 3"),
        ]
        for what, call, code, part in cases:
            got, details = error_of(call)
            self.assertEqual(got, code, f"{what}: {details}")
            self.assertIn(part, details, what)
        # Just inside every limit.
        ok = translate(self.channel, [" ".join(["Hund"] * 20)] * 2, max_length=32, beam_size=2)
        self.assertEqual(len(ok.translations), 2)

    def test_unknown_model_names_create_no_series_and_are_not_echoed(self):
        # Unique long names: each must come back NOT_FOUND with a short
        # message, and neither the in-flight gauge nor any other series may
        # grow with them (they are all model="unknown").
        stub = translation_pb2_grpc.TranslationServiceStub(self.channel)
        before = len(self.server.metrics())
        for i in range(20):
            name = f"no-such-model-{i}-" + "x" * 1500
            request = translation_pb2.TranslateRequest(model=name, sentences=["Hallo."])
            code, details = error_of(lambda: stub.Translate(request, timeout=30))
            self.assertEqual(code, grpc.StatusCode.NOT_FOUND, details[:200])
            self.assertLess(len(details), 300, details[:200])
            self.assertIn(f"no-such-model-{i}-", details)
            self.assertIn("bytes)", details)
            requests = stub.TranslateStream(iter([translation_pb2.TranslateStreamRequest(
                id=1, request=request)]), timeout=30)
            for response in requests:
                self.assertEqual(response.error.code, grpc.StatusCode.NOT_FOUND.value[0])
                self.assertLess(len(response.error.message), 300)
        text = self.server.metrics()
        self.assertNotIn("no-such-model", text)
        self.assertLess(len(text) - before, 4096)
        self.assertGreaterEqual(
            sample(text, 'quantmt_requests_total{rpc="Translate",model="unknown",code="NOT_FOUND"}'),
            20)

    def test_oversize_messages_are_counted_up_to_twice_the_limit(self):
        # The server refuses a message over --max_receive_message_bytes
        # itself, so that the metrics count it (model "": it is not parsed);
        # over twice the limit gRPC's transport drops it before our code runs.
        series = 'quantmt_requests_total{rpc="%s",model="",code="RESOURCE_EXHAUSTED"}'

        def counted(rpc="Translate"):
            return sample(self.server.metrics(), series % rpc)

        before = counted()
        code, details = error_of(lambda: translate(self.channel, ["a" * 1000] * 3))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertRegex(details, r"the request message has 30\d\d bytes, over the size limit "
                         r"of 2048 \(--max_receive_message_bytes\)")
        self.assertEqual(counted(), before + 1)

        code, details = error_of(lambda: translate(self.channel, ["a" * 1000] * 5))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("larger than max", details)
        self.assertEqual(counted(), before + 1)

        # On a stream, each oversize message is answered (as id 0) and
        # counted; the stream goes on.
        stub = translation_pb2_grpc.TranslationServiceStub(self.channel)
        stream_before = counted("TranslateStream")
        requests = [
            translation_pb2.TranslateStreamRequest(
                id=1, request=translation_pb2.TranslateRequest(sentences=["a" * 1000] * 3)),
            translation_pb2.TranslateStreamRequest(
                id=2, request=translation_pb2.TranslateRequest(sentences=["Hallo."]))]
        responses = list(stub.TranslateStream(iter(requests), timeout=60))
        errors = [r for r in responses if r.HasField("error")]
        self.assertEqual([(r.id, r.error.code) for r in errors],
                         [(0, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])])
        self.assertIn("over the size limit of 2048", errors[0].error.message)
        self.assertTrue(any(r.id == 2 and r.done for r in responses), responses)
        self.assertEqual(counted("TranslateStream"), stream_before + 1)
        self.assertTrue(translate(self.channel, ["Hallo."]).translations)

    def test_concurrent_streams_per_connection(self):
        # Two open streams fill the connection; a third call on it waits for
        # a free stream (HTTP/2 flow control, not an error) until its
        # deadline. Another connection is not affected.
        holds = [threading.Event(), threading.Event()]
        stub = translation_pb2_grpc.TranslationServiceStub(self.channel)

        def idle(hold):
            hold.wait()
            return
            yield

        calls = [stub.TranslateStream(idle(hold), timeout=60) for hold in holds]
        readers = [threading.Thread(target=drain, args=(c,), daemon=True) for c in calls]
        try:
            for reader in readers:
                reader.start()
            time.sleep(0.5)
            code, _ = error_of(lambda: translate(self.channel, ["Hallo."], timeout=2))
            self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(self.server.address, options=options) as other:
                self.assertTrue(translate(other, ["Hallo."]).translations)
            holds[0].set()
            readers[0].join(timeout=30)
            self.assertTrue(translate(self.channel, ["Hallo."], timeout=30).translations)
        finally:
            for hold in holds:
                hold.set()
            for call in calls:
                call.cancel()


if __name__ == "__main__":
    unittest.main(verbosity=2)
