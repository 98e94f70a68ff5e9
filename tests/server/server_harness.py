"""A real quantmt-server process for Python tests: free loopback ports, its
log, /metrics scraped and parsed, the quantmt load tester, and Python gRPC
stubs generated from the project's .proto files."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resident_bytes(pid):
    """VmRSS of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# First lines of the reports of ThreadSanitizer, AddressSanitizer,
# LeakSanitizer and UndefinedBehaviorSanitizer (sanitizer builds only).
SANITIZER_MARKERS = ("WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                     "ERROR: LeakSanitizer", "runtime error:")


def sanitizer_report(log_text):
    """The server log from its first sanitizer report on, or "" without one."""
    starts = [log_text.find(m) for m in SANITIZER_MARKERS if m in log_text]
    if not starts:
        return ""
    start = log_text.rfind("\n", 0, min(starts)) + 1
    return log_text[start:start + 20000]


def sample(metrics_text, series):
    """The value of one series (name and labels exactly as exposed), 0 if absent."""
    for line in metrics_text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def requests_by_code(metrics_text, rpc="Translate"):
    """quantmt_requests_total of one RPC, summed over models, by code."""
    counts = {}
    for line in metrics_text.splitlines():
        if line.startswith('quantmt_requests_total{rpc="%s"' % rpc):
            code = line.split('code="')[1].split('"')[0]
            counts[code] = counts.get(code, 0) + int(float(line.split()[-1]))
    return counts


def generate_stubs(source_dir, out_dir):
    """quantmt.v1 translation and models modules under out_dir, put on sys.path."""
    proto_dir = os.path.join(source_dir, "proto")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run(
        ["protoc", "-I", proto_dir, "--python_out", out_dir, "--grpc_python_out", out_dir,
         "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin"),
         "quantmt/v1/translation.proto", "quantmt/v1/models.proto"], check=True)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)


def write_config(path, settings):
    """A TOML config file for quantmt-server: strings, numbers, booleans and
    lists of strings (JSON writes these as TOML does)."""
    with open(path, "w") as config:
        for key, value in settings.items():
            config.write(f"{key} = {json.dumps(value)}\n")


class Server:
    """quantmt-server on 127.0.0.1 with `extra` flags; ready when constructed.

    With `config` (a dict of settings), the address, ports, model root and
    models go into a TOML file with those settings, passed as --config
    before `extra`. `env` adds environment variables."""

    def __init__(self, server_bin, work_dir, *extra, model_root=None, models="default",
                 wait=True, config=None, env=None):
        self.port, self.metrics_port = free_port(), free_port()
        self.log = tempfile.NamedTemporaryFile(mode="w+", dir=work_dir, suffix=".log")
        settings = {"host": "127.0.0.1", "port": self.port, "metrics_port": self.metrics_port,
                    "model_root": model_root, "models": models.split(",")}
        if config is None:
            flags = [f"--{key}={','.join(value) if isinstance(value, list) else value}"
                     for key, value in settings.items()]
        else:
            self.config_path = os.path.join(work_dir, f"server-{self.port}.toml")
            write_config(self.config_path, {**settings, **config})
            flags = ["--config", self.config_path]
        self.process = subprocess.Popen(
            [server_bin, *flags, *extra], stderr=self.log,
            env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE", **(env or {})))
        if wait and not self.wait_ready():
            text = self.text()
            self.stop()
            raise RuntimeError("quantmt-server did not start:\n" + text)

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "quantmt-server: ready" in self.text():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def alive(self):
        return self.process.poll() is None

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def metrics(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def stop(self):
        """Kills the server; fails if its log holds a sanitizer report."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        report = sanitizer_report(self.text())
        self.log.close()
        if report:
            raise AssertionError("quantmt-server reported:\n" + report)


def run_load(quantmt_bin, server, *args, timeout=300):
    """`quantmt load --json ARGS` against `server`: the parsed summary."""
    result = subprocess.run(
        [quantmt_bin, "--address", server.address, "load", "--json", *args],
        capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError("quantmt load failed: " + result.stderr[-2000:])
    return json.loads(result.stdout)
