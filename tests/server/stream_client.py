#!/usr/bin/env python3
"""A TranslateStream client that sends long requests, says "sent" on stdout
and then waits with the stream open until it is killed: fault_test.py kills
it to see what a client that disappears mid-stream leaves behind.

Usage: stream_client.py STUB_DIR HOST:PORT REQUESTS SENTENCES
"""
import sys
import threading

stub_dir, address, requests, sentences = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(
    sys.argv[4])
sys.path.insert(0, stub_dir)

import grpc  # noqa: E402
from quantmt.v1 import translation_pb2, translation_pb2_grpc  # noqa: E402

LONG = ("Als wir am Abend endlich in dem kleinen Dorf ankamen, war das einzige Gasthaus schon "
        "geschlossen, doch eine freundliche alte Frau bot uns ein Zimmer an und erzählte bis "
        "spät in die Nacht Geschichten aus ihrer Jugend.")


def messages(hold):
    for i in range(requests):
        message = translation_pb2.TranslateStreamRequest(id=i + 1, stream_tokens=True)
        message.request.sentences.extend([LONG] * sentences)
        message.request.options.beam_size = 4
        message.request.options.max_length = 200
        yield message
    print("sent", flush=True)
    hold.wait()  # never set: the stream stays open until the process dies


with grpc.insecure_channel(address) as channel:
    stub = translation_pb2_grpc.TranslationServiceStub(channel)
    for _ in stub.TranslateStream(messages(threading.Event())):
        pass
