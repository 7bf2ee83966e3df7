#!/usr/bin/env python3
"""Time the blocks `python -m runtime.latency_table export-blocks DIR` wrote, on the device; write the latency table.

    python3 time_blocks.py DIR -o table.json [--threads 1] [--rel-ci 0.03] [--max-seconds 10]

Needs only onnxruntime and numpy (a phone board, a Raspberry Pi: no PyTorch).
It follows `runtime.timing`'s protocol — warm-up, batch 1, timed runs until
the median's distribution-free 95 % interval is within ±rel-ci, the calling
thread's CPU time with one thread — and `runtime.latency_table`'s ONNX
Runtime recipe: every graph optimisation, fixed intra-op threads, each block
timed cold (the cache flushed before each run), the presets timed whole to
fit the table's overhead constant.  The table it writes is the one
`search.run --latency-table` reads.  Re-running with the same -o keeps the
entries already measured (an interrupted run continues).  A missing or
corrupt file is one line and exit status 2.

A folder written with `export-blocks --int8` holds each block's and preset's
int8 plans beside its fp32 file: each plan is timed, the fastest is the
entry (its plan recorded), and the table is `onnxruntime-int8`'s.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

import numpy as np
import onnxruntime as ort


class Refused(Exception):
    """A user error: printed as one line, exit 2."""


def cpu_name():
    """The CPU's name as host.device.cpu_model says it ("model name"), else a board's ("Model", "Hardware")."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), " ".join(value.split()))
    except OSError:
        pass
    for key in ("model name", "model", "hardware"):
        if fields.get(key) and not fields[key].isdigit():
            return fields[key]
    return platform.processor() or platform.machine() or "unknown CPU"


def median_interval(values, z=1.96):
    n = len(values)
    half = z * math.sqrt(n) / 2
    return values[max(0, math.floor(n / 2 - half) - 1)], values[min(n - 1, math.ceil(n / 2 + half) - 1)]


def quantile(values, q):
    pos = q * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def session(path, threads):
    if not os.path.isfile(path):
        raise Refused(f"{path} does not exist: copy the whole folder export-blocks wrote")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
        raise Refused(f"{path} is not an ONNX model ONNX Runtime can load: {' '.join(str(exc).split())[:200]}")


def time_model(sess, args, flush=None):
    """Summary of the timed runs of one model (ms), as runtime.timing.Timing.to_dict writes it."""
    arg = sess.get_inputs()[0]
    feed = {arg.name: np.random.default_rng(0).standard_normal([1, *arg.shape[1:]]).astype(np.float32)}
    clock = "thread" if args.threads == 1 else "wall"
    now = time.thread_time if clock == "thread" else time.perf_counter
    start, runs = time.perf_counter(), 0
    while runs < 10 or time.perf_counter() - start < 0.1:
        sess.run(None, feed)
        runs += 1
    times, start, converged = [], time.perf_counter(), False
    while not converged:
        for _ in range(10):
            if flush is not None:
                np.add(flush, 1.0, out=flush)
            t0 = now()
            sess.run(None, feed)
            times.append((now() - t0) * 1e3)
        values = sorted(times)
        median = statistics.median(values)
        lo, hi = median_interval(values)
        converged = len(times) >= args.min_repeats and lo >= median * (1 - args.rel_ci) \
            and hi <= median * (1 + args.rel_ci)
        if len(times) >= args.max_repeats or time.perf_counter() - start > args.max_seconds:
            break
    return {"median_ms": round(median, 6), "ci_low_ms": round(lo, 6), "ci_high_ms": round(hi, 6),
            "p10_ms": round(quantile(values, 0.1), 6), "p90_ms": round(quantile(values, 0.9), 6),
            "n": len(values), "converged": converged, "clock": clock}


def fastest(folder, model, args, flush=None):
    """The timing of `model` (a block or preset of the manifest): its one file, or the fastest of its int8 plans,
    with the plan's name."""
    plans = model.get("plans") or {"": model["file"]}
    timed = {plan: time_model(session(os.path.join(folder, file), args.threads), args, flush)
             for plan, file in plans.items()}
    best = min(timed, key=lambda plan: timed[plan]["median_ms"])
    return timed[best] | ({"plan": best} if best else {})


def read_manifest(folder):
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read {path} ({exc}): is {folder} a folder export-blocks wrote?")
    if not isinstance(manifest, dict) or manifest.get("format") != "ghostnas-block-models":
        raise Refused(f"{path} is not an export-blocks manifest")
    return manifest


def new_table(manifest, args):
    name = cpu_name()
    threads = f"{args.threads} thread{'s' if args.threads != 1 else ''}"
    runtime = manifest.get("backend", "onnxruntime")
    backend = {"name": runtime, "version": ort.__version__, "threads": args.threads,
               "opset": manifest["opset"], "graph_optimization": "all", "exporter": manifest["exporter"],
               "block_cache_flush_bytes": manifest["block_cache_flush_bytes"]}
    if "quantization" in manifest:
        backend["quantization"] = {**manifest["quantization"], "chosen": "the fastest, timed on the device"}
    backend["label"] = f"{runtime} {ort.__version__}, {threads}"
    return {"format": "ghostnas-latency-table", "version": 1, "backbone": manifest["backbone"],
            "device": {"type": "cpu", "name": name, "threads": args.threads, "cpu_count": os.cpu_count(),
                       "label": f"cpu {name}, {threads}", "timed_by": "time_blocks.py (export-blocks)"},
            "backend": backend, "torch": manifest["torch"], "layout": "onnx", "batch_size": 1,
            "input_size": manifest["input_size"], "num_classes": manifest["num_classes"],
            "clock": "thread" if args.threads == 1 else "wall",
            "protocol": {"warmup": 10, "warmup_s": 0.1, "min_repeats": args.min_repeats,
                         "max_repeats": args.max_repeats, "max_s": args.max_seconds, "rel_ci": args.rel_ci,
                         "check_every": 10, "clock": "auto"},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "menus": manifest["menus"], "entries": {}, "overhead": None}


def open_table(manifest, args):
    """The table at -o to continue (same device, runtime and blocks' torch), or a new one."""
    table = new_table(manifest, args)
    if not os.path.exists(args.output):
        return table
    try:
        with open(args.output) as f:
            old = json.load(f)
        same = all(old[k] == table[k] for k in ("device", "backend", "torch", "backbone"))
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if not same:
        raise Refused(f"{args.output} holds another table (device, runtime or blocks differ): choose another -o")
    old["entries"] = {k: v for k, v in old["entries"].items() if k in manifest["blocks"]}
    return old


def save(table, path):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(table, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run(args):
    manifest = read_manifest(args.dir)
    table = open_table(manifest, args)
    flush = np.zeros(manifest["block_cache_flush_bytes"] // 8)
    todo = [k for k in manifest["blocks"] if k not in table["entries"]]
    for done, key in enumerate(todo, 1):
        block = manifest["blocks"][key]
        timing = fastest(args.dir, block, args, flush)
        table["entries"][key] = {k: block[k] for k in ("kind", "index", "input_shape", "params")} | timing
        save(table, args.output)
        print(f"\r{done}/{len(todo)} blocks", end="", file=sys.stderr, flush=True)
    fit = []
    for name, preset in manifest["presets"].items():
        whole = fastest(args.dir, preset, args)["median_ms"]
        blocks = sum(table["entries"][k]["median_ms"] for k in preset["blocks"])
        fit.append({"preset": name, "key": preset["key"], "measured_ms": whole, "blocks_ms": round(blocks, 6),
                    "residual_ms": round(whole - blocks, 6)})
    table["overhead"] = {"constant_ms": round(statistics.median(f["residual_ms"] for f in fit), 6),
                         "method": "median over the presets of (whole network measured - sum of its blocks)",
                         "fit": fit}
    save(table, args.output)
    print(f"\n{args.output}: {len(table['entries'])} blocks on {table['device']['label']}, "
          f"{table['backend']['label']}; overhead {table['overhead']['constant_ms']:+.3f} ms")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="the folder export-blocks wrote")
    p.add_argument("-o", "--output", required=True, help="the latency table (JSON) to write")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--rel-ci", type=float, default=0.03, help="stop at a median interval within ± this (0.03)")
    p.add_argument("--min-repeats", type=int, default=30)
    p.add_argument("--max-repeats", type=int, default=2000)
    p.add_argument("--max-seconds", type=float, default=10.0, help="timing seconds per model at most (10)")
    args = p.parse_args(argv)
    try:
        if args.threads < 1 or args.min_repeats < 1 or args.max_repeats < args.min_repeats:
            raise Refused("--threads and --min-repeats must be at least 1, --max-repeats at least --min-repeats")
        out_dir = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
            raise Refused(f"cannot write {args.output}: {out_dir} is not a writable folder")
        run(args)
    except Refused as exc:
        print(f"time_blocks.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
