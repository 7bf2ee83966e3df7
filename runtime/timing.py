"""The latency-table timing protocol: one module, one input, timed until its median is known.

Used for every table entry and for every whole network that the table is
fitted and validated against, so predictions and measurements come from the
same procedure:

1. eval mode, `torch.no_grad`, batch 1, a fixed thread count (restored after);
2. warm-up: at least `warmup` runs and `warmup_s` seconds (allocator, caches,
   oneDNN's first-call set-up);
3. timed single forward passes, in rounds of `check_every`, until the
   distribution-free 95 % interval of the median (order statistics
   n/2 ± 1.96·√n/2) lies within ±`rel_ci` of the median, or `max_repeats`
   runs or `max_s` seconds are spent (`converged` says which).

The clock (`clock_for`): on a CPU with one thread, the thread's CPU time
(`time.thread_time`, CLOCK_THREAD_CPUTIME_ID, ns resolution).  A
single-threaded forward pass on a core of its own takes as long in wall time
as the CPU time its thread uses; the CPU-time clock leaves out the slices
the OS gives other processes on a shared machine — the interference a
latency table exists to remove.  (Measured on this project's 2-core box at
load ~6: GhostNet 14.1 ms wall, 9.9 ms thread time, 9.5-10.0 ms wall when
quiet.)  Several threads or CUDA: wall time (`perf_counter`, CUDA
synchronised), since the work is not on the calling thread.

The median, not the mean: a few runs still hit cache misses from a neighbour
or an interrupt; the median of a few hundred runs barely notices.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from host.device import LAYOUT, in_layout

CLOCKS = ("auto", "thread", "wall")


def clock_for(device: torch.device | str, threads: int | None, clock: str = "auto") -> str:
    """'thread' (CPU time of the calling thread) for one CPU thread, else 'wall'; an explicit choice wins."""
    if clock != "auto":
        return clock
    return "thread" if torch.device(device).type == "cpu" and threads == 1 else "wall"


@dataclass(frozen=True)
class Protocol:
    """How long to warm up and when to stop timing (see the module docstring)."""

    warmup: int = 10
    warmup_s: float = 0.1
    min_repeats: int = 30
    max_repeats: int = 2000
    max_s: float = 10.0
    rel_ci: float = 0.03
    check_every: int = 10
    clock: str = "auto"  # "auto" (see clock_for), "thread" or "wall"

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"protocol clock must be one of {', '.join(CLOCKS)}; got {self.clock!r}")
        if self.min_repeats < 1 or self.max_repeats < self.min_repeats or self.check_every < 1:
            raise ValueError(f"protocol needs 1 <= min_repeats <= max_repeats and check_every >= 1; got {self}")
        if not self.rel_ci > 0 or self.max_s <= 0 or self.warmup < 0 or self.warmup_s < 0:
            raise ValueError(f"protocol needs rel_ci > 0, max_s > 0, warmup >= 0; got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    """Summary of the timed runs of one module, in milliseconds."""

    median_ms: float
    ci_low_ms: float  # 95 % interval of the median (order statistics)
    ci_high_ms: float
    p10_ms: float
    p90_ms: float
    n: int
    converged: bool  # the interval reached ±rel_ci before a limit
    clock: str = "wall"  # "thread" or "wall"

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of sorted `values`, linearly interpolated (numpy's default), without numpy."""
    pos = q * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def median_interval(sorted_values: list[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95 % interval of the median: the order statistics at n/2 ± z·√n/2."""
    n = len(sorted_values)
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return sorted_values[lo], sorted_values[hi]


def summarize(times_ms: list[float], converged: bool, clock: str = "wall") -> Timing:
    values = sorted(times_ms)
    lo, hi = median_interval(values)
    return Timing(statistics.median(values), lo, hi, quantile(values, 0.1), quantile(values, 0.9),
                  len(values), converged, clock)


def _stable(values: list[float], rel_ci: float) -> bool:
    values = sorted(values)
    median = statistics.median(values)
    lo, hi = median_interval(values)
    return lo >= median * (1 - rel_ci) and hi <= median * (1 + rel_ci)


def run_protocol(call, protocol: Protocol, clock: str, sync=lambda: None, before=None) -> Timing:
    """Warm `call` up, then time it until the protocol stops (see the module docstring); any runtime.

    `clock` is "thread" or "wall" (`clock_for`); `sync` waits for queued device work (CUDA);
    `before`, when given, runs untimed before every timed call (a cache flush: `runtime.backends`).
    """
    now = time.thread_time if clock == "thread" else time.perf_counter
    start, runs = time.perf_counter(), 0
    while runs < protocol.warmup or time.perf_counter() - start < protocol.warmup_s:
        call()
        sync()
        runs += 1
    times: list[float] = []
    start = time.perf_counter()
    converged = False
    while True:
        for _ in range(protocol.check_every):
            if before is not None:
                before()
            t0 = now()
            call()
            sync()
            times.append((now() - t0) * 1e3)
        if len(times) >= protocol.min_repeats and _stable(times, protocol.rel_ci):
            converged = True
            break
        if len(times) >= protocol.max_repeats or time.perf_counter() - start > protocol.max_s:
            break
    return summarize(times, converged, clock)


@torch.no_grad()
def time_module(module: nn.Module, input_shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                threads: int | None = 1, batch_size: int = 1, protocol: Protocol = Protocol(),
                layout: str = LAYOUT) -> Timing:
    """Time `module` in PyTorch eager on a random (batch_size, *input_shape) input in `layout` with `protocol`.

    The module is moved to `device` (and `layout`) and put in eval mode; its
    training flag and the process's torch thread count are restored afterwards.
    """
    device = torch.device(device)
    was_training = module.training
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    try:
        module.eval().to(device)
        module, x = in_layout(module, torch.randn(batch_size, *input_shape, device=device), layout)
        return run_protocol(lambda: module(x), protocol, clock_for(device, threads, protocol.clock), sync)
    finally:
        module.train(was_training)
        torch.set_num_threads(old_threads)


