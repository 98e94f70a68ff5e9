"""Python gRPC access to quantmt for the deploy tests: messages and stubs
generated at run time from the project's .proto files (protoc +
grpc_python_plugin), a Translate call and a health check.

  quantmt_grpc.py SOURCE_DIR STUB_DIR HOST:PORT   # health + one Translate, exit 0 when both work
"""
import os
import shutil
import subprocess
import sys


def generate_stubs(source_dir, out_dir):
    """Generates the modules into out_dir and puts it on sys.path."""
    proto_root = os.path.join(source_dir, "proto")
    os.makedirs(out_dir, exist_ok=True)
    protoc = ["protoc", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
              "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin")]
    subprocess.run(protoc + ["-I", proto_root,
                             os.path.join(proto_root, "quantmt/v1/translation.proto")], check=True)
    # The health messages would land in a Python package "grpc", which the
    # grpcio package shadows: generate them as health_check.health instead
    # (the proto package, and so the RPC name, stays grpc.health.v1).
    health_root = os.path.join(out_dir, "health_proto", "health_check")
    os.makedirs(health_root, exist_ok=True)
    shutil.copy(os.path.join(proto_root, "grpc/health/v1/health.proto"), health_root)
    subprocess.run(protoc + ["-I", os.path.dirname(health_root),
                             os.path.join(health_root, "health.proto")], check=True)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)


def health_serving(address, service="", timeout_s=2):
    """True when the server's grpc.health.v1 service says SERVING."""
    import grpc
    from health_check import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        return response.status == health_pb2.HealthCheckResponse.SERVING


def translate(address, sentences, model="", beam_size=1, max_length=32, timeout_s=60):
    """The best hypothesis of each sentence; raises grpc.RpcError on a refusal."""
    import grpc
    from quantmt.v1 import translation_pb2, translation_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = translation_pb2_grpc.TranslationServiceStub(channel)
        request = translation_pb2.TranslateRequest(
            model=model, sentences=sentences,
            options=translation_pb2.TranslationOptions(beam_size=beam_size,
                                                       max_length=max_length))
        response = stub.Translate(request, timeout=timeout_s)
    return [t.hypotheses[0].text if t.hypotheses else "" for t in response.translations]


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    source_dir, stub_dir, address = sys.argv[1:]
    generate_stubs(source_dir, stub_dir)
    if not health_serving(address):
        print(f"{address}: health service does not say SERVING")
        return 1
    source = ["Ein Hund läuft über die Wiese."]
    (text,) = translate(address, source)
    print(f"{address}: SERVING; Translate {source[0]!r} -> {text!r}")
    return 0 if text.strip() else 1


if __name__ == "__main__":
    sys.exit(main())
