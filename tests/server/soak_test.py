#!/usr/bin/env python3
"""Soak under overload: quantmt-server driven at about twice its measured
capacity by the quantmt load tester, with sentences of mixed lengths, client
cancellations and short deadlines.

Checked: the server stays up and keeps serving; clients see only OK,
RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED or CANCELLED; the queue gauge never
exceeds its limit; resident memory after warm-up stays flat; the client's
counts by code equal the server's quantmt_requests_total by code (up to the
races of an impatient client, which are counted and bounded).

Usage: soak_test.py SERVER_BIN QUANTMT_BIN SOURCE_DIR WORK_DIR [SECONDS]
SECONDS (default 60, or QUANTMT_SOAK_SECONDS) is the length of the overload
phase. Prints a table of the run; exits 0 when every check passes.
"""
import os
import sys
import threading
import time

from server_harness import Server, requests_by_code, resident_bytes, run_load, sample

SERVER_BIN, QUANTMT_BIN, SOURCE_DIR, WORK_DIR = sys.argv[1:5]
SECONDS = float(sys.argv[5] if len(sys.argv) > 5 else os.environ.get("QUANTMT_SOAK_SECONDS", 60))

QUEUE_LIMIT = 16
# RSS growth allowed from the middle third of the run to the last third.
# After warm-up the per-tenth maxima of a 60 s run at 2x wander by about
# 30 MiB around 800 MiB (batch shapes vary; the allocator keeps what it got).
RSS_GROWTH_BOUND = 64 << 20
ALLOWED_CODES = {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED"}
IMPATIENT = ("CANCELLED", "DEADLINE_EXCEEDED")

# From two words to about seventy: short ones finish in a few steps, long
# ones hold a batch row for many.
SENTENCES = [
    "Danke.",
    "Guten Morgen.",
    "Ein Hund rennt.",
    "Die Katze schläft auf dem Sofa.",
    "Morgen wird es im Norden regnerisch und kühl.",
    "Ein kleiner Hund rennt über die Wiese und bellt laut.",
    "Die Regierung hat am Dienstag neue Maßnahmen angekündigt, um die Energiepreise zu senken.",
    "Nach dem langen Winter freuen sich die Kinder auf den Sommer, die Ferien und das Meer.",
    "Der Zug aus Hamburg hatte wegen eines Unwetters zwei Stunden Verspätung, und viele Reisende "
    "verpassten ihre Anschlüsse in Frankfurt.",
    "Die Forscher untersuchten, wie sich das Klima in den Alpen in den letzten hundert Jahren "
    "verändert hat, und fanden heraus, dass die Gletscher schneller schmelzen als erwartet, was "
    "für die Wasserversorgung im Sommer große Folgen hat.",
    "Als wir am Abend endlich in dem kleinen Dorf ankamen, war das einzige Gasthaus schon "
    "geschlossen, doch eine freundliche alte Frau bot uns ein Zimmer an, kochte uns eine Suppe "
    "und erzählte bis spät in die Nacht Geschichten aus ihrer Jugend, als es im Tal noch keine "
    "Straße und keinen Strom gab.",
]


class Sampler(threading.Thread):
    """Scrapes /metrics and reads /proc every half second while the load runs."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.stop_event = threading.Event()
        self.samples = []  # (seconds since start, rss bytes, queued, inflight)
        self.failures = []

    def run(self):
        start = time.time()
        while not self.stop_event.is_set():
            if self.server.process.poll() is not None:
                self.failures.append(f"server exited with {self.server.process.returncode}")
                return
            try:
                text = self.server.metrics()
                self.samples.append(
                    (time.time() - start, resident_bytes(self.server.process.pid),
                     sample(text, 'quantmt_queued_sentences{model="default"}'),
                     sample(text, 'quantmt_inflight_requests{model="default"}')))
            except OSError as error:
                self.failures.append(f"scrape failed: {error}")
            self.stop_event.wait(0.5)


def main():
    inputs = os.path.join(WORK_DIR, "soak_inputs.de")
    with open(inputs, "w") as out:
        out.write("\n".join(SENTENCES) + "\n")
    server = Server(SERVER_BIN, WORK_DIR, "--threads=1", f"--max_queued_sentences={QUEUE_LIMIT}",
                    "--default_beam_size=1", model_root=os.path.join(SOURCE_DIR, "models"))
    checks = []  # (what, passed, detail)

    def check(what, passed, detail=""):
        checks.append((what, bool(passed), detail))

    try:
        # Capacity: a closed loop with as many requests in flight as the queue
        # holds, which keeps batches full without refusals.
        capacity_run = run_load(QUANTMT_BIN, server, "-i", inputs, "--concurrency", str(QUEUE_LIMIT),
                                "--duration", "6", "--warmup", "1", timeout=120)
        capacity = capacity_run["ok"] / max(capacity_run["seconds"], 1e-9)
        rate = max(2.0, 2 * capacity)

        before = requests_by_code(server.metrics())
        sampler = Sampler(server)
        sampler.start()
        started = time.time()
        result = run_load(QUANTMT_BIN, server, "-i", inputs, "--rate", f"{rate:.2f}",
                          "--arrivals", "poisson", "--duration", str(SECONDS),
                          "--max_inflight", "256", "--request_timeout", "10",
                          "--cancel_fraction", "0.1", "--cancel_within_ms", "1000",
                          "--deadline_fraction", "0.2", "--deadline_ms", "100,1500",
                          timeout=SECONDS + 180)
        elapsed = time.time() - started
        time.sleep(1.0)  # a last sample with the queue drained
        sampler.stop_event.set()
        sampler.join()
        after_text = server.metrics()
        after = requests_by_code(after_text)

        check("server alive", server.process.poll() is None and not sampler.failures,
              "; ".join(sampler.failures))
        still = run_load(QUANTMT_BIN, server, "-i", inputs, "--concurrency", "1", "--requests", "3",
                         timeout=120)
        check("serves after the run", still["codes"] == {"OK": 3}, str(still["codes"]))

        codes = result["codes"]
        check("only allowed codes", set(codes) <= ALLOWED_CODES, str(codes))
        for code in ALLOWED_CODES:
            check(f"some {code}", codes.get(code, 0) > 0, str(codes.get(code, 0)))

        queue_max = max(s[2] for s in sampler.samples)
        check(f"queue gauge <= {QUEUE_LIMIT}", queue_max <= QUEUE_LIMIT, f"max {queue_max:.0f}")
        final_queued = sample(after_text, 'quantmt_queued_sentences{model="default"}')
        final_inflight = sample(after_text, 'quantmt_inflight_requests{model="default"}')
        check("queue and in-flight back to 0", final_queued == 0 and final_inflight == 0,
              f"queued {final_queued:.0f}, in flight {final_inflight:.0f}")

        rss = [s[1] for s in sampler.samples]
        third = max(1, len(rss) // 3)
        middle, last = rss[third:2 * third], rss[2 * third:]
        growth = max(last) - max(middle) if middle and last else 0
        check(f"RSS growth after warm-up < {RSS_GROWTH_BOUND >> 20} MiB",
              growth < RSS_GROWTH_BOUND, f"{growth / 2**20:+.1f} MiB")

        server_delta = {c: after.get(c, 0) - before.get(c, 0) for c in set(after) | set(before)}
        server_delta = {c: n for c, n in server_delta.items() if n}
        # A call the client cancels (or whose deadline passes) while the
        # server's answer is already on its way is OK on the server and
        # CANCELLED (DEADLINE_EXCEEDED) at the client; one cancelled before
        # it reached the server is counted by the client alone. Everything
        # else must match exactly.
        races = sum(max(0, server_delta.get(c, 0) - codes.get(c, 0))
                    for c in ("OK", "RESOURCE_EXHAUSTED"))
        impatient_client = sum(codes.get(c, 0) for c in IMPATIENT)
        impatient_server = sum(server_delta.get(c, 0) for c in IMPATIENT)
        for code in set(codes) | set(server_delta):
            if code in IMPATIENT:
                continue
            if code in ("OK", "RESOURCE_EXHAUSTED"):
                ok = 0 <= server_delta.get(code, 0) - codes.get(code, 0) <= races
            else:
                ok = server_delta.get(code, 0) == codes.get(code, 0)
            check(f"counts {code}", ok,
                  f"client {codes.get(code, 0)}, server {server_delta.get(code, 0)}")
        check("counts CANCELLED+DEADLINE_EXCEEDED",
              impatient_server + races <= impatient_client,
              f"client {impatient_client}, server {impatient_server}, races {races}")
        check("races <= 2% of impatient calls", races <= max(2, 0.02 * impatient_client),
              f"{races} of {impatient_client}")
        check("client total == server total + never reached",
              sum(server_delta.values()) <= result["requests"],
              f"client {result['requests']}, server {sum(server_delta.values())}")
    finally:
        server.stop()

    mib = 2 ** 20
    print("\n## Soak under overload\n")
    print(f"capacity (closed loop, {QUEUE_LIMIT} in flight): {capacity:.1f} requests/s; "
          f"offered {rate:.1f} requests/s (Poisson) for {SECONDS:.0f} s; "
          f"queue limit {QUEUE_LIMIT} sentences")
    print(f"client: {result['requests']} requests, {result['client_cancels']} cancelled by the "
          f"client, {result['short_deadlines']} with short deadlines, codes {codes}")
    print(f"server: {server_delta}")
    print(f"RSS: start {rss[0] / mib:.0f} MiB, max {max(rss) / mib:.0f}, "
          f"end {rss[-1] / mib:.0f}; middle third max {max(middle) / mib:.0f}, "
          f"last third max {max(last) / mib:.0f} ({len(rss)} samples over {elapsed:.0f} s)")
    tenth = max(1, len(rss) // 10)
    print("RSS max by tenth of the run (MiB): " +
          " ".join(f"{max(rss[i:i + tenth]) / mib:.0f}" for i in range(0, len(rss), tenth)) + "\n")
    print("| check | result | detail |\n|---|---|---|")
    for what, passed, detail in checks:
        print(f"| {what} | {'pass' if passed else 'FAIL'} | {detail} |")
    return 0 if all(passed for _, passed, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
