"""What each choice costs, and the data's Selective MCA: the best placement under a budget.

MACs and params are exact and additive: an MCA block sits after its
bottleneck with the same channels in and out, so its cost depends on the
bottleneck's place and the kernel set, never on the other bits or on s.
`space.describe` counts them per block (on the meta device, a blink), and a
net's cost is its no-MCA cost at its ratio plus the blocks it carries.
Latency is priced from the run's latency source itself, never fitted to its
whole-network latencies (`analysis.effects.prices`): a table run's blocks, or
the networks that differ in one choice timed here back to back.

The placement maximises the predicted accuracy over every placement of the
estimable bottlenecks × kernel set × ratio (2¹⁶ × 9 on the default menu,
vectorised), under `--max-macs` (exact) and/or `--max-latency-ms`
(predicted).  A bottleneck the run could not estimate stays without MCA.
The prediction's interval comes from the fit's covariance (statsmodels
`t_test` of the contrast); being the best of many, its point estimate is
optimistic (winner's curse), which is why `search.confirm --pick effects`
trains it against the presets.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import numpy as np
import pandas as pd

from record.arch import from_flat
from space import ArchConfig
from space.describe import describe

from .model import ALPHA, Design, EffectsError, column_name, split_name


@lru_cache(maxsize=64)
def _described(config: ArchConfig) -> dict:
    return describe(config)


def _variant(base: ArchConfig, **changes) -> ArchConfig:
    fields = {**base.to_dict(), **changes}
    return ArchConfig.from_dict(fields)


def base_arch(design: Design) -> ArchConfig:
    """The reference architecture: no MCA, the reference levels (the most common where no reference)."""
    row = design.rows.iloc[0].to_dict()
    for factor, level in design.references.items():
        row[factor] = level
    for c in [c for c in row if c.startswith("mca_")]:
        row[c] = 0
    for factor in ("width", "dw_size"):
        if factor not in design.references:
            row[factor] = design.rows[factor].mode().iloc[0]
    if "kernels" not in design.references:
        row["kernels"] = design.rows.loc[design.rows["n_mca"] > 0, "kernels"].mode().iloc[0] \
            if (design.rows["n_mca"] > 0).any() else row["kernels"]
    return from_flat(row)


def block_costs(base: ArchConfig, kernels: str | None = None) -> pd.DataFrame:
    """MACs and params of the MCA block on every bottleneck (with `kernels`, default the base's), and its
    resolution."""
    every = _variant(base, mca=[True] * len(base.mca), **({"kernels": kernels} if kernels else {}))
    blocks = _described(every)["blocks"]
    return pd.DataFrame({"macs": [b["mca_macs"] for b in blocks], "params": [b["mca_params"] for b in blocks],
                         "resolution": [b["resolution"] for b in blocks]})


def total_cost(config: ArchConfig) -> tuple[int, int]:
    """(MACs, params) of a whole net at 32x32, counted."""
    total = _described(config)["total"]
    return int(total["macs"]), int(total["params"])


def choice_cost(base: ArchConfig, factor: str, level: str) -> tuple[int, int]:
    """What one choice adds to the reference net (exact): an MCA block; a kernel set on a net with MCA on
    every bottleneck; another ratio (or width, d) without MCA."""
    if factor == "mca":
        costs = block_costs(base).iloc[int(level)]
        return int(costs["macs"]), int(costs["params"])
    if factor == "kernels":
        this, ref = block_costs(base, level), block_costs(base)
        return int(this["macs"].sum() - ref["macs"].sum()), int(this["params"].sum() - ref["params"].sum())
    value = {"ratio": int, "width": float, "dw_size": int}[factor](float(level))
    macs, params = total_cost(_variant(base, **{factor: value}))
    ref_macs, ref_params = total_cost(base)
    return macs - ref_macs, params - ref_params


@dataclass(frozen=True)
class Placement:
    """The chosen architecture, its predicted val_acc with interval, exact cost and predicted latency."""

    arch: ArchConfig
    predicted: float
    low: float
    high: float
    macs: int
    params: int
    latency_ms: float | None


def _candidates(design: Design) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Every placement of the estimable bits (2^m rows) and the (kernels, ratio) levels to pair them with."""
    bits = [c for c in design.X.columns if split_name(c)[0] == "mca"]
    grid = np.array(list(product((0.0, 1.0), repeat=len(bits))), dtype=np.float32).reshape(-1, len(bits))
    base = base_arch(design)
    ref_k = "-".join(map(str, base.kernels))
    kernels = [ref_k] + [split_name(c)[1] for c in design.X.columns if split_name(c)[0] == "kernels"]
    ratios = [str(base.ratio)] + [split_name(c)[1] for c in design.X.columns if split_name(c)[0] == "ratio"]
    return grid, bits, list(product(kernels, ratios))


def _contrast(design: Design, bits: list[str], on: np.ndarray, kernels: str, ratio: str) -> np.ndarray:
    c = pd.Series(0.0, index=design.X.columns)
    c["const"] = 1.0
    c[bits] = on
    if on.any() and column_name("kernels", kernels) in c.index:
        c[column_name("kernels", kernels)] = 1.0
    if column_name("ratio", ratio) in c.index:
        c[column_name("ratio", ratio)] = 1.0
    return c.to_numpy()


def _level_values(design: Design, result, prices, grid, bits, kernels: str, ratio: str):
    """Predicted val_acc, exact MACs and predicted latency of every placement at (kernels, ratio)."""
    base = base_arch(design)
    blocks = block_costs(base, kernels)
    idx = [int(split_name(b)[1]) for b in bits]
    any_on = grid.any(axis=1)
    base_macs = total_cost(_variant(base, ratio=int(ratio)))[0]
    macs = base_macs + grid @ blocks["macs"].to_numpy(dtype=np.float64)[idx]
    acc = _linear(result.params, grid, bits, any_on, kernels, ratio)
    latency = prices.predict(grid, idx, kernels, int(ratio)) if prices is not None else None
    return acc, macs, latency


def _linear(params: pd.Series, grid, bits, any_on, kernels: str, ratio: str) -> np.ndarray:
    out = params["const"] + grid @ params[bits].to_numpy(dtype=np.float64)
    out = out + any_on * params.get(column_name("kernels", kernels), 0.0)
    return out + params.get(column_name("ratio", ratio), 0.0)


def best_placement(design: Design, result, max_macs: float | None = None,
                   max_latency_ms: float | None = None, prices=None) -> Placement:
    """The placement with the highest predicted val_acc within the budgets (ties: fewer MACs); latency is
    predicted from the run's latency `prices` (analysis.effects.prices)."""
    if max_latency_ms is not None and prices is None:
        raise EffectsError("--max-latency-ms needs latency prices, which this run's latency source cannot give "
                           "(it recorded no runtime and no latency table)")
    grid, bits, levels = _candidates(design)
    best, cheapest = None, (np.inf, np.inf)
    for kernels, ratio in levels:
        acc, macs, latency = _level_values(design, result, prices, grid, bits, kernels, ratio)
        fits = np.ones(len(acc), dtype=bool)
        if max_macs is not None:
            fits &= macs <= max_macs
        if max_latency_ms is not None:
            fits &= latency <= max_latency_ms
        cheapest = (min(cheapest[0], macs.min()), min(cheapest[1], latency.min() if latency is not None else np.inf))
        if fits.any():
            i = np.flatnonzero(fits)[np.lexsort((macs[fits], -acc[fits]))[0]]
            if best is None or (acc[i], -macs[i]) > (best[0], -best[1]):
                best = (acc[i], macs[i], grid[i], kernels, ratio, None if latency is None else latency[i])
    if best is None:
        raise EffectsError(_nothing_fits(max_macs, max_latency_ms, cheapest))
    return _placement(design, result, bits, best)


def _nothing_fits(max_macs, max_latency_ms, cheapest) -> str:
    limits = []
    if max_macs is not None:
        limits.append(f"macs <= {max_macs:g} (cheapest placement: {cheapest[0]:.0f})")
    if max_latency_ms is not None:
        limits.append(f"latency_ms <= {max_latency_ms:g} (fastest predicted: {cheapest[1]:.3f} ms)")
    return "no placement meets the budget " + " and ".join(limits)


def _placement(design: Design, result, bits, best) -> Placement:
    acc, _, on, kernels, ratio, latency = best
    base = base_arch(design)
    mca = list(base.mca)
    for b, bit in zip(bits, on):
        mca[int(split_name(b)[1])] = bool(bit)
    arch = _variant(base, mca=mca, kernels=kernels, ratio=int(ratio))
    test = result.t_test(_contrast(design, bits, on, kernels, ratio)[None, :])
    low, high = np.asarray(test.conf_int(alpha=ALPHA))[0]
    macs, params = total_cost(arch)
    return Placement(arch, float(acc), float(low), float(high), macs, params,
                     None if latency is None else float(latency))


__all__ = ["Placement", "best_placement", "block_costs", "choice_cost", "base_arch", "total_cost"]
