"""Latency prices: what each choice adds to a network's latency, from the run's latency source itself.

Not from a regression.  Fitting the run's whole-network latencies additively
priced noise: on two real searches timed in PyTorch eager on a loaded machine
(latencies 4.6-130 ms) MCA on bottleneck 0 "cost" -12.4 ms in one and -5.9 ms
in the other.  A price is the difference between two latencies of the run's
own source that differ only in that choice (`runtime.prices` measures them):

- **a run with a latency table** (`--latency-table`): the table's blocks in
  which the two networks differ; the interval adds up those entries' median
  intervals.  The placement's latency is the table's prediction, exactly;
- **a run that measured its latencies** (a runtime recorded in run.json):
  timed here in the run's runtime on one thread — an MCA block on its own at
  its input, less one call of the runtime; a kernel set or a ratio as the two
  whole networks back to back in interleaved rounds.  Timed once per run and
  cached in `RUN/latency-prices.json` (with the machine and runtime);
- anything else (a synthetic source, a run from before sources were recorded):
  no prices, and `--max-latency-ms` says why.

Adding a block cannot make a network faster.  A price for adding an MCA block
below zero is the source's noise: it is reported as 0, up to the interval's
upper bound.  One whose whole interval lies below zero means the source
contradicts itself (a table timed under load) and is refused in one line,
never printed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from runtime.prices import ROUNDS, Price, TablePrices, timed_prices
from space import ArchConfig
from space.config import format_kernels, parse_kernels

from .model import EffectsError

CACHE = "latency-prices.json"


@dataclass
class LatencyPrices:
    """Prices of every choice against the reference network `base` (at its kernels and ratio), and what
    any placement at (kernels, ratio) is predicted to take."""

    source: str  # in words, for the header and the JSON
    base: ArchConfig
    base_ms: float
    mca: list[Price]  # MCA on bottleneck i, at the base's kernel set and ratio
    kernels: dict[str, Price] = field(default_factory=dict)  # on a net with MCA on every bottleneck
    ratio: dict[str, Price] = field(default_factory=dict)
    exact: dict[tuple[str, int], tuple[float, np.ndarray]] = field(default_factory=dict)  # a table's, per level

    def price(self, factor: str, level: str) -> Price | None:
        if factor == "mca":
            return self.mca[int(level)]
        return {"kernels": self.kernels, "ratio": self.ratio}.get(factor, {}).get(str(level))

    def predict(self, grid: np.ndarray, idx: list[int], kernels: str, ratio: int) -> np.ndarray:
        """Latency of each placement at (kernels, ratio): rows of `grid` switch MCA on the bottlenecks `idx`.
        A table predicts it exactly (its blocks add up by construction); timed prices add up: the base at
        the ratio, plus each MCA block's price scaled by how the kernel set changes all 16 blocks together."""
        if (kernels, ratio) in self.exact:
            plain, blocks = self.exact[(kernels, ratio)]
            return plain + grid @ blocks[idx]
        plain = self.base_ms + (self.ratio[str(ratio)].ms if ratio != self.base.ratio else 0.0)
        blocks = np.array([p.ms for p in self.mca])
        if kernels != format_kernels(self.base.kernels) and blocks.sum() > 0:
            blocks = blocks * max((blocks.sum() + self.kernels[kernels].ms) / blocks.sum(), 0.0)
        return plain + grid @ blocks[idx]


def _block(price: Price, where: str) -> Price:
    """A price for adding a block: never below zero; refused when its whole interval is."""
    if price.high < 0:
        raise EffectsError(f"the run's latency source prices {where} at {price.ms:+.3f} ms [{price.low:+.3f}, "
                           f"{price.high:+.3f}]: adding a block cannot make a network faster, so this source "
                           "contradicts itself (timed under load?); rebuild or re-time it")
    return Price(max(price.ms, 0.0), max(price.low, 0.0), price.high)


def _assemble(source: str, base: ArchConfig, base_ms: float, prices: dict[str, Price],
              exact: dict | None = None) -> LatencyPrices:
    mca = [_block(prices[f"mca={i}"], f"MCA on bottleneck {i}") for i in range(len(base.mca))]
    kernels = {n.split("=", 1)[1]: p for n, p in prices.items() if n.startswith("kernels=")}
    ratio = {n.split("=", 1)[1]: p for n, p in prices.items() if n.startswith("ratio=")}
    return LatencyPrices(source, base, base_ms, mca, kernels, ratio, exact or {})


def table_prices(table, base: ArchConfig, kernel_levels: list[str], ratio_levels: list[str],
                 kernel_sets: list[str], ratios: list[int]) -> LatencyPrices:
    """Prices from the run's own per-block table, and its exact prediction at every (kernels, ratio)."""
    from runtime.latency_table import LatencyTableError

    diffs = TablePrices(table)
    try:
        prices = diffs.choices(base, kernel_levels, ratio_levels)
        exact = {}
        for k in kernel_sets:
            for r in ratios:
                plain, blocks = diffs.units(base, parse_kernels(k), r)
                exact[(k, r)] = (diffs.total(plain), np.array(
                    [_block(p, f"MCA on bottleneck {i} ({k}, s={r})").ms for i, p in enumerate(blocks)]))
        base_ms = diffs.total(base)
    except LatencyTableError as exc:
        raise EffectsError(f"{exc} (pricing the run's choices needs it)") from None
    return _assemble(f"the run's latency table ({table.device_label}, {table.backend_label})", base, base_ms,
                     prices, exact)


def _cached(run: Path, want: Mapping[str, Any]) -> dict | None:
    try:
        saved = json.loads((run / CACHE).read_text())
    except (OSError, ValueError):
        return None
    return saved if all(saved.get(k) == v for k, v in want.items()) else None


def measured_prices(run: Path, base: ArchConfig, kernel_levels: list[str], ratio_levels: list[str],
                    backend: str, say=print, rounds: int = ROUNDS) -> LatencyPrices:
    """Timed here once (under a minute), then read from RUN/latency-prices.json."""
    from record.rundir import write_text_atomic

    want = {"base": base.key, "backend": backend, "kernels": kernel_levels, "ratios": ratio_levels}
    saved = _cached(run, want)
    if saved is None:
        pairs = len(kernel_levels) + len(ratio_levels)
        say(f"pricing latency: timing {len(base.mca)} MCA blocks on their own and {pairs} pairs of networks that "
            f"differ in one choice, here in {backend} ({rounds} interleaved rounds; cached in {run / CACHE})")
        prices, base_ms, where = timed_prices(base, kernel_levels, ratio_levels, backend, rounds)
        saved = {**want, "where": where, "base_ms": base_ms, "rounds": rounds,
                 "prices": {n: [p.ms, p.low, p.high] for n, p in prices.items()}}
        try:
            write_text_atomic(run / CACHE, json.dumps(saved, indent=1) + "\n")
        except OSError:
            pass  # a read-only run directory: the prices are timed again next time
    prices = {n: Price(*v) for n, v in saved["prices"].items()}
    return _assemble(f"timing here ({saved['where']}): each MCA block on its own, kernel sets and ratios as whole "
                     f"networks back to back ({saved['rounds']} rounds)", base, float(saved["base_ms"]), prices)


def run_prices(run: Path, meta: Mapping[str, Any], base: ArchConfig, kernel_levels: list[str],
               ratio_levels: list[str], say=print) -> LatencyPrices | None:
    """The prices the run's latency source gives, or None when it gives none (see the module docstring)."""
    space = meta.get("search_space") or {}
    recorded = meta.get("latency_table")
    if recorded:
        from runtime.latency_table import LatencyTable, LatencyTableError

        try:
            table = LatencyTable.load(recorded["path"])
        except (LatencyTableError, OSError, KeyError) as exc:
            raise EffectsError(f"the run predicted latency from table {recorded.get('path')}, which cannot be read "
                               f"now ({exc}); latency prices come from that table") from None
        return table_prices(table, base, kernel_levels, ratio_levels,
                            [format_kernels(k) for k in space.get("kernel_sets", [])],
                            [int(r) for r in space.get("ratios", [])])
    backend = (meta.get("latency_backend") or {}).get("name")
    if backend is None:  # a synthetic source, or a run from before runtimes were recorded
        return None
    return measured_prices(Path(run), base, kernel_levels, ratio_levels, backend, say)


__all__ = ["CACHE", "LatencyPrices", "Price", "measured_prices", "run_prices", "table_prices"]
