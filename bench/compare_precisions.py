#!/usr/bin/env python3
"""One model in several precisions, side by side: size, memory, quality, speed.

For every model directory given (FP32, INT8, QAT, DAQ variants of one model):
  - weights file size and its ratio to the same parameters stored as float32,
  - peak resident memory of the process that translates the test sets,
  - BLEU and chrF on every DOMAIN/test* set (quantmt-evaluate), averaged over
    in-domain and out-of-domain sets,
  - CPU tokens/s at several batch sizes (quantmt-bench-decode --model),
    and with --device cuda a GPU row set (the same bench on the GPU).
Writes compare.md, compare.json and compare.png (size-vs-BLEU and
speed-vs-BLEU trade-offs) into --output, and prints the markdown table.

  python3 bench/compare_precisions.py --data ../data/de-en --output out/compare \\
      --model fp32=models/default --model int8=models/default-int8
  # then, on a GPU machine, the GPU rows into the same --output:
  python3 bench/compare_precisions.py --data ../data/de-en --output out/compare \\
      --model fp32=models/default --model int8=models/default-int8 \\
      --stages speed --device cuda --compute_type float16
"""
import argparse
import glob
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


def run(command, log, exit_on_failure=True):
    """Runs `command`; returns None, or its error text when it failed and
    exit_on_failure is false."""
    print("+ " + " ".join(command), file=log, flush=True)
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode == 0:
        return None
    message = f"failed ({process.returncode}): {' '.join(command)}\n{process.stderr[-2000:]}"
    if exit_on_failure:
        sys.exit(message)
    print(message, file=log, flush=True)
    return error_line(process.stderr) or message


def error_line(stderr):
    """The line of a tool's stderr that says what went wrong: its own
    "error: ..." or a C++ exception's "what(): ...", else the first line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("error:") or line.startswith("what():"):
            return line
    return lines[0] if lines else None


def gpu_name():
    """The first GPU's name, or None where nvidia-smi cannot tell."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = out.stdout.strip().splitlines()
    return names[0].strip() if out.returncode == 0 and names else None


def speed_file(output, label, device, compute_type):
    """CPU float32 keeps the name it always had; other settings get their own
    file, so that CPU and GPU results live side by side in one --output."""
    if device == "cpu" and compute_type == "float32":
        return os.path.join(output, f"speed-{label}.json")
    return os.path.join(output, f"speed-{label}-{device}-{compute_type}.json")


def measure_speed(args, bench, label, model_dir, scheme, log):
    """One quantmt-bench-decode run on --device; its JSON (plus the decoder
    used and, on a GPU, the card's name) goes to speed_file()."""
    path = speed_file(args.output, label, args.device, args.compute_type)
    command = [bench, "--model", model_dir, "--device", args.device, "--compute_type",
               args.compute_type, "--threads", str(args.threads), "--runs", str(args.runs),
               "--batch_sizes", *args.batch_sizes.split(","), "--json", path]
    decoder = "eager"
    if args.device == "cuda":
        # As the Translator serves: CUDA graphs for float checkpoints; the
        # graph decoder refuses quantized layers, which run eager.
        decoder = args.decoder
        if decoder == "auto":
            decoder = "graphs" if scheme == "none" else "eager"
        command += ["--decoder", decoder]
    if os.path.exists(path):
        os.remove(path)  # never report an earlier run's numbers as this one's
    error = run(command, log, exit_on_failure=args.device == "cpu")
    speed = json.load(open(path)) if error is None else {
        "device": args.device, "compute_type": args.compute_type, "results": [], "error": error}
    speed["decoder"] = decoder
    if args.device == "cuda":
        speed["device_name"] = gpu_name()
    json.dump(speed, open(path, "w"), indent=2)


def load_speeds(output, label):
    """Every speed result of `label` in --output: CPU float32 first, then the
    others (GPU) in name order."""
    paths = [speed_file(output, label, "cpu", "float32")]
    pattern = os.path.join(glob.escape(output), f"speed-{glob.escape(label)}-*.json")
    paths += sorted(glob.glob(pattern))
    speeds = []
    for path in paths:
        if not os.path.exists(path):
            continue
        speed = json.load(open(path))
        speed.setdefault("device", "cpu")
        speed.setdefault("compute_type", "float32")
        speed.setdefault("decoder", "eager")
        # A label with a dash ("daq-8bit") must not take another's files
        # ("daq-8bit-b4"): keep only files this label's runs would write.
        if path != speed_file(output, label, speed["device"], speed["compute_type"]):
            continue
        speed["tokens_per_second"] = {str(r["batch_size"]): r["tokens_per_second"]
                                      for r in speed.get("results", [])}
        speeds.append(speed)
    return speeds


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
    parser.add_argument("--data", help="corpus root: DOMAIN/test* (the quality stage)")
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
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the speed stage runs (quality always runs on the CPU); "
                             "results of each device are kept apart in --output and all are "
                             "shown: CPU in the main table, others as their own row set")
    parser.add_argument("--compute_type", default=None,
                        choices=["float32", "float16", "bfloat16"],
                        help="speed stage dtype (default: float32 on cpu, float16 on cuda)")
    parser.add_argument("--decoder", default="auto", choices=["auto", "eager", "graphs"],
                        help="cuda only: the decoding loop; auto takes CUDA graphs for float "
                             "checkpoints and eager for quantized ones, as the server does")
    args = parser.parse_args()
    if args.compute_type is None:
        args.compute_type = "float16" if args.device == "cuda" else "float32"
    stages = set(args.stages.split(","))
    if "quality" in stages and not args.data:
        parser.error("the quality stage needs --data")
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
        if "speed" in stages:
            measure_speed(args, bench, label, model_dir,
                          config.get("quantization", {}).get("scheme", "none"), log)
        report, rss = load_quality(report_path, rss_path, log)
        speeds = load_speeds(args.output, label)
        cpu = next((sp for sp in speeds if sp["device"] == "cpu" and
                    sp["compute_type"] == "float32"), {"tokens_per_second": {}})
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
            "tokens_per_second": cpu["tokens_per_second"],  # CPU float32
            "speed": speeds,  # every device measured, CPU float32 first
        })
        print(f"[{index + 1}/{len(models)}] {label} done in {time.time() - started:.0f}s",
              file=log, flush=True)

    batch_sizes = args.batch_sizes.split(",")
    markdown = render_markdown(rows, args, in_domain, batch_sizes)
    open(os.path.join(args.output, "compare.md"), "w").write(markdown)
    json.dump({"threads": args.threads, "beam_size": args.beam_size, "max_lines": args.max_lines,
               "in_domain": sorted(in_domain), "fp32_bytes": fp32_bytes, "variants": rows},
              open(os.path.join(args.output, "compare.json"), "w"), indent=2)
    print(markdown)
    if any(r["bleu_in_domain"] == r["bleu_in_domain"] for r in rows):  # some not NaN
        plot(rows, batch_sizes, os.path.join(args.output, "compare.png"))
    else:
        print("no quality results in --output yet: no plot", file=sys.stderr)


def load_quality(report_path, rss_path, log):
    """The quality stage's results, or empty ones (NaN in the tables) where
    it has not run into this --output (e.g. speed measured on a GPU machine)."""
    if not os.path.exists(report_path):
        print(f"no quality results in {report_path} (run the quality stage): BLEU left empty",
              file=log, flush=True)
        return {"sets": []}, float("nan")
    rss = (json.load(open(rss_path))["peak_rss_bytes"] if os.path.exists(rss_path)
           else float("nan"))
    return json.load(open(report_path)), rss


def render_markdown(rows, args, in_domain, batch_sizes):
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
    lines += render_device_rows(rows)
    names = []
    for r in rows:
        names += [f"{s['domain']}/{s['test_set']}" for s in r["sets"]
                  if f"{s['domain']}/{s['test_set']}" not in names]
    if names:
        lines += ["", "BLEU per test set:", "",
                  "| test set | " + " | ".join(r["label"] for r in rows) + " |",
                  "|" + "---|" * (1 + len(rows))]
        for name in names:
            cells = []
            for r in rows:
                bleu = {f"{s['domain']}/{s['test_set']}": s["bleu"] for s in r["sets"]}
                cells.append(f"{bleu[name]:.2f}" if name in bleu else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_device_rows(rows):
    """One row set per (device, compute type) other than CPU float32, e.g.
    the GPU rows: every variant with the decoder it ran and its tokens/s."""
    settings = []
    for r in rows:
        for sp in r["speed"]:
            key = (sp["device"], sp["compute_type"])
            if key != ("cpu", "float32") and key not in settings:
                settings.append(key)
    lines = []
    for device, compute_type in settings:
        measured = [(r, sp) for r in rows for sp in r["speed"]
                    if (sp["device"], sp["compute_type"]) == (device, compute_type)]
        batches = sorted({b for _, sp in measured for b in sp["tokens_per_second"]}, key=int)
        batches = batches or ["?"]  # every variant failed: one column for the errors
        names = sorted({sp.get("device_name") or device for _, sp in measured})
        lines += ["", f"Speed on {device} ({', '.join(names)}), {compute_type}, tokens/s "
                  "(quantmt-bench-decode --model: greedy, 30 source and 30 generated tokens):", "",
                  "| variant | scheme | device | compute type | decoder | " +
                  " | ".join(f"tok/s b{b}" for b in batches) + " |",
                  "|" + "---|" * (5 + len(batches))]
        for r, sp in measured:
            label = sp.get("device_name") or device
            if sp.get("error"):
                cells = [f"failed: {sp['error'][:120]}"] + [""] * (len(batches) - 1)
            else:
                cells = [f"{sp['tokens_per_second'][b]:.0f}" if b in sp["tokens_per_second"]
                         else "-" for b in batches]
            lines.append(f"| {r['label']} | {r['scheme']} | {label} | {compute_type} | "
                         f"{sp['decoder']} | " + " | ".join(cells) + " |")
    return lines


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
