#!/usr/bin/env python3
"""`quantmt load` in open-loop (rate) mode against a real quantmt-server:
constant and Poisson arrivals, a step and a ramp schedule, a request count,
the bound on requests in flight.

Each run is read from its --json summary and its progress lines (one a
second on stderr when that is not a terminal). Checked: it stops by itself;
the number of requests matches the schedule; the achieved rate is near the
target (loose bounds: the test machine may be busy); the counts by code add
up to the total and equal the server's quantmt_requests_total deltas.

Usage: load_modes_test.py SERVER_BIN QUANTMT_BIN SOURCE_DIR WORK_DIR
"""
import json
import os
import re
import subprocess
import sys
import time
import unittest

SERVER_BIN, QUANTMT_BIN, SOURCE_DIR, WORK_DIR = sys.argv[1:5]
del sys.argv[1:5]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_harness import Server, requests_by_code  # noqa: E402

# Well below what the server answers with one thread (over 20 single-sentence
# requests/s), so that every request is answered OK and on time.
RATE = 8
PROGRESS = re.compile(r"^\s*([\d.]+)s\s+level\s+([\d.]+)\s+sent\s+(\d+)", re.MULTILINE)


class LoadModesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(SERVER_BIN, WORK_DIR, "--threads=1",
                            model_root=os.path.join(SOURCE_DIR, "models"))

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def load(self, *args, seconds, may_skip=False):
        """Runs `quantmt load --json ARGS`; checks that it ends by itself and
        that its counts equal the server's. Returns the summary and the
        (elapsed s, level, sent) of each progress line."""
        before = requests_by_code(self.server.metrics())
        started = time.monotonic()
        run = subprocess.run(
            [QUANTMT_BIN, "--address", self.server.address, "load", "--json", *args],
            capture_output=True, text=True, timeout=seconds + 120)
        wall = time.monotonic() - started
        self.assertEqual(run.returncode, 0, run.stderr)
        summary = json.loads(run.stdout)
        # Stops by itself: the schedule's length plus the last answers.
        self.assertLess(wall, seconds + 30, summary)
        after = requests_by_code(self.server.metrics())
        delta = {code: after.get(code, 0) - before.get(code, 0) for code in after}
        delta = {code: count for code, count in delta.items() if count}
        self.assertEqual(sum(summary["codes"].values()), summary["requests"], summary)
        self.assertEqual(delta, summary["codes"], summary)
        self.assertEqual(summary["codes"], {"OK": summary["requests"]}, summary)
        if not may_skip:
            self.assertEqual(summary["skipped"], 0, summary)
        progress = [(float(t), float(level), int(sent))
                    for t, level, sent in PROGRESS.findall(run.stderr)]
        return summary, progress

    def assert_rate_near(self, summary, target):
        self.assertGreater(summary["requests_per_second"], 0.6 * target, summary)
        self.assertLess(summary["requests_per_second"], 1.3 * target, summary)

    def test_constant_rate(self):
        summary, progress = self.load("--rate", str(RATE), "--duration", "4", seconds=4)
        # Arrivals every 1/8 s from 0 up to 4 s (exclusive).
        self.assertEqual(summary["requests"], 4 * RATE, summary)
        self.assert_rate_near(summary, RATE)
        self.assertTrue(progress and all(level == RATE for _, level, _ in progress), progress)

    def test_poisson_arrivals(self):
        summary, _ = self.load("--rate", str(RATE), "--arrivals", "poisson", "--duration", "5",
                               seconds=5)
        # 40 expected; a Poisson count has a standard deviation of about 6.3.
        self.assertGreaterEqual(summary["requests"], 24, summary)
        self.assertLessEqual(summary["requests"], 56, summary)
        self.assert_rate_near(summary, summary["requests"] / 5)
        self.assert_rate_near(summary, RATE)

    def test_step_schedule(self):
        # 4/s, then 8/s, then 12/s, 1.5 s each: about 6 + 12 + 18 requests.
        summary, progress = self.load("--rate", "4", "--schedule", "step", "--step", "4",
                                      "--step_duration", "1.5", "--end", "12", "--duration",
                                      "4.5", seconds=4.5)
        self.assertGreaterEqual(summary["requests"], 30, summary)
        self.assertLessEqual(summary["requests"], 42, summary)
        self.assert_rate_near(summary, 36 / 4.5)
        levels = [level for _, level, _ in progress]
        self.assertEqual(levels, sorted(levels), progress)
        self.assertTrue(set(levels) <= {4, 8, 12}, progress)
        self.assertEqual(levels[-1], 12, progress)

    def test_ramp_schedule(self):
        # 4/s rising linearly to 12/s over 4 s: about 32 requests, more of
        # them late than early.
        summary, progress = self.load("--rate", "4", "--schedule", "ramp", "--end", "12",
                                      "--duration", "4", seconds=4)
        self.assertGreaterEqual(summary["requests"], 26, summary)
        self.assertLessEqual(summary["requests"], 38, summary)
        self.assert_rate_near(summary, 32 / 4)
        for elapsed, level, _ in progress:
            if elapsed <= 4:
                self.assertAlmostEqual(level, 4 + 8 * elapsed / 4, delta=0.6)
        sent = [s for t, _, s in progress if t <= 4]
        if len(sent) >= 4:  # each second sends more than the one before
            per_second = [b - a for a, b in zip(sent, sent[1:])]
            self.assertLess(per_second[0], per_second[-1], progress)

    def test_requests_in_flight_are_bounded(self):
        # Requests of 4 sentences with beam 4 take far longer than the 50 ms
        # between arrivals: with one allowed in flight, the rest are skipped.
        summary, _ = self.load("--rate", "20", "--max_inflight", "1", "--sentences", "4",
                               "--beam_size", "4", "--duration", "2", seconds=2, may_skip=True)
        self.assertEqual(summary["requests"] + summary["skipped"], 40, summary)
        self.assertGreater(summary["skipped"], 0, summary)
        self.assertGreater(summary["requests"], 0, summary)

    def test_request_count(self):
        summary, _ = self.load("--rate", "20", "--requests", "15", seconds=1)
        self.assertEqual(summary["requests"], 15, summary)


if __name__ == "__main__":
    unittest.main(verbosity=2)
