#!/usr/bin/env python3
"""Every `quantmt` subcommand against a real quantmt-server: translate
(stdin, files, n-best with scores), evaluate (the server's test sets and
local files), benchmark, models list/load/unload (with and without the admin
token), and load with an input file, warm-up and CSV output. Each is checked
from its output and, where it says what the server did, against /metrics.

Usage: cli_test.py SERVER_BIN QUANTMT_BIN SOURCE_DIR WORK_DIR
"""
import csv
import io
import json
import os
import subprocess
import sys
import unittest

SERVER_BIN, QUANTMT_BIN, SOURCE_DIR, WORK_DIR = sys.argv[1:5]
del sys.argv[1:5]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_harness import Server, requests_by_code  # noqa: E402

TOKEN = "cli-test-token"
EVAL_DATA = os.path.join(SOURCE_DIR, "tests", "fixtures", "eval-data")
LINES = ["Ein kleiner Hund rennt über die Wiese.", "Guten Morgen.", "", "Danke."]


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(SERVER_BIN, WORK_DIR, "--threads=1", f"--data_dir={EVAL_DATA}",
                            f"--admin_token={TOKEN}",
                            model_root=os.path.join(SOURCE_DIR, "models"))
        cls.input = os.path.join(WORK_DIR, "cli_test_input.de")
        with open(cls.input, "w") as f:
            f.write("\n".join(LINES) + "\n")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def quantmt(self, *args, stdin=None, expect_ok=True):
        """Runs `quantmt --address SERVER ARGS`: (stdout, stderr, exit code)."""
        run = subprocess.run([QUANTMT_BIN, "--address", self.server.address, *args],
                             input=stdin, capture_output=True, text=True, timeout=300,
                             env={k: v for k, v in os.environ.items()
                                  if k != "QUANTMT_ADMIN_TOKEN"})
        if expect_ok:
            self.assertEqual(run.returncode, 0, run.stderr)
        return run.stdout, run.stderr, run.returncode

    def test_translate_stdin_and_files(self):
        out, _, _ = self.quantmt("translate", stdin="\n".join(LINES) + "\n")
        lines = out.splitlines()
        self.assertEqual(len(lines), len(LINES), out)
        self.assertIn("dog", lines[0])
        self.assertEqual(lines[2], "")  # an empty line stays empty, in its place
        self.assertTrue(all(lines[i] for i in (0, 1, 3)), out)

        output = os.path.join(WORK_DIR, "cli_test_output.en")
        file_out, progress, _ = self.quantmt("translate", "-i", self.input, "-o", output,
                                             "--batch", "2")
        self.assertEqual(file_out, "")
        with open(output) as f:
            self.assertEqual(f.read(), out)  # the same, whatever the batching
        self.assertIn(f"{len(LINES)}/{len(LINES)}", progress)  # the progress bar's end

    def test_translate_nbest_with_scores(self):
        out, _, _ = self.quantmt("translate", "--beam_size", "4", "--num_hypotheses", "2", "--scores",
                                 stdin="Guten Morgen.\n")
        hypotheses = [line.split("\t") for line in out.splitlines()]
        self.assertEqual(len(hypotheses), 2, out)
        scores = [float(score) for score, _ in hypotheses]
        self.assertGreaterEqual(scores[0], scores[1])
        self.assertNotEqual(hypotheses[0][1], hypotheses[1][1])

    def test_evaluate_server_sets_and_local_files(self):
        report = os.path.join(WORK_DIR, "cli_test_evaluate.json")
        table, _, _ = self.quantmt("evaluate", "--json", report)
        with open(report) as f:
            sets = {s["domain"]: s for s in json.load(f)["sets"]}
        self.assertEqual(set(sets), {"animals", "long"})
        self.assertEqual(sets["animals"]["lines"], 5)
        self.assertTrue(0 < sets["animals"]["bleu"] <= 100, sets)
        self.assertIn("BLEU: nrefs:1|case:mixed", table)
        self.assertRegex(table, r"(?m)^animals\s+test\s+5\s")

        # The same test set sent inline from local files scores the same.
        local, _, _ = self.quantmt("evaluate", "--src", f"{EVAL_DATA}/animals/test.de", "--ref",
                                   f"{EVAL_DATA}/animals/test.en", "--domain", "zoo")
        row = next(line for line in local.splitlines() if line.startswith("zoo "))
        self.assertIn(f"{sets['animals']['bleu']:.2f}", row)
        self.assertIn(f"{sets['animals']['chrf']:.2f}", row)

    def test_benchmark(self):
        before = requests_by_code(self.server.metrics(), "Benchmark").get("OK", 0)
        out, _, _ = self.quantmt("benchmark", "--batch_sizes", "1,4", "--iterations", "2")
        self.assertIn("model default", out)
        rows = {int(cells[0]): cells for cells in
                (line.split() for line in out.splitlines()) if cells and cells[0].isdigit()}
        self.assertEqual(sorted(rows), [1, 4], out)
        for cells in rows.values():
            self.assertEqual(int(cells[1]), 2, out)  # timed requests
            self.assertGreater(float(cells[2]), 0, out)  # generated tokens/s
        after = requests_by_code(self.server.metrics(), "Benchmark").get("OK", 0)
        self.assertEqual(after, before + 1)

    def test_models_list_load_unload(self):
        listed, _, _ = self.quantmt("models", "list")
        self.assertRegex(listed, r"(?m)^default\s+ready\s.*\(default\)$")

        _, error, code = self.quantmt("models", "load", "copy", "--dir", "default",
                                      expect_ok=False)
        self.assertEqual(code, 1)
        self.assertIn("UNAUTHENTICATED", error)
        _, error, code = self.quantmt("--token", "a-guess", "models", "unload", "default",
                                      expect_ok=False)
        self.assertEqual(code, 1)
        self.assertIn("PERMISSION_DENIED", error)

        loaded, _, _ = self.quantmt("--token", TOKEN, "models", "load", "copy", "--dir",
                                    "default")
        self.assertRegex(loaded, r"^copy\s+ready\s")
        self.assertRegex(self.quantmt("models", "list")[0], r"(?m)^copy\s+ready\s")
        translated, _, _ = self.quantmt("translate", "-m", "copy", stdin="Danke.\n")
        self.assertTrue(translated.strip())
        unloaded, _, _ = self.quantmt("--token", TOKEN, "models", "unload", "copy")
        self.assertEqual(unloaded.strip(), "unloaded copy")
        self.assertNotRegex(self.quantmt("models", "list")[0], r"(?m)^copy\s")
        _, error, code = self.quantmt("translate", "-m", "copy", stdin="Danke.\n",
                                      expect_ok=False)
        self.assertNotEqual(code, 0)
        self.assertIn("NOT_FOUND", error)

    def test_load_from_a_file_with_warmup_as_csv(self):
        before = requests_by_code(self.server.metrics()).get("OK", 0)
        out, _, _ = self.quantmt("load", "--csv", "-i", self.input, "--warmup", "1",
                                 "--concurrency", "2", "--duration", "2")
        rows = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual(len(rows), 1, out)
        row = rows[0]
        requests = int(row["requests"])
        self.assertGreater(requests, 0, row)
        self.assertEqual(int(row["code_OK"]), requests, row)
        self.assertEqual(int(row["ok"]), requests, row)
        self.assertGreater(float(row["latency_p99_seconds"]), 0, row)
        # The server also answered the warm-up requests, which the client
        # sent but did not count.
        after = requests_by_code(self.server.metrics()).get("OK", 0)
        self.assertGreater(after - before, requests, row)

    def test_unreachable_server_is_a_clear_error(self):
        run = subprocess.run([QUANTMT_BIN, "--address", "127.0.0.1:1", "--timeout", "2",
                              "translate"], input="Danke.\n", capture_output=True, text=True,
                             timeout=60)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("UNAVAILABLE", run.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
