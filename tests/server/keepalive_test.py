#!/usr/bin/env python3
"""quantmt-server's keepalive settings, seen from raw HTTP/2 connections (no
gRPC client library: these peers misbehave on purpose), on one server with
--keepalive_time_s=1 --keepalive_timeout_s=1:

- a peer that answers the server's pings stays connected, pinged about
  every second;
- a peer that never answers is dropped about a second after the first ping;
- a peer that pings more often than every 10 s while idle gets GOAWAY
  ENHANCE_YOUR_CALM "too_many_pings" (gRPC allows two such strikes).

Usage: keepalive_test.py SERVER_BIN QUANTMT_BIN SOURCE_DIR WORK_DIR
"""
import os
import socket
import struct
import sys
import threading
import time
import unittest

SERVER_BIN, QUANTMT_BIN, SOURCE_DIR, WORK_DIR = sys.argv[1:5]
del sys.argv[1:5]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_harness import Server  # noqa: E402

# HTTP/2 (RFC 9113): the client preface, frame types and flags used here.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1
ENHANCE_YOUR_CALM = 0xB


def frame(kind, flags, payload=b""):
    """A frame on stream 0 (connection-level)."""
    header = struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", 0)
    return header + payload


class Peer:
    """One HTTP/2 connection that settles its SETTINGS and then, for `seconds`
    or until the server closes, answers pings (or not) and sends its own
    every `ping_every` seconds. `events` lists (seconds, frame type, flags,
    payload) and finally (seconds, "closed") if the server closed it."""

    def __init__(self, port, answer_pings, ping_every=None, seconds=5.0):
        self.port, self.answer_pings, self.ping_every = port, answer_pings, ping_every
        self.seconds, self.events = seconds, []
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.settimeout(0.05)
            sock.sendall(PREFACE + frame(SETTINGS, 0))
            start = last_ping = time.monotonic()
            buffer = b""
            while time.monotonic() - start < self.seconds:
                if self.ping_every and time.monotonic() - last_ping >= self.ping_every:
                    sock.sendall(frame(PING, 0, b"peerping"))
                    last_ping = time.monotonic()
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    continue
                elapsed = time.monotonic() - start
                if not chunk:
                    self.events.append((elapsed, "closed"))
                    return
                buffer += chunk
                while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                    length = int.from_bytes(buffer[:3], "big")
                    kind, flags, payload = buffer[3], buffer[4], buffer[9:9 + length]
                    buffer = buffer[9 + length:]
                    self.events.append((elapsed, kind, flags, payload))
                    if kind == SETTINGS and not flags & ACK:
                        sock.sendall(frame(SETTINGS, ACK))
                    if kind == PING and not flags & ACK and self.answer_pings:
                        sock.sendall(frame(PING, ACK, payload))

    def join(self):
        self.thread.join(timeout=60)
        return self.events

    def server_pings(self):
        return [e[0] for e in self.events if e[1] == PING and not e[2] & ACK]

    def closed_at(self):
        return next((e[0] for e in self.events if e[1] == "closed"), None)


class KeepaliveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(SERVER_BIN, WORK_DIR, "--threads=1", "--keepalive_time_s=1",
                            "--keepalive_timeout_s=1",
                            model_root=os.path.join(SOURCE_DIR, "models"))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_answering_peer_stays_and_silent_peer_is_dropped(self):
        answering = Peer(self.server.port, answer_pings=True, seconds=5)
        silent = Peer(self.server.port, answer_pings=False, seconds=30)
        answering_events, silent_events = answering.join(), silent.join()

        self.assertIsNone(answering.closed_at(), answering_events)
        self.assertGreaterEqual(len(answering.server_pings()), 3, answering_events)

        pings, closed = silent.server_pings(), silent.closed_at()
        self.assertTrue(pings, silent_events)
        self.assertIsNotNone(closed, silent_events)
        self.assertGreaterEqual(pings[0], 0.9, silent_events)  # not before keepalive_time
        self.assertGreaterEqual(closed - pings[0], 0.9, silent_events)  # keepalive_timeout

    def test_too_frequent_pings_get_goaway(self):
        flooding = Peer(self.server.port, answer_pings=True, ping_every=0.2, seconds=10)
        events = flooding.join()
        goaway = [e for e in events if e[1] == GOAWAY]
        self.assertTrue(goaway, events)
        error_code = struct.unpack(">I", goaway[0][3][4:8])[0]
        self.assertEqual(error_code, ENHANCE_YOUR_CALM, events)
        self.assertIn(b"too_many_pings", goaway[0][3][8:])
        self.assertIsNotNone(flooding.closed_at(), events)
        # The server kept serving everyone else.
        self.assertTrue(self.server.alive())


if __name__ == "__main__":
    unittest.main(verbosity=2)
