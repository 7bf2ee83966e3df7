"""What one choice of the menu adds to a network's latency, measured by the runtime: from a per-block table, or
timed here.  `analysis.effects.prices` decides which source a run has and what a price may be.

- From a table: the blocks in which two networks differ, with their entries'
  median intervals.  A unit's block key depends on its own settings only (its
  place, MCA, kernels, ratio), so the network without MCA and the one with MCA
  everywhere give every bottleneck's MCA price at a (kernels, ratio).
- Timed here: an MCA block on its own at the input it sees in the network
  (as a per-block table times it), less one call of the runtime at that input
  (a relu: a block inside a network pays no call of its own); a kernel set or
  a ratio changes many blocks at once, so the two whole networks are timed back
  to back in interleaved rounds (mean of the paired differences, t interval).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from space import ArchConfig, build_model
from space.blocks import block_keys
from space.config import parse_kernels

from .backends import describe_backend, runner, runs_onnx, time_network
from .latency_table import LatencyTableError
from .timing import Protocol, run_protocol

ROUNDS = 7  # interleaved rounds of each pair of whole networks
REPEATS = 15  # runs per network per round (median taken)
BLOCK = Protocol(warmup=5, warmup_s=0.0, min_repeats=30, max_repeats=300, max_s=1.0, check_every=10)


@dataclass(frozen=True)
class Price:
    """Milliseconds a choice adds, with a 95 % interval."""

    ms: float
    low: float
    high: float


def variant(base: ArchConfig, **changes: Any) -> ArchConfig:
    return replace(base, **changes)


def every(base: ArchConfig, kernels: tuple[int, ...] | None = None) -> ArchConfig:
    """`base` with MCA on every bottleneck (with `kernels`, default its own)."""
    return variant(base, mca=(True,) * len(base.mca), kernels=kernels or base.kernels)


def whole_pairs(base: ArchConfig, kernel_levels: list[str], ratio_levels: list[str]) -> dict[str, tuple]:
    """name -> (reference network, changed network) for each kernel set and ratio level."""
    pairs = {f"kernels={k}": (every(base), every(base, parse_kernels(k))) for k in kernel_levels}
    return pairs | {f"ratio={r}": (base, variant(base, ratio=int(r))) for r in ratio_levels}


# ------------------------------------------------------------------ from a table
class TablePrices:
    """Differences of a table's predictions, block by block (KeyError -> LatencyTableError naming the block)."""

    def __init__(self, table) -> None:
        self.table = table
        self.keys = lru_cache(maxsize=None)(
            lambda arch: tuple(block_keys(arch, input_size=table.input_size, num_classes=table.num_classes)))

    def entry(self, key: str) -> tuple[float, float, float]:
        try:
            e = self.table.entries[key]
        except KeyError:
            raise LatencyTableError(f"latency table {self.table.where} lacks block {key}; extend it with python -m "
                                    "runtime.latency_table") from None
        ms = float(e["median_ms"])
        return ms, float(e.get("ci_low_ms", ms)), float(e.get("ci_high_ms", ms))

    def diff(self, a: tuple[str, ...], b: tuple[str, ...]) -> Price:
        ms = low = high = 0.0
        for ka, kb in zip(a, b):
            if ka != kb:
                (ma, la, ha), (mb, lb, hb) = self.entry(ka), self.entry(kb)
                ms, low, high = ms + mb - ma, low + lb - ha, high + hb - la
        return Price(ms, low, high)

    def total(self, arch: ArchConfig) -> float:
        return sum(self.entry(k)[0] for k in self.keys(arch)) + float(self.table.overhead_ms or 0.0)

    def units(self, base: ArchConfig, kernels: tuple[int, ...], ratio: int) -> tuple[ArchConfig, list[Price]]:
        """(the network without MCA at (kernels, ratio), the price of MCA on each bottleneck there)."""
        plain = variant(base, mca=(False,) * len(base.mca), kernels=kernels, ratio=ratio)
        off, on = self.keys(plain), self.keys(every(plain))
        return plain, [self.diff((off[i + 1],), (on[i + 1],)) for i in range(len(base.mca))]

    def choices(self, base: ArchConfig, kernel_levels: list[str], ratio_levels: list[str]) -> dict[str, Price]:
        """Every choice's price against `base`: "mca=i", "kernels=K", "ratio=r"."""
        _, mca = self.units(base, base.kernels, base.ratio)
        prices = {f"mca={i}": p for i, p in enumerate(mca)}
        return prices | {n: self.diff(self.keys(a), self.keys(b))
                         for n, (a, b) in whole_pairs(base, kernel_levels, ratio_levels).items()}


# ------------------------------------------------------------------ timed here
class _Call(nn.Module):
    """Next to nothing (a relu): what one call of the runtime costs at a block's input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def block_prices(base: ArchConfig, backend: str) -> dict[str, Price]:
    """Each MCA block of `base`'s menu timed on its own (less one runtime call at its input)."""
    torch.manual_seed(0)
    net = build_model(every(base)).eval()
    prices = {}
    for i, (unit, info) in enumerate(zip(net.blocks, net.blocks_info)):
        shape = (info["out_channels"], info["resolution"], info["resolution"])
        block, call = (time_network(m, shape, backend=backend, threads=1, protocol=BLOCK, name=f"MCA block {i}",
                                    cold=runs_onnx(backend)) for m in (unit.mca, _Call().eval()))
        prices[f"mca={i}"] = Price(block.median_ms - call.median_ms, block.ci_low_ms - call.ci_high_ms,
                                   block.ci_high_ms - call.ci_low_ms)
    return prices


def paired(a, b, rounds: int, protocol: Protocol) -> Price:
    """b − a over `rounds` interleaved rounds (each round times both, in alternating order)."""
    from scipy import stats

    def time(call) -> float:
        return run_protocol(call, protocol, "thread").median_ms

    diffs = []
    for r in range(rounds):
        if r % 2 == 0:
            t_a = time(a)
            t_b = time(b)
        else:
            t_b = time(b)
            t_a = time(a)
        diffs.append(t_b - t_a)
    mean = statistics.fmean(diffs)
    half = float(stats.t.ppf(0.975, rounds - 1)) * statistics.stdev(diffs) / math.sqrt(rounds) if rounds > 1 \
        else math.inf
    return Price(mean, mean - half, mean + half)


def timed_prices(base: ArchConfig, kernel_levels: list[str], ratio_levels: list[str], backend: str,
                 rounds: int = ROUNDS) -> tuple[dict[str, Price], float, str]:
    """Every choice timed here in `backend`, one thread: (prices, the base's ms, the machine and runtime)."""
    from contextlib import ExitStack

    from host.device import describe_device

    protocol = Protocol(warmup=3, warmup_s=0.0, min_repeats=REPEATS, max_repeats=REPEATS, check_every=REPEATS)
    prices = block_prices(base, backend)
    with ExitStack() as stack:
        nets: dict[str, Any] = {}

        def call(arch: ArchConfig):
            if arch.key not in nets:
                nets[arch.key] = stack.enter_context(runner(build_model(arch).eval(), (3, 32, 32), backend=backend,
                                                            threads=1, name=arch.key))
            return nets[arch.key]

        for name, (a, b) in whole_pairs(base, kernel_levels, ratio_levels).items():
            prices[name] = paired(call(a), call(b), rounds, protocol)
        base_ms = run_protocol(call(base), protocol, "thread").median_ms
    where = f"{describe_device('cpu', 1)['label']}, {describe_backend(backend, 1)['label']}"
    return prices, base_ms, where


__all__ = ["BLOCK", "Price", "REPEATS", "ROUNDS", "TablePrices", "block_prices", "every", "paired", "timed_prices",
           "whole_pairs"]
