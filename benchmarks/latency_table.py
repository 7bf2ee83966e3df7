"""Does the per-block latency table rank and predict whole networks? Validation against measurement.

    python benchmarks/latency_table.py [--latency-backend onnxruntime|onnxruntime-int8|torch] [--table table.json] [--device cpu]
        [--threads 1] [--archs 30] [--seed 0]

1. builds the table for the menu (or extends / reuses `--table`, resumable);
2. draws `--archs` seeded random architectures of the menu — each with its
   own MCA density drawn uniformly in [0, 1], so placements from none to all
   sixteen occur as they do along a Pareto front — plus the four presets;
3. times every whole network in isolation with the table's protocol
   (`runtime.timing`), in `--rounds` rounds over the architectures in a
   fresh order each round; an architecture's measurement is the median of
   its round medians, so a burst of load from other processes during one
   round does not decide it;
4. prints Kendall τ(predicted, measured) with a bootstrap 95 % interval
   (architectures resampled), the share of predictions within ±10 % of the
   measurement, and τ(MACs, measured) for comparison.

Targets: τ >= 0.9 and >= 90 % within ±10 % (>= 95 % for ONNX Runtime, issue #28).
Each backend's table is validated against whole networks timed in the same
runtime (`runtime.backends`); run it once per backend to compare them.  The load average is printed
before and after: on a shared machine, read the figures with it.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from space import ArchConfig, SearchSpace, build_model, count_macs, presets_for  # noqa: E402
from space.search_space import DEFAULT_KERNEL_SETS, DEFAULT_RATIOS, parse_ints, parse_kernel_sets  # noqa: E402
from runtime.latency_table import LatencyTable, Progress, build_table, predict_latency  # noqa: E402
from runtime.backends import BACKENDS, runner  # noqa: E402
from runtime.timing import Protocol, clock_for, run_protocol  # noqa: E402


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[ArchConfig]:
    """`n` distinct seeded architectures of the menu, MCA density uniform per architecture."""
    rng = random.Random(seed)
    out: dict[str, ArchConfig] = {}
    while len(out) < n:
        density = rng.random()
        cfg = ArchConfig(mca=tuple(rng.random() < density for _ in range(space.n_blocks)),
                         kernels=rng.choice(space.kernel_sets), ratio=rng.choice(space.ratios),
                         width=space.width, dw_size=space.dw_size, backbone=space.backbone)
        out.setdefault(cfg.key, cfg)
    return list(out.values())


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default=None,
                   help="table to build / extend / reuse (default <tmp>/ghostnas-latency-table-<device>-<threads>t.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--latency-backend", default="onnxruntime", choices=BACKENDS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backbone", default="ghostnet")
    p.add_argument("--kernel-sets", default=DEFAULT_KERNEL_SETS)
    p.add_argument("--ratios", default=DEFAULT_RATIOS)
    p.add_argument("--archs", type=int, default=30, help="random architectures besides the four presets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bootstrap", type=int, default=2000)
    p.add_argument("--max-seconds", type=float, default=Protocol.max_s,
                   help="timing seconds per block or network at most (default %(default)g; on a loaded machine "
                        "a lower cap trades precision for time)")
    p.add_argument("--verbose", action="store_true", help="print every architecture's numbers")
    args = p.parse_args()
    if args.table is None:
        args.table = str(Path(tempfile.gettempdir()) / f"ghostnas-latency-table-{args.latency_backend}-{args.device}-{args.threads}t.json")

    started = time.perf_counter()
    print(f"load average at start: {load_average()} ({os.cpu_count()} CPUs)", flush=True)
    space = SearchSpace(kernel_sets=parse_kernel_sets(args.kernel_sets), ratios=parse_ints(args.ratios, "--ratios"),
                        backbone=args.backbone)
    presets = presets_for(space.backbone)
    protocol = Protocol(max_s=args.max_seconds)
    bars: dict[int, Progress] = {}

    def progress(done: int, total: int, key: str) -> None:
        if total:
            bars.setdefault(total, Progress(total, "blocks")).update(done, key)

    result = build_table(args.table, space, device=args.device, threads=args.threads, protocol=protocol,
                         progress=progress, backend=args.latency_backend)
    table: LatencyTable = result.table
    built_s = time.perf_counter() - started
    print(f"table {args.table}: {table.device_label}, {table.backend_label}, {len(table.entries)} entries "
          f"({result.measured} measured now, {built_s:.0f} s), overhead {table.overhead_ms:+.3f} ms", flush=True)

    archs = list(presets.values()) + [a for a in sample_archs(space, args.archs, args.seed)
                                      if a not in presets.values()]
    names = list(presets) + [f"random-{i}" for i in range(len(archs) - len(presets))]
    predicted = [predict_latency(a, table) for a in archs]
    macs = [float(count_macs(build_model(a))) for a in archs]
    models = [build_model(a) for a in archs]

    rounds: list[list[float]] = [[] for _ in archs]
    order_rng = random.Random(args.seed + 1)
    bar = Progress(len(archs) * args.rounds, "whole networks")
    done = 0
    clock = clock_for(args.device, args.threads, protocol.clock)
    with contextlib.ExitStack() as stack:  # each network exported (onnxruntime) once, timed every round
        calls = [stack.enter_context(runner(m, (3, table.input_size, table.input_size), backend=table.backend,
                                            device=args.device, threads=args.threads, name=n))
                 for m, n in zip(models, names)]
        for _ in range(args.rounds):
            order = list(range(len(archs)))
            order_rng.shuffle(order)
            for i in order:
                rounds[i].append(run_protocol(calls[i], protocol, clock).median_ms)
                done += 1
                bar.update(done, names[i])
    measured = [statistics.median(r) for r in rounds]

    errors = [(pr - me) / me for pr, me in zip(predicted, measured)]
    within = sum(abs(e) <= 0.10 for e in errors) / len(errors)
    tau = kendall_tau(predicted, measured)
    lo, hi = bootstrap_interval(kendall_tau, predicted, measured, n_boot=args.bootstrap, seed=args.seed)
    tau_macs = kendall_tau(macs, measured)
    lo_m, hi_m = bootstrap_interval(kendall_tau, macs, measured, n_boot=args.bootstrap, seed=args.seed)
    if args.verbose:
        print(f"{'arch':14s} {'n_mca':>5s} {'s':>2s} {'kernels':>8s} {'MACs':>9s} {'predicted':>10s} "
              f"{'measured':>9s} {'error':>7s}")
        for name, a, m, pr, me, e in zip(names, archs, macs, predicted, measured, errors):
            print(f"{name:14s} {a.n_mca:5d} {a.ratio:2d} {'-'.join(map(str, a.kernels)):>8s} {m / 1e6:8.2f}M "
                  f"{pr:9.3f}ms {me:8.3f}ms {e:+7.1%}")
    print(f"\narchitectures: {len(archs)} ({len(presets)} presets + {len(archs) - len(presets)} random, seed {args.seed}), "
          f"{args.rounds} rounds, device {table.device_label}, {table.backend_label}")
    print(f"Kendall tau(predicted, measured) = {tau:.3f}  [95% bootstrap CI {lo:.3f}, {hi:.3f}]  (target >= 0.9)")
    print(f"within ±10%: {within:.0%} ({sum(abs(e) <= 0.10 for e in errors)}/{len(errors)})  (target >= 90%); "
          f"median |error| {statistics.median(abs(e) for e in errors):.1%}, worst {max(errors, key=abs):+.1%}")
    print(f"Kendall tau(MACs, measured)      = {tau_macs:.3f}  [95% bootstrap CI {lo_m:.3f}, {hi_m:.3f}]")
    print(f"load average at end: {load_average()}; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
