"""PyTorch eager, ONNX Runtime and its int8 models: how far apart, and in which order, do they time the same networks?

    python benchmarks/latency_backends.py [--archs 12] [--rounds 5] [--threads 1] [--seed 0] [--max-seconds 2]

The backbone's four presets and `--archs` seeded random architectures of the
default menu (MCA density uniform per architecture, as in
`benchmarks/latency_table.py`) are timed in every backend (`runtime.backends`:
PyTorch eager, ONNX Runtime fp32, and ONNX Runtime int8 as shipped — each
network quantized, its plan chosen by `runtime.quantize.int8_session`)
with `runtime.timing`'s protocol: batch 1, 32x32, `--threads` threads, after
warm-up.  Interleaved: every round visits the architectures in a fresh order
and times each in every runtime back to back (the order alternates),
so a burst of load from other processes hits them all.  Each network is exported
once (its ONNX Runtime logits checked against PyTorch's).

Printed: per architecture and backend the median over rounds of the round
medians (int8: with the plan shipped) and the run-to-run spread (coefficient
of variation over rounds),
the ratios to fp32 ONNX Runtime; then the ratios' range, Kendall τ between
every pair of backends with a bootstrap 95 % interval (architectures
resampled), and
the load average before and after — on a shared machine, read the figures
with it.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from space import SearchSpace, build_model, presets_for  # noqa: E402
from runtime.backends import BACKENDS, describe_backend, runner  # noqa: E402
from host.device import describe_device  # noqa: E402
from runtime.timing import Protocol, clock_for, run_protocol  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from latency_table import load_average, sample_archs  # noqa: E402


def cv(values: list[float]) -> float:
    return statistics.pstdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0


def time_all(calls: dict[str, list], names: list[str], rounds: int, protocol: Protocol, clock: str, seed: int):
    """{backend: [[round medians] per architecture]}, interleaved as the module docstring says."""
    out = {b: [[] for _ in names] for b in BACKENDS}
    rng = random.Random(seed)
    for r in range(rounds):
        order = list(range(len(names)))
        rng.shuffle(order)
        for i in order:
            for backend in (BACKENDS if (r + i) % 2 == 0 else BACKENDS[::-1]):
                out[backend][i].append(run_protocol(calls[backend][i], protocol, clock).median_ms)
        print(f"round {r + 1}/{rounds} done, load average {load_average()}", file=sys.stderr, flush=True)
    return out


def report(names: list[str], rounds: dict[str, list[list[float]]], args, plans: list[str]) -> None:
    """Per network and backend: median of round medians and CV over rounds; ratios to fp32 ONNX Runtime;
    Kendall tau between every pair of backends with its bootstrap interval; preset ratios to ghostnet."""
    med = {b: [statistics.median(r) for r in rounds[b]] for b in BACKENDS}
    spread = {b: [cv(r) for r in rounds[b]] for b in BACKENDS}
    ratio = {b: [x / o for x, o in zip(med[b], med["onnxruntime"])] for b in BACKENDS if b != "onnxruntime"}
    print("\n| architecture | " + " | ".join(f"{b} (ms) | CV over rounds" for b in BACKENDS) + " | "
          + " | ".join(f"{b} / onnxruntime" for b in ratio) + " |")
    print("|---|" + "---|---|" * len(BACKENDS) + "---|" * len(ratio))
    for i, name in enumerate(names):
        cells = " | ".join(f"{med[b][i]:.2f}{f' ({plans[i]})' if b == 'onnxruntime-int8' else ''} | {spread[b][i]:.1%}"
                           for b in BACKENDS)
        print(f"| {name} | {cells} | " + " | ".join(f"{ratio[b][i]:.2f}x" for b in ratio) + " |")
    print()
    for b, r in ratio.items():
        print(f"ratio {b} / onnxruntime: median {statistics.median(r):.2f}x, range {min(r):.2f}-{max(r):.2f}x "
              f"over {len(names)} architectures")
    for i, a in enumerate(BACKENDS):
        for b in BACKENDS[i + 1:]:
            tau = kendall_tau(med[a], med[b])
            lo, hi = bootstrap_interval(kendall_tau, med[a], med[b], n_boot=2000, seed=args.seed)
            print(f"Kendall tau({a}, {b}) = {tau:.2f}  [95% bootstrap CI {lo:.2f}, {hi:.2f}]")
    for b in BACKENDS:
        print(f"run-to-run spread ({b}): CV over {args.rounds} rounds median {statistics.median(spread[b]):.1%}, "
              f"max {max(spread[b]):.1%}")
    g = names.index("ghostnet")
    for other in ("cnn", "all_mca", "selective_mca"):
        j = names.index(other)
        print(f"{other} / ghostnet: " + ", ".join(f"{b} {med[b][j] / med[b][g]:.2f}x" for b in BACKENDS))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", type=int, default=12, help="random architectures besides the four presets")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=2.0, help="timing seconds per network and round at most")
    args = p.parse_args()
    started = time.perf_counter()
    print(f"load average at start: {load_average()} ({os.cpu_count()} CPUs); "
          f"{describe_device('cpu', args.threads)['label']}; "
          + ", ".join(describe_backend(b, args.threads)["label"] for b in BACKENDS), flush=True)
    presets = presets_for("ghostnet")
    archs = list(presets.values()) + [a for a in sample_archs(SearchSpace(), args.archs, args.seed)
                                      if a not in presets.values()]
    names = list(presets) + [f"random-{i}" for i in range(len(archs) - len(presets))]
    protocol = Protocol(max_s=args.max_seconds)
    with contextlib.ExitStack() as stack:
        calls = {b: [stack.enter_context(runner(build_model(a), (3, 32, 32), backend=b, threads=args.threads,
                                                name=n)) for a, n in zip(archs, names)] for b in BACKENDS}
        rounds = time_all(calls, names, args.rounds, protocol, clock_for("cpu", args.threads), args.seed)
        plans = [call.plan for call in calls["onnxruntime-int8"]]
    print(f"{len(archs)} architectures ({len(presets)} presets + {len(archs) - len(presets)} random, seed "
          f"{args.seed}), {args.rounds} rounds, batch 1, 32x32, {args.threads} thread(s), interleaved")
    report(names, rounds, args, plans)
    shipped_fp32 = [n for n, p in zip(names, plans) if p == "fp32"]
    if shipped_fp32:
        print(f"shipped as fp32 (int8 never paid): {', '.join(shipped_fp32)}: their int8 / onnxruntime ratio is two "
              "sessions of one fp32 model, i.e. this machine's noise between sessions")
    print(f"load average at end: {load_average()}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
