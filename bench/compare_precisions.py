#!/usr/bin/env python3
"""One model in several precisions, side by side: size, memory, quality, speed.

For every model directory given (FP32, INT8, QAT, DAQ variants of one model):
  - weights file size and its ratio to the same parameters stored as float32,
  - peak resident memory of the process that translates the test sets,
  - BLEU and chrF on every DOMAIN/test* set (quantmt-evaluate), averaged over
    in-domain and out-of-domain sets,
  - CPU tokens/s at several batch sizes (quantmt-bench-decode --model).
Writes compare.md, compare.json and compare.png (size-vs-BLEU and
speed-vs-BLEU trade-offs) into --output, and prints the markdown table.

  python3 bench/compare_precisions.py --data ../data/de-en --output out/compare \\
      --model fp32=models/default --model int8=models/default-int8
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import time


def safetensors_header(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length))


def parameter_count(model_dir):
    """Parameters of the floating-point model: sum of tensor sizes."""
    config = json.load(open(os.path.join(model_dir, "config.json")))
    header = safetensors_header(os.path.join(model_dir, config["weights"]["file"]))
    count = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for d in info["shape"]:
            n *= d
        count += n
    return count


def weights_path(model_dir):
    config = json.load(open(os.path.join(model_dir, "config.json")))
    return os.path.join(model_dir, config["weights"]["file"]), config


def run(command, log):
    print("+ " + " ".join(command), file=log, flush=True)
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(command)}\n{process.stderr[-2000:]}")


def peak_rss(command):
    """Runs `command` (output discarded); returns its peak resident set size
    in bytes (wait4 gives the rusage of that one child)."""
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(command[0], command)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(command)}")
    return usage.ru_maxrss * 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=DIR",
                        help="a model directory and its label; the first is the FP reference")
    parser.add_argument("--data", required=True, help="corpus root: DOMAIN/test*")
    parser.add_argument("--output", required=True)
    parser.add_argument("--build", default="build")
    parser.add_argument("--in_domain", default="captions,news,tatoeba",
                        help="domains the models were trained on (comma-separated)")
    parser.add_argument("--max_lines", type=int, default=500)
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch_sizes", default="1,8,32,64")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stages", default="quality,speed",
                        help="what to measure now: quality (BLEU/chrF and peak RSS), speed, or "
                             "both; a stage left out reuses the results of an earlier run in "
                             "--output (speed wants a quiet machine, quality does not)")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    os.makedirs(args.output, exist_ok=True)
    log = sys.stderr
    evaluate = os.path.join(args.build, "train", "quantmt-evaluate")
    bench = os.path.join(args.build, "bench", "quantmt-bench-decode")
    in_domain = set(args.in_domain.split(","))
    models = [m.split("=", 1) for m in args.model]
    fp32_bytes = 4 * parameter_count(models[0][1])
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    rows = []
    for index, (label, model_dir) in enumerate(models):
        started = time.time()
        print(f"[{index + 1}/{len(models)}] {label}: {model_dir}", file=log, flush=True)
        path, config = weights_path(model_dir)
        report_path = os.path.join(args.output, f"evaluate-{label}.json")
        rss_path = os.path.join(args.output, f"rss-{label}.json")
        if "quality" in stages:
            command = [evaluate, "-m", model_dir, "-d", args.data, "--json", report_path,
                       "--beam_size", str(args.beam_size), "--threads", str(args.threads),
                       "--max_lines", str(args.max_lines)]
            print("+ " + " ".join(command), file=log, flush=True)
            json.dump({"peak_rss_bytes": peak_rss(command)}, open(rss_path, "w"))
        report = json.load(open(report_path))
        rss = json.load(open(rss_path))["peak_rss_bytes"]
        speed_path = os.path.join(args.output, f"speed-{label}.json")
        if "speed" in stages:
            run([bench, "--model", model_dir, "--threads", str(args.threads), "--runs",
                 str(args.runs), "--batch_sizes", *args.batch_sizes.split(","),
                 "--json", speed_path], log)
        speed = (json.load(open(speed_path)) if os.path.exists(speed_path)
                 else {"results": []})
        sets = report["sets"]
        def mean(key, inside):
            values = [s[key] for s in sets if (s["domain"] in in_domain) == inside]
            return sum(values) / len(values) if values else float("nan")
        rows.append({
            "label": label,
            "model_dir": model_dir,
            "scheme": config.get("quantization", {}).get("scheme", "none"),
            "weights_bytes": os.path.getsize(path),
            "ratio_to_fp32": fp32_bytes / os.path.getsize(path),
            "peak_rss_bytes": rss,
            "bleu_in_domain": mean("bleu", True),
            "bleu_out_of_domain": mean("bleu", False),
            "chrf_in_domain": mean("chrf", True),
            "chrf_out_of_domain": mean("chrf", False),
            "sets": sets,
            "tokens_per_second": {str(r["batch_size"]): r["tokens_per_second"]
                                  for r in speed["results"]},
        })
        print(f"[{index + 1}/{len(models)}] {label} done in {time.time() - started:.0f}s",
              file=log, flush=True)

    batch_sizes = args.batch_sizes.split(",")
    reference = rows[0]
    lines = [
        f"Precisions of one model, side by side ({args.threads} CPU threads, beam "
        f"{args.beam_size}, first {args.max_lines} lines of each test set; in-domain: "
        f"{', '.join(sorted(in_domain))}).",
        "",
        "| variant | scheme | size MB | x smaller than FP32 | peak RSS MB | BLEU in | BLEU out "
        "| ΔBLEU in | chrF in | chrF out | " + " | ".join(f"tok/s b{b}" for b in batch_sizes) + " |",
        "|" + "---|" * (10 + len(batch_sizes)),
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['scheme']} | {r['weights_bytes'] / 1e6:.1f} | "
            f"{r['ratio_to_fp32']:.1f} | {r['peak_rss_bytes'] / 1e6:.0f} | "
            f"{r['bleu_in_domain']:.2f} | {r['bleu_out_of_domain']:.2f} | "
            f"{r['bleu_in_domain'] - reference['bleu_in_domain']:+.2f} | "
            f"{r['chrf_in_domain']:.2f} | {r['chrf_out_of_domain']:.2f} | " +
            " | ".join(f"{r['tokens_per_second'].get(b, float('nan')):.0f}" for b in batch_sizes) +
            " |")
    lines += ["", "BLEU per test set:", "",
              "| test set | " + " | ".join(r["label"] for r in rows) + " |",
              "|" + "---|" * (1 + len(rows))]
    for i, s in enumerate(reference["sets"]):
        name = f"{s['domain']}/{s['test_set']}"
        lines.append(f"| {name} | " + " | ".join(f"{r['sets'][i]['bleu']:.2f}" for r in rows) + " |")
    markdown = "\n".join(lines) + "\n"
    open(os.path.join(args.output, "compare.md"), "w").write(markdown)
    json.dump({"threads": args.threads, "beam_size": args.beam_size, "max_lines": args.max_lines,
               "in_domain": sorted(in_domain), "fp32_bytes": fp32_bytes, "variants": rows},
              open(os.path.join(args.output, "compare.json"), "w"), indent=2)
    print(markdown)
    plot(rows, batch_sizes, os.path.join(args.output, "compare.png"))


def plot(rows, batch_sizes, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    speed_batch = "32" if "32" in batch_sizes else batch_sizes[-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in rows:
        left.scatter(r["weights_bytes"] / 1e6, r["bleu_in_domain"])
        left.annotate(r["label"], (r["weights_bytes"] / 1e6, r["bleu_in_domain"]),
                      textcoords="offset points", xytext=(4, 4), fontsize=8)
        speed = r["tokens_per_second"].get(speed_batch, float("nan"))
        right.scatter(speed, r["bleu_in_domain"])
        right.annotate(r["label"], (speed, r["bleu_in_domain"]), textcoords="offset points",
                       xytext=(4, 4), fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("weights file (MB, log scale)")
    left.set_ylabel("BLEU, in-domain mean")
    left.set_title("size vs quality")
    right.set_xlabel(f"CPU tokens/s at batch {speed_batch}")
    right.set_title("speed vs quality")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
